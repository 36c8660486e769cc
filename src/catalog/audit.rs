//! The audit trail as stored: append-only rows, each carrying the SHA-256
//! of the row before it and its own, so that editing or deleting any row
//! (short of rewriting every later one) is found by [`Catalog::verify_audit`].
//! Rows past their retention are deleted from the oldest end only; the
//! hash of the last one deleted is kept as the anchor the first remaining
//! row must chain to.

use serde::Serialize;

use super::db::{Row, Sql, args};
use super::{Catalog, CatalogError, Where, scope};

/// The `prev_hash` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One access or action, as the API describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// RFC 3339.
    pub at: String,
    #[serde(skip)]
    pub at_ms: i64,
    /// The token's name, `signed-url:<issuer>` for a signed download, or
    /// `unauthenticated`.
    pub actor: String,
    /// The tenant whose object it was (absent: the admin's own, or none).
    pub customer_id: Option<String>,
    /// The client's address and port.
    pub peer: String,
    /// What was done, e.g. `recording.download`, `call.create`.
    pub action: String,
    pub call_id: Option<String>,
    pub recording_id: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// More about it (a download's Range, a call flow's id).
    pub detail: Option<String>,
}

/// A stored record: the entry, its place and its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// `GET /v1/audit` filters (all optional) and the page.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// `Some(c)`: one customer's records (`Some(None)`: the admin's own);
    /// `None`: everyone's.
    pub customer_id: Option<Option<String>>,
    pub recording_id: Option<String>,
    pub call_id: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: u32,
    pub offset: u64,
}

/// What [`Catalog::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerdict {
    /// Every record chains; `records` checked.
    Intact { records: u64 },
    /// The first record that does not: its `seq` and why.
    Broken { seq: i64, reason: String },
}

/// The hash of a record: SHA-256 over its fields and the previous hash,
/// each length-prefixed so no two records can render the same.
fn record_hash(seq: i64, e: &AuditEntry, prev_hash: &str) -> String {
    let fields = [
        seq.to_string(),
        e.at.clone(),
        e.actor.clone(),
        e.customer_id.clone().unwrap_or_default(),
        e.peer.clone(),
        e.action.clone(),
        e.call_id.clone().unwrap_or_default(),
        e.recording_id.clone().unwrap_or_default(),
        e.status.to_string(),
        e.detail.clone().unwrap_or_default(),
        prev_hash.to_owned(),
    ];
    let mut text = String::new();
    for f in fields {
        text.push_str(&format!("{}:{f};", f.len()));
    }
    crate::crypto::sha256_hex(text.as_bytes())
}

const AUDIT_COLUMNS: &str = "seq, at, at_ms, actor, customer_id, peer, action, call_id, recording_id, status, detail, prev_hash, hash";

fn row_to_record(r: &Row) -> Result<AuditRecord, CatalogError> {
    let opt = |s: String| Some(s).filter(|s| !s.is_empty());
    Ok(AuditRecord {
        seq: r.get(0)?,
        entry: AuditEntry {
            at: r.get(1)?,
            at_ms: r.get(2)?,
            actor: r.get(3)?,
            customer_id: opt(r.get(4)?),
            peer: r.get(5)?,
            action: r.get(6)?,
            call_id: opt(r.get(7)?),
            recording_id: opt(r.get(8)?),
            status: r.get(9)?,
            detail: opt(r.get(10)?),
        },
        prev_hash: r.get(11)?,
        hash: r.get(12)?,
    })
}

/// The entry with every NUL written `\\0`: PostgreSQL text cannot hold
/// one, and a request can name one (a hostile id), so both backends store
/// and hash the same escaped text.
fn without_nul(e: &AuditEntry) -> AuditEntry {
    let clean = |s: &str| s.replace('\0', "\\0");
    let opt = |s: &Option<String>| s.as_deref().map(clean);
    AuditEntry {
        at: clean(&e.at),
        at_ms: e.at_ms,
        actor: clean(&e.actor),
        customer_id: opt(&e.customer_id),
        peer: clean(&e.peer),
        action: clean(&e.action),
        call_id: opt(&e.call_id),
        recording_id: opt(&e.recording_id),
        status: e.status,
        detail: opt(&e.detail),
    }
}

/// The anchor the chain starts from: (seq before the first record, hash).
fn anchor(db: &mut dyn Sql) -> Result<(i64, String), CatalogError> {
    Ok(
        match db.query_opt("SELECT seq, value FROM audit_anchor WHERE id = 1", &[])? {
            Some(r) => (r.get(0)?, r.get(1)?),
            None => (0, GENESIS.to_owned()),
        },
    )
}

impl Catalog {
    /// Appends one record to the chain, in one transaction; answers it.
    /// Appends from every node of a fleet are serialized, so the chain
    /// stays one line.
    pub fn append_audit(&self, e: &AuditEntry) -> Result<AuditRecord, CatalogError> {
        let e = &without_nul(e);
        self.tx(|db| {
            db.lock("recengine.audit")?;
            let (seq, prev_hash) =
                match db.query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])? {
                    Some(r) => (r.get::<i64>(0)? + 1, r.get(1)?),
                    None => {
                        let (s, h) = anchor(db)?;
                        (s + 1, h)
                    }
                };
            let hash = record_hash(seq, e, &prev_hash);
            db.execute(
                &format!("INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
                args![
                    seq,
                    &e.at,
                    e.at_ms,
                    &e.actor,
                    scope(e.customer_id.as_deref()),
                    &e.peer,
                    &e.action,
                    e.call_id.clone().unwrap_or_default(),
                    e.recording_id.clone().unwrap_or_default(),
                    e.status,
                    e.detail.clone().unwrap_or_default(),
                    &prev_hash,
                    &hash
                ],
            )?;
            Ok(AuditRecord {
                seq,
                entry: e.clone(),
                prev_hash,
                hash,
            })
        })
    }

    /// A page of records, newest first, with the total.
    pub fn list_audit(&self, f: &AuditFilter) -> Result<(Vec<AuditRecord>, u64), CatalogError> {
        let mut w = Where::default();
        if let Some(c) = &f.customer_id {
            w.eq("customer_id", Some(scope(c.as_deref())));
        }
        w.eq("recording_id", f.recording_id.as_deref());
        w.eq("call_id", f.call_id.as_deref());
        w.eq("actor", f.actor.as_deref());
        w.eq("action", f.action.as_deref());
        if let Some(t) = f.since_ms {
            w.and("at_ms >= ?", t);
        }
        if let Some(t) = f.until_ms {
            w.and("at_ms < ?", t);
        }
        self.run(|db| {
            w.page(
                db,
                "audit",
                AUDIT_COLUMNS,
                "seq DESC",
                (f.limit, f.offset),
                row_to_record,
            )
        })
    }

    /// Checks the whole chain from the anchor (or the genesis) on: every
    /// record's hash is its own, its `prev_hash` its predecessor's, and
    /// the sequence has no gap. Reads in pages, so a long trail does not
    /// have to fit in memory.
    pub fn verify_audit(&self) -> Result<AuditVerdict, CatalogError> {
        const PAGE: i64 = 1000;
        let (anchor_seq, anchor_hash) = self.run(anchor)?;
        let (mut expect_seq, mut prev) = (anchor_seq + 1, anchor_hash);
        let mut records = 0u64;
        let mut after = anchor_seq;
        loop {
            let rows = self.run(|db| {
                db.query(
                    &format!(
                        "SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                    ),
                    args![after, PAGE],
                )
            })?;
            if rows.is_empty() {
                return Ok(AuditVerdict::Intact { records });
            }
            for row in &rows {
                let r = row_to_record(row)?;
                let broken = |reason: String| Ok(AuditVerdict::Broken { seq: r.seq, reason });
                if r.seq != expect_seq {
                    return broken(format!("records {expect_seq}-{} are missing", r.seq - 1));
                }
                if r.prev_hash != prev {
                    return broken("its prev_hash is not the previous record's hash".into());
                }
                if record_hash(r.seq, &r.entry, &r.prev_hash) != r.hash {
                    return broken("its content does not match its hash (edited)".into());
                }
                after = r.seq;
                prev = r.hash;
                expect_seq += 1;
                records += 1;
            }
        }
    }

    /// Deletes records older than `before_ms` from the oldest end, moving
    /// the anchor to the last one deleted; answers how many went.
    pub fn expire_audit(&self, before_ms: i64) -> Result<usize, CatalogError> {
        self.tx(|db| {
            db.lock("recengine.audit")?;
            let Some(last) = db.query_opt(
                "SELECT seq, hash FROM audit WHERE at_ms < ?1 ORDER BY seq DESC LIMIT 1",
                args![before_ms],
            )?
            else {
                return Ok(0);
            };
            let (seq, hash): (i64, String) = (last.get(0)?, last.get(1)?);
            let n = db.execute("DELETE FROM audit WHERE seq <= ?1", args![seq])?;
            db.execute(
                "INSERT INTO audit_anchor (id, seq, value) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, value = excluded.value",
                args![seq, hash],
            )?;
            Ok(n as usize)
        })
    }
}
