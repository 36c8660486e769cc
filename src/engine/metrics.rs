//! Numbers for `/metrics`: the finalize-latency histogram and the gauges
//! summed over live calls.

use std::sync::atomic::Ordering;

use super::{Engine, lock};

impl Engine {
    /// Numbers for `/metrics`.
    pub fn gauges(&self) -> Gauges {
        let reg = lock(&self.registry);
        let mut g = Gauges {
            finalize_ms: lock(&self.finalize_ms).clone(),
            bytes_finalized: self.bytes_finalized.load(Ordering::Relaxed),
            active_calls: reg.calls.values().filter(|c| c.ended_at.is_none()).count(),
            ..Default::default()
        };
        for r in reg.recordings.values() {
            *g.recordings_by_state.entry(r.state.as_str()).or_default() += 1;
        }
        for c in reg.calls.values() {
            for l in &c.legs {
                let s = l.ports.stats.snapshot();
                g.datagrams += s.datagrams;
                g.queue_drops += s.queue_drops;
                g.foreign_source += s.foreign_source;
                g.truncated += s.truncated;
                g.rtcp += s.rtcp;
            }
            for s in lock(&c.shared.legs).iter() {
                g.lost += s.lost;
                g.late += s.late;
                g.duplicates += s.duplicates;
                g.malformed += s.malformed;
            }
        }
        g
    }
}

/// Upper bounds (ms) of the finalize-latency buckets.
pub const FINALIZE_BUCKETS_MS: [u64; 9] = [10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

/// A Prometheus-style cumulative histogram.
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    pub counts: [u64; 9],
    pub count: u64,
    pub sum_ms: f64,
}

impl Histogram {
    pub(super) fn observe(&mut self, ms: f64) {
        for (i, b) in FINALIZE_BUCKETS_MS.iter().enumerate() {
            if ms <= *b as f64 {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum_ms += ms;
    }
}

/// Totals for the metrics endpoint.
#[derive(Debug, Default)]
pub struct Gauges {
    pub finalize_ms: Histogram,
    pub bytes_finalized: u64,
    pub active_calls: usize,
    pub recordings_by_state: std::collections::BTreeMap<&'static str, usize>,
    pub datagrams: u64,
    pub queue_drops: u64,
    pub foreign_source: u64,
    pub truncated: u64,
    pub rtcp: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicates: u64,
    pub malformed: u64,
}
