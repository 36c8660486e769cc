//! The engine: the control plane. It owns the call registry and every
//! recording's state machine, opens legs through the IO side's
//! [`LegOpener`], and tells the media workers what to do. API handlers
//! call it synchronously (on the blocking pool); worker and writer outcomes
//! come back through [`Engine::on_worker_report`] and
//! [`Engine::on_sink_report`].
//!
//! Recording states: `recording ⇄ paused → stopped → processing →
//! completed | failed` (plus `discarded` for recordings shorter than
//! `min_duration`). Every transition is an event, logged before delivery.
//!
//! Ids are per customer: a `call_id` or `recording_id` one customer uses
//! is free for every other, and a customer's request only ever finds its
//! own objects. Inside the engine a call or recording is named by its
//! customer and id together ([`scoped_key`]); the admin's own objects have
//! no customer, and an admin request finds its own object first, then the
//! one customer's object with that id (several: `ambiguous_id`; the API
//! lets the admin name the customer).
//!
//! One job per file: `access` (principals, id resolution), `state` (calls,
//! legs, recordings, the registry), `calls`, `recordings`, `outcomes`
//! (worker and writer reports), `storage` (quota, retention, delete),
//! `metrics`, `validate` (request field checks), `model` (the API's
//! request and view types) and `error`. This file holds the engine itself,
//! housekeeping and shutdown.

mod access;
mod calls;
pub mod encryption;
pub mod error;
pub mod flows;
mod metrics;
pub mod model;
mod outcomes;
mod recordings;
mod state;
mod storage;
mod validate;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::events::{Event, EventBus, StopReason};
use crate::io::clock::MonotonicClock;
use crate::io::legs::LegOpener;
use crate::io::worker::{WorkerCmd, WorkerPool};
use crate::io::writer::WriterPool;
use crate::timefmt::{rfc3339, unix_now};

pub use access::{Principal, scoped_key};
pub use error::EngineError;
pub use metrics::{FINALIZE_BUCKETS_MS, Gauges, Histogram};
pub use validate::{MAX_LEGS, MAX_TEXT};

use state::Registry;

/// See the module documentation.
pub struct Engine {
    cfg: Arc<Config>,
    clock: MonotonicClock,
    registry: Mutex<Registry>,
    /// Held through a recording's start: its checks (one recording at a
    /// time per call, the id free) and its registration take the registry
    /// lock apart, with catalog work between, and requests run in
    /// parallel.
    starts: Mutex<()>,
    legs: LegOpener,
    workers: Mutex<Option<WorkerPool>>,
    writers: Mutex<Option<WriterPool>>,
    events: Arc<EventBus>,
    next_call: AtomicU64,
    accepting: AtomicBool,
    storage: PathBuf,
    advertise: String,
    catalog: Arc<Catalog>,
    /// Recording-notice prompts, decoded and cached.
    prompts: crate::notices::Prompts,
    /// Key-encryption keys (encryption at rest).
    keyring: Arc<crate::encryption::Keyring>,
    /// Stop → completed latencies, and bytes finalized.
    finalize_ms: Mutex<Histogram>,
    bytes_finalized: AtomicU64,
    /// The object store and the uploader's wake-up, with
    /// `storage.backend = "s3"`.
    objects: std::sync::OnceLock<(Arc<crate::objects::Objects>, Arc<tokio::sync::Notify>)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: Arc<Config>,
        clock: MonotonicClock,
        legs: LegOpener,
        workers: WorkerPool,
        writers: WriterPool,
        events: Arc<EventBus>,
        catalog: Arc<Catalog>,
        keyring: Arc<crate::encryption::Keyring>,
    ) -> Self {
        let advertise = if cfg.rtp.advertise.is_empty() {
            cfg.rtp.bind.clone()
        } else {
            cfg.rtp.advertise.clone()
        };
        Self {
            prompts: crate::notices::Prompts::new(cfg.notices.clone()),
            storage: PathBuf::from(&cfg.storage.dir),
            advertise,
            cfg,
            clock,
            registry: Mutex::new(Registry::default()),
            starts: Mutex::new(()),
            legs,
            workers: Mutex::new(Some(workers)),
            writers: Mutex::new(Some(writers)),
            events,
            next_call: AtomicU64::new(1),
            accepting: AtomicBool::new(true),
            catalog,
            keyring,
            finalize_ms: Mutex::new(Histogram::default()),
            bytes_finalized: AtomicU64::new(0),
            objects: std::sync::OnceLock::new(),
        }
    }

    /// Finished recordings go to `objects` from now on; `kick` wakes the
    /// uploader when one is queued.
    pub fn attach_objects(
        &self,
        objects: Arc<crate::objects::Objects>,
        kick: Arc<tokio::sync::Notify>,
    ) {
        let _ = self.objects.set((objects, kick));
    }

    pub fn objects(&self) -> Option<&Arc<crate::objects::Objects>> {
        self.objects.get().map(|(o, _)| o)
    }

    pub fn events(&self) -> &Arc<EventBus> {
        &self.events
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Catalog writes never fail a call: they are logged, and the sidecar
    /// (from which `reindex` rebuilds the catalog) stays the record.
    fn note(&self, what: &str, r: Result<(), crate::catalog::CatalogError>) {
        if let Err(e) = r {
            tracing::error!(error = %e, what, "catalog update failed");
        }
    }

    fn send(&self, call: u64, cmd: WorkerCmd) {
        if let Some(w) = lock(&self.workers).as_ref() {
            w.send(call, cmd);
        }
    }

    fn emit(&self, event: Event) {
        if let Err(e) = self.events.announce(event) {
            tracing::error!(error = %e, "could not log event");
        }
    }

    fn check_accepting(&self) -> Result<(), EngineError> {
        if self.accepting.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(EngineError::ShuttingDown)
        }
    }

    /// Enforces `max_duration` and the media timeout; call about every 250 ms.
    pub fn housekeeping(&self) {
        let now = self.clock.now();
        let max = Duration::from_secs(u64::from(self.cfg.recording.max_duration_s));
        let timeout = Duration::from_secs(u64::from(self.cfg.recording.media_timeout_s));
        let (too_long, silent): (Vec<String>, Vec<String>) = {
            let reg = lock(&self.registry);
            let too_long = reg
                .recordings
                .values()
                .filter(|r| {
                    r.state.active() && !max.is_zero() && now.saturating_sub(r.started_mono) >= max
                })
                .map(|r| r.key.clone())
                .collect();
            let silent = reg
                .calls
                .values()
                .filter(|c| c.ended_at.is_none())
                .filter(|c| {
                    let last =
                        Duration::from_nanos(c.shared.last_packet_ns.load(Ordering::Relaxed))
                            .max(c.created_mono);
                    now.saturating_sub(last) >= timeout
                })
                .map(|c| c.key.clone())
                .collect();
            (too_long, silent)
        };
        for key in too_long {
            self.stop_recording_inner(&key, StopReason::MaxDuration);
        }
        self.forget_ended_calls(now);
        for key in silent {
            tracing::info!(call = %key, "no RTP on any leg for the media timeout; ending the call");
            self.end_call_inner(&key, StopReason::MediaTimeout);
        }
    }

    /// When the oldest `Idempotency-Key` still kept was made (RFC 3339):
    /// `api.idempotency_keys_kept_s` ago.
    pub fn idempotency_cutoff(&self) -> String {
        let kept = Duration::from_secs(u64::from(self.cfg.api.idempotency_keys_kept_s));
        rfc3339(unix_now().saturating_sub(kept))
    }

    /// Forgets the answers to `Idempotency-Key`s older than
    /// `api.idempotency_keys_kept_s`; call about once a minute.
    pub fn expire_idempotency_keys(&self) {
        match self.catalog.expire_idempotency(&self.idempotency_cutoff()) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(expired = n, "idempotency keys expired"),
            Err(e) => tracing::error!(error = %e, "could not expire idempotency keys"),
        }
    }

    /// Recordings not yet in a final state.
    pub fn unfinished_recordings(&self) -> usize {
        lock(&self.registry)
            .recordings
            .values()
            .filter(|r| !r.state.finished())
            .count()
    }

    /// Graceful shutdown, step one: take nothing new and end every call.
    pub fn begin_shutdown(&self) {
        self.accepting.store(false, Ordering::Release);
        let calls: Vec<String> = lock(&self.registry)
            .calls
            .values()
            .filter(|c| c.ended_at.is_none())
            .map(|c| c.key.clone())
            .collect();
        for key in calls {
            self.end_call_inner(&key, StopReason::Shutdown);
        }
    }

    /// Step two: stop the workers and writers once everything is written.
    pub fn finish_shutdown(&self) {
        if let Some(w) = lock(&self.workers).take() {
            w.shutdown();
        }
        if let Some(w) = lock(&self.writers).take() {
            w.shutdown();
        }
    }
}
