//! Media workers: a fixed pool of OS threads, each owning a shard of the
//! calls. Every tick (20 ms by default) a worker drains each leg's socket
//! (non-blocking `recvmmsg`, kernel receive stamps; see [`LegSocket`]) into
//! its [`LegReceiver`], plays the legs out into their tracks, and mixes and
//! encodes every active recording, handing the bytes to the writer pool. A
//! worker never touches a file and never blocks.
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
use crate::core::encode::EncoderSpec;
use crate::core::leg::{LegConfig, LegReceiver, LegStats, share_drift_reference};
use crate::core::mixer::{DEFAULT_MARGIN, MixInput, Mixer};
use crate::core::recorder::Recorder;
use crate::core::time::nanos_to_ticks;
use crate::core::track::Track;
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
    /// (leg index, output channel) of every selected leg.
    pub inputs: Vec<(usize, u16)>,
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
        reason: &'static str,
        message: String,
    },
    /// Shorter than `min_duration`: the file is being removed.
    Discarded { id: String, duration_ms: u64 },
    /// The worker owning this call panicked; its media state is gone.
    CallLost { call: u64 },
}

struct LegSlot {
    leg: LegReceiver,
    socket: LegSocket,
    /// Leg origin in call ticks, once it has one.
    offset: Option<i64>,
    info: LegInfo,
}

struct ActiveRecording {
    setup: Box<RecordingSetup>,
    recorder: Recorder,
    last_flush: Duration,
    /// Per input, DTMF records already given to the mixer.
    dtmf_applied: HashMap<usize, usize>,
    /// Encoded bytes not yet handed to the writer pool: sent at each flush
    /// or when [`SEND_THRESHOLD`] is reached, so the pool gets about one
    /// message per recording per flush interval instead of one per tick.
    /// The file only reaches the OS at a flush anyway, so what a crash can
    /// lose does not change.
    unsent: Vec<u8>,
}

/// Encoded bytes gathered per recording before they go to the writer pool.
const SEND_THRESHOLD: usize = 32 * 1024;

struct CallState {
    origin: Duration,
    rate: u32,
    legs: Vec<LegSlot>,
    tracks: Vec<Track>,
    recordings: Vec<ActiveRecording>,
    shared: Arc<CallShared>,
    last_stats: Duration,
    delay: Duration,
    /// The time the call has been played out to.
    played_to: Duration,
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
                    reason: "internal",
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
                        rate,
                        legs: Vec::new(),
                        tracks: Vec::new(),
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
                    // Leg indices are dense and arrive in order: the track
                    // index is the leg index the mixer inputs refer to.
                    debug_assert_eq!(index, c.legs.len());
                    c.tracks.push(Track::new(c.rate as usize));
                    c.legs.push(LegSlot {
                        leg: LegReceiver::new(config),
                        socket,
                        offset: None,
                        info,
                    });
                }
            }
            WorkerCmd::StartRecording { call, setup } => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                start_recording(c, setup, &self.reports);
            }
            WorkerCmd::Pause { call, id, at } => {
                if let Some(r) = self.recording(call, &id) {
                    let origin = r.0;
                    let _ = r.1.recorder.mixer_mut().pause(at.saturating_sub(origin));
                }
            }
            WorkerCmd::Resume { call, id, at } => {
                if let Some(r) = self.recording(call, &id) {
                    let origin = r.0;
                    let _ = r.1.recorder.mixer_mut().resume(at.saturating_sub(origin));
                }
            }
            WorkerCmd::Mute {
                call,
                leg,
                muted,
                at,
            } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    let rel = at.saturating_sub(c.origin);
                    for r in &mut c.recordings {
                        let _ = r.recorder.mixer_mut().set_muted(leg, muted, rel);
                    }
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
                let joined = c.legs.get(leg).map(|slot| slot.info.clone());
                if let Some(r) = c.recordings.iter_mut().find(|r| r.setup.id == id) {
                    r.recorder.mixer_mut().add_input(MixInput {
                        track: leg,
                        channel,
                    });
                    r.setup.inputs.push((leg, channel));
                    // A participant who joined after the start is in the
                    // audio, so it is listed with the recording's legs.
                    if let Some(mut info) = joined {
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
            }
            WorkerCmd::Abort { call, id } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.recordings.retain(|r| r.setup.id != id);
                }
            }
        }
    }

    fn recording(&mut self, call: u64, id: &str) -> Option<(Duration, &mut ActiveRecording)> {
        let c = self.calls.get_mut(&call)?;
        let origin = c.origin;
        c.recordings
            .iter_mut()
            .find(|r| r.setup.id == id)
            .map(|r| (origin, r))
    }

    /// Finishes a recording at `at` without waiting out the playout
    /// delay: the legs play out at once everything that should have reached
    /// the engine by `at` (held packets in order, holes concealed); audio
    /// still on the network then is left out. The call goes on; its legs
    /// simply played those packets early. So a stop costs one mix and one
    /// flush, whatever the call's length.
    fn stop_recording(&mut self, call: u64, id: &str, at: Duration) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if !c.recordings.iter().any(|r| r.setup.id == id) {
            return;
        }
        advance(
            c,
            at + c.delay,
            Mix::AllButLastStep,
            &self.clock,
            &mut self.batch,
            &self.reports,
        );
        // Catching up may have finished it already.
        let Some(i) = c.recordings.iter().position(|r| r.setup.id == id) else {
            return;
        };
        let rec = c.recordings.remove(i);
        finish_at(rec, c, at, &self.reports);
    }

    fn tick(&mut self, now: Duration) {
        for c in self.calls.values_mut() {
            advance(
                c,
                now,
                Mix::EveryStep,
                &self.clock,
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
        advance(
            &mut c,
            at,
            Mix::AllButLastStep,
            &self.clock,
            &mut self.batch,
            &self.reports,
        );
        for slot in c.legs.iter_mut().enumerate() {
            let (i, l) = slot;
            let offset = l.offset.unwrap_or(0);
            l.leg.finish(&mut c.tracks[i].sink(offset));
        }
        for rec in std::mem::take(&mut c.recordings) {
            finish_at(rec, &c, at, &self.reports);
        }
        write_stats(&c);
    }
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
fn advance(
    c: &mut CallState,
    until: Duration,
    mix: Mix,
    clock: &MonotonicClock,
    batch: &mut RecvBatch,
    reports: &Sender<WorkerReport>,
) {
    loop {
        let t = until.min(c.played_to + CATCH_UP_STEP);
        play_out(c, t, DrainTime::now(clock), batch);
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

/// Mixes and encodes each recording of the call up to `now`'s mix point;
/// finishes those that are done.
fn step_recordings(c: &mut CallState, now: Duration, reports: &Sender<WorkerReport>) {
    let mix_point = now.saturating_sub(c.origin + c.delay + DEFAULT_MARGIN);
    let mut i = 0;
    while i < c.recordings.len() {
        let done = {
            let (legs, tracks, rec) = (&c.legs, &c.tracks, &mut c.recordings[i]);
            step_recording(rec, legs, tracks, mix_point, now, reports)
        };
        if done {
            let rec = c.recordings.remove(i);
            finish_recording(rec, &c.legs, reports);
        } else {
            i += 1;
        }
    }
}

/// Receives what each leg's socket holds (what arrived by `now`) and plays
/// the legs out into their tracks up to `now`.
fn play_out(c: &mut CallState, now: Duration, drained: DrainTime, batch: &mut RecvBatch) {
    share_drift_reference(&mut c.legs, |slot| &mut slot.leg);
    let mut latest = 0u64;
    let now_rel = now.saturating_sub(c.origin);
    for (i, slot) in c.legs.iter_mut().enumerate() {
        // A batch at a time, playing out in between: a worker that fell
        // behind (a saturated host, a stopped process) finds seconds of
        // packets queued, more than the jitter buffer holds. Each batch
        // fits what the buffer can take, and plays out to the arrival of
        // its last packet (what a worker on time would have played by
        // then; the rest of the backlog arrived later), the last one to
        // `now`.
        loop {
            let (leg, origin) = (&mut slot.leg, c.origin);
            let mut last_arrival = None;
            let more =
                slot.socket
                    .receive_batch(batch, leg.room(), drained, |datagram, arrival| {
                        // Times are call-relative inside the media core.
                        let at = arrival.saturating_sub(origin);
                        let _ = leg.push(datagram, at);
                        last_arrival = Some(at);
                        latest = latest.max(arrival.as_nanos() as u64);
                    });
            // The leg's anchor settles until its first audio is written.
            if c.tracks[i].first_call_pos().is_none()
                && let Some(origin) = slot.leg.origin()
            {
                slot.offset = Some(nanos_to_ticks(origin.as_nanos() as i128, c.rate));
            }
            // More queued that arrived before `now`: the worker is behind.
            // (A batch of datagrams the latch refused says nothing about
            // what follows it, so it counts as behind too.)
            let behind = more && last_arrival.is_none_or(|at| at < now_rel);
            let play_to = match last_arrival {
                Some(at) if behind => at,
                _ => now_rel,
            };
            if let Some(offset) = slot.offset {
                slot.leg.pull(play_to, &mut c.tracks[i].sink(offset));
            }
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

fn start_recording(c: &mut CallState, setup: Box<RecordingSetup>, reports: &Sender<WorkerReport>) {
    let inputs: Vec<MixInput> = setup
        .inputs
        .iter()
        .map(|&(track, channel)| MixInput { track, channel })
        .collect();
    let mixer = Mixer::new(
        c.rate,
        setup.spec.channels,
        &inputs,
        setup.pause_behavior,
        setup.start,
    );
    let recorder = match Recorder::new(mixer, setup.spec) {
        Ok(r) => r,
        Err(e) => {
            let _ = reports.send(WorkerReport::Failed {
                id: setup.id.clone(),
                reason: "encoder_error",
                message: e.to_string(),
            });
            return;
        }
    };
    if let Err(e) = setup.sink.send(SinkMsg::Create {
        path: setup.path.clone(),
        flush_interval: setup.flush_interval,
    }) {
        let _ = reports.send(WorkerReport::Failed {
            id: setup.id.clone(),
            reason: "storage_error",
            message: e.to_string(),
        });
        return;
    }
    c.recordings.push(ActiveRecording {
        last_flush: setup.start,
        setup,
        recorder,
        dtmf_applied: HashMap::new(),
        unsent: Vec::new(),
    });
}

/// Tells a recording's mixer where DTMF happened, if it suppresses DTMF.
fn apply_dtmf(rec: &mut ActiveRecording, legs: &[LegSlot]) {
    if !rec.setup.suppress_dtmf {
        return;
    }
    for &(leg, _) in &rec.setup.inputs {
        let Some(slot) = legs.get(leg) else { continue };
        let Some(offset) = slot.offset else { continue };
        let applied = rec.dtmf_applied.entry(leg).or_insert(0);
        rec.recorder.mixer_mut().suppress_dtmf(
            leg,
            offset,
            slot.leg.dtmf(),
            slot.leg.dtmf_in_progress(),
            applied,
        );
    }
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

/// Why mixing a recording failed: the `recording.failed` reason and a
/// message.
type MixFailure = (&'static str, String);

fn storage_error(e: impl std::fmt::Display) -> MixFailure {
    ("storage_error", e.to_string())
}

/// Mixes and hands the bytes to the sink; flushes on schedule.
fn write_mixed(
    rec: &mut ActiveRecording,
    tracks: &[Track],
    upto: i64,
    now: Duration,
) -> Result<(), MixFailure> {
    let started = std::time::Instant::now();
    let format = format_index(rec.setup.spec.format);
    let bytes = rec
        .recorder
        .mix_to(tracks, upto)
        .map_err(|e| ("encoder_error", e.to_string()))?;
    ENCODE_NANOS[format].fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    rec.unsent.extend_from_slice(bytes);
    if rec.unsent.len() >= SEND_THRESHOLD {
        send_unsent(rec)?;
    }
    rec.setup
        .shared
        .duration_ms
        .store(rec.recorder.duration_ms(), Ordering::Relaxed);
    if now.saturating_sub(rec.last_flush) >= rec.setup.flush_interval {
        rec.last_flush = now;
        let held = rec.recorder.flush();
        rec.unsent.extend_from_slice(held);
        send_unsent(rec)?;
        let header = rec.recorder.header();
        rec.setup
            .sink
            .send(SinkMsg::Flush { header })
            .map_err(storage_error)?;
    }
    Ok(())
}

/// Hands the gathered bytes to the writer pool.
fn send_unsent(rec: &mut ActiveRecording) -> Result<(), MixFailure> {
    if rec.unsent.is_empty() {
        return Ok(());
    }
    // The next batch is likely the same size: one allocation per batch.
    let capacity = rec.unsent.len().min(SEND_THRESHOLD);
    let bytes = std::mem::replace(&mut rec.unsent, Vec::with_capacity(capacity));
    rec.setup
        .sink
        .send(SinkMsg::Bytes(bytes))
        .map_err(storage_error)
}

/// One tick of a recording: mixes up to `mix_point`. True when it has
/// failed (the failure is reported) and is done. Stops are handled at
/// once by `Worker::stop_recording`, not here.
fn step_recording(
    rec: &mut ActiveRecording,
    legs: &[LegSlot],
    tracks: &[Track],
    mix_point: Duration,
    now: Duration,
    reports: &Sender<WorkerReport>,
) -> bool {
    if rec.setup.sink.has_failed() {
        return true; // the writer pool has reported the failure
    }
    apply_dtmf(rec, legs);
    let upto = rec.recorder.mixer().position_at(mix_point);
    if let Err((reason, message)) = write_mixed(rec, tracks, upto, now) {
        fail(rec, reason, message, reports);
        return true;
    }
    false
}

/// Mixes a recording up to monotonic time `at` (a stop or the call's end)
/// and hands it to the writer pool to finalize. Shared by stops and call
/// ends, so both report failures the same way.
fn finish_at(
    mut rec: ActiveRecording,
    c: &CallState,
    at: Duration,
    reports: &Sender<WorkerReport>,
) {
    apply_dtmf(&mut rec, &c.legs);
    let upto = rec
        .recorder
        .mixer()
        .position_at(at.saturating_sub(c.origin));
    if let Err((reason, message)) = write_mixed(&mut rec, &c.tracks, upto, at) {
        fail(&rec, reason, message, reports);
        return;
    }
    finish_recording(rec, &c.legs, reports);
}

fn fail(
    rec: &ActiveRecording,
    reason: &'static str,
    message: String,
    reports: &Sender<WorkerReport>,
) {
    tracing::error!(recording = %rec.setup.id, reason, %message, "recording failed");
    let _ = reports.send(WorkerReport::Failed {
        id: rec.setup.id.clone(),
        reason,
        message,
    });
}

/// Ends the encoding and hands the file to the writer pool to finalize.
fn finish_recording(mut rec: ActiveRecording, legs: &[LegSlot], reports: &Sender<WorkerReport>) {
    if rec.setup.sink.has_failed() {
        return;
    }
    let tail = match rec.recorder.finish() {
        Ok(t) => {
            let mut all = std::mem::take(&mut rec.unsent);
            all.extend_from_slice(t);
            all
        }
        Err(e) => {
            fail(&rec, "encoder_error", e.to_string(), reports);
            return;
        }
    };
    let duration_ms = rec.recorder.duration_ms();
    rec.setup
        .shared
        .duration_ms
        .store(duration_ms, Ordering::Relaxed);
    if Duration::from_millis(duration_ms) < rec.setup.min_duration {
        let _ = rec.setup.sink.send(SinkMsg::Discard);
        let _ = reports.send(WorkerReport::Discarded {
            id: rec.setup.id.clone(),
            duration_ms,
        });
        return;
    }
    let mut info = rec.setup.info;
    info.duration_ms = duration_ms;
    info.stopped_at = rfc3339(unix_now());
    info.pauses = rec.recorder.mixer().pauses();
    for leg in &mut info.legs {
        if let Some(slot) = legs.iter().find(|l| l.info.leg_id == leg.leg_id) {
            leg.stats = slot.leg.stats();
            leg.dtmf = slot.leg.dtmf().to_vec();
            leg.codecs = slot.leg.codecs_used();
        }
    }
    let sink = rec.setup.sink.clone();
    let header = rec.recorder.header();
    let sent = if tail.is_empty() {
        Ok(())
    } else {
        sink.send(SinkMsg::Bytes(tail))
    }
    .and_then(|()| {
        sink.send(SinkMsg::Finalize {
            header,
            sidecar: rec.setup.sidecar.clone(),
            info,
        })
    });
    match sent {
        Ok(()) => {
            let _ = reports.send(WorkerReport::Processing {
                id: rec.setup.id.clone(),
            });
        }
        Err(e) => {
            let _ = reports.send(WorkerReport::Failed {
                id: rec.setup.id.clone(),
                reason: "storage_error",
                message: e.to_string(),
            });
        }
    }
}

/// Copies leg statistics to the shared view about once a second.
fn publish_stats(c: &mut CallState, now: Duration) {
    if now.saturating_sub(c.last_stats) < Duration::from_secs(1) && c.last_stats != Duration::ZERO {
        return;
    }
    c.last_stats = now;
    write_stats(c);
}

fn write_stats(c: &CallState) {
    let stats: Vec<LegStats> = c.legs.iter().map(|l| l.leg.stats()).collect();
    *c.shared.legs.lock().unwrap_or_else(|e| e.into_inner()) = stats;
}
