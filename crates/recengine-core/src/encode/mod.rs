//! Encoders: interleaved 16-bit PCM in, file bytes out, incrementally.
//!
//! Every encoder appends to a caller-owned `Vec<u8>` that the caller drains
//! to disk and reuses, and holds at most one codec frame of audio itself, so
//! memory stays bounded whatever the call length and stopping costs one
//! [`Encoder::finish`], never a transcode. Formats whose header records the
//! total length (WAV) describe the final header through
//! [`Encoder::header`]; the file writer rewrites it at every flush, so a
//! crashed `.part` file is a valid file up to its last flush.

mod mp3;
mod ogg;
mod opus;
mod wav;

use thiserror::Error;

use crate::format::{Format, bitrate_problem, mp3_default_bitrate, sample_rates};

pub use mp3::Mp3Encoder;
pub use ogg::{OggPageWriter, crc32 as ogg_crc32, packets as ogg_packets};
pub use opus::OggOpusEncoder;
pub use wav::WavEncoder;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("{0}")]
    Unsupported(String),
    #[error("mp3: {0}")]
    Mp3(String),
    #[error("opus: {0}")]
    Opus(String),
    #[error("{samples} samples is not a whole number of {channels}-channel frames")]
    Interleaving { samples: usize, channels: u16 },
}

/// What an encoder is asked to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSpec {
    pub format: Format,
    pub sample_rate: u32,
    pub channels: u16,
    /// kbit/s; 0 = the format's default.
    pub bitrate_kbps: u32,
    /// LAME quality 0–9.
    pub mp3_quality: u8,
    /// Opus complexity 0–10.
    pub opus_complexity: u8,
}

impl EncoderSpec {
    /// The bitrate actually used (resolving 0 to the format's default).
    pub fn effective_bitrate_kbps(&self) -> u32 {
        match (self.format, self.bitrate_kbps) {
            (Format::Wav, _) => self.sample_rate * 16 * u32::from(self.channels) / 1000,
            (Format::Mp3, 0) => mp3_default_bitrate(self.sample_rate, self.channels),
            (Format::Opus, 0) => 32,
            (_, b) => b,
        }
    }

    /// Every reason this spec cannot be encoded.
    pub fn validate(&self) -> Result<(), EncodeError> {
        if !sample_rates(self.format).contains(&self.sample_rate) {
            return Err(EncodeError::Unsupported(format!(
                "{} Hz is not supported for {} (supported: {:?})",
                self.sample_rate,
                self.format.extension(),
                sample_rates(self.format)
            )));
        }
        let max_channels = match self.format {
            Format::Wav => 32,
            Format::Mp3 | Format::Opus => 2,
        };
        if self.channels == 0 || self.channels > max_channels {
            return Err(EncodeError::Unsupported(format!(
                "{} channels is not supported for {} (1-{max_channels})",
                self.channels,
                self.format.extension()
            )));
        }
        if let Some(msg) = bitrate_problem(self.format, self.sample_rate, self.bitrate_kbps) {
            return Err(EncodeError::Unsupported(msg));
        }
        Ok(())
    }
}

/// An incremental encoder. See the module documentation.
pub trait Encoder: Send {
    /// Encodes interleaved samples (`channels` per frame), appending file
    /// bytes to `out`.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Emits whatever complete output the encoder holds back (an Ogg page
    /// in progress), so that what is on disk after a flush is decodable.
    fn flush(&mut self, out: &mut Vec<u8>) {
        let _ = out;
    }

    /// Encodes what is still buffered and appends the trailer.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// The bytes to write at the start of the file for the audio so far, for
    /// formats whose header states the length (`None` otherwise). Its size
    /// never changes.
    fn header(&self) -> Option<Vec<u8>> {
        None
    }

    /// Frames (samples per channel) of audio encoded so far, excluding
    /// codec padding.
    fn frames(&self) -> u64;

    fn spec(&self) -> &EncoderSpec;

    /// The sample rate of the widest source in the audio from here on: it
    /// holds nothing above half of it (a G.711 call resampled to 16 kHz
    /// is 8,000). Told before the first samples and again whenever it
    /// rises. An encoder that can spend less on an empty upper band uses
    /// it; the others ignore it.
    fn set_source_rate(&mut self, rate: u32) -> Result<(), EncodeError> {
        let _ = rate;
        Ok(())
    }
}

/// Builds the encoder for a spec.
pub fn encoder_for(spec: EncoderSpec) -> Result<Box<dyn Encoder>, EncodeError> {
    spec.validate()?;
    Ok(match spec.format {
        Format::Wav => Box::new(WavEncoder::new(spec)),
        Format::Mp3 => Box::new(Mp3Encoder::new(spec)?),
        Format::Opus => Box::new(OggOpusEncoder::new(spec)?),
    })
}

fn check_interleaving(pcm: &[i16], channels: u16) -> Result<(), EncodeError> {
    if pcm.len().is_multiple_of(usize::from(channels.max(1))) {
        Ok(())
    } else {
        Err(EncodeError::Interleaving {
            samples: pcm.len(),
            channels,
        })
    }
}
