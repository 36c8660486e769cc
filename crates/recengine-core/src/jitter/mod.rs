//! The per-leg jitter buffer: turns packets in arrival order into a gap-free
//! sequence of frames and gaps on the leg's timeline.
//!
//! # Timeline
//!
//! Positions are in ticks of the buffer's `clock_rate` (the rate the leg's
//! audio is produced at). The first packet of a leg sits at position 0 and
//! every packet of the same stream at `anchor + (timestamp − anchor_ts)`,
//! rescaled from the payload's RTP clock. So positions follow the sender's
//! timestamps exactly, and silence the sender never sent (DTX, comfort noise,
//! telephone events without audio) becomes a [`Playout::Gap`].
//!
//! A new segment (with a new anchor) starts when
//! - the SSRC changes: a new SSRC must show two packets in sequence before the
//!   leg switches to it (RFC 3550's probation), so a stray packet cannot
//!   hijack the leg, while the current stream repeating old packets cannot
//!   hold on to it either; the new stream continues right where the old one ended,
//!   or, when the sender really went quiet in between, after the arrival gap;
//! - the timestamp jumps by more than [`DISCONTINUITY`] against arrival time,
//!   or runs backwards (a sender restart): placed after the previous packet by
//!   the arrival-time gap;
//! - the sequence number jumps by more than [`MAX_DROPOUT`] (RFC 3550 A.1).
//!
//! # Playout: the RTP timeline against one fixed anchor
//!
//! Position 0 belongs at one clock time, the leg's *anchor*
//! ([`JitterBuffer::origin`]). Until the first packet plays, a packet that
//! arrives earlier than the anchor promised moves it earlier (the anchor is
//! the least-delayed packet seen, not merely the first); from the first
//! playout on it never moves. A packet at output position `p` is due at
//! `anchor + p + playout_delay`; [`JitterBuffer::pop`] releases packets in
//! sequence order once the earliest is due, and fills silence up to the
//! playout point while nothing is buffered, so a consumer ticking every
//! 20 ms always gets audio up to it.
//!
//! Jitter therefore never moves audio: any arrival pattern whose delay stays
//! within `playout_delay` plays every packet exactly at its timestamp's
//! place, whatever the bursts. A packet arriving after its place was played
//! is [`Rejected::Late`] and its time concealed; the packets after it still
//! play at their own places. Only when audio stays late for [`RESYNC_AFTER`]
//! without one packet on time (the network delay grew past the playout delay
//! for good) does the leg resynchronise: later by the new delay, counted in
//! [`JitterStats::resyncs`].
//!
//! # Clock drift
//!
//! Each audio packet's lateness against the anchor feeds a
//! [`drift::DriftEstimator`] (lower envelope per second, robust line fit).
//! Only a sustained trend whose accumulated offset exceeds
//! [`JitterConfig::drift_bound`] starts a correction, and a correction is
//! applied only where it cannot be heard: here, in silence the sender left
//! (nothing held, or a DTX gap before the next packet); or by the consumer,
//! in quiet decoded audio, through [`JitterBuffer::apply_correction`].
//! Output positions are RTP-timeline positions plus the corrections so far.
//!
//! The buffer never reads a clock: `now` is passed in by the caller.

use std::collections::VecDeque;
use std::time::Duration;

use crate::rtp::{MediaKind, RtpPacket};
use crate::time::{extend_seq, extend_ts, nanos_to_ticks, rescale, ticks_to_nanos};

pub mod drift;

use drift::{DriftEstimator, Level};

/// A timestamp step that disagrees with the arrival step by more than this
/// starts a new segment.
pub const DISCONTINUITY: Duration = Duration::from_secs(1);
/// A forward sequence jump larger than this is a restart, not loss.
pub const MAX_DROPOUT: u64 = 3000;
/// A new stream is adopted right after the old one ended if it arrives
/// within this much of the old stream's end.
const CONTINUATION_SLACK: Duration = Duration::from_millis(60);
/// A candidate SSRC is dropped once the current stream delivers this many
/// new packets without the candidate confirming.
const PROBATION_PATIENCE: u8 = 3;
/// Audio late for this long without a single packet on time means the
/// network delay grew past the playout delay for good: the leg
/// resynchronises instead of losing everything from then on.
pub const RESYNC_AFTER: Duration = Duration::from_secs(1);
/// A sender whose timestamps run this far from our clock is not drifting
/// but wrong (a mislabeled clock rate): its audio follows arrival instead,
/// so when its buffer runs dry the next packet plays where the silence
/// ended rather than being lost.
pub const GROSS_SKEW_PPM: f64 = 10_000.0;
/// Drift corrections look this far ahead: a correction starts when the
/// offset would exceed the bound by then, and takes the leg to where it
/// will be then, so the offset stays inside the bound while a quiet moment
/// is found.
const DRIFT_LOOKAHEAD_SECS: f64 = 3.0;

/// How the buffer is sized and how long it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Ticks per second of the timeline (the leg's audio rate).
    pub clock_rate: u32,
    /// How long after its place on the timeline a packet is waited for.
    pub playout_delay: Duration,
    /// Most packets held at once (1 to [`MAX_CAPACITY`]); beyond it
    /// packets are [`Rejected::Overflow`].
    pub capacity: usize,
    /// Measured clock drift is corrected once the accumulated offset exceeds
    /// this; zero measures drift but never corrects it.
    pub drift_bound: Duration,
}

/// What the caller knows about a packet's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadInfo {
    pub kind: MediaKind,
    /// RTP clock rate of the payload type.
    pub clock_rate: u32,
    /// Media duration in RTP ticks (0 for events and comfort noise).
    pub duration: u32,
}

/// A packet the buffer did not take. Each is counted in [`JitterStats`];
/// none is an error of the leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejected {
    /// Same sequence number as a packet already buffered or played.
    Duplicate,
    /// It arrived after its place on the timeline was played.
    Late,
    /// The buffer holds `capacity` packets.
    Overflow,
    /// From an SSRC other than the leg's current one that did not (yet)
    /// pass probation.
    ForeignSsrc,
    /// An older sequence number whose timestamp is more than
    /// [`DISCONTINUITY`] away from the newest packet's: no real reordering
    /// does that, so it would only tear the timeline apart.
    BadTimestamp,
}

/// Why a stretch of the timeline has no packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapCause {
    /// Sequence numbers are missing: packets were lost or came too late.
    Loss,
    /// The sender sent no audio for this time (DTX, comfort noise, events,
    /// the stream not having started yet, or not yet arrived).
    Silence,
}

/// A packet released for decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Output position of the first sample.
    pub start: i64,
    /// Length on the timeline in ticks (0 for events and comfort noise).
    pub len: i64,
    /// Ticks at the head of the frame that overlap audio already played;
    /// the consumer drops that many ticks of decoded audio.
    pub overlap: i64,
    pub payload: &'a [u8],
    pub payload_type: u8,
    pub kind: MediaKind,
    pub ssrc: u32,
    pub marker: bool,
}

/// One step of playout, in timeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playout<'a> {
    Frame(Frame<'a>),
    Gap {
        start: i64,
        len: i64,
        cause: GapCause,
        /// For a loss gap, the payload of the frame that follows it, which
        /// may carry forward error correction for the missing audio.
        following: Option<&'a [u8]>,
    },
}

/// Counters of one leg, as RFC 3550 defines them where it does.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// Packets offered to the buffer, of any outcome.
    pub received: u64,
    /// Sequence numbers never received (expected − received, per stream).
    pub lost: u64,
    pub late: u64,
    pub duplicates: u64,
    /// Packets arriving with a lower sequence number than one already seen.
    pub reordered: u64,
    pub overflow: u64,
    pub foreign_ssrc: u64,
    pub bad_timestamp: u64,
    pub ssrc_changes: u64,
    /// Timestamp or sequence restarts inside one SSRC.
    pub discontinuities: u64,
    pub talkspurts: u64,
    /// Times the network delay stayed beyond the playout delay for
    /// [`RESYNC_AFTER`] and the leg was placed later to follow it.
    pub resyncs: u64,
    /// Timeline ticks filled because packets were lost or late.
    pub concealed_ticks: u64,
    /// RFC 3550 interarrival jitter, in milliseconds.
    pub jitter_ms: f64,
    /// Measured skew of the sender's clock against ours (positive: the
    /// sender's clock runs slow), in parts per million.
    pub drift_ppm: f64,
    /// Drift corrections applied (each inserts or removes some samples).
    pub corrections: u64,
    pub samples_inserted: u64,
    pub samples_removed: u64,
    /// Corrections that found no silence and stretched or squeezed audio.
    pub corrections_outside_silence: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    segment: u32,
    seq: u64,
}

/// The most packets a jitter buffer holds (`jitter.capacity_packets`
/// allows 4-1024).
pub const MAX_CAPACITY: usize = 1024;

/// Which slots are free, as bits kept inside the buffer itself: taking one
/// costs no load from a separate (and by then cold) allocation.
#[derive(Debug, Default)]
struct FreeSlots([u64; MAX_CAPACITY / 64]);

impl FreeSlots {
    fn take_lowest(&mut self) -> Option<usize> {
        let (index, word) = self.0.iter_mut().enumerate().find(|(_, w)| **w != 0)?;
        let bit = word.trailing_zeros() as usize;
        *word &= *word - 1;
        Some(index * 64 + bit)
    }

    fn put(&mut self, slot: usize) {
        self.0[slot / 64] |= 1 << (slot % 64);
    }
}

/// Payload bytes a slot keeps in place: a 20 ms G.711 or G.722 packet
/// (160) with room to spare. Longer payloads (L16, 30 ms and longer
/// packets, most Opus) go to the slot's own `Vec`.
const INLINE_PAYLOAD: usize = 176;

/// One held packet. Its metadata and (for telephone-sized payloads) its
/// bytes sit together in four cache lines, fetched together when the leg
/// is played out a tick or more after the packet arrived.
#[derive(Debug)]
#[repr(align(64))]
struct Slot {
    key: Option<Key>,
    /// Position on the RTP timeline (before drift corrections).
    start: i64,
    len: i64,
    payload_type: u8,
    kind: Option<MediaKind>,
    ssrc: u32,
    marker: bool,
    payload_len: usize,
    inline: [u8; INLINE_PAYLOAD],
    /// The payload when longer than [`INLINE_PAYLOAD`].
    spilled: Vec<u8>,
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            key: None,
            start: 0,
            len: 0,
            payload_type: 0,
            kind: None,
            ssrc: 0,
            marker: false,
            payload_len: 0,
            inline: [0; INLINE_PAYLOAD],
            spilled: Vec::new(),
        }
    }
}

impl Slot {
    fn set_payload(&mut self, payload: &[u8]) {
        self.payload_len = payload.len();
        match self.inline.get_mut(..payload.len()) {
            Some(inline) => inline.copy_from_slice(payload),
            None => {
                self.spilled.clear();
                self.spilled.extend_from_slice(payload);
            }
        }
    }

    fn payload(&self) -> &[u8] {
        self.inline.get(..self.payload_len).unwrap_or(&self.spilled)
    }
}

/// The state of the stream the leg currently follows.
#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    segment: u32,
    /// Highest extended sequence number seen.
    max_seq: u64,
    /// First extended sequence number of the stream (for loss accounting).
    base_seq: u64,
    unique_received: u64,
    /// Extended timestamp reference for unwrapping.
    last_ts: u64,
    clock_rate: u32,
    /// The segment's timestamp anchor and its RTP-timeline position.
    anchor_ts: u64,
    anchor_pos: i64,
    /// The audio packet with the highest sequence number: (ts, arrival, pos).
    reference: Option<(u64, Duration, i64)>,
    /// End of the furthest audio seen on the timeline.
    end: i64,
    /// RFC 3550 jitter estimate in RTP ticks, and the last transit.
    jitter: f64,
    last_transit: Option<i128>,
}

impl Stream {
    /// Remembers the newest packet's sequence number and timestamp.
    fn mark_newest(&mut self, seq: u64, ts: u64, newest: bool) {
        if newest {
            self.max_seq = seq;
            self.last_ts = ts;
        }
    }
}

/// An SSRC on probation: its first packet, kept until a second confirms it.
#[derive(Debug, Default)]
struct Candidate {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    marker: bool,
    payload_type: u8,
    info: Option<PayloadInfo>,
    payload: Vec<u8>,
    arrival: Duration,
    /// Packets the current stream delivered since this one arrived.
    outlived: u8,
}

/// See the module documentation.
#[derive(Debug)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    /// Held packets' slots, made as needed up to the capacity and reused
    /// lowest-numbered first, so a leg keeps to a few warm slots.
    slots: Vec<Slot>,
    /// Indices into `slots` of occupied slots, ordered by key: packets go
    /// in at the back (in order) and play from the front.
    order: VecDeque<usize>,
    /// The key of the slot at the back of `order` (`None` when empty): an
    /// in-order packet is placed by this alone, without loading `order`'s
    /// buffer and that slot, both cold by the next tick.
    newest_held: Option<Key>,
    /// Slots made and not holding a packet.
    free: FreeSlots,
    stream: Option<Stream>,
    candidate: Option<Candidate>,
    /// Next key to play; everything before it is played or given up.
    next: Option<Key>,
    /// Which sequence numbers just behind `next` were received.
    played: SeqWindow,
    /// A missing sequence number was skipped since the last audio frame.
    skipped: bool,
    /// Everything before this output position has been released.
    cursor: Option<i64>,
    /// Clock time (ns, the caller's clock) of RTP-timeline position 0: the
    /// leg's anchor. Settled before the first playout, fixed afterwards.
    base_ns: Option<i64>,
    /// Output position = RTP-timeline position + `shift` (drift corrections
    /// and resynchronisations so far).
    shift: i64,
    /// Correction still to apply, in ticks (positive: insert).
    pending: i64,
    pending_since: Option<Duration>,
    drift: DriftEstimator,
    /// Where the call's reference leg sits (see [`Self::set_drift_reference`]).
    drift_reference: Option<Level>,
    /// `shift` when drift measurement last started afresh: the estimator's
    /// offsets count from its first block and this shift.
    drift_shift_at: i64,
    /// Arrival of the first late packet of the current run of late ones.
    late_since: Option<Duration>,
    draining: bool,
    lost_before: u64,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(cfg: JitterConfig) -> Self {
        // The capacity held from here on: what `take_slot` checks against.
        let capacity = cfg.capacity.clamp(1, MAX_CAPACITY);
        Self {
            cfg: JitterConfig { capacity, ..cfg },
            slots: Vec::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            newest_held: None,
            free: FreeSlots::default(),
            stream: None,
            candidate: None,
            next: None,
            played: SeqWindow::default(),
            skipped: false,
            cursor: None,
            base_ns: None,
            shift: 0,
            pending: 0,
            pending_since: None,
            drift: DriftEstimator::default(),
            drift_reference: None,
            drift_shift_at: 0,
            late_since: None,
            draining: false,
            lost_before: 0,
            stats: JitterStats::default(),
        }
    }

    pub fn config(&self) -> &JitterConfig {
        &self.cfg
    }

    /// Counters so far (loss includes the current stream).
    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats;
        s.lost = self.lost_before + self.stream.map_or(0, |st| stream_lost(&st));
        s.jitter_ms = self
            .stream
            .map_or(0.0, |st| st.jitter * 1000.0 / f64::from(st.clock_rate));
        s.drift_ppm = self.drift.ppm();
        s
    }

    /// Number of packets held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The output position up to which everything has been released.
    pub fn cursor(&self) -> Option<i64> {
        self.cursor
    }

    /// Clock time of output position 0 (the leg's anchor), once a packet
    /// has arrived. It may move earlier until the first playout (a packet
    /// arriving earlier than the first one promised), never after.
    pub fn origin(&self) -> Option<Duration> {
        self.base_ns.map(|b| Duration::from_nanos(b.max(0) as u64))
    }

    /// Where this leg sits against its packets' place on our clock, by the
    /// line through its least lateness (confident or not), less the
    /// corrections already made: what the call's other legs align with.
    pub fn drift_level(&self) -> Option<Level> {
        let level = self.drift.level()?;
        Some(Level {
            offset_ns: level.offset_ns - self.drift_corrected_ns(),
            ppm: level.ppm,
        })
    }

    /// How far corrections have moved the leg since drift was last reset.
    fn drift_corrected_ns(&self) -> f64 {
        self.ticks_to_ns(self.shift - self.drift_shift_at) as f64
    }

    /// Aligns this leg's drift corrections with the call's reference leg
    /// (`None`: with our clock). What matters in a recording is that the
    /// parties stay where they were sent relative to each other; when they
    /// all arrive later and later together (a sender host or this host
    /// getting busy, or one clock behind all of them), correcting any of
    /// them would only edit the audio. A leg still corrects towards our
    /// clock when it strays beyond half the playout delay, which the
    /// buffer needs.
    pub fn set_drift_reference(&mut self, reference: Option<Level>) {
        self.drift_reference = reference;
    }

    /// Ticks of drift correction waiting for a quiet moment (positive:
    /// samples to insert, negative: to remove), and since when.
    pub fn pending_correction(&self) -> (i64, Option<Duration>) {
        (self.pending, self.pending_since)
    }

    /// The consumer inserted (`ticks > 0`) or removed samples of audio it
    /// was given, towards the pending correction: later output positions
    /// move by as much.
    pub fn apply_correction(&mut self, ticks: i64, in_silence: bool) {
        if ticks == 0 {
            return;
        }
        self.shift += ticks;
        self.cursor = self.cursor.map(|c| c + ticks);
        self.count_correction(ticks, in_silence);
    }

    fn count_correction(&mut self, ticks: i64, in_silence: bool) {
        let before = self.pending;
        self.pending -= ticks;
        if self.pending == 0 || self.pending.signum() != before.signum() {
            self.pending = 0;
            self.pending_since = None;
        }
        self.stats.corrections += 1;
        if ticks > 0 {
            self.stats.samples_inserted += ticks as u64;
        } else {
            self.stats.samples_removed += ticks.unsigned_abs();
        }
        if !in_silence {
            self.stats.corrections_outside_silence += 1;
        }
    }

    /// Maps a timestamp of the current stream to the output timeline (for
    /// events such as DTMF that are reported by timestamp).
    pub fn position_of(&self, ssrc: u32, timestamp: u32) -> Option<i64> {
        let st = self.stream.filter(|s| s.ssrc == ssrc)?;
        let ts = extend_ts(Some(st.last_ts), timestamp);
        Some(
            st.anchor_pos
                + self.to_timeline(ts as i64 - st.anchor_ts as i64, st.clock_rate)
                + self.shift,
        )
    }

    fn to_timeline(&self, rtp_ticks: i64, rtp_rate: u32) -> i64 {
        rescale(rtp_ticks, rtp_rate, self.cfg.clock_rate)
    }

    fn ticks_to_ns(&self, ticks: i64) -> i64 {
        ticks_to_nanos(ticks, self.cfg.clock_rate) as i64
    }

    fn ns_to_ticks(&self, ns: i64) -> i64 {
        nanos_to_ticks(i128::from(ns), self.cfg.clock_rate)
    }

    /// Output position up to which audio is due at `now`.
    fn playout_point(&self, now: Duration) -> Option<i64> {
        let base = self.base_ns?;
        let delay = self.cfg.playout_delay.as_nanos() as i64;
        Some(self.ns_to_ticks(now.as_nanos() as i64 - base - delay))
    }

    /// Offers a packet that arrived at `now`.
    pub fn push(
        &mut self,
        packet: &RtpPacket<'_>,
        info: PayloadInfo,
        now: Duration,
    ) -> Result<(), Rejected> {
        self.stats.received += 1;
        let result = self.push_inner(packet, info, now);
        if let Err(reason) = result {
            self.count_rejection(reason);
        }
        result
    }

    fn push_inner(
        &mut self,
        packet: &RtpPacket<'_>,
        info: PayloadInfo,
        now: Duration,
    ) -> Result<(), Rejected> {
        let Some(stream) = self.stream else {
            self.base_ns = Some(now.as_nanos() as i64);
            self.start_stream(packet.ssrc, packet.sequence, packet.timestamp, info, 0, 0);
            return self.accept(packet.sequence, packet.timestamp, packet, info, now);
        };
        if packet.ssrc != stream.ssrc {
            return self.probation(packet, info, now);
        }
        let result = self.accept(packet.sequence, packet.timestamp, packet, info, now);
        // A candidate that the current stream outlives by a few packets
        // was a stray.
        if result.is_ok()
            && let Some(c) = self.candidate.as_mut()
        {
            c.outlived += 1;
            if c.outlived > PROBATION_PATIENCE {
                self.candidate = None;
                self.stats.foreign_ssrc += 1;
            }
        }
        result
    }
    /// Holds the first packet of a new SSRC; switches on the second.
    fn probation(
        &mut self,
        packet: &RtpPacket<'_>,
        info: PayloadInfo,
        now: Duration,
    ) -> Result<(), Rejected> {
        let confirmed = match &self.candidate {
            Some(c) if c.ssrc == packet.ssrc => {
                let d = packet.sequence.wrapping_sub(c.seq) as i16;
                (1..=3).contains(&d) || (-3..=-1).contains(&d)
            }
            _ => false,
        };
        if !confirmed {
            if self.candidate.take().is_some() {
                self.stats.foreign_ssrc += 1;
            }
            let mut cand = Candidate {
                ssrc: packet.ssrc,
                seq: packet.sequence,
                timestamp: packet.timestamp,
                marker: packet.marker,
                payload_type: packet.payload_type,
                info: Some(info),
                payload: Vec::new(),
                arrival: now,
                outlived: 0,
            };
            cand.payload.extend_from_slice(packet.payload);
            self.candidate = Some(cand);
            // Counted as foreign only if it is never confirmed.
            return Ok(());
        }
        let Some(cand) = self.candidate.take() else {
            return Err(Rejected::ForeignSsrc);
        };
        let Some(old) = self.stream else {
            return Err(Rejected::ForeignSsrc);
        };
        self.stats.ssrc_changes += 1;
        let pos = self.continuation(&old, cand.arrival);
        self.lost_before += stream_lost(&old);
        let cand_info = cand.info.unwrap_or(info);
        self.start_stream(
            cand.ssrc,
            cand.seq,
            cand.timestamp,
            cand_info,
            pos,
            old.segment + 1,
        );
        let cand_packet = RtpPacket {
            payload: &cand.payload,
            marker: cand.marker,
            payload_type: cand.payload_type,
            sequence: cand.seq,
            timestamp: cand.timestamp,
            ssrc: cand.ssrc,
            ..*packet
        };
        let first = self.accept(
            cand.seq,
            cand.timestamp,
            &cand_packet,
            cand_info,
            cand.arrival,
        );
        if let Err(reason) = first {
            self.count_rejection(reason);
        }
        self.accept(packet.sequence, packet.timestamp, packet, info, now)
    }

    fn count_rejection(&mut self, reason: Rejected) {
        match reason {
            Rejected::Duplicate => self.stats.duplicates += 1,
            Rejected::Late => self.stats.late += 1,
            Rejected::Overflow => self.stats.overflow += 1,
            Rejected::ForeignSsrc => self.stats.foreign_ssrc += 1,
            Rejected::BadTimestamp => self.stats.bad_timestamp += 1,
        }
    }

    /// Where a new segment starting at `arrival` goes on the RTP timeline:
    /// right after the old audio, or later by the arrival gap when the
    /// sender was really quiet.
    fn continuation(&self, old: &Stream, arrival: Duration) -> i64 {
        let by_arrival = match old.reference {
            Some((_, ref_arrival, ref_pos)) => {
                ref_pos + nanos_to_ticks(signed_nanos(arrival, ref_arrival), self.cfg.clock_rate)
            }
            None => old.end,
        };
        let slack = nanos_to_ticks(CONTINUATION_SLACK.as_nanos() as i128, self.cfg.clock_rate);
        let released = self.cursor.map_or(i64::MIN, |c| c - self.shift);
        let end = old.end.max(released);
        if by_arrival > end + slack {
            by_arrival
        } else {
            end
        }
    }

    /// Starts a stream (a new SSRC, or a restart of the current one) whose
    /// first packet sits at RTP-timeline position `pos`. Its relation to
    /// our clock is new, so drift is measured afresh.
    fn start_stream(
        &mut self,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        info: PayloadInfo,
        pos: i64,
        segment: u32,
    ) {
        let seq_ext = extend_seq(None, seq);
        let ts_ext = extend_ts(None, timestamp);
        self.reset_drift();
        self.stream = Some(Stream {
            ssrc,
            segment,
            max_seq: seq_ext,
            base_seq: seq_ext,
            unique_received: 0,
            last_ts: ts_ext,
            clock_rate: info.clock_rate,
            anchor_ts: ts_ext,
            anchor_pos: pos,
            reference: None,
            end: pos,
            jitter: 0.0,
            last_transit: None,
        });
    }

    /// Places a packet of the current stream.
    fn accept(
        &mut self,
        seq16: u16,
        ts32: u32,
        packet: &RtpPacket<'_>,
        info: PayloadInfo,
        now: Duration,
    ) -> Result<(), Rejected> {
        let Some(mut st) = self.stream else {
            return Err(Rejected::ForeignSsrc);
        };
        let mut seq = extend_seq(Some(st.max_seq), seq16);
        let is_media = matches!(info.kind, MediaKind::Audio | MediaKind::ComfortNoise);

        // Sequence restart: a jump no loss explains.
        let forward = seq.saturating_sub(st.max_seq);
        if forward > MAX_DROPOUT || st.max_seq.saturating_sub(seq) > MAX_DROPOUT {
            self.stats.discontinuities += 1;
            let pos = self.continuation(&st, now);
            self.lost_before += stream_lost(&st);
            self.start_stream(st.ssrc, seq16, ts32, info, pos, st.segment + 1);
            st = self.stream.unwrap_or(st);
            seq = st.max_seq;
        }

        let ts = extend_ts(Some(st.last_ts), ts32);
        let newest = seq > st.max_seq || st.unique_received == 0;

        if is_media && newest {
            // Clock-rate change (new codec) or timestamp discontinuity.
            let discontinuous = info.clock_rate != st.clock_rate
                || st.reference.is_some_and(|(ref_ts, ref_arrival, _)| {
                    let ts_nanos = ticks_to_nanos(ts as i64 - ref_ts as i64, info.clock_rate);
                    let arrival_nanos = signed_nanos(now, ref_arrival);
                    ts < ref_ts
                        || (ts_nanos - arrival_nanos).abs() > DISCONTINUITY.as_nanos() as i128
                });
            if discontinuous {
                self.stats.discontinuities += 1;
                let pos = self.continuation(&st, now);
                st.anchor_ts = ts;
                st.anchor_pos = pos;
                st.clock_rate = info.clock_rate;
                st.segment += 1;
                st.reference = None;
                st.last_transit = None;
                self.reset_drift();
                // Keep sequence accounting; only the timeline restarts.
            }
        }

        if is_media
            && !newest
            && let Some((ref_ts, _, _)) = st.reference
        {
            let apart =
                ticks_to_nanos(ts as i64 - ref_ts as i64, st.clock_rate.max(1)).unsigned_abs();
            if apart > DISCONTINUITY.as_nanos() {
                self.stream = Some(st);
                return Err(Rejected::BadTimestamp);
            }
        }
        let start =
            st.anchor_pos + self.to_timeline(ts as i64 - st.anchor_ts as i64, st.clock_rate);
        let len = self.to_timeline(i64::from(info.duration), info.clock_rate.max(1));

        // Already played, or still held?
        let key = Key {
            segment: st.segment,
            seq,
        };
        if seq < st.max_seq {
            self.stats.reordered += 1;
        }
        if let Some(next) = self.next
            && key < next
        {
            let in_window = key.segment == next.segment && next.seq - key.seq <= SeqWindow::SPAN;
            let dup = in_window && self.played.get(key.seq);
            if !dup {
                // First arrival, too late to play: received all the same,
                // and a later copy of it is a duplicate.
                st.unique_received += 1;
                if in_window {
                    self.played.set(key.seq, true);
                }
            }
            self.stream = Some(st);
            if dup {
                return Err(Rejected::Duplicate);
            }
            self.late_run(now);
            return Err(Rejected::Late);
        }
        if is_media
            && self
                .cursor
                .is_some_and(|c| start + self.shift + len.max(1) <= c)
        {
            // Its place was played (as silence) before it came. It is not
            // moved: everything after it stays where its timestamp says.
            // Only if the delay stays this long does the leg resynchronise.
            st.unique_received += 1;
            st.mark_newest(seq, ts, newest);
            if newest && info.kind == MediaKind::Audio {
                self.measure(start, now);
            }
            let gross = self.drift.gross_ppm(GROSS_SKEW_PPM).is_some();
            if gross && self.order.is_empty() {
                // A wrong sender clock ran the buffer dry: play on from
                // where the silence ended.
                self.stats.resyncs += 1;
                self.late_since = None;
                self.shift += self.cursor.unwrap_or(0) - (start + self.shift);
            } else if self.late_run(now) {
                // Resynchronised: this packet now plays at its arrival time.
                let base = self.base_ns.unwrap_or(0);
                let at_arrival = self.ns_to_ticks(now.as_nanos() as i64 - base);
                self.shift = self.shift.max(at_arrival - start);
                // Lateness is measured on the RTP timeline, which a resync
                // does not move: the drift measurement goes on.
                self.pending = 0;
                self.pending_since = None;
            } else {
                self.stream = Some(st);
                return Err(Rejected::Late);
            }
            st.unique_received -= 1;
        } else if is_media {
            self.late_since = None;
        }
        // Most packets arrive in order and go last: one look at the newest
        // held key instead of a binary search through cold memory.
        let at = match self.newest_held {
            None => Err(0),
            Some(k) if k < key => Err(self.order.len()),
            Some(_) => self
                .order
                .binary_search_by(|&i| self.slots[i].key.cmp(&Some(key))),
        };
        let at = match at {
            Ok(_) => {
                self.stream = Some(st);
                return Err(Rejected::Duplicate);
            }
            Err(at) => at,
        };
        let Some(slot_index) = self.take_slot() else {
            self.stream = Some(st);
            return Err(Rejected::Overflow);
        };

        // Accepted: update the stream.
        st.unique_received += 1;
        st.mark_newest(seq, ts, newest);
        st.base_seq = st.base_seq.min(seq);
        if is_media {
            // RFC 3550 §6.4.1 interarrival jitter, in RTP ticks.
            let arrival_ticks = nanos_to_ticks(now.as_nanos() as i128, st.clock_rate) as i128;
            let transit = arrival_ticks - ts as i128;
            if let Some(last) = st.last_transit {
                let d = (transit - last).abs() as f64;
                st.jitter += (d - st.jitter) / 16.0;
            }
            st.last_transit = Some(transit);
            if newest {
                if packet.marker && st.reference.is_some() {
                    self.stats.talkspurts += 1;
                }
                st.reference = Some((ts, now, start));
                if info.kind == MediaKind::Audio {
                    self.measure(start, now);
                }
            }
            st.end = st.end.max(start + len);
        }
        self.stream = Some(st);

        let slot = &mut self.slots[slot_index];
        slot.key = Some(key);
        slot.start = start;
        slot.len = if is_media { len } else { 0 };
        slot.set_payload(packet.payload);
        slot.payload_type = packet.payload_type;
        slot.kind = Some(info.kind);
        slot.ssrc = packet.ssrc;
        slot.marker = packet.marker;
        if at == self.order.len() {
            self.newest_held = Some(key);
        }
        self.order.insert(at, slot_index);
        Ok(())
    }

    /// A free slot: the lowest-numbered free one (so a leg keeps to as
    /// few slots as it holds packets), else a new one while the buffer is
    /// under its capacity.
    fn take_slot(&mut self) -> Option<usize> {
        if let Some(index) = self.free.take_lowest() {
            return Some(index);
        }
        if self.slots.len() >= self.cfg.capacity {
            return None;
        }
        self.slots.push(Slot::default());
        Some(self.slots.len() - 1)
    }

    /// Counts a late packet; true when audio has now been late for
    /// [`RESYNC_AFTER`] in a row and the leg resynchronises.
    fn late_run(&mut self, now: Duration) -> bool {
        let since = *self.late_since.get_or_insert(now);
        if now.saturating_sub(since) < RESYNC_AFTER {
            return false;
        }
        self.late_since = None;
        self.stats.resyncs += 1;
        true
    }

    /// Measures an audio packet's lateness against the anchor: before the
    /// first playout it settles the anchor (the earliest packet defines it),
    /// afterwards it feeds the drift estimate and, when the drift is real
    /// and the offset beyond the bound, sets a correction going.
    fn measure(&mut self, start: i64, now: Duration) {
        let Some(base) = self.base_ns else { return };
        let now_ns = now.as_nanos() as i64;
        let lateness = now_ns - base - self.ticks_to_ns(start);
        if self.cursor.is_none() {
            if lateness < 0 {
                self.base_ns = Some(base + lateness);
            }
            return;
        }
        if !self.drift.observe(now_ns, lateness) || self.cfg.drift_bound.is_zero() {
            return;
        }
        let Some(trend) = self.drift.trend() else {
            return;
        };
        let ahead = |ppm: f64| ppm * 1e-6 * DRIFT_LOOKAHEAD_SECS * 1e9;
        let own_ns = trend.offset_ns + ahead(trend.ppm) - self.drift_corrected_ns();
        let buffer_bound_ns = (self.cfg.playout_delay.as_nanos() / 2) as f64;
        let (target_ns, ppm) = match self.drift_reference {
            Some(r)
                if own_ns.abs() <= buffer_bound_ns.max(self.cfg.drift_bound.as_nanos() as f64) =>
            {
                (own_ns - (r.offset_ns + ahead(r.ppm)), trend.ppm - r.ppm)
            }
            _ => (own_ns, trend.ppm),
        };
        let offset = self.ns_to_ticks(target_ns as i64);
        let bound = self.ns_to_ticks(self.cfg.drift_bound.as_nanos() as i64);
        // Correct towards the line only in the direction the clock drifts.
        let with_trend = (offset > 0) == (ppm > 0.0);
        if !with_trend {
            return;
        }
        if self.pending != 0 || offset.abs() > bound {
            self.pending = offset;
            self.pending_since.get_or_insert(now);
        }
    }

    /// Measures drift afresh from here (the relation between the sender's
    /// timestamps and our clock changed); a correction under way is dropped.
    fn reset_drift(&mut self) {
        self.drift.reset();
        self.drift_shift_at = self.shift;
        self.pending = 0;
        self.pending_since = None;
    }

    /// Ends the leg: [`JitterBuffer::pop`] then releases everything held,
    /// regardless of deadlines, and fills no silence after it.
    pub fn finish(&mut self) {
        self.draining = true;
        if self.candidate.take().is_some() {
            self.stats.foreign_ssrc += 1;
        }
    }

    /// Applies a pending correction where the leg is known to be silent:
    /// no audio held at all (the sender paused), or a stretch of silence
    /// (DTX, comfort noise) before the next held packet with nothing missing
    /// in between. Insertion lengthens that silence, removal shortens it.
    fn correct_in_silence(&mut self) {
        if self.pending == 0 || self.draining {
            return;
        }
        let Some(cursor) = self.cursor else { return };
        let room = match self.order.front() {
            None => i64::MAX,
            Some(&head) => {
                let s = &self.slots[head];
                let quiet_before = s.key.is_some() && self.next.is_none_or(|n| s.key == Some(n));
                if !quiet_before {
                    return;
                }
                s.start + self.shift - cursor
            }
        };
        let ticks = if self.pending > 0 {
            if room <= 0 {
                return;
            }
            self.pending
        } else {
            if room == i64::MAX {
                return; // nothing known ahead to shorten
            }
            -(room.min(-self.pending))
        };
        if ticks != 0 {
            self.shift += ticks;
            self.count_correction(ticks, true);
        }
    }

    /// The next step of playout due at `now`, or `None` when nothing is due.
    /// Call repeatedly until `None`.
    pub fn pop(&mut self, now: Duration) -> Option<Playout<'_>> {
        self.correct_in_silence();
        loop {
            let Some(&head) = self.order.front() else {
                return self.fill_to_playout_point(now, None);
            };
            let (key, raw_start, len, kind) = {
                let s = &self.slots[head];
                (s.key?, s.start, s.len, s.kind?)
            };
            let start = raw_start + self.shift;
            if !self.draining && self.playout_point(now).is_some_and(|p| start > p) {
                return self.fill_to_playout_point(now, Some(start));
            }
            let is_media = matches!(kind, MediaKind::Audio | MediaKind::ComfortNoise);
            if let Some(next) = self.next
                && key != next
            {
                // Sequence numbers between `next` and `key` never came.
                if key.segment == next.segment {
                    self.played.clear_range(next.seq, key.seq);
                } else {
                    self.played = SeqWindow::default();
                }
                self.skipped = true;
                self.next = Some(key);
            }
            let cursor = *self.cursor.get_or_insert(start.min(self.shift));
            if is_media && start > cursor {
                let cause = if self.skipped {
                    GapCause::Loss
                } else {
                    GapCause::Silence
                };
                if cause == GapCause::Loss {
                    self.stats.concealed_ticks += (start - cursor) as u64;
                }
                self.cursor = Some(start);
                self.skipped = false;
                let following = (cause == GapCause::Loss).then(|| self.slots[head].payload());
                return Some(Playout::Gap {
                    start: cursor,
                    len: start - cursor,
                    cause,
                    following,
                });
            }
            let overlap = if is_media && start < cursor {
                (cursor - start).min(len)
            } else {
                0
            };
            // Release the head.
            self.order.pop_front();
            if self.order.is_empty() {
                self.newest_held = None;
            }
            self.free.put(head);
            self.next = Some(Key {
                segment: key.segment,
                seq: key.seq + 1,
            });
            self.played.set(key.seq, true);
            if !is_media {
                continue; // events are reported at arrival; nothing to play
            }
            self.skipped = false;
            self.cursor = Some(cursor.max(start + len));
            let s = &self.slots[head];
            return Some(Playout::Frame(Frame {
                start,
                len,
                overlap,
                payload: s.payload(),
                payload_type: s.payload_type,
                kind,
                ssrc: s.ssrc,
                marker: s.marker,
            }));
        }
    }

    /// Silence up to the playout point (never past `limit`, the next held
    /// packet), so that the consumer's output keeps up with time.
    fn fill_to_playout_point(&mut self, now: Duration, limit: Option<i64>) -> Option<Playout<'_>> {
        if self.draining {
            return None;
        }
        let cursor = self.cursor?;
        let point = self.playout_point(now)?;
        let point = limit.map_or(point, |l| point.min(l));
        if point <= cursor {
            return None;
        }
        self.cursor = Some(point);
        Some(Playout::Gap {
            start: cursor,
            len: point - cursor,
            cause: GapCause::Silence,
            following: None,
        })
    }
}

/// Which of the last [`SeqWindow::SPAN`] sequence numbers were received,
/// as a ring of bits indexed by sequence number.
#[derive(Debug, Clone, Default)]
struct SeqWindow {
    bits: [u64; 8],
}

impl SeqWindow {
    const SPAN: u64 = 512;

    fn get(&self, seq: u64) -> bool {
        let i = (seq % Self::SPAN) as usize;
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, seq: u64, on: bool) {
        let i = (seq % Self::SPAN) as usize;
        if on {
            self.bits[i / 64] |= 1 << (i % 64);
        } else {
            self.bits[i / 64] &= !(1 << (i % 64));
        }
    }

    /// Marks `from..to` as not received.
    fn clear_range(&mut self, from: u64, to: u64) {
        if to.saturating_sub(from) >= Self::SPAN {
            self.bits = [0; 8];
            return;
        }
        for seq in from..to {
            self.set(seq, false);
        }
    }
}

fn stream_lost(st: &Stream) -> u64 {
    let expected = st.max_seq - st.base_seq + 1;
    expected.saturating_sub(st.unique_received)
}

fn signed_nanos(a: Duration, b: Duration) -> i128 {
    a.as_nanos() as i128 - b.as_nanos() as i128
}

#[cfg(test)]
mod tests;
