//! The recording catalog: one SQLite file (`<storage.dir>/catalog.db`, WAL
//! mode) holding calls, recordings (with their full sidecar metadata),
//! recording logs, idempotency keys, the webhook outbox ([`outbox`]), call
//! flows ([`flows`]) and the audit trail ([`audit`]). Schema migrations are numbered in
//! code ([`MIGRATIONS`]); a database written by a newer recengine is refused
//! at startup rather than misread. Sidecars and catalog carry the same
//! facts, and `recengine reindex` rebuilds the catalog from the sidecars.
//!
//! Ids are per tenant: a call, recording or recording log is keyed by its
//! `customer_id` and its id, so one customer's `call_id` or
//! `recording_id` says nothing about another's. The admin's own objects
//! have no customer (stored as `''`, read back as `None`); every lookup
//! names the customer it is for, and only [`Catalog::recordings_with_id`]
//! and [`Catalog::calls_with_id`] look across customers (for the admin).

pub mod audit;
pub mod flows;
pub mod keys;
pub mod outbox;
pub mod reindex;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use thiserror::Error;

use crate::encryption::EncryptionInfo;
use crate::recording::RecordingStatus;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CatalogError {
    #[error("catalog: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "catalog {path} has schema version {found}, newer than this recengine understands ({supported}); upgrade recengine or restore a backup"
    )]
    TooNew {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("catalog: {0}")]
    Invalid(String),
}

/// Schema steps; `PRAGMA user_version` is the number applied.
pub const MIGRATIONS: &[&str] = &[
    // 1: calls, recordings, recording logs, idempotency keys.
    "CREATE TABLE calls (
        call_id TEXT PRIMARY KEY,
        customer_id TEXT,
        from_number TEXT NOT NULL DEFAULT '',
        to_number TEXT NOT NULL DEFAULT '',
        direction TEXT NOT NULL,
        reference_type TEXT NOT NULL,
        created_at TEXT NOT NULL,
        ended_at TEXT
    );
    CREATE TABLE recordings (
        recording_id TEXT PRIMARY KEY,
        call_id TEXT NOT NULL,
        customer_id TEXT,
        reference_type TEXT NOT NULL DEFAULT 'call',
        status TEXT NOT NULL,
        format TEXT NOT NULL,
        sample_rate INTEGER NOT NULL,
        channels TEXT NOT NULL,
        bitrate_kbps INTEGER NOT NULL,
        participant TEXT NOT NULL,
        path TEXT,
        duration_ms INTEGER NOT NULL DEFAULT 0,
        file_size_bytes INTEGER,
        checksum TEXT,
        failure_reason TEXT,
        started_at TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        stopped_at TEXT,
        completed_at TEXT,
        completed_ms INTEGER,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        deleted_at TEXT,
        retention_days INTEGER,
        recovered INTEGER NOT NULL DEFAULT 0,
        external INTEGER NOT NULL DEFAULT 0,
        info_json TEXT
    );
    CREATE INDEX recordings_call ON recordings(call_id, started_ms);
    CREATE INDEX recordings_started ON recordings(started_ms);
    CREATE TABLE recording_logs (
        call_id TEXT NOT NULL,
        recording_id TEXT NOT NULL,
        customer_id TEXT,
        body_json TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (call_id, recording_id)
    );
    CREATE TABLE idempotency (
        key TEXT NOT NULL,
        scope TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        response TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (key, scope)
    );",
    // 2: the webhook outbox and the event cursor it was filled up to.
    "CREATE TABLE webhook_deliveries (
        delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
        endpoint TEXT NOT NULL,
        event_seq INTEGER NOT NULL,
        event TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_status_code INTEGER,
        last_error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        delivered_at TEXT,
        UNIQUE (endpoint, event_seq)
    );
    CREATE INDEX webhook_due ON webhook_deliveries(status, next_attempt_ms);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    // 3: ids are unique per customer, not across customers ('' = admin).
    "CREATE TABLE calls_v3 (
        customer_id TEXT NOT NULL DEFAULT '',
        call_id TEXT NOT NULL,
        from_number TEXT NOT NULL DEFAULT '',
        to_number TEXT NOT NULL DEFAULT '',
        direction TEXT NOT NULL,
        reference_type TEXT NOT NULL,
        created_at TEXT NOT NULL,
        ended_at TEXT,
        PRIMARY KEY (customer_id, call_id)
    );
    INSERT INTO calls_v3 SELECT COALESCE(customer_id, ''), call_id, from_number, to_number,
        direction, reference_type, created_at, ended_at FROM calls;
    DROP TABLE calls;
    ALTER TABLE calls_v3 RENAME TO calls;
    CREATE INDEX calls_id ON calls(call_id);
    CREATE TABLE recordings_v3 (
        recording_id TEXT NOT NULL,
        call_id TEXT NOT NULL,
        customer_id TEXT NOT NULL DEFAULT '',
        reference_type TEXT NOT NULL DEFAULT 'call',
        status TEXT NOT NULL,
        format TEXT NOT NULL,
        sample_rate INTEGER NOT NULL,
        channels TEXT NOT NULL,
        bitrate_kbps INTEGER NOT NULL,
        participant TEXT NOT NULL,
        path TEXT,
        duration_ms INTEGER NOT NULL DEFAULT 0,
        file_size_bytes INTEGER,
        checksum TEXT,
        failure_reason TEXT,
        started_at TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        stopped_at TEXT,
        completed_at TEXT,
        completed_ms INTEGER,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        deleted_at TEXT,
        retention_days INTEGER,
        recovered INTEGER NOT NULL DEFAULT 0,
        external INTEGER NOT NULL DEFAULT 0,
        info_json TEXT,
        PRIMARY KEY (customer_id, recording_id)
    );
    INSERT INTO recordings_v3 SELECT recording_id, call_id, COALESCE(customer_id, ''), reference_type,
        status, format, sample_rate, channels, bitrate_kbps, participant, path, duration_ms,
        file_size_bytes, checksum, failure_reason, started_at, started_ms, stopped_at, completed_at,
        completed_ms, created_at, updated_at, deleted_at, retention_days, recovered, external, info_json
        FROM recordings;
    DROP TABLE recordings;
    ALTER TABLE recordings_v3 RENAME TO recordings;
    CREATE INDEX recordings_call ON recordings(customer_id, call_id, started_ms);
    CREATE INDEX recordings_started ON recordings(started_ms);
    CREATE INDEX recordings_id ON recordings(recording_id);
    CREATE INDEX recordings_path ON recordings(path);
    CREATE TABLE recording_logs_v3 (
        customer_id TEXT NOT NULL DEFAULT '',
        call_id TEXT NOT NULL,
        recording_id TEXT NOT NULL,
        body_json TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (customer_id, call_id, recording_id)
    );
    INSERT INTO recording_logs_v3 SELECT COALESCE(customer_id, ''), call_id, recording_id,
        body_json, created_at, updated_at FROM recording_logs;
    DROP TABLE recording_logs;
    ALTER TABLE recording_logs_v3 RENAME TO recording_logs;",
    // 4: call flows (auto-record rules).
    "CREATE TABLE call_flows (
        customer_id TEXT NOT NULL DEFAULT '',
        call_flow_id TEXT NOT NULL,
        body_json TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        version INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (customer_id, call_flow_id)
    );
    CREATE INDEX call_flows_id ON call_flows(call_flow_id);",
    // 5: the audit trail, hash-chained (see `audit`).
    "CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        customer_id TEXT NOT NULL DEFAULT '',
        peer TEXT NOT NULL,
        action TEXT NOT NULL,
        call_id TEXT NOT NULL DEFAULT '',
        recording_id TEXT NOT NULL DEFAULT '',
        status INTEGER NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit(at_ms);
    CREATE INDEX audit_recording ON audit(customer_id, recording_id);
    CREATE INDEX audit_call ON audit(customer_id, call_id);
    CREATE TABLE audit_anchor (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, value TEXT NOT NULL);",
    // 6: encryption at rest (see `keys`): how each recording is sealed, the
    // key-encryption keys' check values, tenants' public keys.
    "ALTER TABLE recordings ADD COLUMN encryption TEXT;
    ALTER TABLE recordings ADD COLUMN recovery_key TEXT;
    CREATE TABLE encryption_keys (
        key_id TEXT PRIMARY KEY,
        check_value TEXT NOT NULL,
        first_used_at TEXT NOT NULL
    );
    CREATE TABLE customer_keys (
        customer_id TEXT NOT NULL DEFAULT '',
        key_id TEXT NOT NULL,
        algorithm TEXT NOT NULL,
        public_key TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT,
        PRIMARY KEY (customer_id, key_id)
    );",
];

/// The `WHERE` of a filtered list: clauses joined by `AND`, each `?` in a
/// clause bound to its value.
#[derive(Default)]
pub(crate) struct Where {
    clauses: Vec<String>,
    args: Vec<rusqlite::types::Value>,
}

impl Where {
    /// Adds `clause` (with one `?`) bound to `value`.
    pub(crate) fn and(&mut self, clause: &str, value: impl Into<rusqlite::types::Value>) {
        self.args.push(value.into());
        self.clauses
            .push(clause.replace('?', &format!("?{}", self.args.len())));
    }

    /// Adds `column = value` when there is a value.
    pub(crate) fn eq(&mut self, column: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.and(&format!("{column} = ?"), v.to_owned());
        }
    }

    /// A page of `table`'s rows matching the filter, in `order`, and how
    /// many match in total.
    pub(crate) fn page<T>(
        &self,
        conn: &Connection,
        table: &str,
        columns: &str,
        order: &str,
        (limit, offset): (u32, u64),
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<(Vec<T>, u64), CatalogError> {
        let filter = if self.clauses.is_empty() {
            "1 = 1".to_owned()
        } else {
            self.clauses.join(" AND ")
        };
        let args = || rusqlite::params_from_iter(self.args.iter());
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE {filter}"),
            args(),
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {columns} FROM {table} WHERE {filter} ORDER BY {order} LIMIT {limit} OFFSET {}",
            offset.min(i64::MAX as u64)
        ))?;
        let rows = stmt
            .query_map(args(), row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok((rows, total.max(0) as u64))
    }
}

/// How a customer is stored: the admin's own objects under `''`.
fn scope(customer: Option<&str>) -> &str {
    customer.unwrap_or("")
}

/// What [`Catalog::claim_idempotency`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's to run.
    Claimed,
    /// Another request with the key is running.
    InProgress { request_hash: String },
    /// A request with the key ran: its body's hash and its answer.
    Done {
        request_hash: String,
        status: u16,
        response: String,
    },
}

/// One recording as catalogued.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RecordingRow {
    pub recording_id: String,
    pub call_id: String,
    pub customer_id: Option<String>,
    pub reference_type: String,
    pub status: RecordingStatus,
    pub format: String,
    pub sample_rate: u32,
    pub channels: String,
    pub bitrate_kbps: u32,
    pub participant: String,
    #[serde(skip)]
    pub path: Option<String>,
    pub duration_ms: u64,
    pub file_size_bytes: Option<u64>,
    #[serde(skip)]
    pub checksum: Option<String>,
    pub failure_reason: Option<String>,
    pub started_at: String,
    #[serde(skip)]
    pub started_ms: i64,
    pub stopped_at: Option<String>,
    pub completed_at: Option<String>,
    #[serde(skip)]
    pub completed_ms: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    pub deleted_at: Option<String>,
    pub retention_days: Option<u32>,
    pub recovered: bool,
    pub external: bool,
    #[serde(skip)]
    pub info_json: Option<String>,
    /// How the file is encrypted (absent: it is not).
    #[serde(skip)]
    pub encryption: Option<EncryptionInfo>,
    /// While a customer-held recording is being made: its data key wrapped
    /// by the operator's key too, so a crash can still be recovered.
    /// Cleared when the recording ends.
    #[serde(skip)]
    pub recovery_key: Option<EncryptionInfo>,
}

/// List filters (all optional) and the page.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub customer_id: Option<String>,
    pub call_id: Option<String>,
    pub status: Option<RecordingStatus>,
    pub format: Option<String>,
    /// Started at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Started before (Unix ms).
    pub until_ms: Option<i64>,
    pub limit: u32,
    pub offset: u64,
}

pub struct Catalog {
    conn: Mutex<Connection>,
}

pub(crate) const COLUMNS: &str = "recording_id, call_id, customer_id, reference_type, status, format, sample_rate, channels,
    bitrate_kbps, participant, path, duration_ms, file_size_bytes, checksum, failure_reason, started_at, started_ms,
    stopped_at, completed_at, completed_ms, created_at, updated_at, deleted_at, retention_days, recovered, external, info_json,
    encryption, recovery_key";

pub(crate) fn row_to_recording(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordingRow> {
    Ok(RecordingRow {
        recording_id: r.get(0)?,
        call_id: r.get(1)?,
        customer_id: Some(r.get::<_, String>(2)?).filter(|c| !c.is_empty()),
        reference_type: r.get(3)?,
        status: {
            let name: String = r.get(4)?;
            RecordingStatus::parse(&name).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    4,
                    rusqlite::types::Type::Text,
                    format!("unknown recording status {name:?}").into(),
                )
            })?
        },
        format: r.get(5)?,
        sample_rate: r.get(6)?,
        channels: r.get(7)?,
        bitrate_kbps: r.get(8)?,
        participant: r.get(9)?,
        path: r.get(10)?,
        duration_ms: r.get::<_, i64>(11)? as u64,
        file_size_bytes: r.get::<_, Option<i64>>(12)?.map(|v| v as u64),
        checksum: r.get(13)?,
        failure_reason: r.get(14)?,
        started_at: r.get(15)?,
        started_ms: r.get(16)?,
        stopped_at: r.get(17)?,
        completed_at: r.get(18)?,
        completed_ms: r.get(19)?,
        created_at: r.get(20)?,
        updated_at: r.get(21)?,
        deleted_at: r.get(22)?,
        retention_days: r.get(23)?,
        recovered: r.get::<_, i64>(24)? != 0,
        external: r.get::<_, i64>(25)? != 0,
        info_json: r.get(26)?,
        encryption: json_column(r, 27)?,
        recovery_key: json_column(r, 28)?,
    })
}

/// A JSON text column as `T` (NULL: `None`).
fn json_column<T: serde::de::DeserializeOwned>(
    r: &rusqlite::Row<'_>,
    i: usize,
) -> rusqlite::Result<Option<T>> {
    let Some(text) = r.get::<_, Option<String>>(i)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

pub(crate) fn to_json_column<T: serde::Serialize>(v: &Option<T>) -> Option<String> {
    v.as_ref().and_then(|v| serde_json::to_string(v).ok())
}

impl Catalog {
    /// Opens or creates the catalog and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Cleared recovery keys (and deleted rows) are overwritten, not
        // left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(CatalogError::TooNew {
                path: path.display().to_string(),
                found: version,
                supported,
            });
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(step)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn upsert_call(
        &self,
        call_id: &str,
        customer_id: Option<&str>,
        from: &str,
        to: &str,
        direction: &str,
        reference_type: &str,
        created_at: &str,
    ) -> Result<(), CatalogError> {
        self.conn().execute(
            "INSERT INTO calls (call_id, customer_id, from_number, to_number, direction, reference_type, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(customer_id, call_id) DO UPDATE SET ended_at = NULL",
            params![call_id, scope(customer_id), from, to, direction, reference_type, created_at],
        )?;
        Ok(())
    }

    pub fn end_call(
        &self,
        customer_id: Option<&str>,
        call_id: &str,
        ended_at: &str,
    ) -> Result<(), CatalogError> {
        self.conn().execute(
            "UPDATE calls SET ended_at = ?3 WHERE customer_id = ?1 AND call_id = ?2",
            params![scope(customer_id), call_id, ended_at],
        )?;
        Ok(())
    }

    /// Whether the customer has (or had) a call with this id.
    pub fn has_call(&self, customer_id: Option<&str>, call_id: &str) -> Result<bool, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM calls WHERE customer_id = ?1 AND call_id = ?2",
                params![scope(customer_id), call_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The customers that have a call with this id (for the admin, who
    /// sees them all).
    pub fn calls_with_id(&self, call_id: &str) -> Result<Vec<Option<String>>, CatalogError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT customer_id FROM calls WHERE call_id = ?1 ORDER BY customer_id")?;
        let rows = stmt
            .query_map(params![call_id], |r| r.get::<_, String>(0))?
            .map(|c| c.map(|c| Some(c).filter(|c| !c.is_empty())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Inserts or replaces a recording row.
    pub fn put_recording(&self, r: &RecordingRow) -> Result<(), CatalogError> {
        self.conn().execute(
            &format!(
                "INSERT OR REPLACE INTO recordings ({COLUMNS})
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,?27,?28,?29)"
            ),
            params![
                r.recording_id,
                r.call_id,
                scope(r.customer_id.as_deref()),
                r.reference_type,
                r.status.as_str(),
                r.format,
                r.sample_rate,
                r.channels,
                r.bitrate_kbps,
                r.participant,
                r.path,
                r.duration_ms as i64,
                r.file_size_bytes.map(|v| v as i64),
                r.checksum,
                r.failure_reason,
                r.started_at,
                r.started_ms,
                r.stopped_at,
                r.completed_at,
                r.completed_ms,
                r.created_at,
                r.updated_at,
                r.deleted_at,
                r.retention_days,
                i64::from(r.recovered),
                i64::from(r.external),
                r.info_json,
                to_json_column(&r.encryption),
                to_json_column(&r.recovery_key),
            ],
        )?;
        Ok(())
    }

    /// Sets a recording's status (and optionally its failure reason and stop time).
    pub fn set_status(
        &self,
        customer_id: Option<&str>,
        id: &str,
        status: RecordingStatus,
        updated_at: &str,
        failure: Option<&str>,
        stopped_at: Option<&str>,
    ) -> Result<(), CatalogError> {
        self.conn().execute(
            "UPDATE recordings SET status = ?3, updated_at = ?4,
                 failure_reason = COALESCE(?5, failure_reason), stopped_at = COALESCE(?6, stopped_at),
                 recovery_key = CASE WHEN ?3 IN ('completed', 'failed', 'deleted') THEN NULL ELSE recovery_key END
             WHERE customer_id = ?1 AND recording_id = ?2",
            params![scope(customer_id), id, status.as_str(), updated_at, failure, stopped_at],
        )?;
        Ok(())
    }

    /// The customer's recording with this id.
    pub fn get(
        &self,
        customer_id: Option<&str>,
        id: &str,
    ) -> Result<Option<RecordingRow>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM recordings WHERE customer_id = ?1 AND recording_id = ?2"
                ),
                params![scope(customer_id), id],
                row_to_recording,
            )
            .optional()?)
    }

    /// Every customer's recording with this id (for the admin).
    pub fn recordings_with_id(&self, id: &str) -> Result<Vec<RecordingRow>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM recordings WHERE recording_id = ?1 ORDER BY customer_id"
        ))?;
        let rows = stmt
            .query_map(params![id], row_to_recording)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// A page of recordings, newest first, and how many match in total.
    pub fn list(&self, f: &ListFilter) -> Result<(Vec<RecordingRow>, u64), CatalogError> {
        let mut w = Where::default();
        if let Some(c) = &f.customer_id {
            w.eq("customer_id", Some(scope(Some(c))));
        }
        w.eq("call_id", f.call_id.as_deref());
        w.eq("status", f.status.map(RecordingStatus::as_str));
        w.eq("format", f.format.as_deref());
        if let Some(t) = f.since_ms {
            w.and("started_ms >= ?", t);
        }
        if let Some(t) = f.until_ms {
            w.and("started_ms < ?", t);
        }
        w.page(
            &self.conn(),
            "recordings",
            COLUMNS,
            "started_ms DESC, recording_id DESC",
            (f.limit, f.offset),
            row_to_recording,
        )
    }

    /// Whether a recording that is not deleted has its file at `path`.
    pub fn live_recording_at(&self, path: &str) -> Result<bool, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM recordings WHERE path = ?1 AND deleted_at IS NULL LIMIT 1",
                params![path],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The latest recording of the customer's call.
    pub fn latest_for_call(
        &self,
        customer_id: Option<&str>,
        call_id: &str,
    ) -> Result<Option<RecordingRow>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM recordings
                     WHERE customer_id = ?1 AND call_id = ?2 AND external = 0
                     ORDER BY started_ms DESC, recording_id DESC LIMIT 1"
                ),
                params![scope(customer_id), call_id],
                row_to_recording,
            )
            .optional()?)
    }

    /// Completed recordings whose retention has run out at `now_ms`
    /// (`default_days` for rows without their own; 0 = keep forever).
    pub fn expired(
        &self,
        now_ms: i64,
        default_days: u32,
    ) -> Result<Vec<RecordingRow>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM recordings
             WHERE deleted_at IS NULL AND completed_ms IS NOT NULL AND external = 0
               AND COALESCE(retention_days, ?1) > 0
               AND completed_ms + COALESCE(retention_days, ?1) * 86400000 <= ?2"
        ))?;
        let rows = stmt
            .query_map(params![default_days, now_ms], row_to_recording)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Marks a recording deleted (the row stays as a tombstone). An
    /// encrypted recording's wrapped data key goes with the file (with
    /// `secure_delete`, overwritten in the database too), so a copy of the
    /// file kept elsewhere (a backup) can no longer be decrypted.
    pub fn mark_deleted(
        &self,
        customer_id: Option<&str>,
        id: &str,
        at: &str,
    ) -> Result<(), CatalogError> {
        self.conn().execute(
            "UPDATE recordings SET deleted_at = ?3, updated_at = ?3, status = 'deleted',
                 encryption = json_remove(encryption, '$.wrapped_key'), recovery_key = NULL,
                 info_json = CASE WHEN json_valid(info_json)
                     THEN json_remove(info_json, '$.encryption.wrapped_key') ELSE info_json END
             WHERE customer_id = ?1 AND recording_id = ?2",
            params![scope(customer_id), id, at],
        )?;
        Ok(())
    }

    /// Bytes of recordings on disk.
    pub fn stored_bytes(&self) -> Result<u64, CatalogError> {
        let v: i64 = self.conn().query_row(
            "SELECT COALESCE(SUM(file_size_bytes), 0) FROM recordings WHERE deleted_at IS NULL AND external = 0",
            [],
            |r| r.get(0),
        )?;
        Ok(v.max(0) as u64)
    }

    /// Bytes of one customer's recordings on disk.
    pub fn stored_bytes_of(&self, customer_id: Option<&str>) -> Result<u64, CatalogError> {
        let v: i64 = self.conn().query_row(
            "SELECT COALESCE(SUM(file_size_bytes), 0) FROM recordings
             WHERE customer_id = ?1 AND deleted_at IS NULL AND external = 0",
            [scope(customer_id)],
            |r| r.get(0),
        )?;
        Ok(v.max(0) as u64)
    }

    /// Inserts or updates the customer's recording log in one transaction:
    /// `merge` gets the stored body (`None` when there is none) and answers
    /// the body to store, or refuses. Returns whether the log is new.
    pub fn upsert_log_with<E: From<CatalogError>>(
        &self,
        customer_id: Option<&str>,
        call_id: &str,
        recording_id: &str,
        now: &str,
        merge: impl FnOnce(Option<&str>) -> Result<String, E>,
    ) -> Result<bool, E> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction().map_err(CatalogError::from)?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT body_json FROM recording_logs
                 WHERE customer_id = ?1 AND call_id = ?2 AND recording_id = ?3",
                params![scope(customer_id), call_id, recording_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(CatalogError::from)?;
        let existed = stored.is_some();
        let body_json = merge(stored.as_deref())?;
        tx.execute(
            "INSERT INTO recording_logs (customer_id, call_id, recording_id, body_json, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT(customer_id, call_id, recording_id) DO UPDATE SET body_json = ?4, updated_at = ?5",
            params![scope(customer_id), call_id, recording_id, body_json, now],
        )
        .map_err(CatalogError::from)?;
        tx.commit().map_err(CatalogError::from)?;
        Ok(!existed)
    }

    /// The customer's recording log: (body, created at, updated at).
    pub fn get_log(
        &self,
        customer_id: Option<&str>,
        call_id: &str,
        recording_id: &str,
    ) -> Result<Option<(String, String, String)>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT body_json, created_at, updated_at FROM recording_logs
                 WHERE customer_id = ?1 AND call_id = ?2 AND recording_id = ?3",
                params![scope(customer_id), call_id, recording_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?)
    }

    /// Claims an idempotency key for a request whose body hashes to
    /// `hash`, in one transaction: the first request with a key gets
    /// [`Claim::Claimed`] and must [`Catalog::finish_idempotency`] or
    /// [`Catalog::release_idempotency`] it; a concurrent one sees
    /// [`Claim::InProgress`], a later one the stored answer. A key created
    /// before `not_before` has expired and is claimed afresh.
    pub fn claim_idempotency(
        &self,
        key: &str,
        scope: &str,
        hash: &str,
        now: &str,
        not_before: &str,
    ) -> Result<Claim, CatalogError> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction()?;
        tx.execute(
            "DELETE FROM idempotency WHERE key = ?1 AND scope = ?2 AND created_at < ?3",
            params![key, scope, not_before],
        )?;
        let found = tx
            .query_row(
                "SELECT request_hash, status, response FROM idempotency WHERE key = ?1 AND scope = ?2",
                params![key, scope],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, u16>(1)?, r.get::<_, String>(2)?)),
            )
            .optional()?;
        let claim = match found {
            Some((request_hash, 0, _)) => Claim::InProgress { request_hash },
            Some((request_hash, status, response)) => Claim::Done {
                request_hash,
                status,
                response,
            },
            None => {
                tx.execute(
                    "INSERT INTO idempotency (key, scope, request_hash, status, response, created_at)
                     VALUES (?1, ?2, ?3, 0, '', ?4)",
                    params![key, scope, hash, now],
                )?;
                Claim::Claimed
            }
        };
        tx.commit()?;
        Ok(claim)
    }

    /// Stores the answer to a claimed key.
    pub fn finish_idempotency(
        &self,
        key: &str,
        scope: &str,
        status: u16,
        response: &str,
    ) -> Result<(), CatalogError> {
        self.conn().execute(
            "UPDATE idempotency SET status = ?3, response = ?4 WHERE key = ?1 AND scope = ?2",
            params![key, scope, status, response],
        )?;
        Ok(())
    }

    /// Gives a claimed key back (the request failed; a retry runs it).
    pub fn release_idempotency(&self, key: &str, scope: &str) -> Result<(), CatalogError> {
        self.conn().execute(
            "DELETE FROM idempotency WHERE key = ?1 AND scope = ?2 AND status = 0",
            params![key, scope],
        )?;
        Ok(())
    }

    /// Forgets answers to keys created before `not_before`; returns how
    /// many.
    pub fn expire_idempotency(&self, not_before: &str) -> Result<usize, CatalogError> {
        Ok(self.conn().execute(
            "DELETE FROM idempotency WHERE created_at < ?1 AND status <> 0",
            params![not_before],
        )?)
    }

    /// Recordings that never reached a final state (for crash recovery).
    pub fn unfinished(&self) -> Result<Vec<RecordingRow>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM recordings WHERE status IN ('recording','paused','stopped','processing')"
        ))?;
        let rows = stmt
            .query_map([], row_to_recording)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Calls not marked ended (for crash recovery).
    pub fn end_open_calls(&self, at: &str) -> Result<usize, CatalogError> {
        Ok(self.conn().execute(
            "UPDATE calls SET ended_at = ?1 WHERE ended_at IS NULL",
            params![at],
        )?)
    }
}

#[cfg(test)]
mod tests;
