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
//! # Playout
//!
//! Each packet gets a deadline: its arrival-time anchor plus its offset on the
//! timeline plus `playout_delay`. [`JitterBuffer::pop`] releases packets in
//! sequence order once the earliest is due, and fills silence up to
//! `now − playout_delay` while nothing is buffered, so a consumer ticking
//! every 20 ms always gets audio up to the playout point. A packet whose
//! successor was already played is [`Rejected::Late`]. A packet that arrives
//! after its place was filled with synthetic silence (the network delay grew
//! past the playout delay) is not thrown away: the segment slips later by the
//! overlap, keeping every received sample. At a marker bit (a new talkspurt)
//! the arrival anchor is taken again, so deadlines follow the current network
//! delay without moving any audio.
//!
//! The buffer never reads a clock: `now` is passed in by the caller.

use std::time::Duration;

use crate::core::rtp::{MediaKind, RtpPacket};
use crate::core::time::{extend_seq, extend_ts, nanos_to_ticks, rescale, ticks_to_nanos};

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
/// Window over which the least arrival delay is measured.
const CLOCK_WINDOW: Duration = Duration::from_secs(2);
/// Least arrival delay beyond which deadlines are moved.
const CLOCK_TOLERANCE: Duration = Duration::from_millis(5);

/// How the buffer is sized and how long it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Ticks per second of the timeline (the leg's audio rate).
    pub clock_rate: u32,
    /// How long after its ideal time a packet is waited for.
    pub playout_delay: Duration,
    /// Most packets held at once; beyond it packets are [`Rejected::Overflow`].
    pub capacity: usize,
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
    /// Its successor was already played out.
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
    /// Timeline position of the first sample.
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
    /// Times a segment was moved later because its audio arrived after its
    /// place had been filled with silence.
    pub slips: u64,
    pub talkspurts: u64,
    /// Times deadlines were moved to follow the sender's clock or a changed
    /// network delay.
    pub clock_shifts: u64,
    /// Timeline ticks filled because packets were lost or late.
    pub concealed_ticks: u64,
    /// RFC 3550 interarrival jitter, in milliseconds.
    pub jitter_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    segment: u32,
    seq: u64,
}

#[derive(Debug, Default)]
struct Slot {
    key: Option<Key>,
    start: i64,
    len: i64,
    deadline: Duration,
    payload: Vec<u8>,
    payload_type: u8,
    kind: Option<MediaKind>,
    ssrc: u32,
    marker: bool,
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
    anchor_ts: u64,
    anchor_pos: i64,
    anchor_arrival: Duration,
    /// The audio packet with the highest sequence number: (ts, arrival, pos).
    reference: Option<(u64, Duration, i64)>,
    /// End of the furthest audio seen on the timeline.
    end: i64,
    /// RFC 3550 jitter estimate in RTP ticks, and the last transit.
    jitter: f64,
    last_transit: Option<i128>,
    /// Arrival-delay tracking: start of the current window and the least
    /// lateness (arrival − ideal time, ns) seen in it.
    window_start: Duration,
    window_min: Option<i128>,
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
    slots: Vec<Slot>,
    /// Indices into `slots` of occupied slots, ordered by key.
    order: Vec<usize>,
    free: Vec<usize>,
    stream: Option<Stream>,
    candidate: Option<Candidate>,
    /// Next key to play; everything before it is played or given up.
    next: Option<Key>,
    /// Which sequence numbers just behind `next` were received.
    played: SeqWindow,
    /// A missing sequence number was skipped since the last audio frame.
    skipped: bool,
    /// Everything before this position has been released.
    cursor: Option<i64>,
    /// End of the last real audio released (the rest up to the cursor is
    /// synthetic silence).
    real_end: i64,
    draining: bool,
    lost_before: u64,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(cfg: JitterConfig) -> Self {
        let capacity = cfg.capacity.max(1);
        Self {
            cfg,
            slots: (0..capacity).map(|_| Slot::default()).collect(),
            order: Vec::with_capacity(capacity),
            free: (0..capacity).rev().collect(),
            stream: None,
            candidate: None,
            next: None,
            played: SeqWindow::default(),
            skipped: false,
            cursor: None,
            real_end: 0,
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
        s
    }

    /// Number of packets held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The position up to which everything has been released.
    pub fn cursor(&self) -> Option<i64> {
        self.cursor
    }

    /// Maps a timestamp of the current stream to the timeline (for events
    /// such as DTMF that are reported by timestamp).
    pub fn position_of(&self, ssrc: u32, timestamp: u32) -> Option<i64> {
        let st = self.stream.filter(|s| s.ssrc == ssrc)?;
        let ts = extend_ts(Some(st.last_ts), timestamp);
        Some(st.anchor_pos + self.to_timeline(ts as i64 - st.anchor_ts as i64, st.clock_rate))
    }

    fn to_timeline(&self, rtp_ticks: i64, rtp_rate: u32) -> i64 {
        rescale(rtp_ticks, rtp_rate, self.cfg.clock_rate)
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
        match result {
            Err(Rejected::Duplicate) => self.stats.duplicates += 1,
            Err(Rejected::Late) => self.stats.late += 1,
            Err(Rejected::Overflow) => self.stats.overflow += 1,
            Err(Rejected::ForeignSsrc) => self.stats.foreign_ssrc += 1,
            Err(Rejected::BadTimestamp) => self.stats.bad_timestamp += 1,
            Ok(()) => {}
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
            self.start_stream(
                packet.ssrc,
                packet.sequence,
                packet.timestamp,
                info,
                now,
                0,
                0,
            );
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
            cand.arrival,
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

    /// Where a new segment starting at `arrival` goes: right after the old
    /// audio, or later by the arrival gap when the sender was really quiet.
    fn continuation(&self, old: &Stream, arrival: Duration) -> i64 {
        let by_arrival = match old.reference {
            Some((_, ref_arrival, ref_pos)) => {
                ref_pos + nanos_to_ticks(signed_nanos(arrival, ref_arrival), self.cfg.clock_rate)
            }
            None => old.end,
        };
        let slack = nanos_to_ticks(CONTINUATION_SLACK.as_nanos() as i128, self.cfg.clock_rate);
        let end = old.end.max(self.cursor.unwrap_or(i64::MIN));
        if by_arrival > end + slack {
            by_arrival
        } else {
            end
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_stream(
        &mut self,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        info: PayloadInfo,
        arrival: Duration,
        pos: i64,
        segment: u32,
    ) {
        let seq_ext = extend_seq(None, seq);
        let ts_ext = extend_ts(None, timestamp);
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
            anchor_arrival: arrival,
            reference: None,
            end: pos,
            jitter: 0.0,
            last_transit: None,
            window_start: arrival,
            window_min: None,
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
            self.start_stream(st.ssrc, seq16, ts32, info, now, pos, st.segment + 1);
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
                st.anchor_arrival = now;
                st.clock_rate = info.clock_rate;
                st.segment += 1;
                st.reference = None;
                st.last_transit = None;
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
            return Err(if dup {
                Rejected::Duplicate
            } else {
                Rejected::Late
            });
        }
        // Most packets arrive in order and go last: one look at the newest
        // held slot instead of a binary search through cold memory.
        let newest_held = self.order.last().map(|&i| self.slots[i].key);
        let at = match newest_held {
            None => Err(0),
            Some(k) if k < Some(key) => Err(self.order.len()),
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
        let Some(slot_index) = self.free.pop() else {
            self.stream = Some(st);
            return Err(Rejected::Overflow);
        };

        // Accepted: update the stream.
        st.unique_received += 1;
        if newest {
            st.max_seq = seq;
            st.last_ts = ts;
        }
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
                    // A new talkspurt: re-take the arrival anchor.
                    self.stats.talkspurts += 1;
                    st.anchor_ts = ts;
                    st.anchor_pos = start;
                    st.anchor_arrival = now;
                    st.window_start = now;
                    st.window_min = None;
                }
                self.follow_sender_clock(&mut st, start, now);
                st.reference = Some((ts, now, start));
            }
            st.end = st.end.max(start + len);
        }
        let deadline = st.anchor_arrival
            + Duration::from_nanos(ticks_to_nanos(
                (start - st.anchor_pos).max(0),
                self.cfg.clock_rate,
            ) as u64)
            + self.cfg.playout_delay;
        let deadline = if start < st.anchor_pos {
            // Reordered from before the anchor: due as soon as the anchor is.
            st.anchor_arrival + self.cfg.playout_delay
        } else {
            deadline
        };
        self.stream = Some(st);

        let slot = &mut self.slots[slot_index];
        slot.key = Some(key);
        slot.start = start;
        slot.len = if is_media { len } else { 0 };
        slot.deadline = deadline;
        slot.payload.clear();
        slot.payload.extend_from_slice(packet.payload);
        slot.payload_type = packet.payload_type;
        slot.kind = Some(info.kind);
        slot.ssrc = packet.ssrc;
        slot.marker = packet.marker;
        self.order.insert(at, slot_index);
        Ok(())
    }

    /// Keeps deadlines on the sender's clock: over each [`CLOCK_WINDOW`],
    /// the least-delayed packet should arrive at its ideal time. If it
    /// arrived more than [`CLOCK_TOLERANCE`] early or late (a sender clock
    /// running fast or slow, or a changed network delay), the arrival anchor
    /// moves by that much. Positions never move, only when they play.
    fn follow_sender_clock(&mut self, st: &mut Stream, start: i64, now: Duration) {
        let ideal = ticks_to_nanos(start - st.anchor_pos, self.cfg.clock_rate);
        let lateness = signed_nanos(now, st.anchor_arrival) - ideal;
        st.window_min = Some(st.window_min.map_or(lateness, |m| m.min(lateness)));
        if now.saturating_sub(st.window_start) < CLOCK_WINDOW {
            return;
        }
        if let Some(min) = st.window_min.take()
            && min.unsigned_abs() > CLOCK_TOLERANCE.as_nanos()
        {
            let shift = Duration::from_nanos(min.unsigned_abs() as u64);
            st.anchor_arrival = if min > 0 {
                st.anchor_arrival + shift
            } else {
                st.anchor_arrival.saturating_sub(shift)
            };
            self.stats.clock_shifts += 1;
        }
        st.window_start = now;
    }

    /// Ends the leg: [`JitterBuffer::pop`] then releases everything held,
    /// regardless of deadlines, and fills no silence after it.
    pub fn finish(&mut self) {
        self.draining = true;
        if self.candidate.take().is_some() {
            self.stats.foreign_ssrc += 1;
        }
    }

    /// The next step of playout due at `now`, or `None` when nothing is due.
    /// Call repeatedly until `None`.
    pub fn pop(&mut self, now: Duration) -> Option<Playout<'_>> {
        loop {
            let Some(&head) = self.order.first() else {
                return self.fill_to_playout_point(now, None);
            };
            let (key, start, len, deadline, kind) = {
                let s = &self.slots[head];
                (s.key?, s.start, s.len, s.deadline, s.kind?)
            };
            if !self.draining && deadline > now {
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
            let cursor = *self.cursor.get_or_insert(start.min(0));
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
                let following = (cause == GapCause::Loss).then_some(&self.slots[head].payload[..]);
                return Some(Playout::Gap {
                    start: cursor,
                    len: start - cursor,
                    cause,
                    following,
                });
            }
            let mut start = start;
            let mut overlap = 0;
            if is_media && start < cursor {
                if start >= self.real_end && kind == MediaKind::Audio {
                    // Its place was filled with silence while it was in
                    // flight: move the segment later instead of losing it.
                    self.slip(key.segment, cursor - start);
                    start = cursor;
                } else {
                    overlap = (cursor - start).min(len);
                }
            }
            // Release the head.
            self.order.remove(0);
            self.free.push(head);
            self.next = Some(Key {
                segment: key.segment,
                seq: key.seq + 1,
            });
            self.played.set(key.seq, true);
            if !is_media {
                continue; // events are reported at arrival; nothing to play
            }
            self.skipped = false;
            let end = start + len;
            if kind == MediaKind::Audio {
                self.real_end = self.real_end.max(end);
            }
            self.cursor = Some(cursor.max(end));
            let s = &self.slots[head];
            return Some(Playout::Frame(Frame {
                start,
                len,
                overlap,
                payload: &s.payload,
                payload_type: s.payload_type,
                kind,
                ssrc: s.ssrc,
                marker: s.marker,
            }));
        }
    }

    /// Shifts a segment (held packets and future ones) later on the timeline.
    fn slip(&mut self, segment: u32, by: i64) {
        self.stats.slips += 1;
        let shift = Duration::from_nanos(ticks_to_nanos(by, self.cfg.clock_rate) as u64);
        for &i in &self.order {
            let slot = &mut self.slots[i];
            if slot.key.is_some_and(|k| k.segment == segment) {
                slot.start += by;
                slot.deadline += shift;
            }
        }
        if let Some(st) = self.stream.as_mut()
            && st.segment == segment
        {
            // Positions and the time they play at move together, so the
            // playout point (which follows arrival time) stays where it is.
            st.anchor_pos += by;
            st.anchor_arrival +=
                Duration::from_nanos(ticks_to_nanos(by, self.cfg.clock_rate) as u64);
            st.end += by;
            if let Some(r) = st.reference.as_mut() {
                r.2 += by;
            }
        }
    }

    /// Silence up to `now − playout_delay` (never past `limit`, the next held
    /// packet), so that the consumer's output keeps up with time.
    fn fill_to_playout_point(&mut self, now: Duration, limit: Option<i64>) -> Option<Playout<'_>> {
        if self.draining {
            return None;
        }
        let st = self.stream?;
        let cursor = self.cursor?;
        let point = st.anchor_pos
            + nanos_to_ticks(
                signed_nanos(now, st.anchor_arrival) - self.cfg.playout_delay.as_nanos() as i128,
                self.cfg.clock_rate,
            );
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
