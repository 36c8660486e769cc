//! G.711 µ-law and A-law, with the ITU-T G.711 expansion (the tables of
//! Sun's reference `g711.c`, which sox and Python's `audioop` use too).

use super::{DecodeError, Decoder};

const fn ulaw_expand(code: u8) -> i16 {
    let u = !code;
    let mut t: i32 = (((u & 0x0f) as i32) << 3) + 0x84;
    t <<= ((u & 0x70) >> 4) as i32;
    if u & 0x80 != 0 {
        (0x84 - t) as i16
    } else {
        (t - 0x84) as i16
    }
}

const fn alaw_expand(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t: i32 = ((a & 0x0f) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

const fn table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_expand(i as u8)
        } else {
            ulaw_expand(i as u8)
        };
        i += 1;
    }
    t
}

static ULAW: [i16; 256] = table(false);
static ALAW: [i16; 256] = table(true);

pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW[usize::from(code)]
}

pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW[usize::from(code)]
}

/// µ-law compression (for test signals and the load generator).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let exponent = (31 - (s as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// A-law compression.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s >= 0 {
        0x80
    } else {
        s = -s - 1;
        0
    };
    s = s.min(32_767);
    let code = if s < 256 {
        (s >> 4) as u8
    } else {
        let exponent = (31 - (s as u32).leading_zeros() as i32 - 7).clamp(1, 7);
        ((exponent << 4) as u8) | ((s >> (exponent + 3)) & 0x0f) as u8
    };
    (sign | code) ^ 0x55
}

pub struct Ulaw;
pub struct Alaw;

impl Decoder for Ulaw {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, DecodeError> {
        out.extend(payload.iter().map(|&b| ULAW[usize::from(b)]));
        Ok(payload.len())
    }
    fn sample_rate(&self) -> u32 {
        8000
    }
}

impl Decoder for Alaw {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, DecodeError> {
        out.extend(payload.iter().map(|&b| ALAW[usize::from(b)]));
        Ok(payload.len())
    }
    fn sample_rate(&self) -> u32 {
        8000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_expansion_values() {
        // Values from ITU-T G.711 tables 1a/2a (and Sun g711.c).
        let ulaw: &[(u8, i16)] = &[
            (0x00, -32124),
            (0x7f, 0),
            (0xff, 0),
            (0x80, 32124),
            (0x0f, -16764),
        ];
        for &(code, want) in ulaw {
            assert_eq!(ulaw_to_linear(code), want, "ulaw {code:#x}");
        }
        let alaw: &[(u8, i16)] = &[
            (0xd5, 8),
            (0x55, -8),
            (0xaa, 32256),
            (0x2a, -32256),
            (0x80, 5504),
        ];
        for &(code, want) in alaw {
            assert_eq!(alaw_to_linear(code), want, "alaw {code:#x}");
        }
    }

    #[test]
    fn compression_round_trips_every_code() {
        for code in 0..=255u8 {
            let lin = ulaw_to_linear(code);
            assert_eq!(ulaw_to_linear(linear_to_ulaw(lin)), lin, "ulaw {code:#x}");
            let lin = alaw_to_linear(code);
            assert_eq!(linear_to_alaw(lin), code, "alaw {code:#x}");
        }
    }
}
