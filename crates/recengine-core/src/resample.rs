//! Sample-rate conversion between any two integer rates with a polyphase
//! windowed-sinc filter (Kaiser window).
//!
//! The ratio is reduced to `up/down`. Each output sample is a dot product
//! of one phase's coefficients with the input history, phases padded to a
//! multiple of eight taps. Whole-number ratios up (8 → 16 or 48 kHz, the
//! common case) compute eight consecutive inputs' outputs at once, one per
//! vector lane; other ratios run each dot product eight lanes at a time.
//! Both use SSE2 on every x86-64 CPU and AVX where the CPU has it, with the
//! same arithmetic in the same order, so the samples depend neither on the
//! machine nor on how the input is split. Two filters:
//!
//! - **Narrowband up** (8 kHz in, a higher rate out: G.711 and every other
//!   telephone-band leg of a wideband recording): 32 taps at 8 kHz,
//!   −6 dB at 97 % of 4 kHz, β = 7. Flat within 0.06 dB to 3.4 kHz and
//!   images of everything up to 3.4 kHz more than 70 dB down. A telephone
//!   channel (G.712) carries 300–3400 Hz, so the steeper filter below would
//!   only spend twice the work on a band that holds nothing.
//! - **Everything else**: 64 taps at the lower rate, −6 dB at 95 % of the
//!   lower Nyquist frequency, β = 8: flat to 0.9 of Nyquist and aliases more
//!   than 70 dB down, which a downsampler needs because the input does carry
//!   energy above the new Nyquist frequency.
//!
//! The filter's delay is removed: output sample `k` lines up with input time
//! `k · down/up`, so a leg's timeline positions stay exact across a rate
//! change. [`Resampler::flush`] releases the last samples held back by the
//! filter.

/// A low-pass prototype: its length in taps at the lower of the two rates,
/// its −6 dB point as a fraction of the lower Nyquist frequency, and the
/// Kaiser window's β.
#[derive(Debug, Clone, Copy)]
struct Design {
    taps: usize,
    cutoff: f64,
    beta: f64,
}

/// Telephone-band legs into a wideband recording (see the module doc).
const NARROWBAND_UP: Design = Design {
    taps: 32,
    cutoff: 0.97,
    beta: 7.0,
};
const GENERAL: Design = Design {
    taps: 64,
    cutoff: 0.95,
    beta: 8.0,
};

/// Taps multiplied together per step of the dot product; every phase is
/// padded to a multiple of this.
const LANES: usize = 8;

/// Consecutive inputs upsampled together by [`Resampler::produce_up`]
/// (which takes the whole-number ratios 2, 3, 4 and 6).
const BLOCK: usize = 8;

impl Design {
    fn for_rates(from: u32, to: u32) -> Self {
        if from == 8000 && to > from {
            NARROWBAND_UP
        } else {
            GENERAL
        }
    }
}

/// A streaming converter from one rate to another. Reuses its buffers.
#[derive(Debug, Clone)]
pub struct Resampler {
    up: usize,
    down: usize,
    /// Taps per phase, a multiple of [`LANES`].
    taps: usize,
    /// Coefficients, `up` phases of `taps` each, oldest sample first (in the
    /// order of the history window they multiply).
    coeffs: Vec<f32>,
    /// The same coefficients tap by tap: `taps` groups of `up`, one per
    /// phase (for [`Resampler::produce_up`]; empty unless `down` is 1).
    coeffs_by_tap: Vec<f32>,
    /// Input history; index 0 is the oldest kept sample.
    history: Vec<f32>,
    /// Position of the next output in up-sampled units, relative to the
    /// first sample in `history`.
    next: usize,
    /// Outputs still to drop to cancel the filter delay.
    skip: usize,
    initial_skip: usize,
    /// Real input samples consumed in total.
    consumed: usize,
    /// Output samples produced in total.
    produced: usize,
    simd: Simd,
}

fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half = x / 2.0;
    for k in 1..50 {
        term *= (half / k as f64) * (half / k as f64);
        sum += term;
        if term < sum * 1e-12 {
            break;
        }
    }
    sum
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The vector units a [`Resampler`] runs on, chosen once when it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Simd {
    /// Eight lanes in one AVX register.
    Avx,
    /// Eight lanes in two SSE2 registers (every x86-64 CPU).
    Sse2,
    /// Eight scalar running sums (other architectures, and tests).
    #[cfg_attr(
        all(target_arch = "x86_64", not(test)),
        expect(dead_code, reason = "x86-64 always has SSE2; tests still run this")
    )]
    Scalar,
}

impl Simd {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx") {
                Simd::Avx
            } else {
                Simd::Sse2
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Simd::Scalar
        }
    }
}

/// Adds the eight running sums in one fixed order, so every [`Simd`] choice
/// gives the same sample: each lane sums the same products in the same
/// order, with no fused multiply-add.
#[inline(always)]
fn reduce(l: [f32; LANES]) -> f32 {
    ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
}

/// Rounds to the nearest sample, ties to even, saturating at the i16 range.
#[inline(always)]
fn to_sample(x: f32) -> i16 {
    x.round_ties_even() as i16
}

fn dot_scalar(c: &[[f32; LANES]], w: &[[f32; LANES]]) -> f32 {
    let mut lanes = [0f32; LANES];
    for (c8, w8) in c.iter().zip(w) {
        for ((sum, a), b) in lanes.iter_mut().zip(c8).zip(w8) {
            *sum += a * b;
        }
    }
    reduce(lanes)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn dot_sse2(c: &[[f32; LANES]], w: &[[f32; LANES]]) -> f32 {
    use std::arch::x86_64::{_mm_add_ps, _mm_loadu_ps, _mm_mul_ps, _mm_setzero_ps, _mm_storeu_ps};
    // Each load and store below covers one half of an eight-f32 array.
    // SAFETY: SSE2 is part of every x86-64 CPU.
    let (mut lo, mut hi) = unsafe { (_mm_setzero_ps(), _mm_setzero_ps()) };
    for (c8, w8) in c.iter().zip(w) {
        // SAFETY: SSE2 is part of every x86-64 CPU; the loads stay in the arrays.
        unsafe {
            let (c0, c1) = (_mm_loadu_ps(c8.as_ptr()), _mm_loadu_ps(c8.as_ptr().add(4)));
            let (w0, w1) = (_mm_loadu_ps(w8.as_ptr()), _mm_loadu_ps(w8.as_ptr().add(4)));
            lo = _mm_add_ps(lo, _mm_mul_ps(c0, w0));
            hi = _mm_add_ps(hi, _mm_mul_ps(c1, w1));
        }
    }
    let mut lanes = [0f32; LANES];
    // SAFETY: SSE2 is part of every x86-64 CPU; the stores stay in `lanes`.
    unsafe {
        _mm_storeu_ps(lanes.as_mut_ptr(), lo);
        _mm_storeu_ps(lanes.as_mut_ptr().add(4), hi);
    }
    reduce(lanes)
}

/// [`dot_scalar`] with eight lanes in one AVX register.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn dot_avx(c: &[[f32; LANES]], w: &[[f32; LANES]]) -> f32 {
    use std::arch::x86_64::{
        _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let mut acc = _mm256_setzero_ps();
    for (c8, w8) in c.iter().zip(w) {
        // SAFETY: each load reads exactly one eight-f32 array.
        let (a, b) = unsafe { (_mm256_loadu_ps(c8.as_ptr()), _mm256_loadu_ps(w8.as_ptr())) };
        acc = _mm256_add_ps(acc, _mm256_mul_ps(a, b));
    }
    let mut lanes = [0f32; LANES];
    // SAFETY: `lanes` holds eight f32s.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    reduce(lanes)
}

/// One block of [`Resampler::produce_up`]: `BLOCK` consecutive outputs of
/// each of `UP` phases. `by_tap[j][p]` is phase `p`'s tap `j` (oldest
/// first); `x` holds the inputs from the first output's oldest tap on, at
/// least `taps + BLOCK − 1` of them. Output `i` of phase `p` is
/// `Σ_j by_tap[j][p] · x[j + i]`, summed in tap order.
fn block_scalar<const UP: usize>(by_tap: &[[f32; UP]], x: &[f32]) -> [[f32; BLOCK]; UP] {
    let mut sums = [[0f32; BLOCK]; UP];
    for (j, c) in by_tap.iter().enumerate() {
        let xs = &x[j..j + BLOCK];
        for (lanes, &cj) in sums.iter_mut().zip(c) {
            for (sum, &xi) in lanes.iter_mut().zip(xs) {
                *sum += cj * xi;
            }
        }
    }
    sums
}

/// [`block_scalar`] with four lanes in each of two SSE2 registers per phase.
#[cfg(target_arch = "x86_64")]
fn block_sse2<const UP: usize>(by_tap: &[[f32; UP]], x: &[f32]) -> [[f32; BLOCK]; UP] {
    use std::arch::x86_64::{
        __m128, _mm_add_ps, _mm_loadu_ps, _mm_mul_ps, _mm_set1_ps, _mm_setzero_ps, _mm_storeu_ps,
    };
    assert!(x.len() >= by_tap.len() + BLOCK - 1, "block input too short");
    // SAFETY: SSE2 is part of every x86-64 CPU; the assertion keeps every
    // load of eight inputs from `x[j..]` in bounds, and each store covers
    // half of one eight-f32 array.
    unsafe {
        let mut acc: [[__m128; 2]; UP] = [[_mm_setzero_ps(); 2]; UP];
        for (j, c) in by_tap.iter().enumerate() {
            let lo = _mm_loadu_ps(x.as_ptr().add(j));
            let hi = _mm_loadu_ps(x.as_ptr().add(j + 4));
            for (a, &cj) in acc.iter_mut().zip(c) {
                let cj = _mm_set1_ps(cj);
                a[0] = _mm_add_ps(a[0], _mm_mul_ps(cj, lo));
                a[1] = _mm_add_ps(a[1], _mm_mul_ps(cj, hi));
            }
        }
        let mut sums = [[0f32; BLOCK]; UP];
        for (s, a) in sums.iter_mut().zip(acc) {
            _mm_storeu_ps(s.as_mut_ptr(), a[0]);
            _mm_storeu_ps(s.as_mut_ptr().add(4), a[1]);
        }
        sums
    }
}

/// [`block_scalar`] with eight lanes in one AVX register per phase.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn block_avx<const UP: usize>(by_tap: &[[f32; UP]], x: &[f32]) -> [[f32; BLOCK]; UP] {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    assert!(x.len() >= by_tap.len() + BLOCK - 1, "block input too short");
    let mut acc: [__m256; UP] = [_mm256_setzero_ps(); UP];
    for (j, c) in by_tap.iter().enumerate() {
        // SAFETY: the assertion keeps `x[j..j + 8]` in bounds.
        let xs = unsafe { _mm256_loadu_ps(x.as_ptr().add(j)) };
        for (a, &cj) in acc.iter_mut().zip(c) {
            *a = _mm256_add_ps(*a, _mm256_mul_ps(_mm256_set1_ps(cj), xs));
        }
    }
    let mut sums = [[0f32; BLOCK]; UP];
    for (s, a) in sums.iter_mut().zip(acc) {
        // SAFETY: `s` holds eight f32s.
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), a) };
    }
    sums
}

/// The one table of kernels, for each vector unit's pair: whole-number
/// ratios up (2, 3, 4, 6) go to [`Resampler::produce_up`] with `$block`,
/// every other ratio to [`Resampler::produce`] with `$dot`. The kernels are
/// called through closures so that AVX ones (which need the feature to be
/// called safely) work as well.
macro_rules! produce_with {
    ($resampler:ident, $count:ident, $out:ident, $block:ident, $dot:ident) => {
        match ($resampler.down, $resampler.up) {
            (1, 2) => $resampler.produce_up::<2>($count, $out, |c, x| $block::<2>(c, x)),
            (1, 3) => $resampler.produce_up::<3>($count, $out, |c, x| $block::<3>(c, x)),
            (1, 4) => $resampler.produce_up::<4>($count, $out, |c, x| $block::<4>(c, x)),
            (1, 6) => $resampler.produce_up::<6>($count, $out, |c, x| $block::<6>(c, x)),
            _ => $resampler.produce($count, $out, |c, w| $dot(c, w)),
        }
    };
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Self {
        let design = Design::for_rates(from, to);
        let g = gcd(from as usize, to as usize).max(1);
        let up = to as usize / g;
        let down = from as usize / g;
        // Taps per phase: the design's length at the lower rate, counted in
        // input samples, rounded up to whole lanes.
        let taps = (design.taps * up.max(down))
            .div_ceil(up)
            .next_multiple_of(LANES);
        // A symmetric (linear-phase) prototype as long as the phases hold,
        // whose centre falls on an output instant, so the delay is a whole
        // number of outputs.
        let centre_units = (taps * up - 1) / 2 / down * down;
        let len = 2 * centre_units + 1;
        // Cut-off relative to the up-sampled rate.
        let fc = design.cutoff * 0.5 / up.max(down) as f64;
        let centre = centre_units as f64;
        let norm = bessel_i0(design.beta);
        let proto: Vec<f64> = (0..taps * up)
            .map(|n| {
                if n >= len {
                    return 0.0;
                }
                let x = n as f64 - centre;
                let sinc = if x == 0.0 {
                    2.0 * fc
                } else {
                    (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x)
                };
                let r = x / centre;
                let w = bessel_i0(design.beta * (1.0 - r * r).max(0.0).sqrt()) / norm;
                sinc * w * up as f64
            })
            .collect();
        // Phase p, tap j counted back from the newest input multiplies input
        // (base − j) and is proto[p + j·up]; stored oldest first.
        let mut coeffs = vec![0f32; taps * up];
        for p in 0..up {
            for j in 0..taps {
                coeffs[p * taps + (taps - 1 - j)] = proto[p + j * up] as f32;
            }
        }
        // The filter's centre lies `skip` outputs in: drop those to cancel
        // its delay.
        Self::new_from_ratio(up, down, coeffs, taps, centre_units / down)
    }

    fn new_from_ratio(up: usize, down: usize, coeffs: Vec<f32>, taps: usize, skip: usize) -> Self {
        let mut coeffs_by_tap = Vec::new();
        if down == 1 {
            coeffs_by_tap.resize(coeffs.len(), 0.0);
            for p in 0..up {
                for j in 0..taps {
                    coeffs_by_tap[j * up + p] = coeffs[p * taps + j];
                }
            }
        }
        Self {
            up,
            down,
            taps,
            coeffs,
            coeffs_by_tap,
            history: vec![0.0; taps - 1],
            // Start so that the first output uses the first real input as base.
            next: (taps - 1) * up,
            skip,
            initial_skip: skip,
            consumed: 0,
            produced: 0,
            simd: Simd::detect(),
        }
    }

    /// Forgets all history, as after a long silence: the next input is
    /// treated as the first.
    pub fn reset(&mut self) {
        let fresh = Self::new_from_ratio(
            self.up,
            self.down,
            std::mem::take(&mut self.coeffs),
            self.taps,
            self.initial_skip,
        );
        *self = fresh;
    }

    /// Converts `input`, appending the output to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        self.history.extend(input.iter().map(|&s| f32::from(s)));
        self.consumed += input.len();
        self.run(out);
    }

    fn run(&mut self, out: &mut Vec<i16>) {
        // Outputs whose newest input is already in `history`.
        let end = self.history.len() * self.up;
        if self.next < end {
            let count = (end - self.next).div_ceil(self.down);
            let skipped = count.min(self.skip);
            self.skip -= skipped;
            self.next += skipped * self.down;
            let count = count - skipped;
            out.reserve(count);
            match self.simd {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Simd::Avx` is chosen only where the CPU reports AVX.
                Simd::Avx => unsafe { self.produce_avx(count, out) },
                #[cfg(target_arch = "x86_64")]
                Simd::Sse2 => produce_with!(self, count, out, block_sse2, dot_sse2),
                _ => produce_with!(self, count, out, block_scalar, dot_scalar),
            }
            self.produced += count;
        }
        // Drop history no longer needed.
        let base = self.next / self.up;
        let keep_from = (base + 1).saturating_sub(self.taps);
        if keep_from > 0 {
            self.history.drain(..keep_from);
            self.next -= keep_from * self.up;
        }
    }

    /// Every path compiled for AVX.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    fn produce_avx(&mut self, count: usize, out: &mut Vec<i16>) {
        // The kernels' closures inherit this function's AVX.
        produce_with!(self, count, out, block_avx, dot_avx);
    }

    /// [`Resampler::produce`] for a whole-number ratio up (`down` = 1:
    /// 8 → 16 or 48 kHz, 16 → 48 kHz): each input sample gives `UP`
    /// outputs, one per phase. [`BLOCK`] consecutive inputs are done at
    /// once, one output per lane and every phase side by side, so each
    /// output's sum runs over the taps in order with no reduction across
    /// lanes; outputs before and after whole blocks take the same sum one
    /// at a time.
    #[inline(always)]
    fn produce_up<const UP: usize>(
        &mut self,
        count: usize,
        out: &mut Vec<i16>,
        block: impl Fn(&[[f32; UP]], &[f32]) -> [[f32; BLOCK]; UP],
    ) {
        let taps = self.taps;
        let (mut base, mut phase) = (self.next / UP, self.next % UP);
        let mut left = count;
        let (by_tap, _) = self.coeffs_by_tap.as_chunks::<UP>();
        while left > 0 {
            if phase == 0 && left >= BLOCK * UP {
                // Inputs from the oldest tap of the first output to the
                // newest of the last.
                let sums = block(by_tap, &self.history[base + 1 - taps..base + BLOCK]);
                for i in 0..BLOCK {
                    out.extend(sums.iter().map(|lanes| to_sample(lanes[i])));
                }
                base += BLOCK;
                left -= BLOCK * UP;
                continue;
            }
            let c = &self.coeffs[phase * taps..(phase + 1) * taps];
            let w = &self.history[base + 1 - taps..=base];
            let sum = c.iter().zip(w).fold(0f32, |acc, (a, b)| acc + a * b);
            out.push(to_sample(sum));
            left -= 1;
            phase += 1;
            if phase == UP {
                phase = 0;
                base += 1;
            }
        }
        self.next = base * UP + phase;
    }

    /// Computes the next `count` outputs, every one of which has its inputs
    /// in `history`.
    #[inline(always)]
    fn produce(
        &mut self,
        count: usize,
        out: &mut Vec<i16>,
        dot: impl Fn(&[[f32; LANES]], &[[f32; LANES]]) -> f32,
    ) {
        let (up, taps) = (self.up, self.taps);
        let (coeffs, _) = self.coeffs.as_chunks::<LANES>();
        let per_phase = taps / LANES;
        let (step_base, step_phase) = (self.down / up, self.down % up);
        let (mut base, mut phase) = (self.next / up, self.next % up);
        for _ in 0..count {
            let (window, _) = self.history[base + 1 - taps..=base].as_chunks::<LANES>();
            let c = &coeffs[phase * per_phase..(phase + 1) * per_phase];
            out.push(to_sample(dot(c, window)));
            base += step_base;
            phase += step_phase;
            if phase >= up {
                phase -= up;
                base += 1;
            }
        }
        self.next = base * up + phase;
    }

    /// Releases the samples held back by the filter delay (feeds silence),
    /// so that in total `inputs · up / down` samples come out.
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        let total = self.consumed * self.up / self.down;
        let before = out.len();
        let produced_before = self.produced;
        self.history.extend(std::iter::repeat_n(0.0, self.taps));
        self.run(out);
        let wanted = total.saturating_sub(produced_before);
        out.truncate(before + wanted.min(out.len() - before));
        self.produced = produced_before + (out.len() - before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, freq: f64, secs: f64, amp: f64) -> Vec<i16> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn convert(from: u32, to: u32, input: &[i16]) -> Vec<i16> {
        let mut r = Resampler::new(from, to);
        let mut out = Vec::new();
        for chunk in input.chunks(160) {
            r.process(chunk, &mut out);
        }
        r.flush(&mut out);
        out
    }

    #[test]
    fn passband_is_flat() {
        for (from, to, freqs) in [
            (8000, 16_000, &[300.0, 1000.0, 3000.0, 3300.0][..]),
            (16_000, 8000, &[300.0, 1000.0, 3000.0, 3300.0][..]),
            (8000, 48_000, &[300.0, 1000.0, 3300.0][..]),
            (48_000, 16_000, &[300.0, 4000.0, 7000.0][..]),
            (11_025, 8000, &[500.0, 3000.0][..]),
        ] {
            for &f in freqs {
                let input = tone(from, f, 1.0, 10_000.0);
                let out = convert(from, to, &input);
                let expect_len = input.len() * to as usize / from as usize;
                assert!(
                    out.len().abs_diff(expect_len) <= 50,
                    "{from}->{to}: {} vs {expect_len}",
                    out.len()
                );
                let steady = &out[out.len() / 4..out.len() * 3 / 4];
                let gain_db = 20.0 * (rms(steady) / (10_000.0 / 2f64.sqrt())).log10();
                assert!(gain_db.abs() < 0.5, "{from}->{to} {f} Hz: {gain_db:.2} dB");
            }
        }
    }

    #[test]
    fn downsampling_rejects_aliases() {
        for (from, to, f) in [
            (16_000, 8000, 5000.0),
            (16_000, 8000, 6000.0),
            (48_000, 8000, 9000.0),
            (48_000, 16_000, 12_000.0),
        ] {
            let out = convert(from, to, &tone(from, f, 1.0, 20_000.0));
            let steady = &out[out.len() / 4..out.len() * 3 / 4];
            let level_db = 20.0 * (rms(steady).max(1e-3) / (20_000.0 / 2f64.sqrt())).log10();
            assert!(
                level_db < -60.0,
                "{from}->{to} {f} Hz alias at {level_db:.1} dB"
            );
        }
    }

    /// Level of `freq` in `x` (dB relative to a full-amplitude `amp`
    /// sine), through a Hann window so the tone's own leakage stays far
    /// below what is measured.
    fn level_db(x: &[i16], rate: u32, freq: f64, amp: f64) -> f64 {
        let n = x.len() as f64;
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in x.iter().enumerate() {
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n).cos();
            let ph = 2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate);
            re += w * f64::from(s) * ph.cos();
            im -= w * f64::from(s) * ph.sin();
        }
        // A Hann window halves a tone's amplitude.
        let found = 4.0 * (re * re + im * im).sqrt() / n;
        20.0 * (found.max(1e-9) / amp).log10()
    }

    #[test]
    fn upsampling_narrowband_rejects_images() {
        // Telephone-band tones (up to 3.4 kHz) come out at their level, and
        // their images around 8 kHz (and 16 kHz at 48 kHz) stay > 70 dB down.
        for to in [16_000u32, 48_000] {
            for f in [300.0, 1000.0, 3000.0, 3400.0] {
                let out = convert(8000, to, &tone(8000, f, 1.0, 20_000.0));
                let steady = &out[out.len() / 4..out.len() * 3 / 4];
                let tone_db = level_db(steady, to, f, 20_000.0);
                assert!(tone_db.abs() < 0.1, "8000->{to} {f} Hz at {tone_db:.2} dB");
                let mut images = vec![8000.0 - f, 8000.0 + f];
                if to == 48_000 {
                    images.extend([16_000.0 - f, 16_000.0 + f]);
                }
                for image in images {
                    let db = level_db(steady, to, image, 20_000.0);
                    assert!(
                        db < -70.0,
                        "8000->{to} {f} Hz: image at {image} Hz {db:.1} dB"
                    );
                }
            }
        }
    }

    #[test]
    fn every_vector_width_gives_the_same_samples() {
        let input: Vec<i16> = (0..8000)
            .map(|i| {
                let t = f64::from(i) / 8000.0;
                (9000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                    + 7000.0 * (2.0 * std::f64::consts::PI * 2950.0 * t).sin())
                    as i16
            })
            .collect();
        for (from, to) in [
            (8000, 16_000),
            (8000, 48_000),
            (16_000, 48_000),
            (48_000, 8000),
        ] {
            let mut wide = Resampler::new(from, to);
            let mut portable = wide.clone();
            portable.simd = Simd::Scalar;
            let mut sse = wide.clone();
            #[cfg(target_arch = "x86_64")]
            {
                sse.simd = Simd::Sse2;
            }
            let mut c = Vec::new();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for chunk in input.chunks(160) {
                wide.process(chunk, &mut a);
                portable.process(chunk, &mut b);
                sse.process(chunk, &mut c);
            }
            assert_eq!(a, b, "{from}->{to}");
            assert_eq!(a, c, "{from}->{to}");
        }
    }

    #[test]
    fn how_the_input_is_split_does_not_change_the_samples() {
        // Odd pieces make the whole-ratio path start and end between
        // blocks, where outputs are summed one at a time.
        let input = tone(8000, 1234.5, 0.5, 12_000.0);
        for (from, to) in [(8000, 16_000), (8000, 48_000), (8000, 11_025)] {
            let whole = convert(from, to, &input);
            let mut r = Resampler::new(from, to);
            let mut pieces = Vec::new();
            for piece in input.chunks(37) {
                r.process(piece, &mut pieces);
            }
            r.flush(&mut pieces);
            assert_eq!(whole, pieces, "{from}->{to}");
        }
    }

    #[test]
    fn delay_is_compensated() {
        // An impulse at input sample 800 appears at output sample 1600 (8k → 16k).
        let mut input = vec![0i16; 1600];
        input[800] = 20_000;
        let mut r = Resampler::new(8000, 16_000);
        let mut out = Vec::new();
        r.process(&input, &mut out);
        r.flush(&mut out);
        let peak = out
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| s.abs())
            .map(|(i, _)| i);
        assert_eq!(peak, Some(1600));
        assert!(out.len().abs_diff(3200) <= 2, "{}", out.len());
    }
}
