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
pub(crate) mod db;
pub mod flows;
pub mod keys;
pub mod outbox;
mod postgres;
pub mod reindex;
#[cfg(test)]
pub(crate) mod testdb;
pub mod uploads;

use std::path::Path;

use rusqlite::Connection;
use serde::Serialize;
use thiserror::Error;

use crate::config::{CatalogBackend, CatalogConfig};
use crate::encryption::EncryptionInfo;
use crate::recording::RecordingStatus;
use db::{Db, Dialect, Row, Sql, Value, args};
pub use postgres::is_plain_name as is_plain_schema_name;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CatalogError {
    #[error("catalog: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("catalog (PostgreSQL): {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("catalog (PostgreSQL pool): {0}")]
    Pool(#[from] r2d2_postgres::r2d2::Error),
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

/// SQLite's schema steps; `PRAGMA user_version` is the number applied.
/// PostgreSQL catalogs start at the schema of [`postgres::FIRST_VERSION`]
/// (`postgres::SCHEMA`); every step after that is written for both.
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
    // 7: the fleet: which recorder made each call, recording and webhook
    // delivery (event seqs are per recorder).
    "ALTER TABLE calls ADD COLUMN node_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE recordings ADD COLUMN node_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE webhook_deliveries ADD COLUMN node_id TEXT NOT NULL DEFAULT '';
    CREATE INDEX recordings_node ON recordings(node_id, status);",
    // 8: the upload queue to object storage (see `uploads`).
    "CREATE TABLE uploads (
        customer_id TEXT NOT NULL DEFAULT '',
        recording_id TEXT NOT NULL,
        node_id TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        object_key TEXT NOT NULL,
        local_path TEXT NOT NULL,
        size_bytes BIGINT NOT NULL DEFAULT 0,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_ms BIGINT NOT NULL,
        last_error TEXT,
        queued_ms BIGINT NOT NULL,
        uploaded_ms BIGINT,
        PRIMARY KEY (customer_id, recording_id)
    );
    CREATE INDEX uploads_due ON uploads(node_id, state, next_attempt_ms);",
];

/// The `WHERE` of a filtered list: clauses joined by `AND`, each `?` in a
/// clause bound to its value.
#[derive(Default)]
pub(crate) struct Where {
    clauses: Vec<String>,
    args: Vec<Value>,
}

impl Where {
    /// Adds `clause` (with one `?`) bound to `value`.
    pub(crate) fn and(&mut self, clause: &str, value: impl Into<Value>) {
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
        db: &mut dyn Sql,
        table: &str,
        columns: &str,
        order: &str,
        (limit, offset): (u32, u64),
        row: impl FnMut(&Row) -> Result<T, CatalogError>,
    ) -> Result<(Vec<T>, u64), CatalogError> {
        let filter = if self.clauses.is_empty() {
            "1 = 1".to_owned()
        } else {
            self.clauses.join(" AND ")
        };
        let total: i64 = db
            .query_one(
                &format!("SELECT COUNT(*) FROM {table} WHERE {filter}"),
                &self.args,
            )?
            .get(0)?;
        let rows = db.query(
            &format!(
                "SELECT {columns} FROM {table} WHERE {filter} ORDER BY {order} LIMIT {limit} OFFSET {}",
                offset.min(i64::MAX as u64)
            ),
            &self.args,
        )?;
        let rows = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
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
    /// The recorder that made it (`catalog.node_id`); empty in a new row
    /// means this one.
    #[serde(skip)]
    pub node_id: String,
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

/// The catalog: its rows (in SQLite or PostgreSQL) and this recorder's
/// name in the fleet.
pub struct Catalog {
    db: Db,
    /// Written on the calls, recordings and deliveries this recorder makes.
    node_id: String,
}

pub(crate) const COLUMNS: &str = "recording_id, call_id, customer_id, reference_type, status, format, sample_rate, channels,
    bitrate_kbps, participant, path, duration_ms, file_size_bytes, checksum, failure_reason, started_at, started_ms,
    stopped_at, completed_at, completed_ms, created_at, updated_at, deleted_at, retention_days, recovered, external, info_json,
    encryption, recovery_key, node_id";

pub(crate) fn row_to_recording(r: &Row) -> Result<RecordingRow, CatalogError> {
    Ok(RecordingRow {
        recording_id: r.get(0)?,
        call_id: r.get(1)?,
        customer_id: Some(r.get::<String>(2)?).filter(|c| !c.is_empty()),
        reference_type: r.get(3)?,
        status: {
            let name: String = r.get(4)?;
            RecordingStatus::parse(&name).ok_or_else(|| {
                CatalogError::Invalid(format!("unknown recording status {name:?}"))
            })?
        },
        format: r.get(5)?,
        sample_rate: r.get(6)?,
        channels: r.get(7)?,
        bitrate_kbps: r.get(8)?,
        participant: r.get(9)?,
        path: r.get(10)?,
        duration_ms: r.get::<i64>(11)?.max(0) as u64,
        file_size_bytes: r.get::<Option<i64>>(12)?.map(|v| v.max(0) as u64),
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
        recovered: r.get(24)?,
        external: r.get(25)?,
        info_json: r.get(26)?,
        encryption: json_column(r, 27)?,
        recovery_key: json_column(r, 28)?,
        node_id: r.get(29)?,
    })
}

/// A JSON text column as `T` (NULL: `None`).
fn json_column<T: serde::de::DeserializeOwned>(
    r: &Row,
    i: usize,
) -> Result<Option<T>, CatalogError> {
    let Some(text) = r.get::<Option<String>>(i)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| CatalogError::Invalid(format!("column {i} is not the JSON it should be: {e}")))
}

pub(crate) fn to_json_column<T: serde::Serialize>(v: &Option<T>) -> Option<String> {
    v.as_ref().and_then(|v| serde_json::to_string(v).ok())
}

/// Every row of `rows` through `f`.
pub(crate) fn all<T>(
    rows: Vec<Row>,
    f: impl FnMut(&Row) -> Result<T, CatalogError>,
) -> Result<Vec<T>, CatalogError> {
    rows.iter().map(f).collect()
}

impl Catalog {
    /// Opens or creates a SQLite catalog at `path` and brings its schema up
    /// to date (the single-box catalog; its rows carry this host's name).
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        Self::open_sqlite(path, &crate::events::nats::hostname())
    }

    /// Opens the catalog `cfg` names: SQLite at `<storage>/catalog.db`, or
    /// the PostgreSQL database at `cfg.url`.
    pub fn open_configured(cfg: &CatalogConfig, storage: &Path) -> Result<Self, CatalogError> {
        match cfg.backend {
            CatalogBackend::Sqlite => {
                let node = if cfg.node_id.is_empty() {
                    crate::events::nats::hostname()
                } else {
                    cfg.node_id.clone()
                };
                Self::open_sqlite(&storage.join("catalog.db"), &node)
            }
            CatalogBackend::Postgres => postgres::open(cfg),
        }
    }

    fn open_sqlite(path: &Path, node_id: &str) -> Result<Self, CatalogError> {
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
            db: Db::Sqlite(std::sync::Mutex::new(conn)),
            node_id: node_id.to_owned(),
        })
    }

    /// The schema version the catalog is at.
    pub fn schema_version(&self) -> Result<i64, CatalogError> {
        match &self.db {
            Db::Sqlite(_) => self.db.run(|db| {
                db.query_one("SELECT user_version FROM pragma_user_version", &[])?
                    .get(0)
            }),
            Db::Postgres(_) => self.db.run(|db| {
                db.query_one("SELECT MAX(version) FROM schema_version", &[])?
                    .get(0)
            }),
        }
    }

    /// This recorder's name, as written on the rows it makes.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Whether other recorders share this catalog (PostgreSQL): then work
    /// on files (crash recovery, retention) is limited to this node's rows.
    pub fn is_shared(&self) -> bool {
        self.db.dialect() == Dialect::Postgres
    }

    /// The node filter for rows only this node may act on: `Some(node)`
    /// when the catalog is shared.
    fn mine(&self) -> Option<&str> {
        self.is_shared().then_some(self.node_id.as_str())
    }

    pub(crate) fn run<T: Send>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, CatalogError> + Send,
    ) -> Result<T, CatalogError> {
        self.db.run(f)
    }

    pub(crate) fn tx<T: Send, E: From<CatalogError> + Send>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, E> + Send,
    ) -> Result<T, E> {
        self.db.tx(f)
    }

    /// Whether the catalog answers (for `/healthz`).
    pub fn ping(&self) -> Result<(), CatalogError> {
        self.run(|db| db.query_one("SELECT 1", &[]).map(drop))
    }

    /// The connection pool's state (PostgreSQL only): (open, idle).
    pub fn pool_state(&self) -> Option<(u32, u32)> {
        match &self.db {
            Db::Sqlite(_) => None,
            Db::Postgres(pool) => {
                let s = pool.pool().state();
                Some((s.connections, s.idle_connections))
            }
        }
    }

    /// Records the customer's call as open on this node (a call id may be
    /// used again once its call ended). Answers the node that holds it
    /// instead when another recorder has a call with this id open; the
    /// check and the write are one statement, so two recorders cannot both
    /// take an id.
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
    ) -> Result<Option<String>, CatalogError> {
        self.run(|db| {
            let n = db.execute(
                "INSERT INTO calls (call_id, customer_id, from_number, to_number, direction, reference_type, created_at, node_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(customer_id, call_id) DO UPDATE SET ended_at = NULL, node_id = excluded.node_id
                 WHERE calls.ended_at IS NOT NULL OR calls.node_id = excluded.node_id",
                args![call_id, scope(customer_id), from, to, direction, reference_type, created_at, &self.node_id],
            )?;
            if n == 1 {
                return Ok(None);
            }
            db.query_opt(
                "SELECT node_id FROM calls WHERE customer_id = ?1 AND call_id = ?2",
                args![scope(customer_id), call_id],
            )?
            .map(|r| r.get(0))
            .transpose()
        })
    }

    pub fn end_call(
        &self,
        customer_id: Option<&str>,
        call_id: &str,
        ended_at: &str,
    ) -> Result<(), CatalogError> {
        self.run(|db| {
            db.execute(
                "UPDATE calls SET ended_at = ?3 WHERE customer_id = ?1 AND call_id = ?2",
                args![scope(customer_id), call_id, ended_at],
            )
        })?;
        Ok(())
    }

    /// Whether the customer has (or had) a call with this id.
    pub fn has_call(&self, customer_id: Option<&str>, call_id: &str) -> Result<bool, CatalogError> {
        self.run(|db| {
            Ok(db
                .query_opt(
                    "SELECT 1 FROM calls WHERE customer_id = ?1 AND call_id = ?2",
                    args![scope(customer_id), call_id],
                )?
                .is_some())
        })
    }

    /// Which node holds a call with this id that is not ended: the
    /// customer's (`Some(customer)`), or anyone's (`None`, the admin).
    pub fn open_call_node(
        &self,
        customer_id: Option<Option<&str>>,
        call_id: &str,
    ) -> Result<Option<String>, CatalogError> {
        let (any, customer) = match customer_id {
            Some(c) => (0, scope(c)),
            None => (1, ""),
        };
        self.run(|db| {
            db.query_opt(
                "SELECT node_id FROM calls WHERE call_id = ?1 AND ended_at IS NULL
                    AND (?2 = 1 OR customer_id = ?3) ORDER BY created_at DESC LIMIT 1",
                args![call_id, any as i64, customer],
            )?
            .map(|r| r.get(0))
            .transpose()
        })
    }

    /// The customers that have a call with this id (for the admin, who
    /// sees them all).
    pub fn calls_with_id(&self, call_id: &str) -> Result<Vec<Option<String>>, CatalogError> {
        let rows = self.run(|db| {
            db.query(
                "SELECT customer_id FROM calls WHERE call_id = ?1 ORDER BY customer_id",
                args![call_id],
            )
        })?;
        all(rows, |r| {
            Ok(Some(r.get::<String>(0)?).filter(|c| !c.is_empty()))
        })
    }

    /// Inserts or replaces a recording row (a replaced row keeps the node
    /// that made it).
    pub fn put_recording(&self, r: &RecordingRow) -> Result<(), CatalogError> {
        let updates = COLUMNS
            .split(',')
            .map(str::trim)
            .filter(|c| !["customer_id", "recording_id", "node_id"].contains(c))
            .map(|c| format!("{c} = excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let node = if r.node_id.is_empty() {
            self.node_id.as_str()
        } else {
            r.node_id.as_str()
        };
        self.run(|db| {
            db.execute(
                &format!(
                    "INSERT INTO recordings ({COLUMNS})
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,?27,?28,?29,?30)
                     ON CONFLICT (customer_id, recording_id) DO UPDATE SET {updates}"
                ),
                args![
                    &r.recording_id,
                    &r.call_id,
                    scope(r.customer_id.as_deref()),
                    &r.reference_type,
                    r.status.as_str(),
                    &r.format,
                    r.sample_rate,
                    &r.channels,
                    r.bitrate_kbps,
                    &r.participant,
                    r.path.as_deref(),
                    r.duration_ms,
                    r.file_size_bytes,
                    r.checksum.as_deref(),
                    r.failure_reason.as_deref(),
                    &r.started_at,
                    r.started_ms,
                    r.stopped_at.as_deref(),
                    r.completed_at.as_deref(),
                    r.completed_ms,
                    &r.created_at,
                    &r.updated_at,
                    r.deleted_at.as_deref(),
                    r.retention_days,
                    r.recovered,
                    r.external,
                    r.info_json.as_deref(),
                    to_json_column(&r.encryption),
                    to_json_column(&r.recovery_key),
                    node,
                ],
            )
        })?;
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
        let ended = matches!(
            status,
            RecordingStatus::Completed | RecordingStatus::Failed | RecordingStatus::Deleted
        );
        self.run(|db| {
            db.execute(
                "UPDATE recordings SET status = ?3, updated_at = ?4,
                     failure_reason = COALESCE(?5, failure_reason), stopped_at = COALESCE(?6, stopped_at),
                     recovery_key = CASE WHEN ?7 = 1 THEN NULL ELSE recovery_key END
                 WHERE customer_id = ?1 AND recording_id = ?2",
                args![scope(customer_id), id, status.as_str(), updated_at, failure, stopped_at, ended],
            )
        })?;
        Ok(())
    }

    /// The customer's recording with this id.
    pub fn get(
        &self,
        customer_id: Option<&str>,
        id: &str,
    ) -> Result<Option<RecordingRow>, CatalogError> {
        self.run(|db| {
            db.query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM recordings WHERE customer_id = ?1 AND recording_id = ?2"
                ),
                args![scope(customer_id), id],
            )?
            .as_ref()
            .map(row_to_recording)
            .transpose()
        })
    }

    /// Every customer's recording with this id (for the admin).
    pub fn recordings_with_id(&self, id: &str) -> Result<Vec<RecordingRow>, CatalogError> {
        let rows = self.run(|db| {
            db.query(
                &format!(
                    "SELECT {COLUMNS} FROM recordings WHERE recording_id = ?1 ORDER BY customer_id"
                ),
                args![id],
            )
        })?;
        all(rows, row_to_recording)
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
        self.run(|db| {
            w.page(
                db,
                "recordings",
                COLUMNS,
                "started_ms DESC, recording_id DESC",
                (f.limit, f.offset),
                row_to_recording,
            )
        })
    }

    /// Whether a recording of this node that is not deleted has its file
    /// at `path`.
    pub fn live_recording_at(&self, path: &str) -> Result<bool, CatalogError> {
        let node = self.mine().unwrap_or("");
        self.run(|db| {
            Ok(db
                .query_opt(
                    "SELECT 1 FROM recordings WHERE path = ?1 AND deleted_at IS NULL
                        AND (?2 = '' OR node_id = ?2) LIMIT 1",
                    args![path, node],
                )?
                .is_some())
        })
    }

    /// The latest recording of the customer's call.
    pub fn latest_for_call(
        &self,
        customer_id: Option<&str>,
        call_id: &str,
    ) -> Result<Option<RecordingRow>, CatalogError> {
        self.run(|db| {
            db.query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM recordings
                     WHERE customer_id = ?1 AND call_id = ?2 AND external = 0
                     ORDER BY started_ms DESC, recording_id DESC LIMIT 1"
                ),
                args![scope(customer_id), call_id],
            )?
            .as_ref()
            .map(row_to_recording)
            .transpose()
        })
    }

    /// Completed recordings whose retention has run out at `now_ms`
    /// (`default_days` for rows without their own; 0 = keep forever). On a
    /// shared catalog, only this node's (their files are here).
    pub fn expired(
        &self,
        now_ms: i64,
        default_days: u32,
    ) -> Result<Vec<RecordingRow>, CatalogError> {
        let node = self.mine().unwrap_or("");
        let rows = self.run(|db| {
            db.query(
                &format!(
                    "SELECT {COLUMNS} FROM recordings
                     WHERE deleted_at IS NULL AND completed_ms IS NOT NULL AND external = 0
                       AND COALESCE(retention_days, ?1) > 0
                       AND completed_ms + COALESCE(retention_days, ?1) * 86400000 <= ?2
                       AND (?3 = '' OR node_id = ?3)"
                ),
                args![default_days, now_ms, node],
            )
        })?;
        all(rows, row_to_recording)
    }

    /// Marks a recording deleted (the row stays as a tombstone). An
    /// encrypted recording's wrapped data key goes with the file (on SQLite
    /// with `secure_delete`, overwritten in the database too), so a copy of
    /// the file kept elsewhere (a backup) can no longer be decrypted.
    pub fn mark_deleted(
        &self,
        customer_id: Option<&str>,
        id: &str,
        at: &str,
    ) -> Result<(), CatalogError> {
        self.tx(|db| {
            let Some(row) = db.query_opt(
                "SELECT encryption, info_json FROM recordings WHERE customer_id = ?1 AND recording_id = ?2",
                args![scope(customer_id), id],
            )?
            else {
                return Ok(());
            };
            let shred = |text: Option<String>, pointer: &[&str]| -> Option<String> {
                let text = text?;
                let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    return Some(text);
                };
                let (last, parents) = pointer.split_last()?;
                let mut at = &mut v;
                for p in parents {
                    match at.get_mut(*p) {
                        Some(next) => at = next,
                        None => return Some(text),
                    }
                }
                if let Some(obj) = at.as_object_mut() {
                    obj.remove(*last);
                }
                Some(v.to_string())
            };
            let encryption = shred(row.get(0)?, &["wrapped_key"]);
            let info = shred(row.get(1)?, &["encryption", "wrapped_key"]);
            db.execute(
                "UPDATE recordings SET deleted_at = ?3, updated_at = ?3, status = 'deleted',
                     encryption = ?4, recovery_key = NULL, info_json = ?5
                 WHERE customer_id = ?1 AND recording_id = ?2",
                args![scope(customer_id), id, at, encryption, info],
            )?;
            Ok(())
        })
    }

    /// Bytes of recordings on this node's disk (not yet in object
    /// storage).
    pub fn stored_bytes(&self) -> Result<u64, CatalogError> {
        let node = self.mine().unwrap_or("");
        let v: i64 = self.run(|db| {
            db.query_one(
                "SELECT CAST(COALESCE(SUM(file_size_bytes), 0) AS BIGINT) FROM recordings r
                 WHERE deleted_at IS NULL AND external = 0 AND (?1 = '' OR node_id = ?1)
                   AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.customer_id = r.customer_id
                       AND u.recording_id = r.recording_id AND u.state = 'uploaded')",
                args![node],
            )?
            .get(0)
        })?;
        Ok(v.max(0) as u64)
    }

    /// Bytes of one customer's recordings (on every node).
    pub fn stored_bytes_of(&self, customer_id: Option<&str>) -> Result<u64, CatalogError> {
        let v: i64 = self.run(|db| {
            db.query_one(
                "SELECT CAST(COALESCE(SUM(file_size_bytes), 0) AS BIGINT) FROM recordings
                 WHERE customer_id = ?1 AND deleted_at IS NULL AND external = 0",
                args![scope(customer_id)],
            )?
            .get(0)
        })?;
        Ok(v.max(0) as u64)
    }

    /// Inserts or updates the customer's recording log in one transaction:
    /// `merge` gets the stored body (`None` when there is none) and answers
    /// the body to store, or refuses. Returns whether the log is new.
    pub fn upsert_log_with<E: From<CatalogError> + Send>(
        &self,
        customer_id: Option<&str>,
        call_id: &str,
        recording_id: &str,
        now: &str,
        merge: impl FnOnce(Option<&str>) -> Result<String, E> + Send,
    ) -> Result<bool, E> {
        self.tx(|db| {
            let key = format!("log/{}/{call_id}/{recording_id}", scope(customer_id));
            db.lock(&key)?;
            let stored: Option<String> = db
                .query_opt(
                    "SELECT body_json FROM recording_logs
                     WHERE customer_id = ?1 AND call_id = ?2 AND recording_id = ?3",
                    args![scope(customer_id), call_id, recording_id],
                )?
                .map(|r| r.get(0))
                .transpose()?;
            let existed = stored.is_some();
            let body_json = merge(stored.as_deref())?;
            db.execute(
                "INSERT INTO recording_logs (customer_id, call_id, recording_id, body_json, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT(customer_id, call_id, recording_id) DO UPDATE SET body_json = ?4, updated_at = ?5",
                args![scope(customer_id), call_id, recording_id, body_json, now],
            )?;
            Ok(!existed)
        })
    }

    /// The customer's recording log: (body, created at, updated at).
    pub fn get_log(
        &self,
        customer_id: Option<&str>,
        call_id: &str,
        recording_id: &str,
    ) -> Result<Option<(String, String, String)>, CatalogError> {
        self.run(|db| {
            db.query_opt(
                "SELECT body_json, created_at, updated_at FROM recording_logs
                 WHERE customer_id = ?1 AND call_id = ?2 AND recording_id = ?3",
                args![scope(customer_id), call_id, recording_id],
            )?
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .transpose()
        })
    }

    /// Claims an idempotency key for a request whose body hashes to
    /// `hash`, in one transaction: the first request with a key gets
    /// [`Claim::Claimed`] and must [`Catalog::finish_idempotency`] or
    /// [`Catalog::release_idempotency`] it; a concurrent one (on any node)
    /// sees [`Claim::InProgress`], a later one the stored answer. A key
    /// created before `not_before` has expired and is claimed afresh.
    pub fn claim_idempotency(
        &self,
        key: &str,
        scope: &str,
        hash: &str,
        now: &str,
        not_before: &str,
    ) -> Result<Claim, CatalogError> {
        self.tx(|db| {
            db.execute(
                "DELETE FROM idempotency WHERE key = ?1 AND scope = ?2 AND created_at < ?3",
                args![key, scope, not_before],
            )?;
            // The insert decides: the primary key lets exactly one request
            // (on any node) claim the key.
            let inserted = db.execute(
                "INSERT INTO idempotency (key, scope, request_hash, status, response, created_at)
                 VALUES (?1, ?2, ?3, 0, '', ?4) ON CONFLICT DO NOTHING",
                args![key, scope, hash, now],
            )?;
            if inserted == 1 {
                return Ok(Claim::Claimed);
            }
            let found = db.query_one(
                "SELECT request_hash, status, response FROM idempotency WHERE key = ?1 AND scope = ?2",
                args![key, scope],
            )?;
            let (request_hash, status, response): (String, u16, String) =
                (found.get(0)?, found.get(1)?, found.get(2)?);
            Ok(if status == 0 {
                Claim::InProgress { request_hash }
            } else {
                Claim::Done {
                    request_hash,
                    status,
                    response,
                }
            })
        })
    }

    /// Stores the answer to a claimed key.
    pub fn finish_idempotency(
        &self,
        key: &str,
        scope: &str,
        status: u16,
        response: &str,
    ) -> Result<(), CatalogError> {
        self.run(|db| {
            db.execute(
                "UPDATE idempotency SET status = ?3, response = ?4 WHERE key = ?1 AND scope = ?2",
                args![key, scope, status, response],
            )
        })?;
        Ok(())
    }

    /// Gives a claimed key back (the request failed; a retry runs it).
    pub fn release_idempotency(&self, key: &str, scope: &str) -> Result<(), CatalogError> {
        self.run(|db| {
            db.execute(
                "DELETE FROM idempotency WHERE key = ?1 AND scope = ?2 AND status = 0",
                args![key, scope],
            )
        })?;
        Ok(())
    }

    /// Forgets answers to keys created before `not_before`; returns how
    /// many.
    pub fn expire_idempotency(&self, not_before: &str) -> Result<usize, CatalogError> {
        let n = self.run(|db| {
            db.execute(
                "DELETE FROM idempotency WHERE created_at < ?1 AND status <> 0",
                args![not_before],
            )
        })?;
        Ok(n as usize)
    }

    /// This node's recordings that never reached a final state (for crash
    /// recovery).
    pub fn unfinished(&self) -> Result<Vec<RecordingRow>, CatalogError> {
        let node = self.mine().unwrap_or("");
        let rows = self.run(|db| {
            db.query(
                &format!(
                    "SELECT {COLUMNS} FROM recordings
                     WHERE status IN ('recording','paused','stopped','processing')
                       AND (?1 = '' OR node_id = ?1)"
                ),
                args![node],
            )
        })?;
        all(rows, row_to_recording)
    }

    /// This node's calls not marked ended (for crash recovery).
    pub fn end_open_calls(&self, at: &str) -> Result<usize, CatalogError> {
        let node = self.mine().unwrap_or("");
        let n = self.run(|db| {
            db.execute(
                "UPDATE calls SET ended_at = ?1 WHERE ended_at IS NULL AND (?2 = '' OR node_id = ?2)",
                args![at, node],
            )
        })?;
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests;
