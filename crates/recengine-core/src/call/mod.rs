//! One call's media, sans IO: its legs (jitter buffer, decode, drift,
//! playout into a track on the call timeline) and its recordings (DTMF
//! suppression, the mix point, pause and mute, encoding, the flush
//! cadence, the minimum duration). The daemon's media worker and
//! `recengine pcap` both drive a [`CallMedia`]; neither decides anything
//! about the media itself, so a recording made from a capture is made as
//! the daemon makes it.
//!
//! # Drive contract
//!
//! Every time is call-relative: zero is the call's origin (the daemon's
//! call creation, a capture's first packet). Nothing here reads a clock.
//!
//! 1. [`add_leg`](CallMedia::add_leg) as legs join; leg indices are dense
//!    and in order.
//! 2. Advance the call in steps. A step to time `t`:
//!    1. [`begin_step`](CallMedia::begin_step): the legs agree on a drift
//!       reference;
//!    2. per leg, [`push`](CallMedia::push) each datagram with its arrival
//!       time — at most [`room`](CallMedia::room) of them — then
//!       [`play_out`](CallMedia::play_out) the leg: to the last arrival of
//!       the batch when more datagrams are queued behind it (a reader that
//!       fell behind), else to `t`;
//!    3. [`mix`](CallMedia::mix) at `t`: every recording is mixed up to
//!       `t` − playout delay − [`DEFAULT_MARGIN`] and encoded; bytes come
//!       out in batches and at each flush.
//!
//!    [`tick`](CallMedia::tick) is a whole step for a driver that pushes
//!    datagrams as they come (a capture).
//! 3. Recording control at its time: [`start_recording`](CallMedia::start_recording),
//!    [`pause`](CallMedia::pause), [`resume`](CallMedia::resume),
//!    [`mute`](CallMedia::mute), [`add_input`](CallMedia::add_input);
//!    [`stop_recording`](CallMedia::stop_recording) mixes up to its time at
//!    once and finishes the recording; [`end`](CallMedia::end) releases
//!    what every leg still holds and finishes every recording.
//! 4. After each call, [`poll_output`](CallMedia::poll_output) until it
//!    answers `None`, and carry out each [`Output`] in order (bytes before
//!    the flush or the finish that follows them).
//! 5. After each step, [`party_packets`](CallMedia::party_packets): the
//!    RTP packets of recording notices due to each party, to send from the
//!    leg's port to the leg's source.
//!
//! Methods rather than one `handle_input(Input)`: the inputs answer
//! different things (a leg index, a recording handle, whether a datagram
//! was taken) and a datagram's bytes are only borrowed for the call.

pub mod plan;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::encode::{EncodeError, EncoderSpec};
use crate::format::PauseBehavior;
use crate::leg::{Dropped, LegConfig, LegReceiver, share_drift_reference};
use crate::mixer::{DEFAULT_MARGIN, MixInput, Mixer, MixerError, PauseInterval};
use crate::notice::{PartyStream, RtpStart};
use crate::recorder::Recorder;
use crate::time::nanos_to_ticks;
use crate::track::Track;

/// Encoded bytes gathered per recording before they come out as one
/// [`Output::Bytes`] (also at every flush and at the finish): the writer
/// gets about one batch per recording per flush interval instead of one
/// per tick. The file reaches the disk only at a flush anyway.
pub const OUTPUT_BATCH: usize = 32 * 1024;

/// Names a recording of this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordingHandle(u32);

/// Everything about a recording the media needs.
#[derive(Debug, Clone)]
pub struct RecordingPlan {
    pub spec: EncoderSpec,
    /// The selected legs and their channels (see [`plan`]).
    pub inputs: Vec<MixInput>,
    pub pause_behavior: PauseBehavior,
    pub suppress_dtmf: bool,
    /// Call time the recording starts at.
    pub start: Duration,
    /// How often the file is flushed (its header rewritten).
    pub flush_interval: Duration,
    /// Shorter recordings are discarded.
    pub min_duration: Duration,
    /// Recording notices and reminder tones.
    pub notices: Vec<Notice>,
}

/// A recording notice (see [`crate::notice`]): audio at the call's media
/// rate, `delay` after the recording's start and again every `every` when
/// given.
#[derive(Debug, Clone)]
pub struct Notice {
    pub audio: Arc<[i16]>,
    pub delay: Duration,
    pub every: Option<Duration>,
    /// Laid over the recording itself, on every channel.
    pub into_recording: bool,
    /// Sent to every party as RTP in the codec it sends (from when its
    /// first audio packet tells which).
    pub to_parties: bool,
    /// Makes the parties' streams' SSRCs and first sequence numbers; a
    /// driver gives a random value (RFC 3550 §5.1).
    pub ssrc_seed: u32,
}

/// One notice being sent to the parties.
struct PartyNotice {
    recording: RecordingHandle,
    audio: Arc<[i16]>,
    every: Option<Duration>,
    ssrc_seed: u32,
    /// Start of the current occurrence.
    at: Duration,
    legs: Vec<PartyLeg>,
}

/// One party's stream of a notice.
struct PartyLeg {
    /// The current occurrence has been started for this party.
    served: bool,
    stream: Option<PartyStream>,
}

/// What a party's notice packets share: one SSRC, sequence numbers that
/// go on from notice to notice, timestamps that run with the clock, and
/// one notice at a time.
struct PartyRtp {
    ssrc: u32,
    next_seq: u16,
    /// When its first packet went, and that packet's timestamp.
    first: (Duration, u32),
    /// A later notice waits until the one playing is over.
    busy_until: Duration,
}

/// Why a recording could not go on (serialized as its
/// [`reason`](Failure::reason)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The file could not be written.
    Storage,
    /// The encoder refused the audio or its settings.
    Encoder,
    /// A fault of the engine (a media worker panicked).
    Internal,
    /// None of its legs ever received an RTP packet: there is nothing to
    /// keep, and the driver removes the file of silence.
    NoMedia,
}

impl Failure {
    /// The `recording.failed` reason.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Storage => "storage_error",
            Failure::Encoder => "encoder_error",
            Failure::Internal => "internal",
            Failure::NoMedia => "no_media",
        }
    }
}

/// The reason, named once in [`Failure::reason`].
impl serde::Serialize for Failure {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.reason())
    }
}

/// A recording that ended with a file to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub duration_ms: u64,
    pub pauses: Vec<PauseInterval>,
    /// The file's header, rewritten at its start (WAV).
    pub header: Option<Vec<u8>>,
}

/// What the driver carries out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Append to the recording's file.
    Bytes {
        recording: RecordingHandle,
        bytes: Vec<u8>,
    },
    /// Flush the file to disk, rewriting its header.
    Flush {
        recording: RecordingHandle,
        header: Option<Vec<u8>>,
    },
    /// The last bytes are out: finalize the file.
    Finished {
        recording: RecordingHandle,
        summary: Finished,
    },
    /// Shorter than its minimum duration: remove the file.
    Discarded {
        recording: RecordingHandle,
        duration_ms: u64,
    },
    /// The recording could not go on; nothing more comes for it.
    Failed {
        recording: RecordingHandle,
        failure: Failure,
        message: String,
    },
}

impl Output {
    /// The recording the output is for.
    pub fn recording(&self) -> RecordingHandle {
        match self {
            Output::Bytes { recording, .. }
            | Output::Flush { recording, .. }
            | Output::Finished { recording, .. }
            | Output::Discarded { recording, .. }
            | Output::Failed { recording, .. } => *recording,
        }
    }
}

/// Where [`CallMedia::end`] ends the recordings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndAt {
    /// At this call time (a call ended by the API or a timeout).
    Time(Duration),
    /// At the end of the last audio any leg played (a capture's end).
    LastAudio,
}

struct CallLeg {
    receiver: LegReceiver,
    /// Leg origin in call ticks, once it has one.
    offset: Option<i64>,
}

struct RecordingMedia {
    handle: RecordingHandle,
    spec: EncoderSpec,
    recorder: Recorder,
    suppress_dtmf: bool,
    flush_interval: Duration,
    min_duration: Duration,
    last_flush: Duration,
    /// Per track, DTMF records already given to the mixer.
    dtmf_applied: HashMap<usize, usize>,
    unsent: Vec<u8>,
    /// The source rate the encoder was last told, 0 before the first (see
    /// [`note_source_rate`]).
    source_rate: u32,
    /// The least source rate to tell: the call's rate when a notice is
    /// mixed in (a prompt may be wideband), else 0.
    source_floor: u32,
}

/// See the module documentation.
pub struct CallMedia {
    rate: u32,
    playout_delay: Duration,
    legs: Vec<CallLeg>,
    tracks: Vec<Track>,
    recordings: Vec<RecordingMedia>,
    next_handle: u32,
    outputs: VecDeque<Output>,
    party_notices: Vec<PartyNotice>,
    /// Per leg, once it has been sent a notice.
    party_rtp: Vec<Option<PartyRtp>>,
}

impl CallMedia {
    /// A call whose legs play out at `rate` Hz after `playout_delay`.
    pub fn new(rate: u32, playout_delay: Duration) -> Self {
        Self {
            rate,
            playout_delay,
            legs: Vec::new(),
            tracks: Vec::new(),
            recordings: Vec::new(),
            next_handle: 0,
            outputs: VecDeque::new(),
            party_notices: Vec::new(),
            party_rtp: Vec::new(),
        }
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Adds a leg; answers its index.
    pub fn add_leg(&mut self, config: LegConfig) -> usize {
        self.tracks.push(Track::new(self.rate as usize));
        self.legs.push(CallLeg {
            receiver: LegReceiver::new(config),
            offset: None,
        });
        self.legs.len() - 1
    }

    pub fn leg_count(&self) -> usize {
        self.legs.len()
    }

    /// A leg's receiver (statistics, DTMF, codecs).
    pub fn leg(&self, leg: usize) -> Option<&LegReceiver> {
        self.legs.get(leg).map(|l| &l.receiver)
    }

    /// How many datagrams `leg` can take before it must be played out.
    pub fn room(&self, leg: usize) -> usize {
        self.legs.get(leg).map_or(0, |l| l.receiver.room())
    }

    /// Step 1: the legs agree on a drift reference.
    pub fn begin_step(&mut self) {
        share_drift_reference(&mut self.legs, |l| &mut l.receiver);
    }

    /// A datagram for `leg` that arrived at `at`.
    pub fn push(&mut self, leg: usize, datagram: &[u8], at: Duration) -> Result<(), Dropped> {
        // A leg index the driver never added is the driver's bug; the
        // datagram has nowhere to go.
        debug_assert!(leg < self.legs.len(), "no leg {leg}");
        match self.legs.get_mut(leg) {
            Some(l) => l.receiver.push(datagram, at),
            None => Ok(()),
        }
    }

    /// Plays `leg` out to `to` into its track. Its anchor on the call
    /// timeline settles until its first audio is written.
    pub fn play_out(&mut self, leg: usize, to: Duration) {
        let (Some(l), Some(track)) = (self.legs.get_mut(leg), self.tracks.get_mut(leg)) else {
            return;
        };
        if track.first_call_pos().is_none()
            && let Some(origin) = l.receiver.origin()
        {
            l.offset = Some(nanos_to_ticks(origin.as_nanos() as i128, self.rate));
        }
        if let Some(offset) = l.offset {
            l.receiver.pull(to, &mut track.sink(offset));
        }
    }

    /// A whole step to `now` for a driver that pushed its datagrams as
    /// they came: every leg played out to `now`, then [`mix`](Self::mix).
    pub fn tick(&mut self, now: Duration) {
        self.begin_step();
        for leg in 0..self.legs.len() {
            self.play_out(leg, now);
        }
        self.mix(now);
    }

    /// Starts a recording. An encoder that cannot be made is an error
    /// here, not an output: nothing was started.
    pub fn start_recording(&mut self, plan: RecordingPlan) -> Result<RecordingHandle, EncodeError> {
        let mut mixer = Mixer::new(
            self.rate,
            plan.spec.channels,
            &plan.inputs,
            plan.pause_behavior,
            plan.start,
        );
        for n in plan.notices.iter().filter(|n| n.into_recording) {
            mixer.overlay(plan.start + n.delay, n.audio.clone(), n.every);
        }
        let recorder = Recorder::new(mixer, plan.spec)?;
        let handle = RecordingHandle(self.next_handle);
        self.next_handle += 1;
        for n in plan.notices.iter().filter(|n| n.to_parties) {
            self.party_notices.push(PartyNotice {
                recording: handle,
                audio: n.audio.clone(),
                every: n.every,
                ssrc_seed: n.ssrc_seed,
                at: plan.start + n.delay,
                legs: Vec::new(),
            });
        }
        let mut media = RecordingMedia {
            handle,
            spec: plan.spec,
            recorder,
            suppress_dtmf: plan.suppress_dtmf,
            flush_interval: plan.flush_interval,
            min_duration: plan.min_duration,
            last_flush: plan.start,
            dtmf_applied: HashMap::new(),
            unsent: Vec::new(),
            source_rate: 0,
            source_floor: if plan.notices.iter().any(|n| n.into_recording) {
                self.rate
            } else {
                0
            },
        };
        note_source_rate(&mut media, &self.legs, self.rate)?;
        self.recordings.push(media);
        Ok(handle)
    }

    fn recording_mut(&mut self, h: RecordingHandle) -> Option<&mut RecordingMedia> {
        self.recordings.iter_mut().find(|r| r.handle == h)
    }

    /// Whether the recording is still in progress here.
    pub fn has_recording(&self, h: RecordingHandle) -> bool {
        self.recordings.iter().any(|r| r.handle == h)
    }

    /// Audio in the recording so far.
    pub fn duration_ms(&self, h: RecordingHandle) -> Option<u64> {
        self.recordings
            .iter()
            .find(|r| r.handle == h)
            .map(|r| r.recorder.duration_ms())
    }

    /// The encoded format of a recording in progress.
    pub fn spec(&self, h: RecordingHandle) -> Option<EncoderSpec> {
        self.recordings
            .iter()
            .find(|r| r.handle == h)
            .map(|r| r.spec)
    }

    pub fn pause(&mut self, h: RecordingHandle, at: Duration) -> Result<(), MixerError> {
        match self.recording_mut(h) {
            Some(r) => r.recorder.mixer_mut().pause(at),
            None => Ok(()),
        }
    }

    pub fn resume(&mut self, h: RecordingHandle, at: Duration) -> Result<(), MixerError> {
        match self.recording_mut(h) {
            Some(r) => r.recorder.mixer_mut().resume(at),
            None => Ok(()),
        }
    }

    /// Mutes (or unmutes) `leg` in every recording from `at`.
    pub fn mute(&mut self, leg: usize, muted: bool, at: Duration) {
        for r in &mut self.recordings {
            let _ = r.recorder.mixer_mut().set_muted(leg, muted, at);
        }
    }

    /// Adds a leg to a recording in progress (a late conference
    /// participant).
    pub fn add_input(&mut self, h: RecordingHandle, input: MixInput) {
        if let Some(r) = self.recording_mut(h) {
            r.recorder.mixer_mut().add_input(input);
        }
    }

    /// Drops a recording without output (its driver already knows why:
    /// its file could not be written).
    pub fn remove(&mut self, h: RecordingHandle) {
        self.recordings.retain(|r| r.handle != h);
    }

    /// Step 3: mixes and encodes every recording up to `now`'s mix point.
    pub fn mix(&mut self, now: Duration) {
        let mix_point = now.saturating_sub(self.playout_delay + DEFAULT_MARGIN);
        let mut i = 0;
        while i < self.recordings.len() {
            let r = &mut self.recordings[i];
            apply_dtmf(r, &self.legs);
            let upto = r.recorder.mixer().position_at(mix_point);
            let mixed = note_source_rate(r, &self.legs, self.rate)
                .and_then(|()| write_mixed(r, &self.tracks, upto, now, &mut self.outputs));
            match mixed {
                Ok(()) => i += 1,
                Err(e) => {
                    let r = self.recordings.remove(i);
                    self.outputs.push_back(Output::Failed {
                        recording: r.handle,
                        failure: Failure::Encoder,
                        message: e.to_string(),
                    });
                }
            }
        }
    }

    /// Stops a recording at `at` without waiting out the playout delay:
    /// the legs should have been played out to `at` + playout delay (all
    /// that reached the engine by `at`); the recording is mixed up to `at`
    /// and finished.
    pub fn stop_recording(&mut self, h: RecordingHandle, at: Duration) {
        let Some(i) = self.recordings.iter().position(|r| r.handle == h) else {
            return;
        };
        let r = self.recordings.remove(i);
        self.finish_at(r, EndAt::Time(at));
    }

    /// The call is over: every leg releases what it holds, every recording
    /// is mixed up to `at` and finished.
    pub fn end(&mut self, at: EndAt) {
        for (l, track) in self.legs.iter_mut().zip(self.tracks.iter_mut()) {
            let offset = l.offset.unwrap_or(0);
            l.receiver.finish(&mut track.sink(offset));
        }
        for r in std::mem::take(&mut self.recordings) {
            self.finish_at(r, at);
        }
    }

    fn finish_at(&mut self, mut r: RecordingMedia, at: EndAt) {
        apply_dtmf(&mut r, &self.legs);
        let upto = match at {
            EndAt::Time(t) => r.recorder.mixer().position_at(t),
            EndAt::LastAudio => self
                .tracks
                .iter()
                .filter_map(Track::end_call_pos)
                .max()
                .unwrap_or(0),
        };
        let handle = r.handle;
        // No flush on the way out: finalizing writes and syncs it all.
        let no_flush = r.last_flush;
        let mixed = note_source_rate(&mut r, &self.legs, self.rate)
            .and_then(|()| write_mixed(&mut r, &self.tracks, upto, no_flush, &mut self.outputs));
        if let Err(e) = mixed {
            return self.outputs.push_back(Output::Failed {
                recording: handle,
                failure: Failure::Encoder,
                message: e.to_string(),
            });
        }
        let mut tail = std::mem::take(&mut r.unsent);
        match r.recorder.finish() {
            Ok(t) => tail.extend_from_slice(t),
            Err(e) => {
                return self.outputs.push_back(Output::Failed {
                    recording: handle,
                    failure: Failure::Encoder,
                    message: e.to_string(),
                });
            }
        }
        let duration_ms = r.recorder.duration_ms();
        if Duration::from_millis(duration_ms) < r.min_duration {
            return self.outputs.push_back(Output::Discarded {
                recording: handle,
                duration_ms,
            });
        }
        let heard = r.recorder.mixer().tracks().any(|t| {
            self.legs
                .get(t)
                .is_some_and(|l| l.receiver.stats().received > 0)
        });
        if !heard {
            return self.outputs.push_back(Output::Failed {
                recording: handle,
                failure: Failure::NoMedia,
                message: "none of the recording's legs received an RTP packet".into(),
            });
        }
        if !tail.is_empty() {
            self.outputs.push_back(Output::Bytes {
                recording: handle,
                bytes: tail,
            });
        }
        self.outputs.push_back(Output::Finished {
            recording: handle,
            summary: Finished {
                duration_ms,
                pauses: r.recorder.mixer().pauses(),
                header: r.recorder.header(),
            },
        });
    }

    /// Step 4: the next thing to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Whether a notice is being streamed to a party now: its driver
    /// should call [`Self::party_packets`] every 20 ms until it is not,
    /// even if it steps the call less often.
    pub fn sending_party_notice(&self) -> bool {
        self.party_notices
            .iter()
            .flat_map(|n| &n.legs)
            .any(|l| l.stream.as_ref().is_some_and(|s| !s.done()))
    }

    /// Step 5: appends `(leg, RTP packet)` for every notice packet due to
    /// a party by `now`, paced at 20 ms. A party is answered in the payload
    /// type and codec of its last audio packet; one that has sent none yet
    /// gets the notice once it has. A notice stops with its recording.
    pub fn party_packets(&mut self, now: Duration, out: &mut Vec<(usize, Vec<u8>)>) {
        if self.party_notices.is_empty() {
            return;
        }
        let live: Vec<RecordingHandle> = self.recordings.iter().map(|r| r.handle).collect();
        self.party_notices.retain(|n| live.contains(&n.recording));
        let mut packets = Vec::new();
        for n in &mut self.party_notices {
            if let Some(every) = n.every.filter(|e| !e.is_zero()) {
                while now >= n.at + every {
                    n.at += every;
                    n.legs.iter_mut().for_each(|l| l.served = false);
                }
            }
            if now < n.at {
                continue;
            }
            n.legs.resize_with(self.legs.len(), || PartyLeg {
                served: false,
                stream: None,
            });
            self.party_rtp.resize_with(self.legs.len(), || None);
            for (i, (pl, leg)) in n.legs.iter_mut().zip(&self.legs).enumerate() {
                let free = self.party_rtp[i]
                    .as_ref()
                    .is_none_or(|r| now >= r.busy_until);
                if !pl.served
                    && free
                    && let Some((pt, codec)) = leg.receiver.audio_payload()
                {
                    pl.served = true;
                    let rtp = self.party_rtp[i].get_or_insert_with(|| {
                        let ssrc = n.ssrc_seed ^ (i as u32 + 1).wrapping_mul(0x9e37_79b9);
                        PartyRtp {
                            ssrc,
                            next_seq: (ssrc >> 16) as u16,
                            first: (now, ssrc.rotate_left(7)),
                            busy_until: Duration::ZERO,
                        }
                    });
                    let ticks = now.saturating_sub(rtp.first.0).as_nanos()
                        * u128::from(codec.clock_rate())
                        / 1_000_000_000;
                    pl.stream = PartyStream::new(
                        &n.audio,
                        self.rate,
                        codec,
                        RtpStart {
                            payload_type: pt,
                            ssrc: rtp.ssrc,
                            sequence: rtp.next_seq,
                            timestamp: rtp.first.1.wrapping_add(ticks as u32),
                        },
                        now,
                    )
                    .ok();
                    if let Some(s) = &pl.stream {
                        let count = s.packet_count();
                        rtp.next_seq = rtp.next_seq.wrapping_add(count as u16);
                        rtp.busy_until = now + crate::notice::PACKET_TIME * count as u32;
                    }
                }
                if let Some(s) = &mut pl.stream {
                    packets.clear();
                    if s.due(now, &mut packets).is_err() {
                        pl.stream = None;
                        continue;
                    }
                    out.extend(packets.drain(..).map(|p| (i, p)));
                }
            }
        }
    }
}

/// Tells a recording's mixer where DTMF happened, if it suppresses DTMF.
fn apply_dtmf(r: &mut RecordingMedia, legs: &[CallLeg]) {
    if !r.suppress_dtmf {
        return;
    }
    for i in 0..r.recorder.mixer().input_count() {
        let Some(track) = r.recorder.mixer().input(i).map(|m| m.track) else {
            continue;
        };
        let Some(leg) = legs.get(track) else { continue };
        let Some(offset) = leg.offset else { continue };
        let applied = r.dtmf_applied.entry(track).or_insert(0);
        r.recorder.mixer_mut().suppress_dtmf(
            track,
            offset,
            leg.receiver.dtmf(),
            leg.receiver.dtmf_in_progress(),
            applied,
        );
    }
}

/// The rate of G.711, what a leg is taken to be before it plays audio.
const NARROWBAND_RATE: u32 = 8000;

/// Tells the recording's encoder how wide its audio is: the widest rate its
/// legs' decoders produce (narrowband before any leg has played), at least
/// its floor, at most the call's rate. Told when the recording starts and
/// again whenever it rises; the legs decode a playout delay ahead of the
/// mix, so the encoder hears of a wider source before its audio comes.
fn note_source_rate(
    r: &mut RecordingMedia,
    legs: &[CallLeg],
    call_rate: u32,
) -> Result<(), EncodeError> {
    if r.source_rate >= call_rate {
        // Told the most it can be (at once for every 8 kHz call): nothing
        // to look at on later ticks.
        return Ok(());
    }
    let widest = r
        .recorder
        .mixer()
        .tracks()
        .filter_map(|t| legs.get(t)?.receiver.decoded_rate())
        .max()
        .unwrap_or(NARROWBAND_RATE);
    let rate = widest.max(r.source_floor).min(call_rate);
    if rate > r.source_rate {
        r.recorder.set_source_rate(rate)?;
        r.source_rate = rate;
    }
    Ok(())
}

/// Mixes up to `upto`, gathers the bytes, and flushes on schedule.
fn write_mixed(
    r: &mut RecordingMedia,
    tracks: &[Track],
    upto: i64,
    now: Duration,
    outputs: &mut VecDeque<Output>,
) -> Result<(), EncodeError> {
    let bytes = r.recorder.mix_to(tracks, upto)?;
    r.unsent.extend_from_slice(bytes);
    if r.unsent.len() >= OUTPUT_BATCH {
        send_unsent(r, outputs);
    }
    if now.saturating_sub(r.last_flush) >= r.flush_interval {
        r.last_flush = now;
        let held = r.recorder.flush();
        r.unsent.extend_from_slice(held);
        send_unsent(r, outputs);
        outputs.push_back(Output::Flush {
            recording: r.handle,
            header: r.recorder.header(),
        });
    }
    Ok(())
}

fn send_unsent(r: &mut RecordingMedia, outputs: &mut VecDeque<Output>) {
    if r.unsent.is_empty() {
        return;
    }
    // The next batch is likely the same size: one allocation per batch.
    let capacity = r.unsent.len().min(OUTPUT_BATCH);
    let bytes = std::mem::replace(&mut r.unsent, Vec::with_capacity(capacity));
    outputs.push_back(Output::Bytes {
        recording: r.handle,
        bytes,
    });
}

#[cfg(test)]
mod tests;
