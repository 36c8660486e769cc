//! One leg of a call, end to end inside the media core: datagrams in, a
//! contiguous run of mono PCM on the leg's timeline out.
//!
//! [`LegReceiver::push`] parses a datagram, sorts out what it is (audio,
//! telephone event, comfort noise, RTCP, garbage), reports DTMF and offers it
//! to the jitter buffer. [`LegReceiver::pull`] plays out everything due at
//! `now` through the decoders into a [`PcmSink`]. The sink sees one
//! contiguous stream from the first audio sample on: gaps arrive as silence
//! or concealment, overlaps are trimmed, and every position is in ticks of
//! [`LegReceiver::rate`] on the leg timeline (0 = the leg's first packet).

use std::time::Duration;

use crate::decode::{Decoder, decoder_for, payload_duration};
use crate::jitter::drift::Level;
use crate::jitter::{
    GapCause, JitterBuffer, JitterConfig, JitterStats, PayloadInfo, Playout, Rejected,
};
use crate::resample::Resampler;
use crate::rtp::dtmf::{DtmfDetector, DtmfEvent};
use crate::rtp::{Codec, MediaKind, PayloadMap, RtpError, RtpPacket, is_rtcp};
use crate::time::rescale;

/// A drift correction waits this long for quiet audio before it stretches
/// or squeezes whatever audio comes (a leg that never pauses).
pub const STRETCH_AFTER: Duration = Duration::from_secs(10);
/// Decoded frames whose mean absolute level is at most this are silence
/// whatever the noise floor (about −54 dBFS).
const QUIET_LEVEL: f64 = 64.0;
/// Frames louder than this are never treated as silence (about −40 dBFS).
const SPEECH_LEVEL: f64 = 320.0;
/// Least rate at which a stretching correction proceeds, in ppm.
const MIN_STRETCH_PPM: f64 = 500.0;

/// Gaps longer than this many seconds are written as plain silence without
/// going through the decoder or resampler (bounded work and memory whatever
/// the timestamps say).
const LONG_GAP_SECS: i64 = 1;

/// Where a leg's audio goes.
pub trait PcmSink {
    /// Samples starting at timeline position `start`.
    fn samples(&mut self, start: i64, pcm: &[i16]);
    /// `len` ticks of silence starting at `start`.
    fn silence(&mut self, start: i64, len: i64);
}

/// A DTMF digit placed on the leg timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DtmfRecord {
    /// The character (`0`–`9`, `*`, `#`, `A`–`D`, `!` for flash) or `?`.
    pub digit: char,
    pub event: u8,
    /// Timeline position of the event start, in leg-rate ticks.
    #[serde(skip)]
    pub position: i64,
    /// Start in milliseconds on the leg timeline.
    pub start_ms: i64,
    pub duration_ms: u32,
    /// Duration in leg-rate ticks.
    #[serde(skip)]
    pub duration_ticks: i64,
    pub volume: u8,
    /// False when no end packet was seen.
    pub ended: bool,
}

/// Counters of one leg beyond the jitter buffer's.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct LegStats {
    /// Datagrams offered.
    pub datagrams: u64,
    /// Datagrams that were not valid RTP.
    pub malformed: u64,
    /// RTCP packets arriving on the RTP port.
    pub rtcp: u64,
    /// Packets with a payload type the leg has no mapping for.
    pub unknown_payload_type: u64,
    /// Audio packets the decoder refused (their time is concealed).
    pub decode_errors: u64,
    pub received: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub overflow: u64,
    pub foreign_ssrc: u64,
    pub bad_timestamp: u64,
    pub ssrc_changes: u64,
    pub discontinuities: u64,
    pub talkspurts: u64,
    /// Times the network delay stayed beyond the playout delay and the leg
    /// was placed later to follow it.
    pub resyncs: u64,
    pub concealed_ms: u64,
    pub jitter_ms: f64,
    /// Measured skew of the sender's clock (positive: slow), in ppm.
    pub drift_ppm: f64,
    /// Drift corrections applied, and the samples they inserted/removed.
    pub corrections: u64,
    pub samples_inserted: u64,
    pub samples_removed: u64,
    /// Corrections that found no silence and stretched audio instead.
    pub corrections_outside_silence: u64,
    pub dtmf_events: u64,
}

/// Why [`LegReceiver::push`] did not take a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dropped {
    Malformed(RtpError),
    Rtcp,
    UnknownPayloadType(u8),
    Jitter(Rejected),
}

/// Settings of one leg.
#[derive(Debug, Clone)]
pub struct LegConfig {
    pub payload_map: PayloadMap,
    /// Output sample rate of the leg.
    pub rate: u32,
    pub playout_delay: Duration,
    pub jitter_capacity: usize,
    /// Clock drift is corrected once it has moved the leg this far (zero:
    /// measured, never corrected).
    pub drift_bound: Duration,
}

struct DecoderSlot {
    payload_type: u8,
    decoder: Box<dyn Decoder>,
    resampler: Option<Resampler>,
}

/// See the module documentation.
pub struct LegReceiver {
    map: PayloadMap,
    rate: u32,
    jitter: JitterBuffer,
    dtmf: DtmfDetector,
    dtmf_records: Vec<DtmfRecord>,
    decoders: Vec<DecoderSlot>,
    /// The decoder used last: concealment goes through it.
    current: Option<usize>,
    decoded: Vec<i16>,
    resampled: Vec<i16>,
    /// Output written up to here (None before the first audio).
    written_to: Option<i64>,
    last_arrival: Option<Duration>,
    /// Slowly rising minimum of decoded frame levels: what silence sounds
    /// like on this leg.
    noise_floor: Option<f64>,
    /// Fraction of a sample a stretching correction has earned so far.
    stretch_credit: f64,
    /// The payload type and codec of the last audio packet taken: what
    /// the sender speaks, so what it is answered in.
    audio_payload: Option<(u8, Codec)>,
    stats: LegStats,
}

impl LegReceiver {
    pub fn new(cfg: LegConfig) -> Self {
        Self {
            map: cfg.payload_map,
            rate: cfg.rate,
            jitter: JitterBuffer::new(JitterConfig {
                clock_rate: cfg.rate,
                playout_delay: cfg.playout_delay,
                capacity: cfg.jitter_capacity,
                drift_bound: cfg.drift_bound,
            }),
            dtmf: DtmfDetector::new(),
            dtmf_records: Vec::new(),
            decoders: Vec::new(),
            current: None,
            decoded: Vec::with_capacity(5760),
            resampled: Vec::with_capacity(5760),
            written_to: None,
            last_arrival: None,
            noise_floor: None,
            stretch_credit: 0.0,
            audio_payload: None,
            stats: LegStats::default(),
        }
    }

    /// Output sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Clock time of timeline position 0 (the leg's anchor: see
    /// [`JitterBuffer::origin`]). Settled by the time audio is first written.
    pub fn origin(&self) -> Option<Duration> {
        self.jitter.origin()
    }

    /// Arrival time of the latest packet of any kind.
    pub fn last_arrival(&self) -> Option<Duration> {
        self.last_arrival
    }

    /// Position up to which audio has been written to the sink.
    pub fn written_to(&self) -> Option<i64> {
        self.written_to
    }

    /// The payload type and codec of the last audio packet taken.
    pub fn audio_payload(&self) -> Option<(u8, Codec)> {
        self.audio_payload
    }

    pub fn payload_map(&self) -> &PayloadMap {
        &self.map
    }

    /// DTMF seen so far, in order of arrival.
    pub fn dtmf(&self) -> &[DtmfRecord] {
        &self.dtmf_records
    }

    /// Start of a DTMF event still in progress, as a timeline position.
    pub fn dtmf_in_progress(&self) -> Option<i64> {
        let ev = self.dtmf.open_event()?;
        self.jitter.position_of(ev.ssrc, ev.timestamp as u32)
    }

    /// Codecs this leg has decoded (SDP names), in first-use order.
    pub fn codecs_used(&self) -> Vec<String> {
        self.decoders
            .iter()
            .filter_map(|d| self.map.get(d.payload_type).map(|c| c.name().to_owned()))
            .collect()
    }

    /// The highest rate any of this leg's decoders produces (`None` before
    /// its first audio): what it plays holds nothing above half of it.
    pub fn decoded_rate(&self) -> Option<u32> {
        self.decoders.iter().map(|d| d.decoder.sample_rate()).max()
    }

    /// See [`JitterBuffer::drift_level`].
    pub fn drift_level(&self) -> Option<Level> {
        self.jitter.drift_level()
    }

    /// See [`JitterBuffer::set_drift_reference`].
    pub fn set_drift_reference(&mut self, reference: Option<Level>) {
        self.jitter.set_drift_reference(reference);
    }

    /// Packets the jitter buffer can take before it overflows.
    pub fn room(&self) -> usize {
        self.jitter
            .config()
            .capacity
            .saturating_sub(self.jitter.len())
    }

    pub fn jitter_stats(&self) -> JitterStats {
        self.jitter.stats()
    }

    pub fn stats(&self) -> LegStats {
        let j = self.jitter.stats();
        LegStats {
            received: j.received,
            lost: j.lost,
            late: j.late,
            duplicates: j.duplicates,
            reordered: j.reordered,
            overflow: j.overflow,
            foreign_ssrc: j.foreign_ssrc,
            bad_timestamp: j.bad_timestamp,
            ssrc_changes: j.ssrc_changes,
            discontinuities: j.discontinuities,
            talkspurts: j.talkspurts,
            resyncs: j.resyncs,
            concealed_ms: j.concealed_ticks * 1000 / u64::from(self.rate.max(1)),
            jitter_ms: j.jitter_ms,
            drift_ppm: (j.drift_ppm * 10.0).round() / 10.0,
            corrections: j.corrections,
            samples_inserted: j.samples_inserted,
            samples_removed: j.samples_removed,
            corrections_outside_silence: j.corrections_outside_silence,
            dtmf_events: self.dtmf_records.len() as u64,
            ..self.stats
        }
    }

    /// Offers one datagram that arrived at `now`.
    pub fn push(&mut self, datagram: &[u8], now: Duration) -> Result<(), Dropped> {
        self.stats.datagrams += 1;
        self.last_arrival = Some(now);
        if is_rtcp(datagram) {
            self.stats.rtcp += 1;
            return Err(Dropped::Rtcp);
        }
        let packet = match RtpPacket::parse(datagram) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(Dropped::Malformed(e));
            }
        };
        let Some(codec) = self.map.get(packet.payload_type) else {
            // Not decodable, but it still counts for sequence accounting
            // (loss, duplicates, reordering) like any packet of the stream.
            self.stats.unknown_payload_type += 1;
            let info = PayloadInfo {
                kind: MediaKind::Unknown,
                clock_rate: 8000,
                duration: 0,
            };
            let _ = self.jitter.push(&packet, info, now);
            return Err(Dropped::UnknownPayloadType(packet.payload_type));
        };
        let info = PayloadInfo {
            kind: codec.kind(),
            clock_rate: codec.clock_rate(),
            duration: payload_duration(codec, packet.payload),
        };
        if info.kind == MediaKind::Audio {
            self.audio_payload = Some((packet.payload_type, codec));
        }
        if info.kind == MediaKind::Audio && info.duration == 0 && !packet.payload.is_empty() {
            // An audio payload whose length cannot be told (a broken Opus
            // TOC): nothing can be placed or decoded.
            self.stats.decode_errors += 1;
        }
        let result = self.jitter.push(&packet, info, now);
        if info.kind == MediaKind::Event
            && result.is_ok()
            && let Some(ev) = self
                .dtmf
                .push(packet.ssrc, packet.timestamp, packet.payload)
        {
            self.record_dtmf(ev, codec);
        }
        result.map_err(Dropped::Jitter)
    }

    fn record_dtmf(&mut self, ev: DtmfEvent, codec: Codec) {
        let ts32 = ev.timestamp as u32;
        let position = self.jitter.position_of(ev.ssrc, ts32).unwrap_or(0);
        let clock = codec.clock_rate().max(1);
        self.dtmf_records.push(DtmfRecord {
            digit: ev.digit().unwrap_or('?'),
            event: ev.event,
            position,
            start_ms: position * 1000 / i64::from(self.rate.max(1)),
            duration_ms: (u64::from(ev.duration) * 1000 / u64::from(clock)) as u32,
            duration_ticks: rescale(i64::from(ev.duration), clock, self.rate),
            volume: ev.volume,
            ended: ev.ended,
        });
    }

    /// Plays out everything due at `now` into `sink`.
    pub fn pull(&mut self, now: Duration, sink: &mut impl PcmSink) {
        while let Some(step) = self.jitter.pop(now) {
            match step {
                Playout::Gap {
                    start,
                    len,
                    cause,
                    following,
                } => {
                    let Some(written) = self.written_to else {
                        continue; // nothing before the first audio
                    };
                    // The gap covers everything from what was written to
                    // its end: a frame that could not be decoded leaves a
                    // hole before it, which becomes part of the gap.
                    let end = start + len;
                    if end <= written {
                        continue;
                    }
                    let (start, len) = (written, end - written);
                    if len > i64::from(self.rate) * LONG_GAP_SECS {
                        // Nothing to conceal over this long: plain silence,
                        // and the resampler starts afresh after it.
                        if let Some(r) = self
                            .current
                            .and_then(|ix| self.decoders[ix].resampler.as_mut())
                        {
                            r.reset();
                        }
                        sink.silence(start, len);
                        self.written_to = Some(start + len);
                        continue;
                    }
                    match (cause, self.current) {
                        (GapCause::Loss, Some(ix)) => {
                            conceal(
                                &mut self.decoders[ix],
                                &mut self.decoded,
                                &mut self.resampled,
                                len,
                                following,
                                self.rate,
                            );
                            emit(sink, &mut self.written_to, start, &self.resampled);
                        }
                        (GapCause::Silence, Some(ix)) if self.decoders[ix].resampler.is_some() => {
                            // Silence goes through the resampler too, so its
                            // history stays aligned with the timeline.
                            let slot = &mut self.decoders[ix];
                            let native = rescale(len, self.rate, slot.decoder.sample_rate());
                            self.decoded.clear();
                            self.decoded.resize(native.max(0) as usize, 0);
                            resample_into(slot, &mut self.decoded, &mut self.resampled);
                            self.resampled.resize(len as usize, 0);
                            emit(sink, &mut self.written_to, start, &self.resampled);
                        }
                        _ => {
                            sink.silence(start, len);
                            self.written_to = Some(start + len);
                        }
                    }
                }
                Playout::Frame(frame) => {
                    if frame.kind != MediaKind::Audio {
                        continue;
                    }
                    let Some(codec) = self.map.get(frame.payload_type) else {
                        continue;
                    };
                    let ix = match decoder_index(
                        &mut self.decoders,
                        self.rate,
                        frame.payload_type,
                        codec,
                    ) {
                        Some(ix) => ix,
                        None => {
                            self.stats.decode_errors += 1;
                            continue;
                        }
                    };
                    self.current = Some(ix);
                    let slot = &mut self.decoders[ix];
                    self.decoded.clear();
                    if slot
                        .decoder
                        .decode(frame.payload, &mut self.decoded)
                        .is_err()
                    {
                        self.stats.decode_errors += 1;
                        // Its time is filled by the next gap or frame.
                        continue;
                    }
                    resample_into(slot, &mut self.decoded, &mut self.resampled);
                    let skip = (frame.overlap.max(0) as usize).min(self.resampled.len());
                    let start = frame.start + skip as i64;
                    if self.written_to.is_none() {
                        self.written_to = Some(start);
                    }
                    self.resampled.drain(..skip);
                    self.correct_drift(now);
                    emit(sink, &mut self.written_to, start, &self.resampled);
                }
            }
        }
    }

    /// Applies a pending drift correction to the frame just decoded (in
    /// `self.resampled`), if it is quiet: samples are repeated from or cut
    /// at its end. A correction that has found no quiet frame for
    /// [`STRETCH_AFTER`] stretches or squeezes frames by one sample at a
    /// time instead, at no less than twice the measured drift rate.
    fn correct_drift(&mut self, now: Duration) {
        let (pending, since) = self.jitter.pending_correction();
        if pending == 0 {
            // Nothing to correct: no level to measure (this runs on every
            // frame of every leg).
            self.stretch_credit = 0.0;
            return;
        }
        let pcm = &mut self.resampled;
        let n = pcm.len();
        if n < 2 {
            return;
        }
        let sum: u64 = pcm
            .chunks(1 << 16)
            .map(|c| u64::from(c.iter().map(|&x| u32::from(x.unsigned_abs())).sum::<u32>()))
            .sum();
        let level = sum as f64 / n as f64;
        // The noise floor is followed while a correction waits: it falls
        // at once to a quieter frame and rises slowly.
        let floor = self.noise_floor.get_or_insert(level);
        *floor = if level < *floor {
            level
        } else {
            *floor + (level - *floor) * 0.02
        };
        let quiet = level <= SPEECH_LEVEL && level <= QUIET_LEVEL.max(*floor * 2.0);
        if quiet {
            let ticks = if pending > 0 {
                let k = (pending as usize).min(n);
                pcm.extend_from_within(n - k..);
                k as i64
            } else {
                let k = (pending.unsigned_abs() as usize).min(n - 1);
                pcm.truncate(n - k);
                -(k as i64)
            };
            self.jitter.apply_correction(ticks, true);
            return;
        }
        if since.is_none_or(|s| now.saturating_sub(s) < STRETCH_AFTER) {
            return;
        }
        let ppm = (self.jitter.stats().drift_ppm.abs() * 2.0).max(MIN_STRETCH_PPM);
        self.stretch_credit += n as f64 * ppm / 1e6;
        if self.stretch_credit < 1.0 {
            return;
        }
        self.stretch_credit -= 1.0;
        let out_len = if pending > 0 { n + 1 } else { n - 1 };
        stretch(pcm, out_len, &mut self.decoded);
        std::mem::swap(pcm, &mut self.decoded);
        self.jitter
            .apply_correction(out_len as i64 - n as i64, false);
    }

    /// Ends the leg: releases everything held and reports a DTMF event that
    /// never saw its end packet.
    pub fn finish(&mut self, sink: &mut impl PcmSink) {
        self.jitter.finish();
        self.pull(Duration::MAX, sink);
        if let Some(ev) = self.dtmf.finish() {
            let codec = self
                .map
                .iter()
                .find(|(_, c)| c.kind() == MediaKind::Event)
                .map_or(Codec::TelephoneEvent { rate: 8000 }, |(_, c)| c);
            self.record_dtmf(ev, codec);
        }
        // Push out what the resampler still holds back (its filter delay).
        if let Some(ix) = self.current
            && let Some(r) = self.decoders[ix].resampler.as_mut()
            && self.written_to.is_some()
        {
            self.resampled.clear();
            r.flush(&mut self.resampled);
            let at = self.written_to.unwrap_or(0);
            emit(sink, &mut self.written_to, at, &self.resampled);
        }
    }
}

/// Resamples `pcm` to `out_len` samples by linear interpolation, first and
/// last sample kept, so consecutive frames join without a step.
fn stretch(pcm: &[i16], out_len: usize, out: &mut Vec<i16>) {
    out.clear();
    let n = pcm.len();
    let scale = (n - 1) as f64 / (out_len.max(2) - 1) as f64;
    out.extend((0..out_len).map(|i| {
        let x = i as f64 * scale;
        let j = (x as usize).min(n - 1);
        let t = x - j as f64;
        let a = f64::from(pcm[j]);
        let b = f64::from(pcm[(j + 1).min(n - 1)]);
        (a + (b - a) * t).round() as i16
    }));
}

/// Puts `decoded` at the leg's rate into `out`. Without a resampler the
/// buffers trade places instead of copying: `decoded` is scratch, and
/// every user clears it before decoding into it.
fn resample_into(slot: &mut DecoderSlot, decoded: &mut Vec<i16>, out: &mut Vec<i16>) {
    match slot.resampler.as_mut() {
        Some(r) => {
            out.clear();
            r.process(decoded, out);
        }
        None => std::mem::swap(decoded, out),
    }
}

/// Writes a block at `start`, keeping the output contiguous: a hole before
/// it becomes silence, a head overlapping what was written is dropped.
fn emit(sink: &mut impl PcmSink, written: &mut Option<i64>, start: i64, pcm: &[i16]) {
    let at = written.unwrap_or(start);
    if start > at {
        sink.silence(at, start - at);
    }
    let skip = (at - start).max(0) as usize;
    if skip < pcm.len() {
        let begin = start.max(at);
        sink.samples(begin, &pcm[skip..]);
        *written = Some(begin + (pcm.len() - skip) as i64);
    } else {
        *written = Some(at.max(start));
    }
}

fn decoder_index(
    decoders: &mut Vec<DecoderSlot>,
    rate: u32,
    pt: u8,
    codec: Codec,
) -> Option<usize> {
    if let Some(ix) = decoders.iter().position(|d| d.payload_type == pt) {
        return Some(ix);
    }
    let decoder = decoder_for(codec, Some(rate)).ok()?;
    let resampler =
        (decoder.sample_rate() != rate).then(|| Resampler::new(decoder.sample_rate(), rate));
    decoders.push(DecoderSlot {
        payload_type: pt,
        decoder,
        resampler,
    });
    Some(decoders.len() - 1)
}

/// Fills `len` ticks of lost audio with the decoder's concealment.
fn conceal(
    slot: &mut DecoderSlot,
    decoded: &mut Vec<i16>,
    resampled: &mut Vec<i16>,
    len: i64,
    following: Option<&[u8]>,
    rate: u32,
) {
    let native = rescale(len, rate, slot.decoder.sample_rate()).max(0) as usize;
    decoded.clear();
    if slot.decoder.conceal(native, following, decoded).is_err() {
        decoded.clear();
        decoded.resize(native, 0);
    }
    resample_into(slot, decoded, resampled);
    // Exactly `len` ticks, whatever the rounding.
    resampled.resize(len as usize, 0);
}

/// Gives the legs of one call a common drift reference: the leg that sits
/// nearest to our clock. Each leg then corrects only what it drifts from
/// that leg (and what strays beyond half its playout delay), so parties
/// that arrive later and later together are left alone and a party whose
/// clock drifts alone is brought back to the others. Fewer than two legs
/// with a measurement: every leg measures against our clock. Call it
/// before the legs take their next packets, on every tick.
pub fn share_drift_reference<T>(legs: &mut [T], leg: impl Fn(&mut T) -> &mut LegReceiver) {
    // Runs on every tick of every call: no allocation.
    let (mut measured, mut reference) = (0, None::<Level>);
    for l in legs.iter_mut() {
        if let Some(level) = leg(l).drift_level() {
            measured += 1;
            if reference.is_none_or(|r| level.offset_ns.abs() < r.offset_ns.abs()) {
                reference = Some(level);
            }
        }
    }
    let reference = reference.filter(|_| measured >= 2);
    for l in legs.iter_mut() {
        leg(l).set_drift_reference(reference);
    }
}
