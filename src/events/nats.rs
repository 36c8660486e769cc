//! Events on NATS JetStream (`[events.nats]`): every event of the event
//! log is published to `<subject_prefix>.<event>` (e.g.
//! `recengine.recording.completed`) in the stream `stream` (created if
//! missing), as the same JSON object the event socket sends, with headers
//! `Nats-Msg-Id: <node_id>-<seq>` (JetStream drops a duplicate within its
//! window) and `Recengine-Node: <node_id>`.
//!
//! The event log is the outbox: a cursor in the catalog names the last
//! event JetStream acknowledged, and publishing resumes after it — after
//! NATS was down, after a restart — so no event is lost; one published
//! but not yet recorded as acknowledged when the process dies is sent
//! again and dropped by JetStream as a duplicate. A daemon that never had
//! `[events.nats]` starts at the current end of its log. The publisher has
//! its own thread and runtime: a slow or absent NATS never touches media
//! or the control API.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::EventBus;
use crate::catalog::Catalog;
use crate::config::NatsSection;

/// Events sent per round before the cursor is stored.
const BATCH: usize = 256;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct NatsStats {
    pub published: AtomicU64,
    pub failures: AtomicU64,
    /// Events logged but not yet acknowledged by JetStream.
    pub backlog: AtomicU64,
    /// 1 while connected.
    pub connected: AtomicU64,
}

/// The running publisher.
pub struct NatsPublisher {
    stop: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<NatsStats>,
}

/// This machine's name, the default node id.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "recengine".into())
}

fn cursor_key(stream: &str) -> String {
    format!("nats_cursor:{stream}")
}

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("connecting to {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("stream {stream}: {message}")]
    Stream { stream: String, message: String },
    #[error("publishing event {seq}: {message}")]
    Publish { seq: u64, message: String },
    #[error("reading the event log: {0}")]
    Log(std::io::Error),
    #[error("catalog: {0}")]
    Catalog(#[from] crate::catalog::CatalogError),
}

impl NatsPublisher {
    /// Starts publishing (`None` when `url` is empty).
    pub fn start(
        cfg: &NatsSection,
        bus: Arc<EventBus>,
        catalog: Arc<Catalog>,
    ) -> std::io::Result<Option<Self>> {
        if cfg.url.is_empty() {
            return Ok(None);
        }
        let key = cursor_key(&cfg.stream);
        catalog
            .init_cursor(&key, bus.last_seq())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let stop = Arc::new(Notify::new());
        let stats = Arc::new(NatsStats::default());
        let node = if cfg.node_id.is_empty() {
            catalog.node_id().to_owned()
        } else {
            cfg.node_id.clone()
        };
        let (cfg, s, st) = (cfg.clone(), stop.clone(), stats.clone());
        let thread = super::spawn_on_own_runtime("recengine-nats", "NATS publisher", move || {
            run(cfg, node, bus, catalog, key, s, st)
        })?;
        Ok(Some(Self {
            stop,
            thread: Some(thread),
            stats,
        }))
    }

    /// Stops after the round in flight (what is not acknowledged yet is
    /// sent at the next start).
    pub fn shutdown(mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn run(
    cfg: NatsSection,
    node: String,
    bus: Arc<EventBus>,
    catalog: Arc<Catalog>,
    key: String,
    stop: Arc<Notify>,
    stats: Arc<NatsStats>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let outcome = tokio::select! {
            r = session(&cfg, &node, &bus, &catalog, &key, &stats) => r,
            () = stop.notified() => return,
        };
        stats.connected.store(0, Ordering::Relaxed);
        if let Err(e) = outcome {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, retry_in = ?backoff, "NATS publishing stopped; events wait in the log");
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.notified() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection: publish from the cursor on, then follow the log.
async fn session(
    cfg: &NatsSection,
    node: &str,
    bus: &EventBus,
    catalog: &Catalog,
    key: &str,
    stats: &NatsStats,
) -> Result<(), PublishError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .name(format!("recengine {node}"))
        .connect(cfg.url.as_str())
        .await
        .map_err(|source| PublishError::Connect {
            url: cfg.url.clone(),
            source,
        })?;
    let js = async_nats::jetstream::new(client);
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![format!("{}.>", cfg.subject_prefix)],
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    })
    .await
    .map_err(|e| PublishError::Stream {
        stream: cfg.stream.clone(),
        message: e.to_string(),
    })?;
    stats.connected.store(1, Ordering::Relaxed);
    tracing::info!(url = %cfg.url, stream = %cfg.stream, node, "publishing events to NATS JetStream");
    let mut live = bus.subscribe();
    loop {
        let cursor = catalog.cursor(key)?;
        stats
            .backlog
            .store(bus.last_seq().saturating_sub(cursor), Ordering::Relaxed);
        let events = bus.replay_page(cursor, BATCH).map_err(PublishError::Log)?;
        if events.is_empty() {
            // Wait for the next event (or look again in a while).
            let _ = tokio::time::timeout(Duration::from_secs(1), live.recv()).await;
            continue;
        }
        let mut acks = Vec::with_capacity(events.len());
        for e in &events {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("{node}-{}", e.seq).as_str());
            headers.insert("Recengine-Node", node);
            let subject = format!("{}.{}", cfg.subject_prefix, e.event);
            let ack = js
                .publish_with_headers(subject, headers, e.json.as_bytes().to_vec().into())
                .await
                .map_err(|err| PublishError::Publish {
                    seq: e.seq,
                    message: err.to_string(),
                })?;
            acks.push((e.seq, ack));
        }
        let mut last = cursor;
        for (seq, ack) in acks {
            ack.await.map_err(|err| PublishError::Publish {
                seq,
                message: err.to_string(),
            })?;
            last = seq;
            stats.published.fetch_add(1, Ordering::Relaxed);
        }
        catalog.set_cursor(key, last)?;
    }
}
