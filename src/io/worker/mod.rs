//! Media workers: a fixed pool of OS threads, each owning a shard of the
//! calls. Every tick (60 ms by default) a worker drains each leg's socket
//! (its io_uring or non-blocking `recvmmsg`, kernel receive stamps; see
//! [`LegReader`] and [`LegSocket`]) into
//! the call's [`CallMedia`] (the sans-IO call engine: playout, mixing,
//! encoding, flush cadence) and carries out what it answers: bytes and
//! flushes to the writer pool, outcomes to the engine. A worker never
//! touches a file and never blocks; it decides nothing about the media.
//!
//! Why the worker reads its sockets itself: at 20 ms packet spacing an
//! event-driven reader wakes once per packet (readiness, task wake-up,
//! a ring hand-off to another thread); reading every socket once per tick
//! costs one system call per worker per tick on io_uring (one per leg on
//! `recvmmsg`) and keeps the packet on the core that decodes it. The
//! kernel's socket queue is the buffer in between.
//!
//! Why 60 ms: most of a call's cost per tick is bringing its state into
//! the cache, whatever the packets waiting, so three packets per leg per
//! tick cost little more than one (PERFORMANCE.md, session 13). Packets
//! keep their kernel receive stamps, so the tick moves no audio. The one
//! output paced finer is a notice streaming to a party: while one does,
//! the worker also wakes every 20 ms to send its packets.
//!
//! Commands come over a crossbeam channel; outcomes go back to the engine
//! as [`WorkerReport`]s.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::config::PauseBehavior;
use crate::core::call::{CallMedia, Failure};
use crate::core::encode::EncoderSpec;
use crate::core::leg::{LegConfig, LegStats};
use crate::core::mixer::MixInput;
use crate::core::notice::PACKET_TIME as NOTICE_PACKET_TIME;
use crate::io::clock::MonotonicClock;
use crate::io::receive::{LegReader, ReceivePath};
use crate::io::udp::{DrainTime, LegSocket};
use crate::io::writer::SinkHandle;
use crate::recording::{LegInfo, RecordingInfo};

mod call;

pub use call::ENCODE_NANOS;
use call::{
    CallState, Mix, advance, end_at, publish_stats, send_notices, start_recording, stop_at,
};

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
    /// Recording notices and reminder tones.
    pub notices: Vec<crate::core::call::Notice>,
    pub sink: SinkHandle,
    /// The file's data key, when encrypted (handed to the writer pool).
    pub data_key: Option<crate::encryption::DataKey>,
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
    /// How the workers read their legs' sockets (chosen at start).
    pub receive: ReceivePath,
}

impl WorkerPool {
    /// Starts `threads` workers and returns once each has set up how it
    /// reads its legs (an io_uring ring can take a moment on a busy host),
    /// so that what `/metrics` and the start-up log say of the receive
    /// path holds from the first request.
    pub fn start(
        threads: usize,
        cfg: WorkerConfig,
        clock: MonotonicClock,
        reports: Sender<WorkerReport>,
    ) -> Self {
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
        for i in 0..threads.max(1) {
            let (tx, rx) = crossbeam_channel::unbounded();
            let reports = reports.clone();
            let ready = ready_tx.clone();
            senders.push(tx);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("recengine-worker-{i}"))
                    .spawn(move || supervise(cfg, clock, reports, &rx, ready))
                    .expect("spawn worker thread"),
            );
        }
        drop(ready_tx);
        // Ends early only if a worker thread died before it was ready (the
        // channel closes once every worker has sent or gone).
        for _ in 0..handles.len() {
            if ready_rx.recv().is_err() {
                break;
            }
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
/// a fresh worker on the same thread and channel. Sends on `ready` once
/// the first worker has set up its reader.
fn supervise(
    cfg: WorkerConfig,
    clock: MonotonicClock,
    reports: Sender<WorkerReport>,
    rx: &Receiver<WorkerCmd>,
    ready: Sender<()>,
) {
    let mut ready = Some(ready);
    loop {
        let mut worker = Worker::new(cfg, clock, reports.clone());
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
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
    /// Reads every leg of this worker (its io_uring, or `recvmmsg`).
    reader: LegReader,
}

impl Worker {
    fn new(cfg: WorkerConfig, clock: MonotonicClock, reports: Sender<WorkerReport>) -> Self {
        Self {
            cfg,
            clock,
            reports,
            calls: HashMap::new(),
            reader: LegReader::new(cfg.receive, cfg.tick),
        }
    }

    fn run(&mut self, rx: &Receiver<WorkerCmd>) {
        let mut next_tick = self.clock.now() + self.cfg.tick;
        // While a notice streams to a party, the worker also wakes between
        // ticks to send its packets 20 ms apart, whatever the tick.
        let mut next_notice: Option<Duration> = None;
        loop {
            if self.calls.is_empty() {
                next_notice = None;
                // Nothing to tick: sleep until a command comes, and tick
                // again one interval after it.
                match rx.recv() {
                    Ok(cmd) => {
                        self.command(cmd);
                        next_tick = self.clock.now() + self.cfg.tick;
                        continue;
                    }
                    Err(_) => return,
                }
            }
            let now = self.clock.now();
            let wake = next_notice.map_or(next_tick, |n| n.min(next_tick));
            let ticking = wake == next_tick;
            match rx.recv_timeout(wake.saturating_sub(now)) {
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
            let sending = if ticking {
                let sending = self.tick(now);
                next_tick += self.cfg.tick;
                if next_tick < now {
                    // Fell behind (overload): skip ahead rather than burst.
                    next_tick = now + self.cfg.tick;
                }
                sending
            } else {
                self.send_notices(now)
            };
            next_notice = sending.then(|| now + NOTICE_PACKET_TIME);
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
                        mut socket,
                        config,
                        info,
                    } = *leg;
                    self.reader.attach(&mut socket);
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
        self.reader.reap();
        stop_at(
            c,
            id,
            at,
            &mut || DrainTime::now(&clock),
            &mut self.reader,
            &self.reports,
        );
    }

    /// Plays out, mixes and encodes every call up to `now`; answers whether
    /// a notice is still streaming to a party of one of them.
    fn tick(&mut self, now: Duration) -> bool {
        let clock = self.clock;
        self.reader.reap();
        let mut sending = false;
        let mut calls = self.calls.values_mut().peekable();
        while let Some(c) = calls.next() {
            // The next call's datagrams load while this one plays out.
            if let Some(next) = calls.peek() {
                for socket in &next.sockets {
                    self.reader.prefetch(socket);
                }
            }
            advance(
                c,
                now,
                Mix::EveryStep,
                &mut || DrainTime::now(&clock),
                &mut self.reader,
                &self.reports,
            );
            publish_stats(c, now);
            sending |= c.media.sending_party_notice();
        }
        sending
    }

    /// Between ticks: sends the notice packets due to parties by `now`;
    /// answers whether a notice is still streaming.
    fn send_notices(&mut self, now: Duration) -> bool {
        let mut sending = false;
        for c in self.calls.values_mut() {
            if c.media.sending_party_notice() {
                send_notices(c, c.relative(now));
                sending |= c.media.sending_party_notice();
            }
        }
        sending
    }

    fn end_call(&mut self, call: u64, at: Duration) {
        let Some(mut c) = self.calls.remove(&call) else {
            return;
        };
        let clock = self.clock;
        self.reader.reap();
        end_at(
            &mut c,
            at,
            &mut || DrainTime::now(&clock),
            &mut self.reader,
            &self.reports,
        );
        self.reader.detach_all(&mut c.sockets);
    }
}

#[cfg(test)]
mod tests;
