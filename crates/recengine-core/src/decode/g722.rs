//! G.722 at 64 kbit/s: 16 kHz audio from an 8 kHz RTP clock, decoded into
//! the caller's buffer (no allocation per packet).
//!
//! The algorithm is the ITU-T G.722 decoder as written by Steve Underwood
//! for SpanDSP (placed in the public domain, based in part on the CMU 1993
//! codec, use unrestricted), by way of its Rust port in `ezk-g722` 0.1.2
//! (MIT), whose `decode` returns a fresh `Vec` for every packet. This
//! module keeps that arithmetic exactly — a test decodes the same streams
//! through both and compares every sample — and only the 64 kbit/s mode
//! (eight bits per sample pair), the one RTP uses (RFC 3551 §4.5.2).

use super::{DecodeError, Decoder};

/// One sub-band's adaptive predictor and quantiser state.
#[derive(Debug, Default, Clone)]
struct Band {
    s: i32,
    sp: i32,
    sz: i32,
    r: [i32; 3],
    a: [i32; 3],
    ap: [i32; 3],
    p: [i32; 3],
    d: [i32; 7],
    b: [i32; 7],
    bp: [i32; 7],
    sg: [i32; 7],
    nb: i32,
    det: i32,
}

/// The decoder: two sub-bands and the receive QMF's history.
#[derive(Debug, Clone)]
pub struct G722 {
    band: [Band; 2],
    x: [i32; 24],
}

impl Default for G722 {
    fn default() -> Self {
        Self::new()
    }
}

const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
const RL42: [i32; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
const WH: [i32; 3] = [0, -214, 798];
const RH2: [i32; 4] = [2, 1, 2, 1];
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
const QMF_COEFFS: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

fn saturate(amp: i32) -> i32 {
    amp.clamp(i32::from(i16::MIN), i32::from(i16::MAX))
}

/// Scale factor from a log-domain step size (blocks 3L/3H, SCALEL/SCALEH).
fn scale(nb: i32, shift_base: i32) -> i32 {
    let wd1 = (nb >> 6) & 31;
    let wd2 = shift_base - (nb >> 11);
    let wd3 = if wd2 < 0 {
        ILB[wd1 as usize] << -wd2
    } else {
        ILB[wd1 as usize] >> wd2
    };
    wd3 << 2
}

/// Block 4: reconstruction, pole and zero predictor adaptation.
fn block4(band: &mut Band, d: i32) {
    // RECONS, PARREC
    band.d[0] = d;
    band.r[0] = saturate(band.s + d);
    band.p[0] = saturate(band.sz + d);

    // UPPOL2
    for i in 0..3 {
        band.sg[i] = band.p[i] >> 15;
    }
    let wd1 = saturate(band.a[1] << 2);
    let wd2 = if band.sg[0] == band.sg[1] { -wd1 } else { wd1 }.min(32767);
    let mut wd3 = (wd2 >> 7) + if band.sg[0] == band.sg[2] { 128 } else { -128 };
    wd3 += (band.a[2] * 32512) >> 15;
    band.ap[2] = wd3.clamp(-12288, 12288);

    // UPPOL1
    band.sg[0] = band.p[0] >> 15;
    band.sg[1] = band.p[1] >> 15;
    let wd1 = if band.sg[0] == band.sg[1] { 192 } else { -192 };
    let wd2 = (band.a[1] * 32640) >> 15;
    band.ap[1] = saturate(wd1 + wd2);
    let limit = saturate(15360 - band.ap[2]);
    if band.ap[1] > limit {
        band.ap[1] = limit;
    } else if band.ap[1] < -limit {
        band.ap[1] = -limit;
    }

    // UPZERO
    let step = if d == 0 { 0 } else { 128 };
    band.sg[0] = d >> 15;
    for i in 1..7 {
        band.sg[i] = band.d[i] >> 15;
        let wd2 = if band.sg[i] == band.sg[0] {
            step
        } else {
            -step
        };
        let wd3 = (band.b[i] * 32640) >> 15;
        band.bp[i] = saturate(wd2 + wd3);
    }

    // DELAYA
    for i in (1..7).rev() {
        band.d[i] = band.d[i - 1];
        band.b[i] = band.bp[i];
    }
    for i in (1..3).rev() {
        band.r[i] = band.r[i - 1];
        band.p[i] = band.p[i - 1];
        band.a[i] = band.ap[i];
    }

    // FILTEP
    let wd1 = (band.a[1] * saturate(band.r[1] + band.r[1])) >> 15;
    let wd2 = (band.a[2] * saturate(band.r[2] + band.r[2])) >> 15;
    band.sp = saturate(wd1 + wd2);

    // FILTEZ
    band.sz = 0;
    for i in (1..7).rev() {
        band.sz += (band.b[i] * saturate(band.d[i] + band.d[i])) >> 15;
    }
    band.sz = saturate(band.sz);

    // PREDIC
    band.s = saturate(band.sp + band.sz);
}

impl G722 {
    pub fn new() -> Self {
        Self {
            band: Default::default(),
            x: [0; 24],
        }
    }

    /// Decodes one code byte (a low-band and a high-band code) into two
    /// 16 kHz samples.
    fn decode_byte(&mut self, code: u8) -> [i16; 2] {
        let code = i32::from(code);
        let ilow = code & 0x3f;
        let ihigh = (code >> 6) & 0x3;

        // Low band. INVQBL, RECONS, LIMIT
        let low = &mut self.band[0];
        let rlow = (low.s + ((low.det * QM6[ilow as usize]) >> 15)).clamp(-16384, 16383);
        // INVQAL
        let ilow4 = (ilow >> 2) as usize;
        let dlow = (low.det * QM4[ilow4]) >> 15;
        // LOGSCL, SCALEL
        low.nb = (((low.nb * 127) >> 7) + WL[RL42[ilow4] as usize]).clamp(0, 18432);
        low.det = scale(low.nb, 8);
        block4(low, dlow);

        // High band. INVQAH, RECONS, LIMIT
        let high = &mut self.band[1];
        let dhigh = (high.det * QM2[ihigh as usize]) >> 15;
        let rhigh = (dhigh + high.s).clamp(-16384, 16383);
        // LOGSCH, SCALEH
        high.nb = (((high.nb * 127) >> 7) + WH[RH2[ihigh as usize] as usize]).clamp(0, 22528);
        high.det = scale(high.nb, 10);
        block4(high, dhigh);

        // Receive QMF.
        self.x.copy_within(2.., 0);
        self.x[22] = rlow + rhigh;
        self.x[23] = rlow - rhigh;
        let (mut xout1, mut xout2) = (0, 0);
        for i in 0..12 {
            xout2 += self.x[2 * i] * QMF_COEFFS[i];
            xout1 += self.x[2 * i + 1] * QMF_COEFFS[11 - i];
        }
        [saturate(xout1 >> 11) as i16, saturate(xout2 >> 11) as i16]
    }
}

impl Decoder for G722 {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, DecodeError> {
        out.reserve(payload.len() * 2);
        for &code in payload {
            out.extend_from_slice(&self.decode_byte(code));
        }
        Ok(payload.len() * 2)
    }
    fn sample_rate(&self) -> u32 {
        16_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ezk_g722::libg722::{Bitrate, decoder::Decoder as Reference, encoder::Encoder};

    #[test]
    fn decodes_exactly_as_the_reference_port() {
        // Encoded speech-like audio (tones sweeping the band, loud and
        // quiet), then arbitrary bytes: every sample as the original.
        let pcm: Vec<i16> = (0..32_000)
            .map(|i| {
                let t = f64::from(i) / 16_000.0;
                let amp = if i < 16_000 { 20_000.0 } else { 600.0 };
                (amp * (2.0 * std::f64::consts::PI * (200.0 + 3000.0 * t) * t).sin()) as i16
            })
            .collect();
        let mut encoder = Encoder::new(Bitrate::Mode1_64000, false, false);
        let mut stream = encoder.encode(&pcm);
        let mut seed = 0x1234_5678u32;
        stream.extend((0..16_000).map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        }));
        let mut reference = Reference::new(Bitrate::Mode1_64000, false, false);
        let mut ours = G722::new();
        let mut out = Vec::new();
        for packet in stream.chunks(160) {
            let want = reference.decode(packet);
            out.clear();
            assert_eq!(ours.decode(packet, &mut out).ok(), Some(want.len()));
            assert_eq!(out, want);
        }
    }
}
