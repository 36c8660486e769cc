//! MP3 through LAME (`mp3lame-encoder`): constant bitrate, with a LAME Info
//! tag in the first frame. LAME writes a placeholder frame first; when the
//! recording ends [`Encoder::header`] returns the real tag (same size),
//! which states the exact length and the encoder delay and padding, so
//! players show the right duration and decoders trim the codec delay.

use std::num::NonZeroU32;

use mp3lame_encoder::{Bitrate, Builder, FlushGap, InterleavedPcm, Mode, MonoPcm, Quality};

use super::{EncodeError, Encoder, EncoderSpec, check_interleaving};

pub struct Mp3Encoder {
    spec: EncoderSpec,
    lame: mp3lame_encoder::Encoder,
    frames: u64,
    finished: bool,
}

fn bitrate(kbps: u32) -> Option<Bitrate> {
    Some(match kbps {
        8 => Bitrate::Kbps8,
        16 => Bitrate::Kbps16,
        24 => Bitrate::Kbps24,
        32 => Bitrate::Kbps32,
        40 => Bitrate::Kbps40,
        48 => Bitrate::Kbps48,
        64 => Bitrate::Kbps64,
        80 => Bitrate::Kbps80,
        96 => Bitrate::Kbps96,
        112 => Bitrate::Kbps112,
        128 => Bitrate::Kbps128,
        160 => Bitrate::Kbps160,
        192 => Bitrate::Kbps192,
        224 => Bitrate::Kbps224,
        256 => Bitrate::Kbps256,
        320 => Bitrate::Kbps320,
        _ => return None,
    })
}

fn quality(q: u8) -> Quality {
    match q {
        0 => Quality::Best,
        1 => Quality::SecondBest,
        2 => Quality::NearBest,
        3 => Quality::VeryNice,
        4 => Quality::Nice,
        5 => Quality::Good,
        6 => Quality::Decent,
        7 => Quality::Ok,
        8 => Quality::SecondWorst,
        _ => Quality::Worst,
    }
}

impl Mp3Encoder {
    pub fn new(spec: EncoderSpec) -> Result<Self, EncodeError> {
        let kbps = spec.effective_bitrate_kbps();
        let err =
            |what: &str, e: mp3lame_encoder::BuildError| EncodeError::Mp3(format!("{what}: {e}"));
        let mut b = Builder::new()
            .ok_or_else(|| EncodeError::Mp3("LAME could not be initialised".into()))?;
        b.set_num_channels(spec.channels as u8)
            .map_err(|e| err("channels", e))?;
        b.set_sample_rate(spec.sample_rate)
            .map_err(|e| err("sample rate", e))?;
        b.set_output_sample_rate(NonZeroU32::new(spec.sample_rate))
            .map_err(|e| err("output sample rate", e))?;
        b.set_brate(
            bitrate(kbps)
                .ok_or_else(|| EncodeError::Mp3(format!("{kbps} kbit/s is not a LAME bitrate")))?,
        )
        .map_err(|e| err("bitrate", e))?;
        b.set_mode(if spec.channels == 1 {
            Mode::Mono
        } else {
            Mode::Stereo
        })
        .map_err(|e| err("mode", e))?;
        b.set_quality(quality(spec.mp3_quality))
            .map_err(|e| err("quality", e))?;
        b.set_to_write_vbr_tag(true).map_err(|e| err("tag", e))?;
        let lame = b.build().map_err(|e| err("build", e))?;
        Ok(Self {
            spec,
            lame,
            frames: 0,
            finished: false,
        })
    }
}

impl Encoder for Mp3Encoder {
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        check_interleaving(pcm, self.spec.channels)?;
        let frames = pcm.len() / usize::from(self.spec.channels);
        out.reserve(mp3lame_encoder::max_required_buffer_size(frames));
        let r = if self.spec.channels == 1 {
            self.lame.encode_to_vec(MonoPcm(pcm), out)
        } else {
            self.lame.encode_to_vec(InterleavedPcm(pcm), out)
        };
        r.map_err(|e| EncodeError::Mp3(e.to_string()))?;
        self.frames += frames as u64;
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.reserve(7200);
        self.lame
            .flush_to_vec::<FlushGap>(out)
            .map_err(|e| EncodeError::Mp3(e.to_string()))?;
        self.finished = true;
        Ok(())
    }

    /// The final LAME Info tag frame, once the encoding has finished (the
    /// placeholder LAME wrote is good enough for a file still growing).
    fn header(&self) -> Option<Vec<u8>> {
        if !self.finished {
            return None;
        }
        let mut tag = Vec::with_capacity(self.lame.lame_tag_size().max(1));
        self.lame.lame_tag_encode_to_vec(&mut tag)?;
        Some(tag)
    }

    fn frames(&self) -> u64 {
        self.frames
    }

    fn spec(&self) -> &EncoderSpec {
        &self.spec
    }
}

#[cfg(test)]
mod bitrate_tests {
    use super::*;
    use crate::format::{Format, mp3_bitrates};

    /// Every bitrate the API and the configuration accept makes an encoder
    /// (56 and 144 kbit/s used to be accepted with 201, then fail the
    /// recording with `encoder_error`), and so does the default (0).
    #[test]
    fn every_accepted_bitrate_builds_an_encoder() {
        for rate in [
            8000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
        ] {
            for &kbps in mp3_bitrates(rate).iter().chain(&[0]) {
                for channels in [1, 2] {
                    let spec = EncoderSpec {
                        format: Format::Mp3,
                        sample_rate: rate,
                        channels,
                        bitrate_kbps: kbps,
                        mp3_quality: 5,
                        opus_complexity: 5,
                    };
                    assert!(
                        Mp3Encoder::new(spec).is_ok(),
                        "{kbps} kbit/s at {rate} Hz, {channels} channel(s)"
                    );
                }
            }
        }
    }
}
