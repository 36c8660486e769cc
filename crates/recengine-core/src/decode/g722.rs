//! G.722 at 64 kbit/s through `ezk-g722` (a port of the spandsp/sippy
//! libg722 decoder): 16 kHz audio from an 8 kHz RTP clock.

use ezk_g722::libg722::{Bitrate, decoder::Decoder as Inner};

use super::{DecodeError, Decoder};

pub struct G722 {
    inner: Inner,
}

impl G722 {
    pub fn new() -> Self {
        Self {
            inner: Inner::new(Bitrate::Mode1_64000, false, false),
        }
    }
}

impl Decoder for G722 {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, DecodeError> {
        let pcm = self.inner.decode(payload);
        out.extend_from_slice(&pcm);
        Ok(pcm.len())
    }
    fn sample_rate(&self) -> u32 {
        16_000
    }
}
