//! Media workers: a fixed pool of OS threads, each owning a shard of the
//! calls. Every tick (20 ms by default) a worker drains each leg's socket
//! (non-blocking `recvmmsg`, kernel receive stamps; see [`LegSocket`]) into
//! the call's [`CallMedia`] (the sans-IO call engine: playout, mixing,
//! encoding, flush cadence) and carries out what it answers: bytes and
//! flushes to the writer pool, outcomes to the engine. A worker never
//! touches a file and never blocks; it decides nothing about the media.
//!
//! Why the worker reads its sockets itself: at 20 ms packet spacing an
//! event-driven reader wakes once per packet (readiness, task wake-up,
//! a ring hand-off to another thread); polling every socket once per tick
//! costs one system call per leg per tick and keeps the packet on the core
//! that decodes it. The kernel's socket queue is the buffer in between.
//!
//! Commands come over a crossbeam channel; outcomes go back to the engine
//! as [`WorkerReport`]s.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::config::PauseBehavior;
use crate::core::call::{CallMedia, EndAt, Failure, Output, RecordingHandle, RecordingPlan};
use crate::core::encode::EncoderSpec;
use crate::core::leg::{LegConfig, LegStats};
use crate::core::mixer::MixInput;
use crate::io::clock::MonotonicClock;
use crate::io::udp::{DrainTime, LegSocket, RecvBatch};
use crate::io::writer::{SinkHandle, SinkMsg};
use crate::recording::{LegInfo, RecordingInfo};
use crate::timefmt::{rfc3339, unix_now};

/// What a worker shares with the control plane about a call.
#[derive(Debug, Default)]
pub struct CallShared {
    /// Latest per-leg statistics (updated about once a second).
    pub legs: Mutex<Vec<LegStats>>,
    /// Monotonic ns of the latest RTP packet on any leg (0 = none yet).
    pub last_packet_ns: AtomicU64,
}

/// Live progress of a recording.
#[derive(Debug, Default)]
pub struct RecordingShared {
    pub duration_ms: AtomicU64,
}

/// Everything a worker needs to run a recording.
pub struct RecordingSetup {
    pub id: String,
    pub spec: EncoderSpec,
    /// Every selected leg (its index) and its output channel.
    pub inputs: Vec<MixInput>,
    pub pause_behavior: PauseBehavior,
    pub suppress_dtmf: bool,
    /// Call-relative time the recording starts at.
    pub start: Duration,
    pub path: PathBuf,
    pub sidecar: PathBuf,
    pub flush_interval: Duration,
    pub min_duration: Duration,
    pub sink: SinkHandle,
    /// Metadata filled in as the recording ends.
    pub info: Box<RecordingInfo>,
    pub shared: Arc<RecordingShared>,
}

/// A leg joining a call.
pub struct LegSetup {
    pub index: usize,
    pub socket: LegSocket,
    pub config: LegConfig,
    pub info: LegInfo,
}

pub enum WorkerCmd {
    AddCall {
        call: u64,
        /// Monotonic time the call was created: call position 0.
        origin: Duration,
        rate: u32,
        shared: Arc<CallShared>,
    },
    AddLeg {
        call: u64,
        leg: Box<LegSetup>,
    },
    StartRecording {
        call: u64,
        setup: Box<RecordingSetup>,
    },
    Pause {
        call: u64,
        id: String,
        at: Duration,
    },
    Resume {
        call: u64,
        id: String,
        at: Duration,
    },
    Mute {
        call: u64,
        leg: usize,
        muted: bool,
        at: Duration,
    },
    /// Stop at monotonic time `at`; audio up to then is still mixed.
    Stop {
        call: u64,
        id: String,
        at: Duration,
    },
    /// The call is over: drain every leg and finish its recordings now.
    EndCall {
        call: u64,
        at: Duration,
    },
    /// Fail a recording (e.g. the writer reported an error).
    Abort {
        call: u64,
        id: String,
    },
    /// Add a leg to a recording in progress (a conference participant).
    AddInput {
        call: u64,
        id: String,
        leg: usize,
        channel: u16,
    },
    /// Fault injection for tests: panic inside the worker. No API sends it.
    Panic,
}

/// Outcomes a worker reports to the engine.
#[derive(Debug)]
pub enum WorkerReport {
    /// Mixing is done; the file is being finalized by the writer pool.
    Processing { id: String },
    /// The recording could not go on.
    Failed {
        id: String,
        reason: Failure,
        message: String,
    },
    /// Shorter than `min_duration`: the file is being removed.
    Discarded { id: String, duration_ms: u64 },
    /// The worker owning this call panicked; its media state is gone.
    CallLost { call: u64 },
}

/// Where a leg's datagrams come from: its socket, or in tests a capture
/// replayed on a virtual clock (so the worker's own driving of a call can
/// be run against `recengine pcap`'s).
pub(crate) trait LegSource {
    /// See [`LegSocket::receive_batch`].
    fn receive_batch(
        &mut self,
        batch: &mut RecvBatch,
        limit: usize,
        at: DrainTime,
        deliver: impl FnMut(&[u8], Duration),
    ) -> bool;
}

impl LegSource for LegSocket {
    fn receive_batch(
        &mut self,
        batch: &mut RecvBatch,
        limit: usize,
        at: DrainTime,
        deliver: impl FnMut(&[u8], Duration),
    ) -> bool {
        LegSocket::receive_batch(self, batch, limit, at, deliver)
    }
}

/// A recording in progress: its media is in the call's [`CallMedia`],
/// its file and reporting here.
struct RecordingIo {
    handle: RecordingHandle,
    setup: Box<RecordingSetup>,
}

struct CallState<S = LegSocket> {
    origin: Duration,
    media: CallMedia,
    /// Per leg index: its socket and what the sidecar says about it.
    sockets: Vec<S>,
    legs: Vec<LegInfo>,
    recordings: Vec<RecordingIo>,
    shared: Arc<CallShared>,
    last_stats: Duration,
    delay: Duration,
    /// The time the call has been played out to.
    played_to: Duration,
}

impl<S> CallState<S> {
    fn recording(&self, id: &str) -> Option<RecordingHandle> {
        self.recordings
            .iter()
            .find(|r| r.setup.id == id)
            .map(|r| r.handle)
    }

    fn relative(&self, at: Duration) -> Duration {
        at.saturating_sub(self.origin)
    }
}

/// A worker that fell behind (a saturated host, a stopped process) catches
/// up on a call in steps of at most this, mixing after each: a leg's track
/// holds about a second, so it must never get further ahead of the
/// recordings reading it than a step and the mix margin.
const CATCH_UP_STEP: Duration = Duration::from_millis(400);

/// The pool of media workers.
pub struct WorkerPool {
    senders: Vec<Sender<WorkerCmd>>,
    threads: Vec<JoinHandle<()>>,
}

/// How workers tick.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    pub tick: Duration,
    pub playout_delay: Duration,
}

impl WorkerPool {
    pub fn start(
        threads: usize,
        cfg: WorkerConfig,
        clock: MonotonicClock,
        reports: Sender<WorkerReport>,
    ) -> Self {
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (tx, rx) = crossbeam_channel::unbounded();
            let reports = reports.clone();
            senders.push(tx);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("recengine-worker-{i}"))
                    .spawn(move || supervise(cfg, clock, reports, &rx))
                    .expect("spawn worker thread"),
            );
        }
        Self {
            senders,
            threads: handles,
        }
    }

    pub fn len(&self) -> usize {
        self.senders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// The worker a call is sharded to.
    pub fn shard(&self, call: u64) -> usize {
        (call % self.senders.len() as u64) as usize
    }

    pub fn send(&self, call: u64, cmd: WorkerCmd) {
        let _ = self.senders[self.shard(call)].send(cmd);
    }

    /// Stops the workers once they have processed every command sent.
    pub fn shutdown(self) {
        drop(self.senders);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Runs a worker; if it panics, fails the recordings of every call it
/// held (reason `internal`), reports those calls lost, and carries on with
/// a fresh worker on the same thread and channel.
fn supervise(
    cfg: WorkerConfig,
    clock: MonotonicClock,
    reports: Sender<WorkerReport>,
    rx: &Receiver<WorkerCmd>,
) {
    loop {
        let mut worker = Worker::new(cfg, clock, reports.clone());
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run(rx)));
        let Err(panic) = outcome else { return };
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        tracing::error!(panic = %what, calls = worker.calls.len(), "media worker panicked; failing its calls' recordings and replacing it");
        for (call, state) in worker.calls.drain() {
            for r in &state.recordings {
                let _ = reports.send(WorkerReport::Failed {
                    id: r.setup.id.clone(),
                    reason: Failure::Internal,
                    message: format!("media worker failed: {what}"),
                });
            }
            let _ = reports.send(WorkerReport::CallLost { call });
        }
    }
}

struct Worker {
    cfg: WorkerConfig,
    clock: MonotonicClock,
    reports: Sender<WorkerReport>,
    calls: HashMap<u64, CallState>,
    /// Receive buffers shared by every leg of this worker.
    batch: RecvBatch,
}

impl Worker {
    fn new(cfg: WorkerConfig, clock: MonotonicClock, reports: Sender<WorkerReport>) -> Self {
        Self {
            cfg,
            clock,
            reports,
            calls: HashMap::new(),
            batch: RecvBatch::default(),
        }
    }

    fn run(&mut self, rx: &Receiver<WorkerCmd>) {
        let mut next_tick = self.clock.now() + self.cfg.tick;
        loop {
            let now = self.clock.now();
            let wait = next_tick.saturating_sub(now);
            match rx.recv_timeout(wait) {
                Ok(cmd) => {
                    self.command(cmd);
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Shutdown: finish every call still here.
                    let now = self.clock.now();
                    let ids: Vec<u64> = self.calls.keys().copied().collect();
                    for id in ids {
                        self.end_call(id, now);
                    }
                    return;
                }
            }
            let now = self.clock.now();
            self.tick(now);
            next_tick += self.cfg.tick;
            if next_tick < now {
                // Fell behind (overload): skip ahead rather than burst.
                next_tick = now + self.cfg.tick;
            }
        }
    }

    fn command(&mut self, cmd: WorkerCmd) {
        match cmd {
            WorkerCmd::AddCall {
                call,
                origin,
                rate,
                shared,
            } => {
                self.calls.insert(
                    call,
                    CallState {
                        origin,
                        media: CallMedia::new(rate, self.cfg.playout_delay),
                        sockets: Vec::new(),
                        legs: Vec::new(),
                        recordings: Vec::new(),
                        shared,
                        last_stats: Duration::ZERO,
                        delay: self.cfg.playout_delay,
                        played_to: origin,
                    },
                );
            }
            WorkerCmd::AddLeg { call, leg } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    let LegSetup {
                        index,
                        socket,
                        config,
                        info,
                    } = *leg;
                    // Leg indices are dense and arrive in order: the
                    // media's leg index is the engine's.
                    let added = c.media.add_leg(config);
                    debug_assert_eq!(index, added);
                    c.sockets.push(socket);
                    c.legs.push(info);
                }
            }
            WorkerCmd::StartRecording { call, setup } => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                start_recording(c, setup, &self.reports);
            }
            WorkerCmd::Pause { call, id, at } => {
                if let Some(c) = self.calls.get_mut(&call)
                    && let Some(h) = c.recording(&id)
                {
                    let _ = c.media.pause(h, c.relative(at));
                }
            }
            WorkerCmd::Resume { call, id, at } => {
                if let Some(c) = self.calls.get_mut(&call)
                    && let Some(h) = c.recording(&id)
                {
                    let _ = c.media.resume(h, c.relative(at));
                }
            }
            WorkerCmd::Mute {
                call,
                leg,
                muted,
                at,
            } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    let at = c.relative(at);
                    c.media.mute(leg, muted, at);
                }
            }
            WorkerCmd::Stop { call, id, at } => self.stop_recording(call, &id, at),
            WorkerCmd::EndCall { call, at } => self.end_call(call, at),
            WorkerCmd::Panic => panic!("fault injection: worker panic requested"),
            WorkerCmd::AddInput {
                call,
                id,
                leg,
                channel,
            } => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                let joined = c.legs.get(leg).cloned();
                let Some(h) = c.recording(&id) else { return };
                c.media.add_input(
                    h,
                    MixInput {
                        track: leg,
                        channel,
                    },
                );
                // A participant who joined after the start is in the
                // audio, so it is listed with the recording's legs.
                if let Some(r) = c.recordings.iter_mut().find(|r| r.handle == h)
                    && let Some(mut info) = joined
                {
                    match r
                        .setup
                        .info
                        .legs
                        .iter_mut()
                        .find(|l| l.leg_id == info.leg_id)
                    {
                        Some(known) => known.channel = Some(channel),
                        None => {
                            info.channel = Some(channel);
                            r.setup.info.legs.push(info);
                        }
                    }
                }
            }
            WorkerCmd::Abort { call, id } => {
                if let Some(c) = self.calls.get_mut(&call)
                    && let Some(h) = c.recording(&id)
                {
                    c.media.remove(h);
                    c.recordings.retain(|r| r.handle != h);
                }
            }
        }
    }

    fn stop_recording(&mut self, call: u64, id: &str, at: Duration) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let clock = self.clock;
        stop_at(
            c,
            id,
            at,
            &mut || DrainTime::now(&clock),
            &mut self.batch,
            &self.reports,
        );
    }

    fn tick(&mut self, now: Duration) {
        let clock = self.clock;
        for c in self.calls.values_mut() {
            advance(
                c,
                now,
                Mix::EveryStep,
                &mut || DrainTime::now(&clock),
                &mut self.batch,
                &self.reports,
            );
            publish_stats(c, now);
        }
    }

    fn end_call(&mut self, call: u64, at: Duration) {
        let Some(mut c) = self.calls.remove(&call) else {
            return;
        };
        let clock = self.clock;
        end_at(
            &mut c,
            at,
            &mut || DrainTime::now(&clock),
            &mut self.batch,
            &self.reports,
        );
    }
}

/// Finishes a recording at `at` without waiting out the playout
/// delay: the legs play out at once everything that should have reached
/// the engine by `at` (held packets in order, holes concealed); audio
/// still on the network then is left out. The call goes on; its legs
/// simply played those packets early. So a stop costs one mix and one
/// flush, whatever the call's length.
fn stop_at<S: LegSource>(
    c: &mut CallState<S>,
    id: &str,
    at: Duration,
    drain_time: &mut impl FnMut() -> DrainTime,
    batch: &mut RecvBatch,
    reports: &Sender<WorkerReport>,
) {
    if c.recording(id).is_none() {
        return;
    }
    let until = at + c.delay;
    advance(c, until, Mix::AllButLastStep, drain_time, batch, reports);
    // Catching up may have finished it already.
    let Some(h) = c.recording(id) else {
        return;
    };
    let rel = c.relative(at);
    timed(c, |media| media.stop_recording(h, rel));
    carry_out(c, reports);
}

/// The call is over at `at`: every leg is drained and released, every
/// recording finished.
fn end_at<S: LegSource>(
    c: &mut CallState<S>,
    at: Duration,
    drain_time: &mut impl FnMut() -> DrainTime,
    batch: &mut RecvBatch,
    reports: &Sender<WorkerReport>,
) {
    advance(c, at, Mix::AllButLastStep, drain_time, batch, reports);
    drop_failed_sinks(c);
    let rel = c.relative(at);
    timed(c, |media| media.end(EndAt::Time(rel)));
    carry_out(c, reports);
    write_stats(c);
}

/// Which steps of [`advance`] mix the call's recordings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// A tick: mix after every step.
    EveryStep,
    /// A stop or an end: the caller mixes the rest itself as it finishes.
    AllButLastStep,
}

/// Plays the call out up to `until` and mixes its recordings, in steps of
/// at most [`CATCH_UP_STEP`] when the worker fell behind; a worker on time
/// takes one step. Each step drains the sockets with a fresh [`DrainTime`]
/// pair.
fn advance<S: LegSource>(
    c: &mut CallState<S>,
    until: Duration,
    mix: Mix,
    drain_time: &mut impl FnMut() -> DrainTime,
    batch: &mut RecvBatch,
    reports: &Sender<WorkerReport>,
) {
    loop {
        let t = until.min(c.played_to + CATCH_UP_STEP);
        play_out(c, t, drain_time(), batch);
        c.played_to = c.played_to.max(t);
        let last = t >= until;
        if !last || mix == Mix::EveryStep {
            step_recordings(c, t, reports);
        }
        if last {
            return;
        }
    }
}

/// Mixes and encodes each recording of the call up to `now`'s mix point
/// and carries out what that produced.
fn step_recordings<S>(c: &mut CallState<S>, now: Duration, reports: &Sender<WorkerReport>) {
    drop_failed_sinks(c);
    if c.recordings.is_empty() {
        return;
    }
    let rel = c.relative(now);
    timed(c, |media| media.mix(rel));
    carry_out(c, reports);
}

/// Recordings whose file the writer pool gave up on (it has reported the
/// failure) go no further.
fn drop_failed_sinks<S>(c: &mut CallState<S>) {
    let media = &mut c.media;
    c.recordings.retain(|r| {
        let failed = r.setup.sink.has_failed();
        if failed {
            media.remove(r.handle);
        }
        !failed
    });
}

/// CPU time spent mixing and encoding, per format (WAV, MP3, Opus), in ns.
pub static ENCODE_NANOS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

fn format_index(f: crate::config::Format) -> usize {
    match f {
        crate::config::Format::Wav => 0,
        crate::config::Format::Mp3 => 1,
        crate::config::Format::Opus => 2,
    }
}

/// Runs `mix` on the call's media and counts its time against the format
/// of the call's recording (a call records one at a time).
fn timed<S>(c: &mut CallState<S>, mix: impl FnOnce(&mut CallMedia)) {
    let format = c
        .recordings
        .first()
        .map(|r| format_index(r.setup.spec.format));
    let started = std::time::Instant::now();
    mix(&mut c.media);
    if let Some(f) = format {
        ENCODE_NANOS[f].fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Receives what each leg's socket holds (what arrived by `now`) and plays
/// the legs out into their tracks up to `now`.
fn play_out<S: LegSource>(
    c: &mut CallState<S>,
    now: Duration,
    drained: DrainTime,
    batch: &mut RecvBatch,
) {
    c.media.begin_step();
    let mut latest = 0u64;
    let origin = c.origin;
    let now_rel = now.saturating_sub(origin);
    for (i, socket) in c.sockets.iter_mut().enumerate() {
        // A batch at a time, playing out in between: a worker that fell
        // behind (a saturated host, a stopped process) finds seconds of
        // packets queued, more than the jitter buffer holds. Each batch
        // fits what the buffer can take, and plays out to the arrival of
        // its last packet (what a worker on time would have played by
        // then; the rest of the backlog arrived later), the last one to
        // `now`.
        loop {
            let media = &mut c.media;
            let room = media.room(i);
            let mut last_arrival = None;
            let more = socket.receive_batch(batch, room, drained, |datagram, arrival| {
                // Times are call-relative inside the media core.
                let at = arrival.saturating_sub(origin);
                let _ = media.push(i, datagram, at);
                last_arrival = Some(at);
                latest = latest.max(arrival.as_nanos() as u64);
            });
            // More queued that arrived before `now`: the worker is behind.
            // (A batch of datagrams the latch refused says nothing about
            // what follows it, so it counts as behind too.)
            let behind = more && last_arrival.is_none_or(|at| at < now_rel);
            let play_to = match last_arrival {
                Some(at) if behind => at,
                _ => now_rel,
            };
            media.play_out(i, play_to);
            // What arrived after `now` waits for the next step.
            if !behind {
                break;
            }
        }
    }
    if latest > 0 {
        c.shared.last_packet_ns.fetch_max(latest, Ordering::Relaxed);
    }
}

fn start_recording<S>(
    c: &mut CallState<S>,
    setup: Box<RecordingSetup>,
    reports: &Sender<WorkerReport>,
) {
    let plan = RecordingPlan {
        spec: setup.spec,
        inputs: setup.inputs.clone(),
        pause_behavior: setup.pause_behavior,
        suppress_dtmf: setup.suppress_dtmf,
        start: setup.start,
        flush_interval: setup.flush_interval,
        min_duration: setup.min_duration,
    };
    let handle = match c.media.start_recording(plan) {
        Ok(h) => h,
        Err(e) => {
            let _ = reports.send(WorkerReport::Failed {
                id: setup.id.clone(),
                reason: Failure::Encoder,
                message: e.to_string(),
            });
            return;
        }
    };
    if let Err(e) = setup.sink.send(SinkMsg::Create {
        path: setup.path.clone(),
        flush_interval: setup.flush_interval,
    }) {
        c.media.remove(handle);
        let _ = reports.send(WorkerReport::Failed {
            id: setup.id.clone(),
            reason: Failure::Storage,
            message: e.to_string(),
        });
        return;
    }
    c.recordings.push(RecordingIo { handle, setup });
}

/// Carries out what the call's media produced: bytes and flushes to the
/// writer pool, outcomes to the engine.
fn carry_out<S>(c: &mut CallState<S>, reports: &Sender<WorkerReport>) {
    while let Some(output) = c.media.poll_output() {
        let handle = output.recording();
        let Some(i) = c.recordings.iter().position(|r| r.handle == handle) else {
            continue;
        };
        let sink = c.recordings[i].setup.sink.clone();
        let sent = match output {
            Output::Bytes { bytes, .. } => sink.send(SinkMsg::Bytes(bytes)),
            Output::Flush { header, .. } => sink.send(SinkMsg::Flush { header }),
            Output::Finished { summary, .. } => {
                let rec = c.recordings.remove(i);
                finish_recording(rec, summary, c, reports);
                continue;
            }
            Output::Discarded { duration_ms, .. } => {
                let rec = c.recordings.remove(i);
                rec.setup
                    .shared
                    .duration_ms
                    .store(duration_ms, Ordering::Relaxed);
                let _ = sink.send(SinkMsg::Discard);
                let _ = reports.send(WorkerReport::Discarded {
                    id: rec.setup.id.clone(),
                    duration_ms,
                });
                continue;
            }
            Output::Failed {
                failure, message, ..
            } => {
                let rec = c.recordings.remove(i);
                fail(&rec.setup.id, failure, message, reports);
                continue;
            }
        };
        if let Err(e) = sent {
            let rec = c.recordings.remove(i);
            c.media.remove(handle);
            fail(&rec.setup.id, Failure::Storage, e.to_string(), reports);
        }
    }
    for r in &c.recordings {
        if let Some(ms) = c.media.duration_ms(r.handle) {
            r.setup.shared.duration_ms.store(ms, Ordering::Relaxed);
        }
    }
}

fn fail(id: &str, failure: Failure, message: String, reports: &Sender<WorkerReport>) {
    tracing::error!(recording = %id, reason = failure.reason(), %message, "recording failed");
    let _ = reports.send(WorkerReport::Failed {
        id: id.to_owned(),
        reason: failure,
        message,
    });
}

/// Hands the finished file to the writer pool to finalize, with its
/// sidecar.
fn finish_recording<S>(
    rec: RecordingIo,
    summary: crate::core::call::Finished,
    c: &CallState<S>,
    reports: &Sender<WorkerReport>,
) {
    if rec.setup.sink.has_failed() {
        return;
    }
    rec.setup
        .shared
        .duration_ms
        .store(summary.duration_ms, Ordering::Relaxed);
    let RecordingSetup {
        id,
        sink,
        sidecar,
        info,
        ..
    } = *rec.setup;
    let mut info = info;
    info.duration_ms = summary.duration_ms;
    info.stopped_at = rfc3339(unix_now());
    info.pauses = summary.pauses;
    for leg in &mut info.legs {
        let index = c.legs.iter().position(|l| l.leg_id == leg.leg_id);
        if let Some(receiver) = index.and_then(|i| c.media.leg(i)) {
            leg.stats = receiver.stats();
            leg.dtmf = receiver.dtmf().to_vec();
            leg.codecs = receiver.codecs_used();
        }
    }
    let sent = sink.send(SinkMsg::Finalize {
        header: summary.header,
        sidecar,
        info,
    });
    match sent {
        Ok(()) => {
            let _ = reports.send(WorkerReport::Processing { id });
        }
        Err(e) => fail(&id, Failure::Storage, e.to_string(), reports),
    }
}

/// Copies leg statistics to the shared view about once a second.
fn publish_stats<S>(c: &mut CallState<S>, now: Duration) {
    if now.saturating_sub(c.last_stats) < Duration::from_secs(1) && c.last_stats != Duration::ZERO {
        return;
    }
    c.last_stats = now;
    write_stats(c);
}

fn write_stats<S>(c: &CallState<S>) {
    let stats: Vec<LegStats> = (0..c.media.leg_count())
        .filter_map(|i| c.media.leg(i).map(|l| l.stats()))
        .collect();
    *c.shared.legs.lock().unwrap_or_else(|e| e.into_inner()) = stats;
}

#[cfg(test)]
mod tests;
