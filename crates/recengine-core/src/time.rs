//! Media time: extending RTP's wrapping 16-bit sequence numbers and 32-bit
//! timestamps into monotone 64-bit values, and converting between clock rates.
//!
//! Extension follows RFC 3550 appendix A.1: a new value is placed in the cycle
//! that puts it closest to the previous extended value, so both forward
//! wrap-around and moderately reordered packets across a wrap resolve right.

/// Extends a 16-bit RTP sequence number relative to the last extended one.
///
/// `prev` is `None` for the first packet of a stream, which then lands in
/// cycle 1 so that a packet reordered from just before it (cycle 0) does not
/// underflow.
pub fn extend_seq(prev: Option<u64>, seq: u16) -> u64 {
    extend(prev, u64::from(seq), 1 << 16)
}

/// Extends a 32-bit RTP timestamp relative to the last extended one.
pub fn extend_ts(prev: Option<u64>, ts: u32) -> u64 {
    extend(prev, u64::from(ts), 1 << 32)
}

fn extend(prev: Option<u64>, value: u64, modulus: u64) -> u64 {
    let Some(prev) = prev else {
        return modulus + value;
    };
    let half = modulus / 2;
    let cycle = prev & !(modulus - 1);
    let candidate = cycle | value;
    if candidate + half < prev {
        // Wrapped forward: value belongs to the next cycle.
        candidate + modulus
    } else if candidate > prev + half && cycle >= modulus {
        // Reordered from before the wrap: value belongs to the previous cycle.
        candidate - modulus
    } else {
        candidate
    }
}

/// Converts a count of `from_rate` clock ticks into `to_rate` ticks,
/// rounding toward negative infinity. Exact when one rate divides the other.
pub fn rescale(ticks: i64, from_rate: u32, to_rate: u32) -> i64 {
    if from_rate == to_rate {
        return ticks;
    }
    // Per-packet path: i64 when the product fits (i128 division is a
    // library call several times slower).
    if let Some(scaled) = ticks.checked_mul(i64::from(to_rate)) {
        return scaled.div_euclid(i64::from(from_rate));
    }
    let scaled = i128::from(ticks) * i128::from(to_rate);
    let from = i128::from(from_rate);
    // i128 floor division; both rates are positive.
    let q = scaled.div_euclid(from);
    q as i64
}

/// Converts a duration in nanoseconds to ticks of `rate`, rounding toward
/// negative infinity.
pub fn nanos_to_ticks(nanos: i128, rate: u32) -> i64 {
    if let Some(scaled) = i64::try_from(nanos)
        .ok()
        .and_then(|n| n.checked_mul(i64::from(rate)))
    {
        return scaled.div_euclid(1_000_000_000);
    }
    (nanos * i128::from(rate)).div_euclid(1_000_000_000) as i64
}

/// Converts ticks of `rate` to nanoseconds.
pub fn ticks_to_nanos(ticks: i64, rate: u32) -> i128 {
    if let Some(nanos) = ticks.checked_mul(1_000_000_000) {
        return i128::from(nanos / i64::from(rate));
    }
    i128::from(ticks) * 1_000_000_000 / i128::from(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_paths_agree_with_wide_arithmetic() {
        let values = [
            0i64,
            1,
            -1,
            159,
            -161,
            48_000,
            1 << 33,
            -(1 << 33),
            1 << 40,
            i64::MAX / 3,
            i64::MIN / 3,
        ];
        for &v in &values {
            for rate in [8000u32, 16_000, 44_100, 48_000, 90_000] {
                let wide_nanos = i128::from(v) * 1_000_000_000 / i128::from(rate);
                assert_eq!(ticks_to_nanos(v, rate), wide_nanos, "{v} {rate}");
                let wide_ticks =
                    (i128::from(v) * i128::from(rate)).div_euclid(1_000_000_000) as i64;
                assert_eq!(
                    nanos_to_ticks(i128::from(v), rate),
                    wide_ticks,
                    "{v} {rate}"
                );
                let wide_rescale = (i128::from(v) * 16_000).div_euclid(i128::from(rate)) as i64;
                assert_eq!(rescale(v, rate, 16_000), wide_rescale, "{v} {rate}");
            }
        }
    }

    #[test]
    fn sequence_extension_table() {
        // (previous extended, incoming u16, expected extended)
        let cases: &[(Option<u64>, u16, u64)] = &[
            (None, 0, 65_536),
            (None, 65_535, 65_536 + 65_535),
            (Some(65_536 + 65_535), 0, 131_072),
            (Some(131_072), 65_535, 65_536 + 65_535),
            (Some(65_536 + 10), 11, 65_536 + 11),
            (Some(65_536 + 10), 9, 65_536 + 9),
            (Some(65_536 + 65_000), 100, 131_072 + 100),
            (Some(131_072 + 100), 65_000, 65_536 + 65_000),
            (Some(65_536 + 40_000), 7_000, 131_072 + 7_000),
            (Some(65_536 + 40_000), 8_000, 65_536 + 8_000),
        ];
        for &(prev, seq, want) in cases {
            assert_eq!(extend_seq(prev, seq), want, "prev {prev:?} seq {seq}");
        }
    }

    #[test]
    fn timestamp_extension_wraps() {
        let first = extend_ts(None, u32::MAX - 159);
        let next = extend_ts(Some(first), 0);
        assert_eq!(next - first, 160);
        let back = extend_ts(Some(next), u32::MAX - 319);
        assert_eq!(first - back, 160);
    }

    #[test]
    fn rescale_rounds_down() {
        assert_eq!(rescale(160, 8000, 16000), 320);
        assert_eq!(rescale(960, 48000, 8000), 160);
        assert_eq!(rescale(-1, 48000, 8000), -1);
        assert_eq!(rescale(256, 11025, 8000), 185);
        assert_eq!(nanos_to_ticks(20_000_000, 8000), 160);
        assert_eq!(ticks_to_nanos(160, 8000), 20_000_000);
    }
}
