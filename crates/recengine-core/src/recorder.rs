//! One recording's media path after the tracks: [`Mixer`] → (resampling,
//! when the recording's rate differs from the call's media rate) →
//! [`Encoder`] → file bytes. Sans-IO: [`Recorder::mix_to`] returns the bytes to append to
//! the file; the caller writes them (and rewrites [`Recorder::header`] at the
//! front when the format has one).

use crate::encode::{EncodeError, Encoder, EncoderSpec, encoder_for};
use crate::mixer::Mixer;
use crate::resample::Resampler;
use crate::track::Track;

/// See the module documentation.
pub struct Recorder {
    mixer: Mixer,
    encoder: Box<dyn Encoder>,
    /// One per channel when the mixer's rate is not the recording's.
    resamplers: Vec<Resampler>,
    pcm: Vec<i16>,
    channel_in: Vec<i16>,
    channel_out: Vec<Vec<i16>>,
    resampled: Vec<i16>,
    bytes: Vec<u8>,
}

impl Recorder {
    pub fn new(mixer: Mixer, spec: EncoderSpec) -> Result<Self, EncodeError> {
        if spec.channels != mixer.channels() {
            return Err(EncodeError::Unsupported(format!(
                "mixer produces {} channels, encoder expects {}",
                mixer.channels(),
                spec.channels
            )));
        }
        let resamplers = if spec.sample_rate == mixer.rate() {
            Vec::new()
        } else {
            (0..spec.channels)
                .map(|_| Resampler::new(mixer.rate(), spec.sample_rate))
                .collect()
        };
        Ok(Self {
            encoder: encoder_for(spec)?,
            resamplers,
            pcm: Vec::with_capacity(usize::from(spec.channels) * 960),
            channel_in: Vec::new(),
            channel_out: vec![Vec::new(); usize::from(spec.channels)],
            resampled: Vec::new(),
            bytes: Vec::with_capacity(16 * 1024),
            mixer,
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

    /// See [`Encoder::set_source_rate`].
    pub fn set_source_rate(&mut self, rate: u32) -> Result<(), EncodeError> {
        self.encoder.set_source_rate(rate)
    }

    /// Mixes and encodes up to call position `upto`; returns the new file
    /// bytes (valid until the next call).
    pub fn mix_to(&mut self, tracks: &[Track], upto: i64) -> Result<&[u8], EncodeError> {
        self.pcm.clear();
        self.bytes.clear();
        self.mixer.mix(tracks, upto, &mut self.pcm);
        self.encode_pcm(false)?;
        Ok(&self.bytes)
    }

    /// Encodes `self.pcm` (resampling first if needed); `last` flushes the
    /// resamplers.
    fn encode_pcm(&mut self, last: bool) -> Result<(), EncodeError> {
        if self.resamplers.is_empty() {
            if !self.pcm.is_empty() {
                self.encoder.encode(&self.pcm, &mut self.bytes)?;
            }
            return Ok(());
        }
        let ch = self.resamplers.len();
        for (c, r) in self.resamplers.iter_mut().enumerate() {
            self.channel_in.clear();
            self.channel_in.extend(self.pcm.iter().skip(c).step_by(ch));
            let out = &mut self.channel_out[c];
            out.clear();
            r.process(&self.channel_in, out);
            if last {
                r.flush(out);
            }
        }
        let frames = self.channel_out.iter().map(Vec::len).min().unwrap_or(0);
        self.resampled.clear();
        for i in 0..frames {
            self.resampled.extend(self.channel_out.iter().map(|c| c[i]));
        }
        if !self.resampled.is_empty() {
            self.encoder.encode(&self.resampled, &mut self.bytes)?;
        }
        Ok(())
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
        self.pcm.clear();
        self.encode_pcm(true)?;
        self.encoder.finish(&mut self.bytes)?;
        Ok(&self.bytes)
    }

    /// The header to write at offset 0 (formats that state their length).
    pub fn header(&self) -> Option<Vec<u8>> {
        self.encoder.header()
    }

    /// Milliseconds of audio encoded.
    pub fn duration_ms(&self) -> u64 {
        self.encoder.frames() * 1000 / u64::from(self.encoder.spec().sample_rate)
    }
}
