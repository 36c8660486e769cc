//! WAV: RIFF/WAVE, 16-bit PCM; WAVE_FORMAT_EXTENSIBLE above two channels.

use super::{EncodeError, Encoder, EncoderSpec, check_interleaving};

pub struct WavEncoder {
    spec: EncoderSpec,
    data_bytes: u64,
    header_written: bool,
}

impl WavEncoder {
    pub fn new(spec: EncoderSpec) -> Self {
        Self {
            spec,
            data_bytes: 0,
            header_written: false,
        }
    }

    fn extensible(&self) -> bool {
        self.spec.channels > 2
    }

    fn header_len(&self) -> usize {
        if self.extensible() { 68 } else { 44 }
    }

    /// The header for `data_bytes` of samples. Sizes saturate at the RIFF
    /// 4 GiB limit (a 2-channel 8 kHz recording reaches it after 37 hours).
    fn header_for(&self, data_bytes: u64) -> Vec<u8> {
        let ch = self.spec.channels;
        let rate = self.spec.sample_rate;
        let block = u32::from(ch) * 2;
        let fmt_len: u32 = if self.extensible() { 40 } else { 16 };
        let riff_len = (data_bytes + u64::from(fmt_len) + 20).min(u64::from(u32::MAX)) as u32;
        let data_len = data_bytes.min(u64::from(u32::MAX)) as u32;
        let mut h = Vec::with_capacity(self.header_len());
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&riff_len.to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&fmt_len.to_le_bytes());
        h.extend_from_slice(&(if self.extensible() { 0xfffe_u16 } else { 1 }).to_le_bytes());
        h.extend_from_slice(&ch.to_le_bytes());
        h.extend_from_slice(&rate.to_le_bytes());
        h.extend_from_slice(&(rate * block).to_le_bytes());
        h.extend_from_slice(&(block as u16).to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        if self.extensible() {
            h.extend_from_slice(&22u16.to_le_bytes()); // cbSize
            h.extend_from_slice(&16u16.to_le_bytes()); // valid bits
            h.extend_from_slice(&0u32.to_le_bytes()); // channel mask: none assigned
            // KSDATAFORMAT_SUBTYPE_PCM
            h.extend_from_slice(&[
                0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38,
                0x9b, 0x71,
            ]);
        }
        h.extend_from_slice(b"data");
        h.extend_from_slice(&data_len.to_le_bytes());
        h
    }
}

impl Encoder for WavEncoder {
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        check_interleaving(pcm, self.spec.channels)?;
        if !self.header_written {
            out.extend_from_slice(&self.header_for(0));
            self.header_written = true;
        }
        // Sized once and filled in place: a push per sample re-checks the
        // length every time and does not vectorise.
        let start = out.len();
        out.resize(start + pcm.len() * 2, 0);
        for (bytes, &s) in out[start..].chunks_exact_mut(2).zip(pcm) {
            bytes.copy_from_slice(&s.to_le_bytes());
        }
        self.data_bytes += pcm.len() as u64 * 2;
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !self.header_written {
            out.extend_from_slice(&self.header_for(0));
            self.header_written = true;
        }
        Ok(())
    }

    fn header(&self) -> Option<Vec<u8>> {
        Some(self.header_for(self.data_bytes))
    }

    fn frames(&self) -> u64 {
        self.data_bytes / (2 * u64::from(self.spec.channels.max(1)))
    }

    fn spec(&self) -> &EncoderSpec {
        &self.spec
    }
}
