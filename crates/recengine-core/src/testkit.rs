//! Deterministic test material for the media core and everything above
//! it: a speech-like signal, tones and their measurement, RTP packets and
//! a small seeded random generator. Pure functions; the capture fixtures
//! built from them live in the `recengine` crate's `testkit`.

use crate::decode::linear_to_ulaw;

/// A voiced, speech-like test signal: a 110–150 Hz glottal pulse train
/// shaped by three formants, in syllables of about 200 ms with short pauses.
/// Deterministic for a given rate and length.
pub fn speech(rate: u32, samples: usize) -> Vec<i16> {
    let fs = f64::from(rate);
    let formants = [(700.0, 1.0), (1200.0, 0.6), (2600.0, 0.3)];
    let mut phase = 0.0f64;
    (0..samples)
        .map(|n| {
            let t = n as f64 / fs;
            let f0 = 130.0 + 20.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
            phase += f0 / fs;
            // Syllable envelope: 4.5 Hz, with a pause every ~1.3 s.
            let syl = (std::f64::consts::PI * 4.5 * t).sin().abs();
            let pause = if (t * 0.75).fract() > 0.8 { 0.0 } else { 1.0 };
            let mut v = 0.0;
            for h in 1..=30 {
                let fh = f0 * f64::from(h);
                if fh > fs / 2.0 * 0.9 {
                    break;
                }
                let gain: f64 = formants
                    .iter()
                    .map(|(fc, g)| g / (1.0 + ((fh - fc) / 150.0).powi(2)))
                    .sum();
                v += gain * (2.0 * std::f64::consts::PI * f64::from(h) * phase).sin()
                    / f64::from(h).sqrt();
            }
            (v * 6000.0 * syl * pause).clamp(-32000.0, 32000.0) as i16
        })
        .collect()
}

/// Normalised correlation of paired values (0 when either side is silent).
pub fn correlation_of(pairs: impl Iterator<Item = (f64, f64)>) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in pairs {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

/// Normalised cross-correlation of two signals over their common length.
pub fn correlation(a: &[i16], b: &[i16]) -> f64 {
    correlation_of(a.iter().zip(b).map(|(&x, &y)| (f64::from(x), f64::from(y))))
}

/// Builds one RTP packet.
pub fn rtp_packet(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + payload.len());
    v.push(0x80);
    v.push(if marker { 0x80 | pt } else { pt });
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An RFC 4733 event payload.
pub fn event_payload(event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [
        event,
        (if end { 0x80 } else { 0 }) | (volume & 0x3f),
        d[0],
        d[1],
    ]
}

/// PCMU payloads of 20 ms for a signal at 8 kHz.
pub fn pcmu_frames(signal: &[i16]) -> Vec<Vec<u8>> {
    signal
        .chunks(160)
        .map(|c| c.iter().map(|&s| linear_to_ulaw(s)).collect())
        .collect()
}

/// A sine tone.
pub fn tone(rate: u32, freq: f64, amplitude: f64, samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| {
            (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                as i16
        })
        .collect()
}

/// A small deterministic random generator (xorshift64*) for tests,
/// benchmarks and generators: same seed, same sequence, on every machine.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `per_thousand` / 1000.
    pub fn chance(&mut self, per_thousand: u64) -> bool {
        self.below(1000) < per_thousand
    }

    pub fn byte(&mut self) -> u8 {
        (self.next_u64() >> 32) as u8
    }
}

/// Power of one frequency in a signal (Goertzel), normalised per sample
/// squared: for checking which tone ended up where.
pub fn tone_power(x: &[i16], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len().max(1) as f64).powi(2)
}
