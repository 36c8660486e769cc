//! L16 (RFC 3551 §4.5.11): big-endian 16-bit PCM, interleaved channels,
//! mixed down to mono by averaging.

use super::{DecodeError, Decoder};

pub struct L16 {
    rate: u32,
    channels: usize,
}

impl L16 {
    pub fn new(rate: u32, channels: u8) -> Self {
        Self {
            rate,
            channels: usize::from(channels.max(1)),
        }
    }
}

impl Decoder for L16 {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, DecodeError> {
        let frame = 2 * self.channels;
        if !payload.len().is_multiple_of(frame) {
            return Err(DecodeError::Malformed {
                codec: "L16",
                len: payload.len(),
            });
        }
        let channels = self.channels as i32;
        out.extend(payload.chunks_exact(frame).map(|f| {
            let sum: i32 = f
                .chunks_exact(2)
                .map(|s| i32::from(i16::from_be_bytes([s[0], s[1]])))
                .sum();
            (sum / channels) as i16
        }));
        Ok(payload.len() / frame)
    }
    fn sample_rate(&self) -> u32 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stereo_is_averaged_and_odd_lengths_rejected() {
        let mut d = L16::new(16_000, 2);
        let mut out = Vec::new();
        let payload = [0x10, 0x00, 0x20, 0x00, 0xff, 0xfe, 0xff, 0xfe];
        assert_eq!(d.decode(&payload, &mut out), Ok(2));
        assert_eq!(out, vec![0x1800, -2]);
        assert!(d.decode(&payload[..3], &mut out).is_err());
    }
}
