//! The webhook outbox: one row per (endpoint, event) to deliver, with its
//! attempts and state (`pending` → `delivered` | `failed`), plus the cursor
//! (last event `seq` copied in from the event log) that makes filling the
//! outbox exactly-once across restarts.

use serde::Serialize;

use super::db::{Dialect, Row, args};
use super::{Catalog, CatalogError, all};

/// Where a delivery is: `pending` until it is `delivered` or, after its
/// last attempt, `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// One delivery as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeliveryRow {
    pub delivery_id: i64,
    pub endpoint: String,
    pub event_id: u64,
    pub event: String,
    #[schema(value_type = DeliveryStatus)]
    pub status: String,
    pub attempts: u32,
    /// Unix ms of the next attempt (pending only).
    #[serde(skip)]
    pub next_attempt_ms: i64,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub delivered_at: Option<String>,
    #[serde(skip)]
    pub body: String,
}

/// A new outbox row.
pub struct NewDelivery<'a> {
    pub endpoint: &'a str,
    pub event_seq: u64,
    pub event: &'a str,
    pub body: &'a str,
}

const DELIVERY_COLUMNS: &str =
    "delivery_id, endpoint, event_seq, event, status, attempts, next_attempt_ms,
    last_status_code, last_error, created_at, updated_at, delivered_at, body";

fn row_to_delivery(r: &Row) -> Result<DeliveryRow, CatalogError> {
    Ok(DeliveryRow {
        delivery_id: r.get(0)?,
        endpoint: r.get(1)?,
        event_id: r.get(2)?,
        event: r.get(3)?,
        status: r.get(4)?,
        attempts: r.get(5)?,
        next_attempt_ms: r.get(6)?,
        last_status_code: r.get(7)?,
        last_error: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        delivered_at: r.get(11)?,
        body: r.get(12)?,
    })
}

const CURSOR_KEY: &str = "webhook_cursor";

/// Moves a cursor forward, never back.
const MOVE_CURSOR: &str = "INSERT INTO meta (key, value) VALUES (?1, ?2)
     ON CONFLICT(key) DO UPDATE SET value = CASE WHEN excluded.value > meta.value
         THEN excluded.value ELSE meta.value END";

impl Catalog {
    /// A cursor's key in `meta`: event seqs are per recorder, so on a
    /// shared catalog each node has its own.
    fn meta_key(&self, name: &str) -> String {
        match self.mine() {
            Some(node) => format!("{node}:{name}"),
            None => name.to_owned(),
        }
    }

    /// A named event-log cursor (0 when never set).
    pub fn cursor(&self, name: &str) -> Result<u64, CatalogError> {
        let key = self.meta_key(name);
        let v: Option<i64> = self.run(|db| {
            db.query_opt("SELECT value FROM meta WHERE key = ?1", args![key])?
                .map(|r| r.get(0))
                .transpose()
        })?;
        Ok(v.unwrap_or(0).max(0) as u64)
    }

    /// Starts a cursor at `seq` unless it exists.
    pub fn init_cursor(&self, name: &str, seq: u64) -> Result<(), CatalogError> {
        let key = self.meta_key(name);
        self.run(|db| {
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                args![key, seq],
            )
        })?;
        Ok(())
    }

    /// Moves a cursor forward to `seq` (never back).
    pub fn set_cursor(&self, name: &str, seq: u64) -> Result<(), CatalogError> {
        let key = self.meta_key(name);
        self.run(|db| db.execute(MOVE_CURSOR, args![key, seq]))?;
        Ok(())
    }

    /// The last event `seq` already copied into the outbox.
    pub fn webhook_cursor(&self) -> Result<u64, CatalogError> {
        self.cursor(CURSOR_KEY)
    }

    /// Starts the cursor at `seq` unless it exists: a catalog that never
    /// had webhooks does not send the history of its event log.
    pub fn init_webhook_cursor(&self, seq: u64) -> Result<(), CatalogError> {
        self.init_cursor(CURSOR_KEY, seq)
    }

    /// Adds deliveries and moves the cursor to `cursor` in one transaction,
    /// so an event is queued once even if the process dies in between.
    pub fn enqueue_deliveries(
        &self,
        rows: &[NewDelivery<'_>],
        cursor: u64,
        now_ms: i64,
        now: &str,
    ) -> Result<(), CatalogError> {
        let key = self.meta_key(CURSOR_KEY);
        self.tx(|db| {
            for r in rows {
                db.execute(
                    "INSERT INTO webhook_deliveries
                     (endpoint, event_seq, event, body, status, attempts, next_attempt_ms, created_at, updated_at, node_id)
                     VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?6, ?6, ?7) ON CONFLICT DO NOTHING",
                    args![r.endpoint, r.event_seq, r.event, r.body, now_ms, now, &self.node_id],
                )?;
            }
            db.execute(MOVE_CURSOR, args![key, cursor])?;
            Ok(())
        })
    }

    /// Pending deliveries due at `now_ms`, oldest first, each leased until
    /// `lease_until_ms` so the next poll (on any node) does not pick it up
    /// again while its attempt is in flight (a crash lets the lease run
    /// out: at-least-once). On PostgreSQL, rows another node is leasing at
    /// the same moment are skipped, not waited for.
    pub fn lease_due_deliveries(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, CatalogError> {
        self.tx(|db| {
            let skip_locked = match db.dialect() {
                Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
                Dialect::Sqlite => "",
            };
            let rows = db.query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                     WHERE status = 'pending' AND next_attempt_ms <= ?1
                     ORDER BY next_attempt_ms, delivery_id LIMIT ?2{skip_locked}"
                ),
                args![now_ms, limit],
            )?;
            let rows = all(rows, row_to_delivery)?;
            for r in &rows {
                db.execute(
                    "UPDATE webhook_deliveries SET next_attempt_ms = ?2 WHERE delivery_id = ?1",
                    args![r.delivery_id, lease_until_ms],
                )?;
            }
            Ok(rows)
        })
    }

    /// When the next pending delivery is due (Unix ms), if any.
    pub fn next_delivery_due_ms(&self) -> Result<Option<i64>, CatalogError> {
        self.run(|db| {
            db.query_one(
                "SELECT MIN(next_attempt_ms) FROM webhook_deliveries WHERE status = 'pending'",
                &[],
            )?
            .get(0)
        })
    }

    /// Records one attempt's outcome. `retry_at_ms`: when to try again
    /// (`None` with `delivered = false` marks the delivery failed for good).
    pub fn record_attempt(
        &self,
        delivery_id: i64,
        delivered: bool,
        status_code: Option<u16>,
        error: Option<&str>,
        retry_at_ms: Option<i64>,
        now: &str,
    ) -> Result<(), CatalogError> {
        let status = match (delivered, retry_at_ms) {
            (true, _) => "delivered",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        self.run(|db| {
            db.execute(
                "UPDATE webhook_deliveries SET status = ?2, attempts = attempts + 1,
                     next_attempt_ms = COALESCE(?3, next_attempt_ms), last_status_code = ?4,
                     last_error = ?5, updated_at = ?6,
                     delivered_at = CASE WHEN ?2 = 'delivered' THEN ?6 ELSE delivered_at END
                 WHERE delivery_id = ?1",
                args![delivery_id, status, retry_at_ms, status_code, error, now],
            )
        })?;
        Ok(())
    }

    /// Marks a pending delivery failed without an attempt (its endpoint was
    /// removed from the configuration).
    pub fn abandon_delivery(
        &self,
        delivery_id: i64,
        why: &str,
        now: &str,
    ) -> Result<(), CatalogError> {
        self.run(|db| {
            db.execute(
                "UPDATE webhook_deliveries SET status = 'failed', last_error = ?2, updated_at = ?3
                 WHERE delivery_id = ?1 AND status = 'pending'",
                args![delivery_id, why, now],
            )
        })?;
        Ok(())
    }

    /// Puts a failed delivery back in the queue, due now, with a fresh
    /// attempt budget. Returns false when there is no failed delivery `id`.
    pub fn retry_delivery(
        &self,
        delivery_id: i64,
        now_ms: i64,
        now: &str,
    ) -> Result<bool, CatalogError> {
        let n = self.run(|db| {
            db.execute(
                "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_ms = ?2, updated_at = ?3
                 WHERE delivery_id = ?1 AND status = 'failed'",
                args![delivery_id, now_ms, now],
            )
        })?;
        Ok(n == 1)
    }

    pub fn get_delivery(&self, delivery_id: i64) -> Result<Option<DeliveryRow>, CatalogError> {
        self.run(|db| {
            db.query_opt(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE delivery_id = ?1"
                ),
                args![delivery_id],
            )?
            .as_ref()
            .map(row_to_delivery)
            .transpose()
        })
    }

    /// A page of deliveries, newest first, optionally by status and endpoint;
    /// with the total matching.
    pub fn list_deliveries(
        &self,
        status: Option<&str>,
        endpoint: Option<&str>,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<DeliveryRow>, u64), CatalogError> {
        let mut w = super::Where::default();
        w.eq("status", status);
        w.eq("endpoint", endpoint);
        self.run(|db| {
            w.page(
                db,
                "webhook_deliveries",
                DELIVERY_COLUMNS,
                "delivery_id DESC",
                (limit, offset),
                row_to_delivery,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new<'a>(endpoint: &'a str, seq: u64) -> NewDelivery<'a> {
        NewDelivery {
            endpoint,
            event_seq: seq,
            event: "call.created",
            body: "{}",
        }
    }

    #[test]
    fn an_event_is_queued_once_per_endpoint_and_the_cursor_only_moves_forward() {
        for c in crate::catalog::testdb::catalogs("outbox-once") {
            assert_eq!(c.webhook_cursor().unwrap(), 0);
            c.enqueue_deliveries(&[new("a", 1), new("b", 1)], 1, 0, "t")
                .unwrap();
            // A replay after a crash offers the same event again.
            c.enqueue_deliveries(&[new("a", 1), new("a", 2)], 2, 0, "t")
                .unwrap();
            c.enqueue_deliveries(&[], 1, 0, "t").unwrap();
            assert_eq!(c.webhook_cursor().unwrap(), 2);
            let (rows, total) = c.list_deliveries(None, None, 10, 0).unwrap();
            assert_eq!(total, 3, "{}: {rows:?}", c.backend);
            let (rows, _) = c.list_deliveries(None, Some("a"), 10, 0).unwrap();
            let seqs: Vec<u64> = rows.iter().map(|r| r.event_id).collect();
            assert_eq!(seqs, vec![2, 1]);
        }
    }

    #[test]
    fn leases_hide_in_flight_deliveries_and_attempts_move_the_state() {
        for c in crate::catalog::testdb::catalogs("outbox-lease") {
            c.enqueue_deliveries(&[new("a", 1), new("a", 2)], 2, 1000, "t")
                .unwrap();
            let due = c.lease_due_deliveries(1000, 6000, 10).unwrap();
            assert_eq!(due.len(), 2);
            assert!(c.lease_due_deliveries(2000, 7000, 10).unwrap().is_empty());
            let (first, second) = (due[0].delivery_id, due[1].delivery_id);
            c.record_attempt(first, true, Some(204), None, None, "t2")
                .unwrap();
            c.record_attempt(second, false, Some(500), Some("HTTP 500"), Some(3000), "t2")
                .unwrap();
            assert_eq!(c.next_delivery_due_ms().unwrap(), Some(3000));
            c.record_attempt(second, false, None, Some("refused"), None, "t3")
                .unwrap();
            let failed = c.get_delivery(second).unwrap().unwrap();
            assert_eq!((failed.status.as_str(), failed.attempts), ("failed", 2));
            assert_eq!(failed.last_error.as_deref(), Some("refused"));
            let done = c.get_delivery(first).unwrap().unwrap();
            assert_eq!(done.status, "delivered");
            assert_eq!(done.delivered_at.as_deref(), Some("t2"));
            assert!(c.retry_delivery(second, 5000, "t4").unwrap());
            assert!(
                !c.retry_delivery(first, 5000, "t4").unwrap(),
                "only failed ones"
            );
            let again = c.lease_due_deliveries(5000, 9000, 10).unwrap();
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].attempts, 0);
        }
    }
}
