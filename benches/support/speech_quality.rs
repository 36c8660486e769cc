//! How much of a speech signal survived a lossy encoder, for the encoder
//! settings benches (`mp3_settings`, `opus_settings`): alignment by the
//! codec's delay, then segmental SNR.

/// The lag (decoded behind original, in samples, below `max_lag`) with the
/// largest correlation over the original's seconds 1-3.
pub fn align(original: &[i16], decoded: &[i16], rate: usize, max_lag: usize) -> usize {
    let span = &original[rate..rate * 3];
    (0..max_lag)
        .max_by_key(|&lag| {
            let d = decoded.get(rate + lag..).unwrap_or_default();
            span.iter()
                .zip(d)
                .map(|(&a, &b)| i64::from(a) * i64::from(b))
                .sum::<i64>()
        })
        .unwrap_or(0)
}

/// Segmental SNR in dB: 20 ms segments with speech in them (above
/// −50 dBFS), each clamped to [−10, 35] dB, averaged.
pub fn segmental_snr(original: &[i16], decoded: &[i16], rate: usize) -> f64 {
    let seg = rate / 50;
    let mut sum = 0.0;
    let mut n = 0;
    for (x, y) in original.chunks_exact(seg).zip(decoded.chunks_exact(seg)) {
        let signal: f64 = x.iter().map(|&s| f64::from(s).powi(2)).sum();
        if signal / (seg as f64) < (32768.0f64 * 10f64.powf(-50.0 / 20.0)).powi(2) {
            continue;
        }
        let noise: f64 = x
            .iter()
            .zip(y)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum();
        sum += (10.0 * (signal / noise.max(1.0)).log10()).clamp(-10.0, 35.0);
        n += 1;
    }
    sum / f64::from(n.max(1))
}
