//! Recording notices: the audio that tells parties a call is recorded.
//!
//! - [`beep`]: the built-in notification tone (also the periodic reminder).
//! - [`resample_all`]: a whole prompt to another rate, once.
//! - [`PartyStream`]: a prompt sent to one party as RTP, sans IO: 20 ms
//!   packets in the leg's own codec and payload type, with a fresh SSRC,
//!   consecutive sequence numbers and timestamps, the marker on the first,
//!   each due at its own time from the stream's start. The driver asks
//!   what is [`due`](PartyStream::due) at each tick and sends it.
//!
//! How a notice goes into the recording itself is the mixer's
//! ([`crate::mixer::Mixer::overlay`]).

use std::time::Duration;

use thiserror::Error;

use crate::decode::{linear_to_alaw, linear_to_ulaw};
use crate::opus::{Application, OpusEncoder};
use crate::resample::Resampler;
use crate::rtp::Codec;

/// A party gets a notice in 20 ms packets.
pub const PACKET_TIME: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NoticeError {
    #[error("cannot send a notice in {0}")]
    Codec(String),
    #[error("opus encoder: {0}")]
    Opus(String),
}

/// A sine of `hz` for `duration` at `rate`, peaking at `amplitude`, with
/// 5 ms raised-cosine ramps so it starts and stops without a click.
pub fn beep(rate: u32, hz: f64, duration: Duration, amplitude: i16) -> Vec<i16> {
    let n = (duration.as_secs_f64() * f64::from(rate)).round() as usize;
    let ramp = (f64::from(rate) * 0.005).round().max(1.0) as usize;
    (0..n)
        .map(|i| {
            let edge = i.min(n - 1 - i);
            let gain = if edge < ramp {
                0.5 - 0.5 * (std::f64::consts::PI * edge as f64 / ramp as f64).cos()
            } else {
                1.0
            };
            let t = i as f64 / f64::from(rate);
            (f64::from(amplitude) * gain * (2.0 * std::f64::consts::PI * hz * t).sin()).round()
                as i16
        })
        .collect()
}

/// `samples` at `from` Hz resampled to `to` Hz, whole (flushed).
pub fn resample_all(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to {
        return samples.to_vec();
    }
    let mut r = Resampler::new(from, to);
    let mut out = Vec::with_capacity(samples.len() * to as usize / from.max(1) as usize + 64);
    r.process(samples, &mut out);
    r.flush(&mut out);
    out
}

/// Turns 20 ms of audio into one payload.
enum FrameEncoder {
    Pcmu,
    Pcma,
    G722(Box<ezk_g722::libg722::encoder::Encoder>),
    L16 { channels: usize },
    Opus(Box<OpusEncoder>),
}

impl FrameEncoder {
    /// The encoder for `codec`, the rate its audio is at, and its RTP
    /// clock rate.
    fn for_codec(codec: Codec) -> Result<(Self, u32, u32), NoticeError> {
        Ok(match codec {
            Codec::Pcmu => (FrameEncoder::Pcmu, 8000, 8000),
            Codec::Pcma => (FrameEncoder::Pcma, 8000, 8000),
            Codec::G722 => (
                FrameEncoder::G722(Box::new(ezk_g722::libg722::encoder::Encoder::new(
                    ezk_g722::libg722::Bitrate::Mode1_64000,
                    false,
                    false,
                ))),
                16_000,
                8000,
            ),
            Codec::L16 { rate, channels } => (
                FrameEncoder::L16 {
                    channels: usize::from(channels.max(1)),
                },
                rate,
                rate,
            ),
            Codec::Opus => (
                FrameEncoder::Opus(Box::new(
                    OpusEncoder::new(48_000, 1, Application::Voip, 32_000, 5)
                        .map_err(|e| NoticeError::Opus(e.to_string()))?,
                )),
                48_000,
                48_000,
            ),
            other => return Err(NoticeError::Codec(format!("{other:?}"))),
        })
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), NoticeError> {
        match self {
            FrameEncoder::Pcmu => out.extend(pcm.iter().map(|&s| linear_to_ulaw(s))),
            FrameEncoder::Pcma => out.extend(pcm.iter().map(|&s| linear_to_alaw(s))),
            FrameEncoder::G722(e) => out.extend(e.encode(pcm)),
            FrameEncoder::L16 { channels } => {
                for &s in pcm {
                    for _ in 0..*channels {
                        out.extend_from_slice(&s.to_be_bytes());
                    }
                }
            }
            FrameEncoder::Opus(e) => {
                let at = out.len();
                out.resize(at + 1500, 0);
                let n = e
                    .encode(pcm, &mut out[at..])
                    .map_err(|e| NoticeError::Opus(e.to_string()))?;
                out.truncate(at + n);
            }
        }
        Ok(())
    }
}

/// The RTP identity of a stream's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpStart {
    pub payload_type: u8,
    /// Random (RFC 3550 §5.1), as are the first sequence number and
    /// timestamp of a new source.
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
}

/// See the module documentation.
pub struct PartyStream {
    encoder: FrameEncoder,
    payload_type: u8,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    /// RTP clock ticks per packet.
    ticks_per_packet: u32,
    /// The prompt at the codec's audio rate.
    audio: Vec<i16>,
    samples_per_packet: usize,
    packets_sent: usize,
    start: Duration,
}

impl PartyStream {
    /// A stream of `prompt` (at `prompt_rate`) in `codec`, its first
    /// packet as `rtp` says, due at `start`.
    pub fn new(
        prompt: &[i16],
        prompt_rate: u32,
        codec: Codec,
        rtp: RtpStart,
        start: Duration,
    ) -> Result<Self, NoticeError> {
        let (encoder, audio_rate, clock_rate) = FrameEncoder::for_codec(codec)?;
        let samples_per_packet = (audio_rate / 50) as usize;
        let mut audio = resample_all(prompt, prompt_rate, audio_rate);
        // Whole packets: the last is padded with silence.
        audio.resize(
            audio.len().div_ceil(samples_per_packet) * samples_per_packet,
            0,
        );
        Ok(Self {
            encoder,
            payload_type: rtp.payload_type & 0x7f,
            ssrc: rtp.ssrc,
            seq: rtp.sequence,
            timestamp: rtp.timestamp,
            ticks_per_packet: clock_rate / 50,
            audio,
            samples_per_packet,
            packets_sent: 0,
            start,
        })
    }

    /// Packets in the stream.
    pub fn packet_count(&self) -> usize {
        self.audio.len() / self.samples_per_packet
    }

    /// Every packet has been handed out.
    pub fn done(&self) -> bool {
        self.packets_sent >= self.packet_count()
    }

    /// Appends to `out` every packet due by `now` (packet `k` is due at
    /// `start + k × 20 ms`) not handed out yet.
    pub fn due(&mut self, now: Duration, out: &mut Vec<Vec<u8>>) -> Result<(), NoticeError> {
        let Some(elapsed) = now.checked_sub(self.start) else {
            return Ok(());
        };
        let due =
            ((elapsed.as_nanos() / PACKET_TIME.as_nanos()) as usize + 1).min(self.packet_count());
        while self.packets_sent < due {
            let k = self.packets_sent;
            let pcm = &self.audio[k * self.samples_per_packet..(k + 1) * self.samples_per_packet];
            let mut packet = Vec::with_capacity(12 + 2 * self.samples_per_packet);
            let marker = if k == 0 { 0x80 } else { 0 };
            packet.push(0x80); // version 2, no padding, extension or CSRC
            packet.push(marker | self.payload_type);
            packet.extend_from_slice(&self.seq.to_be_bytes());
            packet.extend_from_slice(&self.timestamp.to_be_bytes());
            packet.extend_from_slice(&self.ssrc.to_be_bytes());
            self.encoder.encode(pcm, &mut packet)?;
            out.push(packet);
            self.seq = self.seq.wrapping_add(1);
            self.timestamp = self.timestamp.wrapping_add(self.ticks_per_packet);
            self.packets_sent += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::ulaw_to_linear;
    use crate::rtp::RtpPacket;
    use crate::testkit::tone_power;

    fn rtp(payload_type: u8, ssrc: u32, sequence: u16, timestamp: u32) -> RtpStart {
        RtpStart {
            payload_type,
            ssrc,
            sequence,
            timestamp,
        }
    }

    #[test]
    fn the_beep_is_its_tone_without_clicks() {
        let b = beep(8000, 1000.0, Duration::from_millis(400), 8000);
        assert_eq!(b.len(), 3200);
        assert_eq!(
            (b[0], *b.last().unwrap()),
            (0, 0),
            "ramps start and end at zero"
        );
        assert!(tone_power(&b, 8000, 1000.0) > 0.9 * tone_power(&b, 8000, 1000.0).max(1.0));
        let peak = b.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((7900..=8000).contains(&peak), "{peak}");
    }

    #[test]
    fn a_party_gets_paced_packets_in_its_codec() {
        let prompt = beep(8000, 1000.0, Duration::from_millis(100), 8000);
        let start = Duration::from_secs(3);
        let mut s =
            PartyStream::new(&prompt, 8000, Codec::Pcmu, rtp(0, 0xfeed, 100, 5000), start).unwrap();
        assert_eq!(s.packet_count(), 5);
        let mut out = Vec::new();
        s.due(start - Duration::from_millis(1), &mut out).unwrap();
        assert!(out.is_empty(), "nothing before the start");
        s.due(start, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        s.due(start + Duration::from_millis(45), &mut out).unwrap();
        assert_eq!(out.len(), 3, "one per 20 ms");
        s.due(start + Duration::from_secs(5), &mut out).unwrap();
        assert_eq!(out.len(), 5);
        assert!(s.done());
        let mut decoded = Vec::new();
        for (k, bytes) in out.iter().enumerate() {
            let p = RtpPacket::parse(bytes).unwrap();
            assert_eq!(p.payload_type, 0);
            assert_eq!(p.ssrc, 0xfeed);
            assert_eq!(p.sequence, 100 + k as u16);
            assert_eq!(p.timestamp, 5000 + 160 * k as u32);
            assert_eq!(p.marker, k == 0);
            assert_eq!(p.payload.len(), 160);
            decoded.extend(p.payload.iter().map(|&c| ulaw_to_linear(c)));
        }
        // What the party hears is the prompt, to G.711's precision.
        for (a, b) in decoded.iter().zip(&prompt) {
            assert!((i32::from(*a) - i32::from(*b)).abs() <= 300, "{a} vs {b}");
        }
    }

    #[test]
    fn every_audio_codec_can_carry_a_notice() {
        let prompt = beep(8000, 700.0, Duration::from_millis(60), 6000);
        for (codec, payload) in [
            (Codec::Pcma, 160),
            (Codec::G722, 160),
            (
                Codec::L16 {
                    rate: 16_000,
                    channels: 1,
                },
                640,
            ),
        ] {
            let mut s =
                PartyStream::new(&prompt, 8000, codec, rtp(96, 1, 0, 0), Duration::ZERO).unwrap();
            let mut out = Vec::new();
            s.due(Duration::from_secs(1), &mut out).unwrap();
            assert_eq!(out.len(), 3, "{codec:?}");
            assert!(out.iter().all(|p| p.len() == 12 + payload), "{codec:?}");
        }
        let mut s = PartyStream::new(
            &prompt,
            8000,
            Codec::Opus,
            rtp(111, 1, 0, 0),
            Duration::ZERO,
        )
        .unwrap();
        let mut out = Vec::new();
        s.due(Duration::from_secs(1), &mut out).unwrap();
        let ts: Vec<u32> = out
            .iter()
            .map(|p| RtpPacket::parse(p).unwrap().timestamp)
            .collect();
        assert_eq!(ts, [0, 960, 1920], "Opus runs a 48 kHz RTP clock");
        assert!(
            PartyStream::new(
                &prompt,
                8000,
                Codec::TelephoneEvent { rate: 8000 },
                rtp(101, 1, 0, 0),
                Duration::ZERO
            )
            .is_err()
        );
    }
}
