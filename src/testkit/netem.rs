//! A network emulator for virtual-clock tests (in the spirit of str0m's
//! netem): when each packet of a 20 ms stream arrives, given an arrival
//! pattern, loss, reordering and the sender's clock skew. Deterministic for
//! a seed. Used by the core fidelity tests and by the daemon tests, which
//! replay the same schedules over real loopback sockets.

use std::time::Duration;

use super::Rng;

/// How packets are delayed on their way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pattern {
    /// Every packet on time.
    Paced,
    /// The sender (or a middlebox) batches `n` packets: each leaves with
    /// the last of its group.
    Bursts(u32),
    /// Each packet delayed by a uniform random 0..`max_ms`.
    Uniform { max_ms: u64 },
    /// Nothing gets through for `stall_ms` from `at_ms` on; then the held
    /// packets arrive at once.
    StallThenBurst { at_ms: u64, stall_ms: u64 },
    /// A few milliseconds of jitter with occasional spikes of 60–180 ms
    /// that decay over the next packets (Wi-Fi retransmissions, scans).
    WifiSpikes,
}

/// A path between a sender and the recorder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetModel {
    pub pattern: Pattern,
    /// Packets lost, per thousand.
    pub loss_per_thousand: u64,
    /// Packets that arrive just after their successor (reordered), per
    /// thousand; only where the successor arrives within 25 ms, so that
    /// reordering never adds more than that to a packet's delay.
    pub reorder_per_thousand: u64,
    /// Sender clock skew: positive runs slow (its 20 ms take longer).
    pub drift_ppm: f64,
    pub seed: u64,
}

impl NetModel {
    pub fn new(pattern: Pattern) -> Self {
        Self {
            pattern,
            loss_per_thousand: 0,
            reorder_per_thousand: 0,
            drift_ppm: 0.0,
            seed: 1,
        }
    }

    pub fn lossy(mut self) -> Self {
        self.loss_per_thousand = 10;
        self.reorder_per_thousand = 10;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn drift(mut self, ppm: f64) -> Self {
        self.drift_ppm = ppm;
        self
    }

    /// When the sender emits packet `i` on our clock.
    pub fn send_time(&self, i: u64) -> Duration {
        let nominal = i as f64 * 20e6 * (1.0 + self.drift_ppm * 1e-6);
        Duration::from_nanos(nominal as u64)
    }

    /// Arrivals of packets `0..n`: `(arrival, index)`, sorted by arrival;
    /// lost packets are missing. Packet 0 is never lost.
    pub fn schedule(&self, n: u64) -> Vec<(Duration, u64)> {
        let mut rng = Rng::new(self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut spike = 0u64;
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let sent = self.send_time(i);
            let ms = |v: u64| Duration::from_millis(v);
            let delay = match self.pattern {
                Pattern::Paced => Duration::ZERO,
                Pattern::Bursts(b) => {
                    let b = u64::from(b.max(1));
                    let last = (i / b) * b + b - 1;
                    self.send_time(last).saturating_sub(sent)
                }
                Pattern::Uniform { max_ms } => ms(rng.below(max_ms + 1)),
                Pattern::StallThenBurst { at_ms, stall_ms } => {
                    let t = sent.as_millis() as u64;
                    if (at_ms..at_ms + stall_ms).contains(&t) {
                        ms(at_ms + stall_ms - t)
                    } else {
                        Duration::ZERO
                    }
                }
                Pattern::WifiSpikes => {
                    if spike == 0 && rng.chance(20) {
                        spike = 60 + rng.below(121);
                    }
                    let d = spike + rng.below(6);
                    spike = spike.saturating_sub(30);
                    ms(d)
                }
            };
            if i > 0 && rng.chance(self.loss_per_thousand) {
                continue;
            }
            out.push((sent + delay, i));
        }
        // Reordering: a packet arrives 1 ms after the one sent after it.
        for k in 1..out.len().saturating_sub(1) {
            let (own, next) = (out[k].0, out[k + 1].0);
            if next >= own
                && next - own <= Duration::from_millis(25)
                && rng.chance(self.reorder_per_thousand)
            {
                out[k].0 = next + Duration::from_millis(1);
            }
        }
        out.sort();
        out
    }
}
