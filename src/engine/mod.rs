//! The engine: the control plane. It owns the call registry and every
//! recording's state machine, hands out RTP ports, starts ingest for each
//! leg, and tells the media workers what to do. API handlers call it
//! synchronously; worker and writer outcomes come back through
//! [`Engine::on_worker_report`] and [`Engine::on_sink_report`].
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

pub mod error;
pub mod model;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::catalog::{Catalog, RecordingRow};
use crate::config::{Channels, Config, Format, PauseBehavior};
use crate::core::call::Failure;
use crate::core::call::plan::{PlanLeg, Selection, plan};
use crate::core::encode::EncoderSpec;
use crate::core::leg::LegConfig;
use crate::core::mixer::MixInput;
use crate::core::rtp::{Codec, PayloadMap};
use crate::events::{Completed, Event, EventBus};
use crate::ids::{is_valid_id, random_id};
use crate::io::clock::MonotonicClock;
use crate::io::legs::{LegOpener, LegPorts, OpenLegError, OpenedLeg};
use crate::io::udp::ExpectedSource;
use crate::io::worker::{
    CallShared, LegSetup, RecordingSetup, RecordingShared, WorkerCmd, WorkerPool, WorkerReport,
};
use crate::io::writer::{SinkReport, WriterPool};
use crate::recording::{Checksum, LegInfo, RecordingInfo, Role};
use crate::timefmt::{rfc3339, unix_now};

pub use error::EngineError;
use model::*;

/// Who is calling the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Tenant(String),
}

impl Principal {
    fn sees(&self, tenant: &Option<String>) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Tenant(t) => tenant.as_deref() == Some(t.as_str()),
        }
    }

    fn tenant(&self) -> Option<String> {
        self.scope().map(str::to_owned)
    }

    /// The customer whose ids this principal names (the admin: its own).
    fn scope(&self) -> Option<&str> {
        match self {
            Principal::Admin => None,
            Principal::Tenant(t) => Some(t),
        }
    }
}

/// How the engine names a call or recording: its customer and its id,
/// `customer/id` (the admin's own: `id`). Neither ids nor customer ids can
/// hold a `/`, so keys never collide. The media workers, writers and logs
/// see only keys; answers and events carry the id and the customer apart.
pub fn scoped_key(customer: Option<&str>, id: &str) -> String {
    match customer {
        Some(c) => format!("{c}/{id}"),
        None => id.to_owned(),
    }
}

/// Which kind of id a lookup names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdKind {
    Call,
    Recording,
}

impl IdKind {
    fn field(self) -> &'static str {
        match self {
            IdKind::Call => "call_id",
            IdKind::Recording => "recording_id",
        }
    }

    fn not_found(self, id: &str) -> EngineError {
        match self {
            IdKind::Call => EngineError::CallNotFound(id.into()),
            IdKind::Recording => EngineError::RecordingNotFound(id.into()),
        }
    }
}

/// The object `who` means by `id` (see the module documentation): `own`,
/// the object with this id in `who`'s own scope, if there is one; else,
/// for the admin only, the one object among `others()` (every customer's
/// with this id), whose customer `customer_of` tells.
fn resolve<T>(
    who: &Principal,
    kind: IdKind,
    id: &str,
    own: Option<T>,
    others: impl FnOnce() -> Result<Vec<T>, EngineError>,
    customer_of: impl Fn(&T) -> Option<&str>,
) -> Result<T, EngineError> {
    if let Some(own) = own {
        return Ok(own);
    }
    if let Principal::Tenant(_) = who {
        return Err(kind.not_found(id));
    }
    let mut found = others()?;
    match found.len() {
        0 => Err(kind.not_found(id)),
        1 => Ok(found.remove(0)),
        _ => Err(EngineError::AmbiguousId {
            what: kind.field(),
            id: id.into(),
            customers: found
                .iter()
                .map(|t| customer_of(t).unwrap_or("admin"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Recording states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecState {
    Recording,
    Paused,
    Stopped,
    Processing,
    Completed,
    Failed,
    Discarded,
}

impl RecState {
    pub fn name(self) -> &'static str {
        self.status().as_str()
    }

    /// The status the API and the catalog name this state by.
    pub fn status(self) -> RecordingStatus {
        match self {
            RecState::Recording => RecordingStatus::Recording,
            RecState::Paused => RecordingStatus::Paused,
            RecState::Stopped => RecordingStatus::Stopped,
            RecState::Processing => RecordingStatus::Processing,
            RecState::Completed => RecordingStatus::Completed,
            RecState::Failed => RecordingStatus::Failed,
            RecState::Discarded => RecordingStatus::Discarded,
        }
    }

    fn active(self) -> bool {
        matches!(self, RecState::Recording | RecState::Paused)
    }

    fn finished(self) -> bool {
        matches!(
            self,
            RecState::Completed | RecState::Failed | RecState::Discarded
        )
    }
}

struct Leg {
    id: String,
    role: Role,
    label: Option<String>,
    ports: LegPorts,
    muted: bool,
}

struct Call {
    /// [`scoped_key`] of the customer and `id`.
    key: String,
    id: String,
    num: u64,
    tenant: Option<String>,
    from: String,
    to: String,
    direction: Direction,
    reference_type: ReferenceType,
    created_at: String,
    created_mono: Duration,
    ended_at: Option<String>,
    /// When it ended, on the engine's clock.
    ended_mono: Option<Duration>,
    rate: u32,
    legs: Vec<Leg>,
    shared: Arc<CallShared>,
    /// Keys of the call's recordings.
    recordings: Vec<String>,
}

struct Recording {
    /// [`scoped_key`] of the customer and `id`.
    key: String,
    id: String,
    /// The call's customer.
    tenant: Option<String>,
    call_id: String,
    call_num: u64,
    state: RecState,
    format: Format,
    sample_rate: u32,
    channels: Channels,
    bitrate_kbps: u32,
    participant: ParticipantRequest,
    pause_behavior: PauseBehavior,
    started_at: String,
    started_mono: Duration,
    stopped_at: Option<String>,
    shared: Arc<RecordingShared>,
    info: Option<Box<RecordingInfo>>,
    failure: Option<String>,
    /// Legs selected as "all": new conference legs join mono recordings.
    all_legs_mono: bool,
    /// When it was stopped (for the finalize-latency histogram).
    stopped_mono: Option<Duration>,
}

/// Live calls and recordings, by [`scoped_key`].
#[derive(Default)]
struct Registry {
    calls: HashMap<String, Call>,
    recordings: HashMap<String, Recording>,
}

impl Registry {
    /// The call `who` means by `call_id`.
    fn call(&self, who: &Principal, call_id: &str) -> Result<&Call, EngineError> {
        resolve(
            who,
            IdKind::Call,
            call_id,
            self.calls.get(&scoped_key(who.scope(), call_id)),
            || Ok(self.calls.values().filter(|c| c.id == call_id).collect()),
            |c| c.tenant.as_deref(),
        )
    }

    /// The recording `who` means by `id`.
    fn recording(&self, who: &Principal, id: &str) -> Result<&Recording, EngineError> {
        resolve(
            who,
            IdKind::Recording,
            id,
            self.recordings.get(&scoped_key(who.scope(), id)),
            || Ok(self.recordings.values().filter(|r| r.id == id).collect()),
            |r| r.tenant.as_deref(),
        )
    }
}

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
    /// Stop → completed latencies, and bytes finalized.
    finalize_ms: Mutex<Histogram>,
    bytes_finalized: AtomicU64,
}

/// Upper bounds (ms) of the finalize-latency buckets.
pub const FINALIZE_BUCKETS_MS: [u64; 9] = [10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

/// A Prometheus-style cumulative histogram.
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    pub counts: [u64; 9],
    pub count: u64,
    pub sum_ms: f64,
}

impl Histogram {
    fn observe(&mut self, ms: f64) {
        for (i, b) in FINALIZE_BUCKETS_MS.iter().enumerate() {
            if ms <= *b as f64 {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum_ms += ms;
    }
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
    ) -> Self {
        let advertise = if cfg.rtp.advertise.is_empty() {
            cfg.rtp.bind.clone()
        } else {
            cfg.rtp.advertise.clone()
        };
        Self {
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
            finalize_ms: Mutex::new(Histogram::default()),
            bytes_finalized: AtomicU64::new(0),
        }
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

    // ---- calls -------------------------------------------------------

    pub fn create_call(
        &self,
        who: &Principal,
        req: CreateCallRequest,
    ) -> Result<CallView, EngineError> {
        self.check_accepting()?;
        let call_id = match req.call_id {
            Some(id) => {
                check_id("call_id", &id)?;
                id
            }
            None => random_id("call-"),
        };
        for (field, value) in [("from", &req.from), ("to", &req.to)] {
            check_text(field, value)?;
        }
        if req.legs.is_empty() {
            return Err(EngineError::InvalidRequest(
                "legs: at least one leg is required".into(),
            ));
        }
        if req.legs.len() > MAX_LEGS {
            return Err(EngineError::InvalidRequest(format!(
                "legs: at most {MAX_LEGS} legs per call"
            )));
        }
        if req.reference_type == ReferenceType::Call && req.legs.len() > 2 {
            return Err(EngineError::InvalidRequest(
                "legs: a call has at most a caller and a callee; use reference_type \"conference\""
                    .into(),
            ));
        }
        let rate = match &req.recording {
            Some(r) => r.sample_rate.unwrap_or(self.cfg.recording.sample_rate),
            None => self.cfg.recording.sample_rate,
        };
        let mut leg_ids = Vec::new();
        for (i, l) in req.legs.iter().enumerate() {
            validate_leg(&format!("legs[{i}]"), l, req.reference_type)?;
            let id = l
                .leg_id
                .clone()
                .unwrap_or_else(|| default_leg_id(l.role, i));
            if leg_ids.contains(&id) {
                return Err(EngineError::InvalidRequest(format!(
                    "legs[{i}].leg_id: {id:?} appears twice"
                )));
            }
            leg_ids.push(id);
        }
        for role in [Role::Caller, Role::Callee] {
            if req.legs.iter().filter(|l| l.role == role).count() > 1 {
                return Err(EngineError::InvalidRequest(
                    format!("legs: more than one {role:?}").to_lowercase(),
                ));
            }
        }
        // Creating a call with a recording is all or nothing: everything
        // the recording could be refused for is checked before anything is
        // allocated, announced or catalogued.
        let recording = match &req.recording {
            Some(r) if r.enabled.unwrap_or(true) => Some(r.clone()),
            _ => None,
        };
        let recording = match recording {
            Some(mut r) => {
                let (spec, ..) = self.recording_params(
                    &r,
                    &req.legs.iter().map(|l| l.role).collect::<Vec<_>>(),
                    &leg_ids,
                    rate,
                )?;
                let id = match &r.recording_id {
                    Some(id) => {
                        check_id("recording_id", id)?;
                        id.clone()
                    }
                    None => random_id("rec-"),
                };
                self.check_recording_free(who.scope(), &id)?;
                self.check_quota()?;
                let label = |role: Role| {
                    req.legs
                        .iter()
                        .find(|l| l.role == role)
                        .and_then(|l| l.label.clone())
                        .unwrap_or_default()
                };
                self.recording_path(
                    who.scope(),
                    &id,
                    &call_id,
                    spec.format,
                    [label(Role::Caller), label(Role::Callee)],
                    unix_now(),
                )?;
                r.recording_id = Some(id);
                Some(r)
            }
            None => None,
        };
        let num = self.next_call.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(CallShared::default());
        let now = self.clock.now();
        let key = scoped_key(who.scope(), &call_id);
        {
            let mut reg = lock(&self.registry);
            if reg.calls.contains_key(&key) {
                return Err(EngineError::CallExists(call_id));
            }
            reg.calls.insert(
                key.clone(),
                Call {
                    key: key.clone(),
                    id: call_id.clone(),
                    num,
                    tenant: who.tenant(),
                    from: req.from.clone(),
                    to: req.to.clone(),
                    direction: req.direction,
                    reference_type: req.reference_type,
                    created_at: rfc3339(unix_now()),
                    created_mono: now,
                    ended_at: None,
                    ended_mono: None,
                    rate,
                    legs: Vec::new(),
                    shared: shared.clone(),
                    recordings: Vec::new(),
                },
            );
        }
        self.send(
            num,
            WorkerCmd::AddCall {
                call: num,
                origin: now,
                rate,
                shared,
            },
        );
        for (l, id) in req.legs.iter().zip(leg_ids) {
            if let Err(e) = self.open_leg(&key, id, l) {
                // Never announced nor catalogued: it leaves no trace, and
                // its id stays free.
                self.discard_call(&key);
                return Err(e);
            }
        }
        self.note(
            "call",
            self.catalog.upsert_call(
                &call_id,
                who.tenant().as_deref(),
                &req.from,
                &req.to,
                direction_name(req.direction),
                reference_name(req.reference_type),
                &rfc3339(unix_now()),
            ),
        );
        self.emit(Event::CallCreated {
            call_id: call_id.clone(),
            customer_id: who.tenant(),
            from: req.from.clone(),
            to: req.to.clone(),
            reference_type: req.reference_type,
            legs: self.leg_summaries(&key),
        });
        if let Some(r) = recording
            && let Err(e) = self.start_recording(who, &call_id, r)
        {
            // Checked above, so only a race or shutting down gets here:
            // the call ends as announced, and its id is free again.
            self.end_call_inner(&key, "setup_failed");
            lock(&self.registry).calls.remove(&key);
            return Err(e);
        }
        self.call_view_by_key(&key)
    }

    /// Takes back a call whose legs could not all be opened: closes what
    /// was opened, rests its ports and forgets it, without an event.
    fn discard_call(&self, key: &str) {
        let now = self.clock.now();
        let Some(c) = lock(&self.registry).calls.remove(key) else {
            return;
        };
        for l in &c.legs {
            self.legs.close(&l.ports, now);
        }
        self.send(
            c.num,
            WorkerCmd::EndCall {
                call: c.num,
                at: now,
            },
        );
    }

    fn leg_summaries(&self, call_key: &str) -> Vec<Value> {
        let reg = lock(&self.registry);
        reg.calls.get(call_key).map_or_else(Vec::new, |c| {
            c.legs
                .iter()
                .map(|l| json!({"leg_id": l.id, "role": l.role, "label": l.label, "port": l.ports.port}))
                .collect()
        })
    }

    /// Binds a leg's ports, starts its ingest and gives it to the worker.
    fn open_leg(
        &self,
        call_key: &str,
        leg_id: String,
        req: &LegRequest,
    ) -> Result<(), EngineError> {
        let mut map = PayloadMap::default();
        for (pt, enc) in &req.payload_types {
            let pt: u32 = pt.parse().map_err(|_| {
                EngineError::InvalidRequest(format!("payload_types: {pt:?} is not a number"))
            })?;
            let codec = Codec::from_rtpmap(enc)
                .map_err(|e| EngineError::InvalidRequest(format!("payload_types.{pt}: {e}")))?;
            map.set(pt, codec)
                .map_err(|e| EngineError::InvalidRequest(format!("payload_types.{pt}: {e}")))?;
        }
        let expected = req
            .source
            .as_deref()
            .map(ExpectedSource::parse)
            .transpose()
            .map_err(EngineError::InvalidRequest)?;
        let rate = {
            let reg = lock(&self.registry);
            reg.calls
                .get(call_key)
                .ok_or_else(|| EngineError::CallNotFound(call_key.into()))?
                .rate
        };
        let now = self.clock.now();
        let OpenedLeg { socket, ports } = self.legs.open(expected, now).map_err(|e| match e {
            OpenLegError::PortsExhausted => EngineError::PortsExhausted,
            OpenLegError::OutOfResources(e) => {
                tracing::error!(error = %e, "cannot open RTP sockets: out of file descriptors or socket memory");
                EngineError::OutOfResources
            }
            OpenLegError::Socket(e) => EngineError::Internal(e.to_string()),
        })?;
        let info = LegInfo {
            leg_id: leg_id.clone(),
            role: req.role,
            label: req.label.clone(),
            channel: None,
            codecs: Vec::new(),
            source: None,
            stats: Default::default(),
            dtmf: Vec::new(),
        };
        let config = LegConfig {
            payload_map: map,
            rate,
            playout_delay: Duration::from_millis(u64::from(self.cfg.jitter.playout_delay_ms)),
            jitter_capacity: self.cfg.jitter.capacity_packets as usize,
            drift_bound: Duration::from_millis(u64::from(self.cfg.jitter.drift_bound_ms)),
        };
        // The leg's index is taken, the leg registered and the worker told
        // under one lock: two legs added at once (requests run in parallel)
        // must not both get the same index, and the worker must get them
        // in index order.
        let mut reg = lock(&self.registry);
        let Some(c) = reg.calls.get_mut(call_key) else {
            self.legs.close(&ports, now);
            return Err(EngineError::CallNotFound(call_key.into()));
        };
        let index = c.legs.len();
        let num = c.num;
        c.legs.push(Leg {
            id: leg_id,
            role: req.role,
            label: req.label.clone(),
            ports,
            muted: false,
        });
        self.send(
            num,
            WorkerCmd::AddLeg {
                call: num,
                leg: Box::new(LegSetup {
                    index,
                    socket,
                    config,
                    info,
                }),
            },
        );
        Ok(())
    }

    pub fn add_leg(
        &self,
        who: &Principal,
        call_id: &str,
        req: LegRequest,
    ) -> Result<CallView, EngineError> {
        self.check_accepting()?;
        let (reference_type, n, num, key, tenant) = {
            let reg = lock(&self.registry);
            let c = reg.call(who, call_id)?;
            if c.ended_at.is_some() {
                return Err(EngineError::CallEnded(call_id.into()));
            }
            if c.reference_type == ReferenceType::Call && c.legs.len() >= 2 {
                return Err(EngineError::InvalidRequest(
                    "this call already has two legs; conferences take more (reference_type \"conference\")".into(),
                ));
            }
            if c.legs
                .iter()
                .any(|l| l.role == req.role && req.role != Role::Participant)
            {
                return Err(EngineError::InvalidRequest(
                    format!("the call already has a {:?}", req.role).to_lowercase(),
                ));
            }
            (
                c.reference_type,
                c.legs.len(),
                c.num,
                c.key.clone(),
                c.tenant.clone(),
            )
        };
        validate_leg("leg", &req, reference_type)?;
        let id = req
            .leg_id
            .clone()
            .unwrap_or_else(|| default_leg_id(req.role, n));
        if lock(&self.registry)
            .calls
            .get(&key)
            .is_some_and(|c| c.legs.iter().any(|l| l.id == id))
        {
            return Err(EngineError::InvalidRequest(format!(
                "leg_id: {id:?} already exists"
            )));
        }
        self.open_leg(&key, id.clone(), &req)?;
        // A conference leg joins the mono recordings of everyone.
        let joins: Vec<String> = {
            let reg = lock(&self.registry);
            reg.calls.get(&key).map_or_else(Vec::new, |c| {
                c.recordings
                    .iter()
                    .filter_map(|r| reg.recordings.get(r))
                    .filter(|r| r.state.active() && r.all_legs_mono)
                    .map(|r| r.key.clone())
                    .collect()
            })
        };
        for rec in joins {
            self.send(
                num,
                WorkerCmd::AddInput {
                    call: num,
                    id: rec,
                    leg: n,
                    channel: 0,
                },
            );
        }
        self.emit(Event::LegAdded {
            call_id: call_id.to_owned(),
            customer_id: tenant.clone(),
            leg_id: id.clone(),
            role: req.role,
            label: req.label.clone(),
        });
        self.call_view_by_key(&key)
    }

    pub fn get_call(&self, who: &Principal, call_id: &str) -> Result<CallView, EngineError> {
        let reg = lock(&self.registry);
        let c = reg.call(who, call_id)?;
        Ok(self.call_view(&reg, c))
    }

    fn call_view_by_key(&self, key: &str) -> Result<CallView, EngineError> {
        let reg = lock(&self.registry);
        let c = reg
            .calls
            .get(key)
            .ok_or_else(|| EngineError::CallNotFound(key.into()))?;
        Ok(self.call_view(&reg, c))
    }

    /// A page of the calls `who` sees (`ended`: only ended or only active
    /// ones), newest first, and how many there are in all.
    pub fn list_calls(
        &self,
        who: &Principal,
        ended: Option<bool>,
        limit: usize,
        offset: u64,
    ) -> (Vec<CallView>, usize) {
        let reg = lock(&self.registry);
        let mut calls: Vec<&Call> = reg
            .calls
            .values()
            .filter(|c| who.sees(&c.tenant))
            .filter(|c| ended.is_none_or(|e| c.ended_at.is_some() == e))
            .collect();
        let total = calls.len();
        calls.sort_by_key(|c| std::cmp::Reverse(c.num));
        let page = calls
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(limit)
            .map(|c| self.call_view(&reg, c))
            .collect();
        (page, total)
    }

    fn call_view(&self, reg: &Registry, c: &Call) -> CallView {
        let stats = lock(&c.shared.legs).clone();
        CallView {
            call_id: c.id.clone(),
            customer_id: c.tenant.clone(),
            from: c.from.clone(),
            to: c.to.clone(),
            direction: c.direction,
            reference_type: c.reference_type,
            status: if c.ended_at.is_some() {
                CallStatus::Ended
            } else {
                CallStatus::Active
            },
            created_at: c.created_at.clone(),
            ended_at: c.ended_at.clone(),
            sample_rate: c.rate,
            legs: c
                .legs
                .iter()
                .enumerate()
                .map(|(i, l)| LegView {
                    leg_id: l.id.clone(),
                    role: l.role,
                    label: l.label.clone(),
                    rtp: RtpAddress {
                        host: self.advertise.clone(),
                        port: l.ports.port,
                        rtcp_port: l.ports.port + 1,
                    },
                    muted: l.muted,
                    source: None,
                    ingest: l.ports.stats.snapshot(),
                    stats: stats.get(i).copied(),
                })
                .collect(),
            recordings: c
                .recordings
                .iter()
                .filter_map(|r| reg.recordings.get(r))
                .map(recording_view)
                .collect(),
        }
    }

    pub fn end_call(&self, who: &Principal, call_id: &str) -> Result<CallView, EngineError> {
        let key = {
            let reg = lock(&self.registry);
            let c = reg.call(who, call_id)?;
            if c.ended_at.is_some() {
                return Err(EngineError::CallEnded(call_id.into()));
            }
            c.key.clone()
        };
        self.end_call_inner(&key, "api");
        self.call_view_by_key(&key)
    }

    /// Ends a call: stops its recordings (finalized from what arrived),
    /// closes its sockets and rests its ports.
    fn end_call_inner(&self, call_key: &str, reason: &str) {
        let now = self.clock.now();
        let (num, stopped, call_id, tenant) = {
            let mut reg = lock(&self.registry);
            let Some(c) = reg.calls.get_mut(call_key) else {
                return;
            };
            if c.ended_at.is_some() {
                return;
            }
            c.ended_at = Some(rfc3339(unix_now()));
            c.ended_mono = Some(now);
            for l in &c.legs {
                self.legs.close(&l.ports, now);
            }
            let (num, call_id, tenant) = (c.num, c.id.clone(), c.tenant.clone());
            let rec_keys = c.recordings.clone();
            let mut stopped = Vec::new();
            for r in rec_keys {
                if let Some(rec) = reg.recordings.get_mut(&r)
                    && rec.state.active()
                {
                    rec.state = RecState::Stopped;
                    rec.stopped_at = Some(rfc3339(unix_now()));
                    rec.stopped_mono = Some(now);
                    stopped.push(rec.id.clone());
                }
            }
            (num, stopped, call_id, tenant)
        };
        for r in &stopped {
            self.emit(Event::RecordingStopped {
                recording_id: r.clone(),
                call_id: call_id.clone(),
                customer_id: tenant.clone(),
                reason: reason.to_owned(),
            });
        }
        self.send(num, WorkerCmd::EndCall { call: num, at: now });
        let ended = rfc3339(unix_now());
        for r in &stopped {
            self.note(
                "status",
                self.catalog.set_status(
                    tenant.as_deref(),
                    r,
                    "stopped",
                    &ended,
                    None,
                    Some(&ended),
                ),
            );
        }
        self.note(
            "call end",
            self.catalog.end_call(tenant.as_deref(), &call_id, &ended),
        );
        self.emit(Event::CallEnded {
            call_id: call_id.clone(),
            customer_id: tenant.clone(),
            reason: reason.to_owned(),
        });
    }

    // ---- recordings ----------------------------------------------------

    /// Resolves recording options against defaults and the call's legs:
    /// (spec, the legs mixed and their channels, participant, pause behavior,
    /// dtmf suppression).
    #[allow(clippy::type_complexity)]
    fn recording_params(
        &self,
        r: &RecordingRequest,
        roles: &[Role],
        leg_ids: &[String],
        call_rate: u32,
    ) -> Result<
        (
            EncoderSpec,
            Vec<MixInput>,
            ParticipantRequest,
            PauseBehavior,
            bool,
            Channels,
        ),
        EngineError,
    > {
        let d = &self.cfg.recording;
        let format = r.format.unwrap_or(d.format);
        // The call's legs already produce audio at its media rate; another
        // rate is resampled from it.
        let sample_rate = r.sample_rate.unwrap_or(call_rate);
        let channels = r.channels.unwrap_or(d.channels);
        let participant = r
            .participant
            .clone()
            .unwrap_or(ParticipantRequest::Named("all".into()));
        let selection = match &participant {
            ParticipantRequest::Named(n) => match n.as_str() {
                "all" => Selection::All,
                "caller" => Selection::Caller,
                "callee" => Selection::Callee,
                other => {
                    return Err(EngineError::InvalidRequest(format!(
                        "participant: {other:?} is not all, caller, callee or a list of leg ids"
                    )));
                }
            },
            ParticipantRequest::Legs(ids) => Selection::Legs(ids.clone()),
        };
        let legs: Vec<PlanLeg<'_>> = leg_ids
            .iter()
            .zip(roles)
            .map(|(id, role)| PlanLeg { id, role: *role })
            .collect();
        let planned = plan(&legs, &selection, channels)
            .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
        let inputs = planned.inputs;
        let channel_count = planned.channel_count;
        let spec = EncoderSpec {
            format,
            sample_rate,
            channels: channel_count,
            bitrate_kbps: r.bitrate.unwrap_or(if format == d.format {
                d.bitrate_kbps
            } else {
                0
            }),
            mp3_quality: d.mp3_quality,
            opus_complexity: d.opus_complexity,
        };
        spec.validate()
            .map_err(|e| EngineError::InvalidFormat(e.to_string()))?;
        let pause = r.pause_behavior.unwrap_or(d.pause_behavior);
        let suppress = r.dtmf.unwrap_or_default() == DtmfPolicy::Suppress;
        Ok((spec, inputs, participant, pause, suppress, channels))
    }

    pub fn start_recording(
        &self,
        who: &Principal,
        call_id: &str,
        req: RecordingRequest,
    ) -> Result<RecordingView, EngineError> {
        self.check_accepting()?;
        let _one_start_at_a_time = lock(&self.starts);
        if let Some(id) = &req.recording_id {
            check_id("recording_id", id)?;
        }
        let (num, roles, leg_ids, rate, tenant, legs_info, call_key, reference) = {
            let reg = lock(&self.registry);
            let c = reg.call(who, call_id)?;
            if c.ended_at.is_some() {
                return Err(EngineError::CallEnded(call_id.into()));
            }
            if c.recordings
                .iter()
                .filter_map(|r| reg.recordings.get(r))
                .any(|r| r.state.active())
            {
                return Err(EngineError::RecordingInProgress(call_id.into()));
            }
            let roles: Vec<Role> = c.legs.iter().map(|l| l.role).collect();
            let ids: Vec<String> = c.legs.iter().map(|l| l.id.clone()).collect();
            let infos: Vec<(String, Role, Option<String>)> = c
                .legs
                .iter()
                .map(|l| (l.id.clone(), l.role, l.label.clone()))
                .collect();
            (
                c.num,
                roles,
                ids,
                c.rate,
                c.tenant.clone(),
                infos,
                c.key.clone(),
                reference_name(c.reference_type),
            )
        };
        let (spec, inputs, participant, pause_behavior, suppress_dtmf, channels) =
            self.recording_params(&req, &roles, &leg_ids, rate)?;
        let id = req
            .recording_id
            .clone()
            .unwrap_or_else(|| random_id("rec-"));
        // Ids are the customer's own: another customer's recording with
        // this id is no obstacle (and not revealed).
        let key = scoped_key(tenant.as_deref(), &id);
        self.check_recording_free(tenant.as_deref(), &id)?;
        self.check_quota()?;
        let now_wall = unix_now();
        let now = self.clock.now();
        let label = |role: Role| {
            legs_info
                .iter()
                .find(|(_, r, _)| *r == role)
                .and_then(|(_, _, l)| l.clone())
                .unwrap_or_default()
        };
        let path = self.recording_path(
            tenant.as_deref(),
            &id,
            call_id,
            spec.format,
            [label(Role::Caller), label(Role::Callee)],
            now_wall,
        )?;
        let sidecar = path.with_extension("json");
        let shared = Arc::new(RecordingShared::default());
        let started_at = rfc3339(now_wall);
        let info = RecordingInfo {
            recording_id: id.clone(),
            call_id: call_id.into(),
            customer_id: tenant.clone(),
            reference_type: reference.into(),
            status: "completed".into(),
            format: spec.format,
            content_type: spec.format.content_type().into(),
            sample_rate: spec.sample_rate,
            channels,
            channel_count: spec.channels,
            bitrate_kbps: spec.effective_bitrate_kbps(),
            participant: participant_name(&participant),
            pause_behavior,
            started_at: started_at.clone(),
            stopped_at: String::new(),
            duration_ms: 0,
            file: path.to_string_lossy().into_owned(),
            file_size_bytes: 0,
            checksum: Checksum::sha256(String::new()),
            pauses: Vec::new(),
            legs: legs_info
                .iter()
                .enumerate()
                .map(|(i, (lid, role, label))| LegInfo {
                    leg_id: lid.clone(),
                    role: *role,
                    label: label.clone(),
                    channel: inputs.iter().find(|m| m.track == i).map(|m| m.channel),
                    codecs: Vec::new(),
                    source: None,
                    stats: Default::default(),
                    dtmf: Vec::new(),
                })
                .collect(),
            recovered: false,
        };
        let sink = match lock(&self.writers).as_ref() {
            Some(w) => w.sink(&key),
            None => return Err(EngineError::ShuttingDown),
        };
        let all_legs_mono = matches!(&participant, ParticipantRequest::Named(n) if n == "all")
            && channels == Channels::Mono;
        self.note(
            "recording",
            self.catalog.put_recording(&RecordingRow {
                recording_id: id.clone(),
                call_id: call_id.into(),
                customer_id: tenant.clone(),
                reference_type: reference.into(),
                status: "recording".into(),
                format: spec.format.extension().into(),
                sample_rate: spec.sample_rate,
                channels: channels_name(channels).into(),
                bitrate_kbps: spec.effective_bitrate_kbps(),
                participant: participant_name(&participant),
                path: Some(path.to_string_lossy().into_owned()),
                duration_ms: 0,
                file_size_bytes: None,
                checksum: None,
                failure_reason: None,
                started_at: started_at.clone(),
                started_ms: now_wall.as_millis() as i64,
                stopped_at: None,
                completed_at: None,
                completed_ms: None,
                created_at: started_at.clone(),
                updated_at: started_at.clone(),
                deleted_at: None,
                retention_days: req.retention_days,
                recovered: false,
                external: false,
                info_json: None,
            }),
        );
        {
            let mut reg = lock(&self.registry);
            let c = reg
                .calls
                .get_mut(&call_key)
                .ok_or_else(|| EngineError::CallNotFound(call_id.into()))?;
            c.recordings.push(key.clone());
            let start_rel = now.saturating_sub(c.created_mono);
            reg.recordings.insert(
                key.clone(),
                Recording {
                    key: key.clone(),
                    id: id.clone(),
                    tenant: tenant.clone(),
                    call_id: call_id.into(),
                    call_num: num,
                    state: RecState::Recording,
                    format: spec.format,
                    sample_rate: spec.sample_rate,
                    channels,
                    bitrate_kbps: spec.effective_bitrate_kbps(),
                    participant: participant.clone(),
                    pause_behavior,
                    started_at: started_at.clone(),
                    started_mono: now,
                    stopped_at: None,
                    shared: shared.clone(),
                    info: None,
                    failure: None,
                    all_legs_mono,
                    stopped_mono: None,
                },
            );
            self.send(
                num,
                WorkerCmd::StartRecording {
                    call: num,
                    setup: Box::new(RecordingSetup {
                        id: key.clone(),
                        spec,
                        inputs,
                        pause_behavior,
                        suppress_dtmf,
                        start: start_rel,
                        path,
                        sidecar,
                        flush_interval: Duration::from_millis(u64::from(
                            self.cfg.storage.flush_interval_ms,
                        )),
                        min_duration: Duration::from_secs(u64::from(
                            self.cfg.recording.min_duration_s,
                        )),
                        sink,
                        info: Box::new(info),
                        shared,
                    }),
                },
            );
        }
        self.emit(Event::RecordingStarted {
            recording_id: id.clone(),
            call_id: call_id.to_owned(),
            customer_id: tenant.clone(),
            format: spec.format,
            sample_rate: spec.sample_rate,
            channels,
            participant: participant.clone(),
        });
        self.recording_view_by_key(&key)
    }

    fn recording_view_by_key(&self, key: &str) -> Result<RecordingView, EngineError> {
        let reg = lock(&self.registry);
        reg.recordings
            .get(key)
            .map(recording_view)
            .ok_or_else(|| EngineError::RecordingNotFound(key.into()))
    }

    /// Refuses a recording id the customer already has (live or
    /// catalogued). Another customer's recording with this id is no
    /// obstacle, and is not revealed.
    fn check_recording_free(&self, tenant: Option<&str>, id: &str) -> Result<(), EngineError> {
        let taken = lock(&self.registry)
            .recordings
            .contains_key(&scoped_key(tenant, id))
            || self
                .catalog
                .get(tenant, id)
                .map_err(|e| EngineError::Internal(e.to_string()))?
                .is_some();
        if taken {
            return Err(EngineError::InvalidRequest(format!(
                "recording_id: {id:?} already exists"
            )));
        }
        Ok(())
    }

    /// Where the customer's recording `id` goes (`storage.path_pattern`),
    /// refusing a path another recording has: never two live recordings on
    /// one path, whatever their ids (a crafted id could name another's
    /// file). A recording in progress is in the catalog; a `.part` without
    /// one is a leftover and is replaced.
    fn recording_path(
        &self,
        tenant: Option<&str>,
        id: &str,
        call_id: &str,
        format: Format,
        [caller_label, callee_label]: [String; 2],
        now_wall: Duration,
    ) -> Result<PathBuf, EngineError> {
        let customer = tenant.unwrap_or(crate::storage_path::ADMIN_CUSTOMER_SEGMENT);
        let values: HashMap<&str, String> = [
            ("recording_id", id.to_owned()),
            ("call_id", call_id.to_owned()),
            ("customer_id", customer.to_owned()),
            ("ext", format.extension().to_owned()),
            ("caller_label", caller_label),
            ("callee_label", callee_label),
        ]
        .into_iter()
        .collect();
        let path = crate::storage_path::render(
            &self.storage,
            &self.cfg.storage.path_pattern,
            now_wall,
            &values,
        );
        if path.exists()
            || self
                .catalog
                .live_recording_at(&path.to_string_lossy())
                .map_err(|e| EngineError::Internal(e.to_string()))?
        {
            return Err(EngineError::PathInUse(
                path.strip_prefix(&self.storage)
                    .unwrap_or(&path)
                    .display()
                    .to_string(),
            ));
        }
        Ok(path)
    }

    /// The key of the call's recording in progress.
    fn active_recording(
        &self,
        reg: &Registry,
        who: &Principal,
        call_id: &str,
    ) -> Result<String, EngineError> {
        let c = reg.call(who, call_id)?;
        c.recordings
            .iter()
            .filter_map(|r| reg.recordings.get(r))
            .find(|r| r.state.active())
            .map(|r| r.key.clone())
            .ok_or_else(|| EngineError::RecordingNotStarted(call_id.into()))
    }

    pub fn pause_recording(
        &self,
        who: &Principal,
        call_id: &str,
    ) -> Result<RecordingView, EngineError> {
        self.set_paused(who, call_id, true)
    }

    pub fn resume_recording(
        &self,
        who: &Principal,
        call_id: &str,
    ) -> Result<RecordingView, EngineError> {
        self.set_paused(who, call_id, false)
    }

    fn set_paused(
        &self,
        who: &Principal,
        call_id: &str,
        pause: bool,
    ) -> Result<RecordingView, EngineError> {
        let now = self.clock.now();
        let (key, num, id, tenant) = {
            let mut reg = lock(&self.registry);
            let key = self.active_recording(&reg, who, call_id)?;
            let rec = reg
                .recordings
                .get_mut(&key)
                .ok_or_else(|| EngineError::RecordingNotFound(key.clone()))?;
            match (pause, rec.state) {
                (true, RecState::Paused) => return Err(EngineError::AlreadyPaused),
                (false, RecState::Recording) => return Err(EngineError::NotPaused),
                _ => {}
            }
            rec.state = if pause {
                RecState::Paused
            } else {
                RecState::Recording
            };
            (key, rec.call_num, rec.id.clone(), rec.tenant.clone())
        };
        let at = now;
        self.send(
            num,
            if pause {
                WorkerCmd::Pause {
                    call: num,
                    id: key.clone(),
                    at,
                }
            } else {
                WorkerCmd::Resume {
                    call: num,
                    id: key.clone(),
                    at,
                }
            },
        );
        let status = if pause { "paused" } else { "recording" };
        self.note(
            "status",
            self.catalog.set_status(
                tenant.as_deref(),
                &id,
                status,
                &rfc3339(unix_now()),
                None,
                None,
            ),
        );
        let (recording_id, call_id, customer_id) = (id.clone(), call_id.to_owned(), tenant.clone());
        self.emit(if pause {
            Event::RecordingPaused {
                recording_id,
                call_id,
                customer_id,
            }
        } else {
            Event::RecordingResumed {
                recording_id,
                call_id,
                customer_id,
            }
        });
        self.recording_view_by_key(&key)
    }

    pub fn stop_recording(
        &self,
        who: &Principal,
        call_id: &str,
    ) -> Result<RecordingView, EngineError> {
        let key = {
            let reg = lock(&self.registry);
            self.active_recording(&reg, who, call_id)?
        };
        let stop = self.mark_stopped(&key, "api");
        // The answer shows the recording as stopped: the worker finishes it
        // within a tick once told, and later states come as events.
        let view = self.recording_view_by_key(&key);
        if let Some(cmd) = stop {
            self.send(cmd.0, cmd.1);
        }
        view
    }

    fn stop_recording_inner(&self, key: &str, reason: &str) {
        if let Some((num, cmd)) = self.mark_stopped(key, reason) {
            self.send(num, cmd);
        }
    }

    /// Moves an active recording to `stopped` (registry, catalog, event)
    /// and returns the command that tells its worker. The command goes out
    /// only after `recording.stopped` is logged, so `recording.completed`
    /// can never precede it.
    fn mark_stopped(&self, key: &str, reason: &str) -> Option<(u64, WorkerCmd)> {
        let now = self.clock.now();
        let (num, call_id, id, tenant) = {
            let mut reg = lock(&self.registry);
            let rec = reg.recordings.get_mut(key)?;
            if !rec.state.active() {
                return None;
            }
            rec.state = RecState::Stopped;
            rec.stopped_at = Some(rfc3339(unix_now()));
            rec.stopped_mono = Some(now);
            (
                rec.call_num,
                rec.call_id.clone(),
                rec.id.clone(),
                rec.tenant.clone(),
            )
        };
        let t = rfc3339(unix_now());
        self.note(
            "status",
            self.catalog
                .set_status(tenant.as_deref(), &id, "stopped", &t, None, Some(&t)),
        );
        self.emit(Event::RecordingStopped {
            recording_id: id.clone(),
            call_id: call_id.clone(),
            customer_id: tenant.clone(),
            reason: reason.to_owned(),
        });
        Some((
            num,
            WorkerCmd::Stop {
                call: num,
                id: key.into(),
                at: now,
            },
        ))
    }

    pub fn set_muted(
        &self,
        who: &Principal,
        call_id: &str,
        leg_id: &str,
        muted: bool,
    ) -> Result<CallView, EngineError> {
        let now = self.clock.now();
        let (num, index, key, tenant) = {
            let mut reg = lock(&self.registry);
            let key = reg.call(who, call_id)?.key.clone();
            let c = reg
                .calls
                .get_mut(&key)
                .ok_or_else(|| EngineError::CallNotFound(call_id.into()))?;
            if c.ended_at.is_some() {
                return Err(EngineError::CallEnded(call_id.into()));
            }
            let index = c
                .legs
                .iter()
                .position(|l| l.id == leg_id)
                .ok_or_else(|| EngineError::LegNotFound(leg_id.into()))?;
            c.legs[index].muted = muted;
            (c.num, index, key, c.tenant.clone())
        };
        self.send(
            num,
            WorkerCmd::Mute {
                call: num,
                leg: index,
                muted,
                at: now,
            },
        );
        let (call_id, customer_id, leg_id) =
            (call_id.to_owned(), tenant.clone(), leg_id.to_owned());
        self.emit(if muted {
            Event::LegMuted {
                call_id,
                customer_id,
                leg_id,
            }
        } else {
            Event::LegUnmuted {
                call_id,
                customer_id,
                leg_id,
            }
        });
        self.call_view_by_key(&key)
    }

    pub fn get_recording(&self, who: &Principal, id: &str) -> Result<RecordingView, EngineError> {
        let reg = lock(&self.registry);
        Ok(recording_view(reg.recording(who, id)?))
    }

    // ---- outcomes -----------------------------------------------------------

    pub fn on_worker_report(&self, report: WorkerReport) {
        match report {
            WorkerReport::Processing { id: key } => {
                let mut reg = lock(&self.registry);
                if let Some(r) = reg.recordings.get_mut(&key)
                    && !r.state.finished()
                {
                    r.state = RecState::Processing;
                    self.note(
                        "status",
                        self.catalog.set_status(
                            r.tenant.as_deref(),
                            &r.id,
                            "processing",
                            &rfc3339(unix_now()),
                            None,
                            None,
                        ),
                    );
                }
            }
            WorkerReport::CallLost { call } => {
                let key = lock(&self.registry)
                    .calls
                    .values()
                    .find(|c| c.num == call && c.ended_at.is_none())
                    .map(|c| c.key.clone());
                if let Some(key) = key {
                    self.end_call_inner(&key, "internal_error");
                }
            }
            WorkerReport::Failed {
                id,
                reason,
                message,
            } => self.fail_recording(&id, reason, &message),
            WorkerReport::Discarded {
                id: key,
                duration_ms,
            } => {
                let (call_id, id, tenant) = {
                    let mut reg = lock(&self.registry);
                    let Some(r) = reg.recordings.get_mut(&key) else {
                        return;
                    };
                    r.state = RecState::Discarded;
                    (r.call_id.clone(), r.id.clone(), r.tenant.clone())
                };
                self.note(
                    "status",
                    self.catalog.set_status(
                        tenant.as_deref(),
                        &id,
                        "discarded",
                        &rfc3339(unix_now()),
                        Some("min_duration"),
                        None,
                    ),
                );
                self.emit(Event::RecordingDiscarded {
                    recording_id: id.clone(),
                    call_id: call_id.clone(),
                    customer_id: tenant.clone(),
                    reason: "min_duration".into(),
                    duration_ms,
                    min_duration_s: self.cfg.recording.min_duration_s,
                });
            }
        }
    }

    fn fail_recording(&self, key: &str, failure: Failure, message: &str) {
        let reason = failure.reason();
        let (call_id, num, was_active, id, tenant) = {
            let mut reg = lock(&self.registry);
            let Some(r) = reg.recordings.get_mut(key) else {
                return;
            };
            if r.state.finished() {
                return;
            }
            let was_active = r.state.active();
            r.state = RecState::Failed;
            r.failure = Some(reason.into());
            (
                r.call_id.clone(),
                r.call_num,
                was_active,
                r.id.clone(),
                r.tenant.clone(),
            )
        };
        if was_active {
            self.send(
                num,
                WorkerCmd::Abort {
                    call: num,
                    id: key.into(),
                },
            );
        }
        self.note(
            "status",
            self.catalog.set_status(
                tenant.as_deref(),
                &id,
                "failed",
                &rfc3339(unix_now()),
                Some(reason),
                None,
            ),
        );
        tracing::error!(recording = key, reason, message, "recording failed");
        self.emit(Event::RecordingFailed {
            recording_id: id.clone(),
            call_id: call_id.clone(),
            customer_id: tenant.clone(),
            reason: reason.to_owned(),
            message: message.to_owned(),
        });
    }

    pub fn on_sink_report(&self, report: SinkReport) {
        match report {
            SinkReport::Finalized {
                id: key,
                file,
                info,
            } => {
                let (call_id, id, tenant) = {
                    let mut reg = lock(&self.registry);
                    let Some(r) = reg.recordings.get_mut(&key) else {
                        return;
                    };
                    r.state = RecState::Completed;
                    r.shared
                        .duration_ms
                        .store(info.duration_ms, Ordering::Relaxed);
                    if let Some(stopped) = r.stopped_mono {
                        let ms = self.clock.now().saturating_sub(stopped).as_secs_f64() * 1000.0;
                        lock(&self.finalize_ms).observe(ms);
                    }
                    self.bytes_finalized.fetch_add(file.size, Ordering::Relaxed);
                    r.info = Some(info.clone());
                    (r.call_id.clone(), r.id.clone(), r.tenant.clone())
                };
                self.catalog_completed(tenant.as_deref(), &id, &file.path, &info);
                self.emit(Event::RecordingCompleted(Box::new(Completed {
                    download_url: format!("/v1/recordings/{id}/download"),
                    recording_id: id.clone(),
                    call_id: call_id.clone(),
                    customer_id: tenant.clone(),
                    format: info.format.extension().to_owned(),
                    content_type: info.content_type.clone(),
                    duration_ms: info.duration_ms,
                    file_size_bytes: file.size,
                    checksum: Checksum::sha256(file.sha256.clone()),
                    path: file.path.to_string_lossy().into_owned(),
                    pauses: info.pauses.clone(),
                    channels: channels_name(info.channels).to_owned(),
                    sample_rate: info.sample_rate,
                    recovered: false,
                })));
            }
            SinkReport::Failed { id, error } => self.fail_recording(&id, Failure::Storage, &error),
            SinkReport::Discarded { .. } => {}
        }
    }

    /// Writes a finished recording's full row.
    fn catalog_completed(
        &self,
        tenant: Option<&str>,
        id: &str,
        path: &std::path::Path,
        info: &RecordingInfo,
    ) {
        let now = unix_now();
        let Ok(Some(mut row)) = self.catalog.get(tenant, id) else {
            tracing::error!(
                recording = %scoped_key(tenant, id),
                "completed recording missing from the catalog"
            );
            return;
        };
        row.status = "completed".into();
        row.path = Some(path.to_string_lossy().into_owned());
        row.duration_ms = info.duration_ms;
        row.file_size_bytes = Some(info.file_size_bytes);
        row.checksum = Some(info.checksum.value.clone());
        row.stopped_at = Some(info.stopped_at.clone());
        row.completed_at = Some(rfc3339(now));
        row.completed_ms = Some(now.as_millis() as i64);
        row.updated_at = rfc3339(now);
        row.recovered = info.recovered;
        row.info_json = serde_json::to_string(info).ok();
        self.note("completed", self.catalog.put_recording(&row));
    }

    /// Refuses a new recording over `storage.max_bytes` or under
    /// `storage.min_free_bytes`.
    fn check_quota(&self) -> Result<(), EngineError> {
        let s = &self.cfg.storage;
        if s.max_bytes > 0 {
            let used = self
                .catalog
                .stored_bytes()
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            if used >= s.max_bytes {
                return Err(EngineError::QuotaExceeded(format!(
                    "storage quota reached: {used} of {} bytes in use (storage.max_bytes)",
                    s.max_bytes
                )));
            }
        }
        if s.min_free_bytes > 0
            && let Some(free) = free_bytes(&self.storage)
            && free < s.min_free_bytes
        {
            return Err(EngineError::QuotaExceeded(format!(
                "only {free} bytes free on the storage filesystem (storage.min_free_bytes = {})",
                s.min_free_bytes
            )));
        }
        Ok(())
    }

    /// Deletes recordings past their retention at `now_ms` (Unix ms): file
    /// and sidecar go, the catalog keeps a tombstone, `recording.deleted`
    /// is announced. Returns how many were deleted.
    pub fn sweep_retention(&self, now_ms: i64) -> usize {
        let due = match self
            .catalog
            .expired(now_ms, self.cfg.storage.retention_days)
        {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "retention sweep could not query the catalog");
                return 0;
            }
        };
        let n = due.len();
        for r in due {
            self.remove_files(&r);
            let at = rfc3339(Duration::from_millis(now_ms.max(0) as u64));
            self.note(
                "tombstone",
                self.catalog
                    .mark_deleted(r.customer_id.as_deref(), &r.recording_id, &at),
            );
            self.emit(Event::RecordingDeleted {
                recording_id: r.recording_id.clone(),
                call_id: r.call_id.clone(),
                customer_id: r.customer_id.clone(),
                reason: "retention".into(),
            });
        }
        n
    }

    fn remove_files(&self, r: &RecordingRow) {
        if let Some(p) = &r.path {
            let p = std::path::Path::new(p);
            for f in [p.to_path_buf(), p.with_extension("json")] {
                if let Err(e) = std::fs::remove_file(&f)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::error!(file = %f.display(), error = %e, "could not delete recording file");
                }
            }
        }
    }

    /// The catalogued recording `who` means by `id` (see the module
    /// documentation for how an admin's id is resolved).
    pub fn catalogued(&self, who: &Principal, id: &str) -> Result<RecordingRow, EngineError> {
        let internal = |e: crate::catalog::CatalogError| EngineError::Internal(e.to_string());
        resolve(
            who,
            IdKind::Recording,
            id,
            self.catalog.get(who.scope(), id).map_err(internal)?,
            || self.catalog.recordings_with_id(id).map_err(internal),
            |r| r.customer_id.as_deref(),
        )
    }

    /// Live duration of a customer's recording in progress.
    pub fn live_duration_ms(&self, customer: Option<&str>, id: &str) -> Option<u64> {
        let reg = lock(&self.registry);
        reg.recordings
            .get(&scoped_key(customer, id))
            .filter(|r| !r.state.finished())
            .map(|r| r.shared.duration_ms.load(Ordering::Relaxed))
    }

    /// Deletes a finished recording's file and sidecar, keeping a tombstone.
    pub fn delete_recording(&self, who: &Principal, id: &str) -> Result<RecordingRow, EngineError> {
        let row = self.catalogued(who, id)?;
        if matches!(
            row.status.as_str(),
            "recording" | "paused" | "stopped" | "processing"
        ) {
            return Err(EngineError::RecordingBusy(id.into()));
        }
        let customer = row.customer_id.as_deref();
        if row.deleted_at.is_none() {
            self.remove_files(&row);
            self.note(
                "tombstone",
                self.catalog
                    .mark_deleted(customer, id, &rfc3339(unix_now())),
            );
            self.emit(Event::RecordingDeleted {
                recording_id: id.to_owned(),
                call_id: row.call_id.clone(),
                customer_id: customer.map(str::to_owned),
                reason: "api".into(),
            });
        }
        self.catalog
            .get(customer, id)
            .map_err(|e| EngineError::Internal(e.to_string()))?
            .ok_or_else(|| EngineError::RecordingNotFound(id.into()))
    }

    /// The call's latest recording.
    pub fn latest_recording(
        &self,
        who: &Principal,
        call_id: &str,
    ) -> Result<RecordingRow, EngineError> {
        let customer = self.call_visible(who, call_id)?;
        self.catalog
            .latest_for_call(customer.as_deref(), call_id)
            .map_err(|e| EngineError::Internal(e.to_string()))?
            .ok_or_else(|| EngineError::RecordingNotFound(format!("(none yet for call {call_id})")))
    }

    /// The customer of the call `who` means by `call_id` (live or
    /// catalogued), if `who` may see it.
    pub fn call_visible(
        &self,
        who: &Principal,
        call_id: &str,
    ) -> Result<Option<String>, EngineError> {
        let internal = |e: crate::catalog::CatalogError| EngineError::Internal(e.to_string());
        let own = self
            .catalog
            .has_call(who.scope(), call_id)
            .map_err(internal)?
            .then(|| who.tenant());
        resolve(
            who,
            IdKind::Call,
            call_id,
            own,
            || self.catalog.calls_with_id(call_id).map_err(internal),
            |customer| customer.as_deref(),
        )
    }

    // ---- housekeeping ---------------------------------------------------------

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
            self.stop_recording_inner(&key, "max_duration");
        }
        self.forget_ended_calls(now);
        for key in silent {
            tracing::info!(call = %key, "no RTP on any leg for the media timeout; ending the call");
            self.end_call_inner(&key, "media_timeout");
        }
    }

    /// Forgets calls ended longer than `api.ended_calls_kept_s` ago, with
    /// their finished recordings: the registry holds what is live, the
    /// catalog what is done (`GET /v1/recordings`, and
    /// `GET /v1/calls/{id}/recording`, still find them).
    fn forget_ended_calls(&self, now: Duration) {
        let keep = Duration::from_secs(u64::from(self.cfg.api.ended_calls_kept_s));
        let mut reg = lock(&self.registry);
        let Registry { calls, recordings } = &mut *reg;
        calls.retain(|_, c| {
            let forget = c.ended_mono.is_some_and(|t| now.saturating_sub(t) >= keep)
                && c.recordings
                    .iter()
                    .all(|r| recordings.get(r).is_none_or(|r| r.state.finished()));
            if forget {
                for r in &c.recordings {
                    recordings.remove(r);
                }
            }
            !forget
        });
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
            self.end_call_inner(&key, "shutdown");
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

    /// Numbers for `/metrics`.
    pub fn gauges(&self) -> Gauges {
        let reg = lock(&self.registry);
        let mut g = Gauges {
            finalize_ms: lock(&self.finalize_ms).clone(),
            bytes_finalized: self.bytes_finalized.load(Ordering::Relaxed),
            active_calls: reg.calls.values().filter(|c| c.ended_at.is_none()).count(),
            ..Default::default()
        };
        for r in reg.recordings.values() {
            *g.recordings_by_state.entry(r.state.name()).or_default() += 1;
        }
        for c in reg.calls.values() {
            for l in &c.legs {
                let s = l.ports.stats.snapshot();
                g.datagrams += s.datagrams;
                g.queue_drops += s.queue_drops;
                g.foreign_source += s.foreign_source;
                g.truncated += s.truncated;
                g.rtcp += s.rtcp;
            }
            for s in lock(&c.shared.legs).iter() {
                g.lost += s.lost;
                g.late += s.late;
                g.duplicates += s.duplicates;
                g.malformed += s.malformed;
            }
        }
        g
    }
}

/// Totals for the metrics endpoint.
#[derive(Debug, Default)]
pub struct Gauges {
    pub finalize_ms: Histogram,
    pub bytes_finalized: u64,
    pub active_calls: usize,
    pub recordings_by_state: std::collections::BTreeMap<&'static str, usize>,
    pub datagrams: u64,
    pub queue_drops: u64,
    pub foreign_source: u64,
    pub truncated: u64,
    pub rtcp: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicates: u64,
    pub malformed: u64,
}

fn recording_view(r: &Recording) -> RecordingView {
    RecordingView {
        recording_id: r.id.clone(),
        call_id: r.call_id.clone(),
        status: r.state.status(),
        format: r.format,
        sample_rate: r.sample_rate,
        channels: r.channels,
        bitrate_kbps: r.bitrate_kbps,
        participant: r.participant.clone(),
        pause_behavior: r.pause_behavior,
        started_at: r.started_at.clone(),
        stopped_at: r.stopped_at.clone(),
        duration_ms: r.shared.duration_ms.load(Ordering::Relaxed),
        file_size_bytes: r.info.as_ref().map(|i| i.file_size_bytes),
        checksum: r.info.as_ref().map(|i| i.checksum.clone()),
        failure_reason: r.failure.clone(),
    }
}

fn participant_name(p: &ParticipantRequest) -> String {
    match p {
        ParticipantRequest::Named(n) => n.clone(),
        ParticipantRequest::Legs(ids) => ids.join(","),
    }
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

fn reference_name(r: ReferenceType) -> &'static str {
    match r {
        ReferenceType::Call => "call",
        ReferenceType::Conference => "conference",
    }
}

fn channels_name(c: Channels) -> &'static str {
    match c {
        Channels::Mono => "mono",
        Channels::Dual => "dual",
    }
}

/// Free bytes on the filesystem holding `path` (statvfs).
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is a plain C struct, valid when zeroed.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and outlives the call; statvfs writes
    // only into `st`, which we own.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

fn default_leg_id(role: Role, index: usize) -> String {
    match role {
        Role::Caller => "caller".into(),
        Role::Callee => "callee".into(),
        Role::Participant => format!("participant-{}", index + 1),
    }
}

fn check_id(field: &str, id: &str) -> Result<(), EngineError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(EngineError::InvalidRequest(format!(
            "{field}: {id:?} is not a valid id (1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit)"
        )))
    }
}

/// Longest `from`, `to` or leg `label`, in bytes.
pub const MAX_TEXT: usize = 256;
/// Most legs a call (or conference) may have.
pub const MAX_LEGS: usize = 64;
/// Most dynamic payload types one leg may declare.
const MAX_PAYLOAD_TYPES: usize = 32;

/// A free-text field: at most [`MAX_TEXT`] bytes, no control characters.
fn check_text(field: &str, v: &str) -> Result<(), EngineError> {
    if v.len() > MAX_TEXT || v.chars().any(char::is_control) {
        return Err(EngineError::InvalidRequest(format!(
            "{field}: at most {MAX_TEXT} bytes and no control characters"
        )));
    }
    Ok(())
}

fn validate_leg(field: &str, l: &LegRequest, reference: ReferenceType) -> Result<(), EngineError> {
    if let Some(id) = &l.leg_id {
        check_id(&format!("{field}.leg_id"), id)?;
    }
    if let Some(label) = &l.label {
        check_text(&format!("{field}.label"), label)?;
    }
    if l.payload_types.len() > MAX_PAYLOAD_TYPES {
        return Err(EngineError::InvalidRequest(format!(
            "{field}.payload_types: at most {MAX_PAYLOAD_TYPES} entries"
        )));
    }
    if let Some(source) = &l.source {
        crate::io::udp::ExpectedSource::parse(source)
            .map_err(|e| EngineError::InvalidRequest(format!("{field}.source: {e}")))?;
    }
    if reference == ReferenceType::Call && l.role == Role::Participant {
        return Err(EngineError::InvalidRequest(format!(
            "{field}.role: \"participant\" legs belong to conferences (reference_type \"conference\")"
        )));
    }
    Ok(())
}
