//! One recording's media path after the tracks: [`Mixer`] → [`Encoder`] →
//! file bytes. Sans-IO: [`Recorder::mix_to`] returns the bytes to append to
//! the file; the caller writes them (and rewrites [`Recorder::header`] at the
//! front when the format has one).

use crate::core::encode::{EncodeError, Encoder, EncoderSpec, encoder_for};
use crate::core::mixer::Mixer;
use crate::core::track::Track;

/// See the module documentation.
pub struct Recorder {
    mixer: Mixer,
    encoder: Box<dyn Encoder>,
    pcm: Vec<i16>,
    bytes: Vec<u8>,
}

impl Recorder {
    pub fn new(mixer: Mixer, spec: EncoderSpec) -> Result<Self, EncodeError> {
        if spec.sample_rate != mixer.rate() || spec.channels != mixer.channels() {
            return Err(EncodeError::Unsupported(format!(
                "mixer produces {} Hz × {} channels, encoder expects {} Hz × {}",
                mixer.rate(),
                mixer.channels(),
                spec.sample_rate,
                spec.channels
            )));
        }
        Ok(Self {
            mixer,
            encoder: encoder_for(spec)?,
            pcm: Vec::with_capacity(usize::from(spec.channels) * 960),
            bytes: Vec::with_capacity(16 * 1024),
        })
    }

    pub fn mixer(&self) -> &Mixer {
        &self.mixer
    }

    pub fn mixer_mut(&mut self) -> &mut Mixer {
        &mut self.mixer
    }

    pub fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }

    /// Mixes and encodes up to call position `upto`; returns the new file
    /// bytes (valid until the next call).
    pub fn mix_to(&mut self, tracks: &[Track], upto: i64) -> Result<&[u8], EncodeError> {
        self.pcm.clear();
        self.bytes.clear();
        self.mixer.mix(tracks, upto, &mut self.pcm);
        if !self.pcm.is_empty() {
            self.encoder.encode(&self.pcm, &mut self.bytes)?;
        }
        Ok(&self.bytes)
    }

    /// Bytes the encoder holds back (a page in progress), for a flush.
    pub fn flush(&mut self) -> &[u8] {
        self.bytes.clear();
        self.encoder.flush(&mut self.bytes);
        &self.bytes
    }

    /// Ends the encoding; returns the last bytes.
    pub fn finish(&mut self) -> Result<&[u8], EncodeError> {
        self.bytes.clear();
        self.encoder.finish(&mut self.bytes)?;
        Ok(&self.bytes)
    }

    /// The header to write at offset 0 (formats that state their length).
    pub fn header(&self) -> Option<Vec<u8>> {
        self.encoder.header()
    }

    /// Milliseconds of audio encoded.
    pub fn duration_ms(&self) -> u64 {
        self.encoder.frames() * 1000 / u64::from(self.mixer.rate())
    }
}
