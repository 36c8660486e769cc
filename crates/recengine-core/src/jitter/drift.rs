//! Sender clock drift, measured from arrival times.
//!
//! Every audio packet has a *lateness*: its arrival time minus the time its
//! RTP timestamp says it belongs at (on the leg's fixed anchor). Network
//! jitter only ever adds lateness, so the least lateness over a block of
//! time (the lower envelope of transit time) sees the sender's clock and the
//! network's base delay, not its jitter. A sender whose clock runs slow
//! against ours makes that envelope climb, a fast one makes it fall; jitter,
//! bursts and stalls leave it flat.
//!
//! [`DriftEstimator`] keeps the least lateness of each one-second block for
//! the last [`WINDOW_BLOCKS`] seconds and fits a line through them with the
//! Theil–Sen estimator (the median of pairwise slopes, robust to a few bad
//! blocks). The slope is the sender's skew (reported in ppm); the line's
//! value now is how far the leg has drifted from its anchor. It reports a
//! trend only when
//! - at least [`MIN_BLOCKS`] blocks are in,
//! - the blocks follow the line (most residuals within a tolerance), so a
//!   one-off step in network delay is not mistaken for drift,
//! - each half of the window climbs like the whole (within its own
//!   scatter): a step in delay — a host that got busy for a while, a route
//!   that changed — makes a line through the whole window slope, but leaves
//!   both halves flat, and
//! - the slope is at least [`MIN_PPM`].
//!
//! The jitter buffer decides with that value whether the accumulated offset
//! exceeds its bound; the estimator itself never moves audio.

/// Length of one block, in nanoseconds.
const BLOCK_NS: i64 = 1_000_000_000;
/// Blocks kept: the regression looks back this many seconds.
pub const WINDOW_BLOCKS: usize = 30;
/// Blocks needed before a trend is reported.
pub const MIN_BLOCKS: usize = 5;
/// Least rise of the fitted line over the window, in ns, on top of four
/// times the blocks' scatter around it: a trend must stand out of the noise.
const MIN_RISE_NS: f64 = 2_000_000.0;
/// What a half of the window may rise differently from the whole beyond
/// its own scatter and half the slope, in ns.
const HALF_NOISE_NS: f64 = 500_000.0;
/// Slopes below this are reported but never treated as drift.
pub const MIN_PPM: f64 = 20.0;
/// Residual tolerance of a block against the fitted line, in nanoseconds.
const RESIDUAL_TOLERANCE_NS: f64 = 6_000_000.0;

#[derive(Debug, Clone, Copy, Default)]
struct Block {
    /// Start of the block, ns (the leg's clock).
    t: i64,
    /// Least lateness seen in it, ns.
    min: i64,
}

/// The fitted line of a leg's lateness, confident or not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// Like [`Trend::offset_ns`].
    pub offset_ns: f64,
    pub ppm: f64,
}

/// A drift trend the estimator is confident of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Sender clock skew: positive when the sender's clock runs slow
    /// (its packets arrive later and later), in parts per million.
    pub ppm: f64,
    /// How far the sender has drifted since measurement started: where the
    /// fitted line stands at the latest block against the least lateness
    /// of the first block, in nanoseconds. (The line's value, not its slope
    /// times the elapsed time: a small error in the slope must not add up
    /// over an hour.)
    pub offset_ns: f64,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct DriftEstimator {
    current: Option<Block>,
    blocks: [Block; WINDOW_BLOCKS],
    /// Blocks held (at most [`WINDOW_BLOCKS`]); `head` is the next slot.
    len: usize,
    head: usize,
    ppm: f64,
    trend: Option<Trend>,
    /// Least lateness of the first block since the last reset: the level
    /// drift is counted from.
    first_min: Option<i64>,
    level: Option<Level>,
}

impl Default for DriftEstimator {
    fn default() -> Self {
        Self {
            current: None,
            blocks: [Block::default(); WINDOW_BLOCKS],
            len: 0,
            head: 0,
            ppm: 0.0,
            trend: None,
            first_min: None,
            level: None,
        }
    }
}

impl DriftEstimator {
    /// Where the line through the blocks stands now and how it climbs,
    /// however uncertain (from two blocks on): what other legs of the call
    /// compare themselves with (see [`Trend`] for what drift is).
    pub fn level(&self) -> Option<Level> {
        self.level
    }

    /// A skew no real clock has (a sender with the wrong RTP clock rate),
    /// in ppm, once three blocks in a row climb (or fall) at least a
    /// quarter of `threshold_ppm` each and the whole at least
    /// `threshold_ppm`; `None` otherwise. Steps in delay are not steady
    /// enough for this, and these streams are too far off for the halves
    /// test of a [`Trend`] to wait for.
    pub fn gross_ppm(&self, threshold_ppm: f64) -> Option<f64> {
        if self.len < 3 {
            return None;
        }
        let slope = |a: Block, b: Block| (b.min - a.min) as f64 / (b.t - a.t).max(1) as f64 * 1e6;
        let first = self.held().next()?;
        let last = self.held().last()?;
        let whole = slope(first, last);
        let steady = self
            .held()
            .zip(self.held().skip(1))
            .all(|(a, b)| slope(a, b) * whole.signum() >= threshold_ppm / 4.0);
        (whole.abs() >= threshold_ppm && steady).then_some(whole)
    }

    /// The latest skew estimate in ppm (0 until two blocks are in; a
    /// [`Trend`] needs [`MIN_BLOCKS`]).
    pub fn ppm(&self) -> f64 {
        self.ppm
    }

    /// The trend as of the latest closed block, if it is one.
    pub fn trend(&self) -> Option<Trend> {
        self.trend
    }

    /// Forgets everything (the relation between the sender's timestamps and
    /// our clock changed: a new stream, or a resynchronisation).
    pub fn reset(&mut self) {
        let ppm = self.ppm;
        *self = Self::default();
        self.ppm = ppm;
    }

    /// Adds one packet's lateness at time `now_ns`. Returns true when a
    /// block closed (and [`trend`](Self::trend) may have changed).
    pub fn observe(&mut self, now_ns: i64, lateness_ns: i64) -> bool {
        let Some(cur) = self.current.as_mut() else {
            self.current = Some(Block {
                t: now_ns,
                min: lateness_ns,
            });
            return false;
        };
        if now_ns - cur.t < BLOCK_NS {
            cur.min = cur.min.min(lateness_ns);
            return false;
        }
        let closed = *cur;
        self.first_min.get_or_insert(closed.min);
        self.current = Some(Block {
            t: now_ns,
            min: lateness_ns,
        });
        self.blocks[self.head] = closed;
        self.head = (self.head + 1) % WINDOW_BLOCKS;
        self.len = (self.len + 1).min(WINDOW_BLOCKS);
        self.refit();
        true
    }

    fn held(&self) -> impl Iterator<Item = Block> + '_ {
        let start = (self.head + WINDOW_BLOCKS - self.len) % WINDOW_BLOCKS;
        (0..self.len).map(move |i| self.blocks[(start + i) % WINDOW_BLOCKS])
    }

    fn refit(&mut self) {
        self.trend = None;
        if self.len < 2 {
            return;
        }
        let mut pts = [(0.0f64, 0.0f64); WINDOW_BLOCKS];
        for (slot, b) in pts.iter_mut().zip(self.held()) {
            *slot = (b.t as f64, b.min as f64);
        }
        let pts = &pts[..self.len];
        let Some(line) = Line::fit(pts) else {
            return;
        };
        let last_t = pts[pts.len() - 1].0;
        let level = Level {
            offset_ns: line.at(last_t) - self.first_min.map_or(0.0, |m| m as f64),
            ppm: line.slope * 1e6,
        };
        self.level = Some(level);
        // The blocks must follow the line: a step in network delay leaves
        // many blocks far from any single line.
        let off = pts
            .iter()
            .filter(|&&(t, y)| (y - line.at(t)).abs() > RESIDUAL_TOLERANCE_NS)
            .count();
        if off * 5 > pts.len() {
            // Not a clock: keep the last credible skew.
            return;
        }
        if level.ppm.abs() < MIN_PPM {
            // Too small to be drift, and to need the halves' agreement.
            self.ppm = level.ppm;
            return;
        }
        if !halves_agree(pts, &line) {
            return;
        }
        self.ppm = level.ppm;
        if self.len < MIN_BLOCKS {
            return;
        }
        let scatter = line.scatter(pts);
        let first_t = pts[0].0;
        let rise = (line.slope * (last_t - first_t)).abs();
        if rise < 4.0 * scatter + MIN_RISE_NS {
            return;
        }
        self.trend = Some(Trend {
            ppm: level.ppm,
            offset_ns: level.offset_ns,
        });
    }
}

/// Drift is a steady climb: each half of the window must rise like the
/// whole, within what its own scatter allows. A step in delay (a host that
/// got busy, a route that changed) makes a line through the whole window
/// slope, but leaves both halves flat, however well that line seems to fit.
fn halves_agree(pts: &[(f64, f64)], line: &Line) -> bool {
    if pts.len() < 4 {
        return false;
    }
    let (early, late) = pts.split_at(pts.len() / 2);
    [early, late].iter().all(|half| {
        let Some(h) = Line::fit(half) else {
            return false;
        };
        let span = half[half.len() - 1].0 - half[0].0;
        let allowed = 0.5 * line.slope.abs() + (4.0 * h.scatter(half) + HALF_NOISE_NS) / span;
        (h.slope - line.slope).abs() <= allowed
    })
}

/// A Theil–Sen line through (time, lateness) points.
#[derive(Debug, Clone, Copy)]
struct Line {
    slope: f64,
    intercept: f64,
}

impl Line {
    /// The median of pairwise slopes, and the median intercept for it.
    fn fit(pts: &[(f64, f64)]) -> Option<Self> {
        let mut slopes = [0.0f64; WINDOW_BLOCKS * (WINDOW_BLOCKS - 1) / 2];
        let mut n = 0;
        for i in 0..pts.len() {
            for j in i + 1..pts.len() {
                let dt = pts[j].0 - pts[i].0;
                if dt > 0.0 {
                    slopes[n] = (pts[j].1 - pts[i].1) / dt;
                    n += 1;
                }
            }
        }
        if n == 0 {
            return None;
        }
        let slope = median(&mut slopes[..n]);
        let mut intercepts = [0.0f64; WINDOW_BLOCKS];
        for (slot, &(t, y)) in intercepts.iter_mut().zip(pts) {
            *slot = y - slope * t;
        }
        let intercept = median(&mut intercepts[..pts.len()]);
        Some(Self { slope, intercept })
    }

    fn at(&self, t: f64) -> f64 {
        self.intercept + self.slope * t
    }

    /// The points' scatter around the line: the median absolute residual,
    /// scaled to a standard deviation.
    fn scatter(&self, pts: &[(f64, f64)]) -> f64 {
        let mut residuals = [0.0f64; WINDOW_BLOCKS];
        for (slot, &(t, y)) in residuals.iter_mut().zip(pts) {
            *slot = (y - self.at(t)).abs();
        }
        1.4826 * median(&mut residuals[..pts.len()])
    }
}

fn median(v: &mut [f64]) -> f64 {
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    *m
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    /// Feeds 50 packets a second for `secs` seconds; lateness from `f(t_ns)`.
    fn feed(est: &mut DriftEstimator, secs: i64, f: impl Fn(i64, u64) -> i64) {
        for i in 0..secs * 50 {
            let t = i * 20 * MS;
            est.observe(t, f(t, i as u64));
        }
    }

    #[test]
    fn steady_senders_show_no_trend_whatever_the_jitter() {
        type Lateness = fn(i64, u64) -> i64;
        let cases: [(&str, Lateness); 4] = [
            ("paced", |_, _| 0),
            ("bursts of 6", |_, i| -((i % 6) as i64) * 20 * MS),
            ("uniform 0-150 ms", |_, i| {
                (crate::testkit::Rng::new(i * 7919 + 1).below(150) as i64) * MS
            }),
            ("a 30 ms step at 10 s", |t, _| {
                if t > 10_000 * MS { 30 * MS } else { 0 }
            }),
        ];
        for (name, f) in cases {
            let mut est = DriftEstimator::default();
            feed(&mut est, 40, f);
            assert_eq!(est.trend(), None, "{name}: ppm {}", est.ppm());
        }
    }

    /// A host that gets busy delays every packet for a while (the 1,000-call
    /// load run saw this): steps up and down of 5-40 ms, at any point of
    /// the window, are never a trend, at no block along the way, and the
    /// reported skew stays near zero.
    #[test]
    fn a_step_in_delay_is_never_a_trend_at_any_block() {
        for step_ms in [5, 10, 15, 25, 40] {
            for at_s in [3, 6, 9, 12, 20] {
                for lasts_s in [4, 8, 1000] {
                    let mut est = DriftEstimator::default();
                    for i in 0..60 * 50 {
                        let t = i * 20 * MS;
                        let busy = (at_s * 1000 * MS..(at_s + lasts_s) * 1000 * MS).contains(&t);
                        let jitter =
                            (crate::testkit::Rng::new(i as u64 + 3).below(3) as i64) * MS / 4;
                        let late = if busy { step_ms * MS } else { 0 } + jitter;
                        if est.observe(t, late) {
                            assert_eq!(
                                est.trend(),
                                None,
                                "{step_ms} ms step at {at_s} s for {lasts_s} s, at {} s",
                                t / 1000 / MS
                            );
                            assert!(est.ppm().abs() < 20.0, "ppm {}", est.ppm());
                        }
                    }
                }
            }
        }
    }

    /// A wrong RTP clock is gross from its third block on; a 40 ms step in
    /// delay never is.
    #[test]
    fn only_a_steady_climb_is_a_gross_skew() {
        let mut wrong = DriftEstimator::default();
        feed(&mut wrong, 4, |t, _| t / 4);
        assert!(wrong.gross_ppm(10_000.0).is_some_and(|p| p > 200_000.0));
        for at_s in [1, 2, 3] {
            let mut step = DriftEstimator::default();
            for i in 0..10 * 50 {
                let t = i * 20 * MS;
                let late = if t >= at_s * 1000 * MS { 40 * MS } else { 0 };
                if step.observe(t, late) {
                    assert_eq!(step.gross_ppm(10_000.0), None, "step at {at_s} s");
                }
            }
        }
    }

    #[test]
    fn drift_is_measured_in_ppm() {
        for ppm in [-5000.0, -500.0, -100.0, 100.0, 500.0, 5000.0] {
            let mut est = DriftEstimator::default();
            feed(&mut est, 30, |t, i| {
                let jitter = (crate::testkit::Rng::new(i * 31 + 7).below(40) as i64) * MS;
                (t as f64 * ppm / 1e6) as i64 + jitter
            });
            let trend = est.trend().expect("trend");
            assert!(
                (trend.ppm - ppm).abs() < ppm.abs() * 0.1 + 5.0,
                "{ppm}: {trend:?}"
            );
        }
    }
}
