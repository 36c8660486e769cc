//! Decoders: RTP payload bytes in, mono 16-bit PCM out.
//!
//! Every decoder writes into a caller-owned `Vec<i16>` that the caller clears
//! and reuses, so steady-state decoding does not allocate (G.722 is the one
//! exception: `ezk-g722` returns a fresh `Vec` per packet). Multi-channel
//! payloads (stereo L16 or Opus) are mixed down to mono: a recording keeps one
//! channel per party, and the mixer decides how parties map to channels.
//!
//! Errors are per packet and recoverable: the leg conceals the packet's time
//! and carries on with the next one.

mod g711;
mod g722;
mod l16;
mod opus;

use thiserror::Error;

use crate::rtp::Codec;

pub use g711::{alaw_to_linear, linear_to_alaw, linear_to_ulaw, ulaw_to_linear};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("{codec} payload of {len} bytes is malformed")]
    Malformed { codec: &'static str, len: usize },
    #[error("opus: {0}")]
    Opus(String),
    #[error("codec {0} has no decoder")]
    Unsupported(&'static str),
}

/// A codec's decoder. See the module documentation for the buffer contract.
pub trait Decoder: Send {
    /// Decodes one payload, appending mono samples at [`Decoder::sample_rate`]
    /// to `out`. Returns how many were appended.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, DecodeError>;

    /// Appends `samples` samples standing in for lost audio. The default is
    /// silence; codecs with packet-loss concealment do better, and Opus uses
    /// the forward error correction in `following` (the next packet) when
    /// present.
    fn conceal(
        &mut self,
        samples: usize,
        following: Option<&[u8]>,
        out: &mut Vec<i16>,
    ) -> Result<usize, DecodeError> {
        let _ = following;
        out.resize(out.len() + samples, 0);
        Ok(samples)
    }

    /// Output sample rate.
    fn sample_rate(&self) -> u32;
}

/// Builds the decoder for an audio codec, producing audio at `rate` where the
/// codec can decode at several rates (Opus: 8, 12, 16, 24 or 48 kHz), at its
/// natural rate otherwise.
pub fn decoder_for(codec: Codec, rate: Option<u32>) -> Result<Box<dyn Decoder>, DecodeError> {
    Ok(match codec {
        Codec::Pcmu => Box::new(g711::Ulaw),
        Codec::Pcma => Box::new(g711::Alaw),
        Codec::G722 => Box::new(g722::G722::new()),
        Codec::L16 { rate, channels } => Box::new(l16::L16::new(rate, channels)),
        Codec::Opus => {
            let r = rate
                .filter(|r| crate::opus::DECODE_RATES.contains(r))
                .unwrap_or(48_000);
            Box::new(
                crate::opus::OpusDecoder::new(r).map_err(|e| DecodeError::Opus(e.to_string()))?,
            )
        }
        other => return Err(DecodeError::Unsupported(other.name())),
    })
}

/// Samples a payload holds, in RTP clock ticks (0 when it cannot be told).
pub fn payload_duration(codec: Codec, payload: &[u8]) -> u32 {
    let len = payload.len() as u32;
    match codec {
        Codec::Pcmu | Codec::Pcma | Codec::G722 => len,
        Codec::L16 { channels, .. } => len / (2 * u32::from(channels.max(1))),
        Codec::Opus => crate::opus::packet_samples_48k(payload).unwrap_or(0),
        Codec::TelephoneEvent { .. } | Codec::ComfortNoise { .. } => 0,
    }
}
