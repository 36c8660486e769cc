//! One call as a worker drives it: its legs' sources drained into its
//! [`CallMedia`] at each tick (in catch-up steps when the worker fell
//! behind), stops and ends played out at once, and every [`Output`]
//! carried out: bytes and flushes to the writer, outcomes to the engine,
//! stats to the control plane.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::core::call::{CallMedia, EndAt, Failure, Output, RecordingHandle, RecordingPlan};
use crate::core::leg::LegStats;
use crate::io::receive::LegReader;
use crate::io::udp::{DrainTime, LegSocket};
use crate::io::writer::SinkMsg;
use crate::recording::LegInfo;
use crate::timefmt::{rfc3339, unix_now};

use super::*;

/// Where a leg's datagrams come from: its socket, or in tests a capture
/// replayed on a virtual clock (so the worker's own driving of a call can
/// be run against `recengine pcap`'s).
pub(crate) trait LegSource {
    /// See [`LegSocket::receive_batch`].
    fn receive_batch(
        &mut self,
        reader: &mut LegReader,
        limit: usize,
        at: DrainTime,
        deliver: impl FnMut(&[u8], Duration),
    ) -> bool;

    /// See [`LegSocket::send_to_source`].
    fn send_to_source(&self, datagram: &[u8]) -> bool;
}

impl LegSource for LegSocket {
    fn receive_batch(
        &mut self,
        reader: &mut LegReader,
        limit: usize,
        at: DrainTime,
        deliver: impl FnMut(&[u8], Duration),
    ) -> bool {
        LegSocket::receive_batch(self, reader, limit, at, deliver)
    }

    fn send_to_source(&self, datagram: &[u8]) -> bool {
        LegSocket::send_to_source(self, datagram)
    }
}

/// A recording in progress: its media is in the call's [`CallMedia`],
/// its file and reporting here.
pub(super) struct RecordingIo {
    pub(super) handle: RecordingHandle,
    pub(super) setup: Box<RecordingSetup>,
}

pub(super) struct CallState<S = LegSocket> {
    pub(super) origin: Duration,
    pub(super) media: CallMedia,
    /// Per leg index: its socket and what the sidecar says about it.
    pub(super) sockets: Vec<S>,
    pub(super) legs: Vec<LegInfo>,
    pub(super) recordings: Vec<RecordingIo>,
    pub(super) shared: Arc<CallShared>,
    pub(super) last_stats: Duration,
    pub(super) delay: Duration,
    /// The time the call has been played out to.
    pub(super) played_to: Duration,
}

impl<S> CallState<S> {
    pub(super) fn recording(&self, id: &str) -> Option<RecordingHandle> {
        self.recordings
            .iter()
            .find(|r| r.setup.id == id)
            .map(|r| r.handle)
    }

    pub(super) fn relative(&self, at: Duration) -> Duration {
        at.saturating_sub(self.origin)
    }
}

/// A worker that fell behind (a saturated host, a stopped process) catches
/// up on a call in steps of at most this, mixing after each: a leg's track
/// holds about a second, so it must never get further ahead of the
/// recordings reading it than a step and the mix margin.
pub(super) const CATCH_UP_STEP: Duration = Duration::from_millis(400);

/// Finishes a recording at `at` without waiting out the playout
/// delay: the legs play out at once everything that should have reached
/// the engine by `at` (held packets in order, holes concealed); audio
/// still on the network then is left out. The call goes on; its legs
/// simply played those packets early. So a stop costs one mix and one
/// flush, whatever the call's length.
pub(super) fn stop_at<S: LegSource>(
    c: &mut CallState<S>,
    id: &str,
    at: Duration,
    drain_time: &mut impl FnMut() -> DrainTime,
    reader: &mut LegReader,
    reports: &Sender<WorkerReport>,
) {
    if c.recording(id).is_none() {
        return;
    }
    let until = at + c.delay;
    advance(c, until, Mix::AllButLastStep, drain_time, reader, reports);
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
pub(super) fn end_at<S: LegSource>(
    c: &mut CallState<S>,
    at: Duration,
    drain_time: &mut impl FnMut() -> DrainTime,
    reader: &mut LegReader,
    reports: &Sender<WorkerReport>,
) {
    advance(c, at, Mix::AllButLastStep, drain_time, reader, reports);
    let rel = c.relative(at);
    timed(c, |media| media.end(EndAt::Time(rel)));
    carry_out(c, reports);
    write_stats(c);
}

/// Which steps of [`advance`] mix the call's recordings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mix {
    /// A tick: mix after every step.
    EveryStep,
    /// A stop or an end: the caller mixes the rest itself as it finishes.
    AllButLastStep,
}

/// Plays the call out up to `until` and mixes its recordings, in steps of
/// at most [`CATCH_UP_STEP`] when the worker fell behind; a worker on time
/// takes one step. Each step drains the sockets with a fresh [`DrainTime`]
/// pair.
pub(super) fn advance<S: LegSource>(
    c: &mut CallState<S>,
    until: Duration,
    mix: Mix,
    drain_time: &mut impl FnMut() -> DrainTime,
    reader: &mut LegReader,
    reports: &Sender<WorkerReport>,
) {
    loop {
        let t = until.min(c.played_to + CATCH_UP_STEP);
        play_out(c, t, drain_time(), reader);
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
pub(super) fn step_recordings<S: LegSource>(
    c: &mut CallState<S>,
    now: Duration,
    reports: &Sender<WorkerReport>,
) {
    if c.recordings.is_empty() {
        return;
    }
    let rel = c.relative(now);
    timed(c, |media| media.mix(rel));
    carry_out(c, reports);
    send_notices(c, rel);
}

/// Sends the recording-notice packets due to the parties, each from its
/// leg's port to the leg's source.
pub(super) fn send_notices<S: LegSource>(c: &mut CallState<S>, now_rel: Duration) {
    let mut packets = Vec::new();
    c.media.party_packets(now_rel, &mut packets);
    for (leg, packet) in packets {
        if let Some(socket) = c.sockets.get(leg) {
            socket.send_to_source(&packet);
        }
    }
}

/// CPU time spent mixing and encoding, per format (WAV, MP3, Opus), in ns.
pub static ENCODE_NANOS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

pub(super) fn format_index(f: crate::config::Format) -> usize {
    match f {
        crate::config::Format::Wav => 0,
        crate::config::Format::Mp3 => 1,
        crate::config::Format::Opus => 2,
    }
}

/// Runs `mix` on the call's media and counts its time against the format
/// of the call's recording (a call records one at a time).
pub(super) fn timed<S>(c: &mut CallState<S>, mix: impl FnOnce(&mut CallMedia)) {
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
pub(super) fn play_out<S: LegSource>(
    c: &mut CallState<S>,
    now: Duration,
    drained: DrainTime,
    reader: &mut LegReader,
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
            let more = socket.receive_batch(reader, room, drained, |datagram, arrival| {
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

pub(super) fn start_recording<S>(
    c: &mut CallState<S>,
    mut setup: Box<RecordingSetup>,
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
        notices: setup.notices.clone(),
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
        key: setup.data_key.take(),
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
pub(super) fn carry_out<S>(c: &mut CallState<S>, reports: &Sender<WorkerReport>) {
    while let Some(output) = c.media.poll_output() {
        let handle = output.recording();
        let Some(i) = c.recordings.iter().position(|r| r.handle == handle) else {
            continue;
        };
        let sink = c.recordings[i].setup.sink.clone();
        if sink.has_failed() {
            // The writer pool gave up on its file and has reported it; the
            // engine's abort is on its way, and the recording goes no
            // further. Checked here, the one place, where a recording has
            // something for its file (once per flush interval, and its
            // last output as it stops or its call ends), rather than on
            // every tick.
            c.recordings.remove(i);
            c.media.remove(handle);
            continue;
        }
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
                if failure == Failure::NoMedia {
                    // A file of silence says nothing; a partial file of a
                    // failed encoder or disk keeps what was recorded.
                    let _ = sink.send(SinkMsg::Discard);
                }
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

pub(super) fn fail(id: &str, failure: Failure, message: String, reports: &Sender<WorkerReport>) {
    if failure == Failure::NoMedia {
        tracing::warn!(recording = %id, reason = failure.reason(), %message, "recording failed");
    } else {
        tracing::error!(recording = %id, reason = failure.reason(), %message, "recording failed");
    }
    let _ = reports.send(WorkerReport::Failed {
        id: id.to_owned(),
        reason: failure,
        message,
    });
}

/// Hands the finished file to the writer pool to finalize, with its
/// sidecar.
pub(super) fn finish_recording<S>(
    rec: RecordingIo,
    summary: crate::core::call::Finished,
    c: &CallState<S>,
    reports: &Sender<WorkerReport>,
) {
    // A failed file never gets here: carry_out dropped its recording.
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
pub(super) fn publish_stats<S>(c: &mut CallState<S>, now: Duration) {
    if now.saturating_sub(c.last_stats) < Duration::from_secs(1) && c.last_stats != Duration::ZERO {
        return;
    }
    c.last_stats = now;
    write_stats(c);
}

pub(super) fn write_stats<S>(c: &CallState<S>) {
    let stats: Vec<LegStats> = (0..c.media.leg_count())
        .filter_map(|i| c.media.leg(i).map(|l| l.stats()))
        .collect();
    *c.shared.legs.lock().unwrap_or_else(|e| e.into_inner()) = stats;
}
