//! Opus in the decode pipeline: packets decode through libopus
//! (`core::opus`), and lost audio is silence except where the next packet
//! carries SILK in-band FEC for it.

use super::{DecodeError, Decoder};
use crate::opus::{OpusDecoder, OpusError, has_lbrr, packet_samples_48k};

impl Decoder for OpusDecoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, DecodeError> {
        OpusDecoder::decode(self, payload, out).map_err(|e| match e {
            OpusError::Malformed { len } => DecodeError::Malformed { codec: "opus", len },
            other => DecodeError::Opus(other.to_string()),
        })
    }

    /// Lost audio is silence, except the frame just before `following` when
    /// that packet carries SILK in-band FEC (LBRR) data, which is decoded.
    ///
    /// libopus's own packet-loss concealment (decoding with no data) is not
    /// used: in `unsafe-libopus` 0.2 it produces full-scale noise and leaves
    /// the decoder state corrupted for the frames after it (see the test
    /// `plc_of_unsafe_libopus_is_still_broken`).
    fn conceal(
        &mut self,
        samples: usize,
        following: Option<&[u8]>,
        out: &mut Vec<i16>,
    ) -> Result<usize, DecodeError> {
        let rate = OpusDecoder::sample_rate(self) as usize;
        let fec = following.filter(|p| has_lbrr(p)).and_then(|p| {
            let n = packet_samples_48k(p)? as usize * rate / 48_000;
            (n <= samples).then_some((p, n))
        });
        let silent = samples - fec.map_or(0, |(_, n)| n);
        out.resize(out.len() + silent, 0);
        let mut done = silent;
        if let Some((packet, n)) = fec {
            match self.decode_fec(packet, n, out) {
                Ok(got) => done += got,
                Err(_) => {
                    out.resize(out.len() + n, 0);
                    done += n;
                }
            }
        }
        if done < samples {
            out.resize(out.len() + (samples - done), 0);
            done = samples;
        }
        Ok(done)
    }

    fn sample_rate(&self) -> u32 {
        OpusDecoder::sample_rate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opus::{Application, OpusEncoder};

    #[test]
    fn loss_without_fec_is_silence_and_a_bad_packet_is_malformed() {
        let mut enc = OpusEncoder::new(16_000, 1, Application::Voip, 32_000, 5).unwrap();
        let mut dec: Box<dyn Decoder> = Box::new(OpusDecoder::new(16_000).unwrap());
        let frame: Vec<i16> = (0..320)
            .map(|i| ((i as f32 * 0.2).sin() * 8000.0) as i16)
            .collect();
        let mut packet = [0u8; 1500];
        let mut out = Vec::new();
        for _ in 0..10 {
            let n = enc.encode(&frame, &mut packet).unwrap();
            out.clear();
            assert_eq!(dec.decode(&packet[..n], &mut out).unwrap(), 320);
        }
        out.clear();
        assert_eq!(dec.conceal(640, None, &mut out).unwrap(), 640);
        assert_eq!(out.len(), 640);
        assert!(out.iter().all(|&s| s == 0), "no FEC: silence");
        assert_eq!(
            dec.decode(&[], &mut out),
            Err(DecodeError::Malformed {
                codec: "opus",
                len: 0
            })
        );
    }
}
