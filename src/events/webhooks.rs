//! Webhooks: every event an endpoint's filter wants is POSTed to it as the
//! same JSON object the event socket sends, signed
//! (`X-Recengine-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>`)
//! and identified (`X-Recengine-Event-Id: <seq>`, stable across retries so
//! receivers can drop duplicates).
//!
//! Delivery is at-least-once from the outbox in the catalog: a *filler*
//! copies events from the event log into `webhook_deliveries` (moving a
//! cursor in the same transaction, so a crash neither loses nor doubles an
//! event), and a *deliverer* leases due rows, POSTs them and records the
//! outcome, retrying with exponential backoff and jitter up to the
//! endpoint's `max_attempts`. Both run on their own thread and runtime:
//! a slow or dead receiver never touches media or the control API.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, broadcast::error::RecvError};

use crate::catalog::Catalog;
use crate::catalog::outbox::{DeliveryRow, NewDelivery};
use crate::config::WebhookEntry;
use crate::http_client::HttpClient;
use crate::timefmt::{rfc3339, unix_now};

use super::{EventBus, EventLine};

/// Most attempts in flight at once, over all endpoints.
const MAX_IN_FLIGHT: usize = 64;
/// The deliverer looks at the outbox at least this often.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How long shutdown waits for attempts in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Delivery counters for `/metrics`.
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub delivered: AtomicU64,
    /// Attempts that failed and will be retried.
    pub retried: AtomicU64,
    /// Deliveries given up after their last attempt.
    pub failed: AtomicU64,
}

/// The running dispatcher; dropping it does not stop it, [`Self::shutdown`] does.
pub struct Webhooks {
    stop: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// With no endpoint configured: what to move the cursor along at
    /// shutdown, so that an endpoint added later starts from then.
    idle: Option<(Arc<EventBus>, Arc<Catalog>)>,
    pub stats: Arc<WebhookStats>,
}

/// `t=<unix>,v1=<hex>` for a body sent at `unix_secs`.
pub fn signature(secret: &[u8], unix_secs: u64, body: &[u8]) -> String {
    let mut msg = Vec::with_capacity(body.len() + 21);
    msg.extend_from_slice(unix_secs.to_string().as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    let mac = crate::crypto::hmac_sha256(secret, &msg);
    format!("t={unix_secs},v1={}", crate::crypto::hex(&mac))
}

/// Delay before attempt `attempts_made + 1`: `initial · 2^(n-1)` capped at
/// `max`, then drawn uniformly from its upper half so that endpoints that
/// failed together do not retry together.
pub fn backoff(entry: &WebhookEntry, attempts_made: u32) -> Duration {
    let exp = attempts_made.saturating_sub(1).min(30);
    let base = u64::from(entry.retry_initial_ms)
        .saturating_mul(1u64 << exp)
        .min(u64::from(entry.retry_max_ms));
    let mut r = [0u8; 8];
    crate::ids::fill_random(&mut r);
    let half = base / 2;
    let jitter = u64::from_le_bytes(r) % (base - half + 1);
    Duration::from_millis(half + jitter)
}

impl Webhooks {
    /// Starts the dispatcher for `endpoints` (nothing runs when empty, but
    /// the cursor still follows the log so that adding an endpoint later
    /// does not flood it with history).
    pub fn start(
        endpoints: Vec<WebhookEntry>,
        bus: Arc<EventBus>,
        catalog: Arc<Catalog>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(Notify::new());
        let stats = Arc::new(WebhookStats::default());
        if endpoints.is_empty() {
            skip_history(&bus, &catalog);
            return Ok(Self {
                stop,
                thread: None,
                idle: Some((bus, catalog)),
                stats,
            });
        }
        let dispatcher = Dispatcher {
            endpoints: endpoints
                .into_iter()
                .map(|e| (e.endpoint().to_owned(), e))
                .collect(),
            bus,
            catalog,
            wake: Arc::new(Notify::new()),
            stats: stats.clone(),
            in_flight: AtomicU64::new(0),
        };
        let stop2 = stop.clone();
        let thread = super::spawn_on_own_runtime("recengine-webhooks", "webhooks", move || {
            dispatcher.run(stop2)
        })?;
        Ok(Self {
            stop,
            thread: Some(thread),
            idle: None,
            stats,
        })
    }

    /// Queues what the log holds, gives attempts in flight a moment, and
    /// stops. Undelivered events stay in the outbox for the next start.
    pub fn shutdown(mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some((bus, catalog)) = self.idle.take() {
            skip_history(&bus, &catalog);
        }
    }
}

/// Moves the outbox cursor to the end of the log without queueing anything.
fn skip_history(bus: &EventBus, catalog: &Catalog) {
    if let Err(e) = catalog.enqueue_deliveries(&[], bus.last_seq(), 0, "") {
        tracing::warn!(error = %e, "webhooks: cannot move the outbox cursor");
    }
}

struct Dispatcher {
    endpoints: HashMap<String, WebhookEntry>,
    bus: Arc<EventBus>,
    catalog: Arc<Catalog>,
    /// Rung when new rows are queued.
    wake: Arc<Notify>,
    stats: Arc<WebhookStats>,
    in_flight: AtomicU64,
}

impl Dispatcher {
    async fn run(self, stop: Arc<Notify>) {
        let this = Arc::new(self);
        let mut live = this.bus.subscribe();
        // Whatever the log got while we were down (or before subscribing).
        let mut cursor = this
            .off_runtime(Dispatcher::fill_from_log)
            .await
            .unwrap_or(0);
        let deliverer = tokio::spawn(this.clone().deliver_forever());
        loop {
            tokio::select! {
                _ = stop.notified() => break,
                r = live.recv() => match r {
                    Ok(first) => {
                        let mut batch = vec![first];
                        while let Ok(e) = live.try_recv() {
                            batch.push(e);
                        }
                        cursor = this
                            .off_runtime(move |d| d.fill_from_live(cursor, &batch))
                            .await
                            .unwrap_or(cursor);
                    }
                    Err(RecvError::Lagged(_)) => {
                        cursor = this.off_runtime(Dispatcher::fill_from_log).await.unwrap_or(cursor);
                    }
                    Err(RecvError::Closed) => break,
                },
            }
        }
        // Final events (call.ended, recording.completed at shutdown) are in
        // the log; queue them so the next start delivers them.
        this.off_runtime(Dispatcher::fill_from_log).await;
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while this.in_flight.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        deliverer.abort();
        let _ = deliverer.await;
    }

    /// Runs catalog (SQLite) and event-log work on the blocking pool, never
    /// on the runtime's threads; `None` if it panicked (logged).
    async fn off_runtime<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Dispatcher) -> T + Send + 'static,
    ) -> Option<T> {
        let this = self.clone();
        match crate::offload::spawn_blocking(move || work(&this)).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(error = %e, "webhooks: outbox work failed");
                None
            }
        }
    }

    /// Queues every logged event after the cursor; returns the new cursor.
    fn fill_from_log(&self) -> u64 {
        let cursor = match self.catalog.webhook_cursor() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "webhooks: cannot read the outbox cursor");
                return 0;
            }
        };
        match self.bus.replay(cursor) {
            Ok(events) if events.is_empty() => cursor,
            Ok(events) => self.enqueue(cursor, &events),
            Err(e) => {
                tracing::error!(error = %e, "webhooks: cannot read the event log");
                cursor
            }
        }
    }

    /// Queues live events; falls back to the log on a gap.
    fn fill_from_live(&self, cursor: u64, batch: &[EventLine]) -> u64 {
        let fresh: Vec<EventLine> = batch.iter().filter(|e| e.seq > cursor).cloned().collect();
        match fresh.first() {
            None => cursor,
            Some(first) if first.seq == cursor + 1 => self.enqueue(cursor, &fresh),
            Some(_) => self.fill_from_log(),
        }
    }

    fn enqueue(&self, cursor: u64, events: &[EventLine]) -> u64 {
        let bodies: Vec<String> = events.iter().map(|e| public_body(&e.json)).collect();
        let mut rows = Vec::new();
        for (e, body) in events.iter().zip(&bodies) {
            for (endpoint, entry) in &self.endpoints {
                if entry.wants(&e.event) {
                    rows.push(NewDelivery {
                        endpoint,
                        event_seq: e.seq,
                        event: &e.event,
                        body,
                    });
                }
            }
        }
        let last = events.last().map_or(cursor, |e| e.seq).max(cursor);
        let now = unix_now();
        match self
            .catalog
            .enqueue_deliveries(&rows, last, now.as_millis() as i64, &rfc3339(now))
        {
            Ok(()) => {
                if !rows.is_empty() {
                    self.wake.notify_one();
                }
                last
            }
            Err(e) => {
                // The events stay in the log; the next fill retries them.
                tracing::error!(error = %e, "webhooks: cannot queue events in the outbox");
                cursor
            }
        }
    }

    async fn deliver_forever(self: Arc<Self>) {
        let client = HttpClient::new();
        let lease = Duration::from_millis(
            self.endpoints
                .values()
                .map(|e| u64::from(e.timeout_ms))
                .max()
                .unwrap_or(5000),
        ) + Duration::from_secs(5);
        let done = Arc::new(Notify::new());
        loop {
            let room =
                MAX_IN_FLIGHT.saturating_sub(self.in_flight.load(Ordering::Relaxed) as usize);
            let now_ms = unix_now().as_millis() as i64;
            let due = if room == 0 {
                Vec::new()
            } else {
                let until_ms = now_ms + lease.as_millis() as i64;
                self.off_runtime(move |d| {
                    d.catalog
                        .lease_due_deliveries(now_ms, until_ms, room as u32)
                        .unwrap_or_else(|e| {
                            tracing::error!(error = %e, "webhooks: cannot read the outbox");
                            Vec::new()
                        })
                })
                .await
                .unwrap_or_default()
            };
            for row in due {
                self.in_flight.fetch_add(1, Ordering::Relaxed);
                let (this, client, done) = (self.clone(), client.clone(), done.clone());
                tokio::spawn(async move {
                    this.attempt(&client, row).await;
                    this.in_flight.fetch_sub(1, Ordering::Relaxed);
                    done.notify_one();
                });
            }
            let next_due = self.off_runtime(|d| d.catalog.next_delivery_due_ms()).await;
            let wait = match next_due {
                Some(Ok(Some(due))) => Duration::from_millis((due - now_ms).clamp(0, 1000) as u64),
                _ => IDLE_POLL,
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = done.notified() => {}
                _ = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
            }
        }
    }

    async fn attempt(self: &Arc<Self>, client: &HttpClient, row: DeliveryRow) {
        let now = || rfc3339(unix_now());
        let Some(entry) = self.endpoints.get(&row.endpoint) else {
            let why = format!(
                "no [[webhooks]] entry named {:?} in the configuration any more",
                row.endpoint
            );
            let id = row.delivery_id;
            self.off_runtime(move |d| {
                if let Err(e) = d.catalog.abandon_delivery(id, &why, &now()) {
                    tracing::error!(error = %e, "webhooks: cannot update the outbox");
                }
            })
            .await;
            return;
        };
        let body = Bytes::from(row.body.clone());
        let sent_at = unix_now().as_secs();
        let headers = [
            ("content-type", "application/json".to_owned()),
            (
                "x-recengine-signature",
                signature(entry.secret.as_bytes(), sent_at, &body),
            ),
            ("x-recengine-event-id", row.event_id.to_string()),
            ("x-recengine-event", row.event.clone()),
            (
                "x-recengine-delivery-attempt",
                (row.attempts + 1).to_string(),
            ),
        ];
        let timeout = Duration::from_millis(u64::from(entry.timeout_ms));
        let outcome = client
            .call(hyper::Method::POST, &entry.url, &headers, body, timeout)
            .await;
        let (delivered, code, error) = match outcome {
            Ok(a) if (200..300).contains(&a.status) => (true, Some(a.status), None),
            Ok(a) => {
                let snippet: String = String::from_utf8_lossy(&a.body).chars().take(200).collect();
                (
                    false,
                    Some(a.status),
                    Some(format!("HTTP {}: {snippet}", a.status)),
                )
            }
            Err(e) => (false, None, Some(e.to_string())),
        };
        let attempts = row.attempts + 1;
        let retry_at = (!delivered && attempts < entry.max_attempts)
            .then(|| unix_now().as_millis() as i64 + backoff(entry, attempts).as_millis() as i64);
        if delivered {
            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(endpoint = %row.endpoint, event_id = row.event_id, "webhook delivered");
        } else if retry_at.is_some() {
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                endpoint = %row.endpoint, event_id = row.event_id, attempts,
                error = error.as_deref().unwrap_or(""),
                "webhook attempt failed; will retry"
            );
        } else {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                endpoint = %row.endpoint, event_id = row.event_id, attempts,
                error = error.as_deref().unwrap_or(""),
                "webhook delivery failed for good (see GET /v1/webhooks/deliveries?status=failed)"
            );
        }
        let id = row.delivery_id;
        self.off_runtime(move |d| {
            if let Err(e) =
                d.catalog
                    .record_attempt(id, delivered, code, error.as_deref(), retry_at, &now())
            {
                tracing::error!(error = %e, "webhooks: cannot record a delivery attempt");
            }
        })
        .await;
    }
}

/// An event as it leaves this host: without `data.path`, the recording's
/// location on the server's filesystem (the local event socket keeps it).
fn public_body(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(mut v) => {
            if let Some(data) = v.get_mut("data").and_then(|d| d.as_object_mut())
                && data.remove("path").is_some()
            {
                return v.to_string();
            }
            json.to_owned()
        }
        Err(_) => json.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // Same construction as Stripe's: verifiable with any HMAC tool.
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'whsec_0123456789abcdef'
        let s = signature(b"whsec_0123456789abcdef", 1_700_000_000, br#"{"a":1}"#);
        let mac = crate::crypto::hmac_sha256(b"whsec_0123456789abcdef", br#"1700000000.{"a":1}"#);
        assert_eq!(s, format!("t=1700000000,v1={}", crate::crypto::hex(&mac)));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let e = WebhookEntry {
            retry_initial_ms: 1000,
            retry_max_ms: 10_000,
            ..WebhookEntry::default()
        };
        for _ in 0..200 {
            let d1 = backoff(&e, 1).as_millis();
            let d3 = backoff(&e, 3).as_millis();
            let d9 = backoff(&e, 9).as_millis();
            assert!((500..=1000).contains(&d1), "{d1}");
            assert!((2000..=4000).contains(&d3), "{d3}");
            assert!((5000..=10_000).contains(&d9), "{d9}");
        }
        assert!(backoff(&e, 1000).as_millis() <= 10_000);
    }

    #[test]
    fn filters_take_names_and_prefix_patterns() {
        let mut e = WebhookEntry::default();
        assert!(e.wants("call.created"));
        e.events = vec!["recording.*".into(), "call.ended".into()];
        assert!(e.wants("recording.completed"));
        assert!(e.wants("call.ended"));
        assert!(!e.wants("call.created"));
    }
}
