//! A leg's decoded audio on the call timeline: a fixed-size ring of samples
//! at the recording rate, written contiguously by a [`LegReceiver`]
//! (through [`Track::sink`]) and read by mixers.
//!
//! Sample `i` of a track (counting from its first) sits at call position
//! `first_call_pos + i` nominally; a mixer may read it slightly earlier or
//! later to absorb clock drift (see [`crate::mixer`]).
//!
//! [`LegReceiver`]: crate::leg::LegReceiver

use std::ops::Range;

use crate::leg::PcmSink;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Track {
    ring: Box<[i16]>,
    mask: u64,
    /// Samples written so far.
    written: u64,
    /// Call position of sample 0, once the leg has produced audio.
    first_call_pos: Option<i64>,
}

impl Track {
    /// A track holding at least `capacity` samples (rounded up to a power
    /// of two).
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.max(64).next_power_of_two();
        Self {
            ring: vec![0; cap].into_boxed_slice(),
            mask: cap as u64 - 1,
            written: 0,
            first_call_pos: None,
        }
    }

    pub fn capacity(&self) -> u64 {
        self.mask + 1
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn first_call_pos(&self) -> Option<i64> {
        self.first_call_pos
    }

    /// Call position just past the last sample written.
    pub fn end_call_pos(&self) -> Option<i64> {
        self.first_call_pos.map(|f| f + self.written as i64)
    }

    /// Sample `index`, or silence when it is not (or no longer) held.
    #[inline]
    pub fn sample(&self, index: i64) -> i16 {
        if index < 0 {
            return 0;
        }
        let i = index as u64;
        if i >= self.written || i + self.capacity() < self.written {
            return 0;
        }
        self.ring[(i & self.mask) as usize]
    }

    /// The held samples among `from..from + n`, as at most two contiguous
    /// runs `(offset into the range, samples)`; the rest of the range is
    /// silence. Lets readers copy or sum slices instead of sample by sample.
    pub fn held(&self, from: i64, n: usize) -> [(usize, &[i16]); 2] {
        let oldest = self.written.saturating_sub(self.capacity()) as i64;
        let lo = from.max(oldest).max(0);
        let hi = (from + n as i64).min(self.written as i64);
        if hi <= lo {
            return [(0, &[]), (0, &[])];
        }
        let (a, b) = self.ring_ranges(lo as u64, (hi - lo) as usize);
        let offset = (lo - from) as usize;
        let second = offset + a.len();
        [(offset, &self.ring[a]), (second, &self.ring[b])]
    }

    /// Where samples `index..index + len` (at most a ring's worth) sit in
    /// the ring: up to its end, then from its start.
    fn ring_ranges(&self, index: u64, len: usize) -> (Range<usize>, Range<usize>) {
        let start = (index & self.mask) as usize;
        let first = len.min(self.ring.len() - start);
        (start..start + first, 0..len - first)
    }

    /// Copies samples `from..from + out.len()` into `out` (silence where not held).
    pub fn copy(&self, from: i64, out: &mut [i16]) {
        out.fill(0);
        for (offset, run) in self.held(from, out.len()) {
            out[offset..offset + run.len()].copy_from_slice(run);
        }
    }

    fn push(&mut self, pcm: &[i16]) {
        // Keep only what fits; older samples would be overwritten anyway.
        let skip = pcm.len().saturating_sub(self.ring.len());
        self.written += skip as u64;
        let pcm = &pcm[skip..];
        let (a, b) = self.ring_ranges(self.written, pcm.len());
        let (head, tail) = pcm.split_at(a.len());
        self.ring[a].copy_from_slice(head);
        self.ring[b].copy_from_slice(tail);
        self.written += pcm.len() as u64;
    }

    fn push_silence(&mut self, len: u64) {
        // Beyond a ring's worth, only the count advances.
        let zeroed = len.min(self.capacity());
        self.written += len - zeroed;
        let (a, b) = self.ring_ranges(self.written, zeroed as usize);
        self.ring[a].fill(0);
        self.ring[b].fill(0);
        self.written += zeroed;
    }

    /// A sink for the leg's output. `offset` maps leg positions to call
    /// positions (the leg origin relative to the call origin, in ticks).
    pub fn sink(&mut self, offset: i64) -> TrackSink<'_> {
        TrackSink {
            track: self,
            offset,
        }
    }
}

/// Writes a leg's contiguous output into a [`Track`].
pub struct TrackSink<'a> {
    track: &'a mut Track,
    offset: i64,
}

impl PcmSink for TrackSink<'_> {
    fn samples(&mut self, start: i64, pcm: &[i16]) {
        self.track.first_call_pos.get_or_insert(self.offset + start);
        self.track.push(pcm);
    }

    fn silence(&mut self, start: i64, len: i64) {
        self.track.first_call_pos.get_or_insert(self.offset + start);
        // Long silences only need to advance the count past the ring.
        let len = len.max(0) as u64;
        if len > self.track.capacity() {
            let skip = len - self.track.capacity();
            self.track.written += skip;
            self.track.push_silence(self.track.capacity());
        } else {
            self.track.push_silence(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_latest_capacity_samples() {
        let mut t = Track::new(64);
        let mut s = t.sink(100);
        s.samples(5, &(1..=100).collect::<Vec<i16>>());
        assert_eq!(t.first_call_pos(), Some(105));
        assert_eq!(t.written(), 100);
        assert_eq!(t.sample(35), 0, "overwritten");
        assert_eq!(t.sample(36), 37);
        assert_eq!(t.sample(99), 100);
        assert_eq!(t.sample(100), 0, "not yet written");
        let mut s = t.sink(100);
        s.silence(105, 1000);
        assert_eq!(t.written(), 1100);
        assert_eq!(t.sample(1099), 0);
    }

    #[test]
    fn held_runs_and_copy_agree_with_sample_by_sample_reads() {
        let mut t = Track::new(64);
        let pcm: Vec<i16> = (1..=150).collect();
        t.sink(0).samples(0, &pcm[..100]);
        t.sink(0).samples(100, &pcm[100..]);
        for from in [-10i64, 0, 80, 85, 100, 120, 140, 149, 160] {
            for n in [0usize, 1, 5, 20, 64, 90] {
                let mut out = vec![7i16; n];
                t.copy(from, &mut out);
                let expected: Vec<i16> = (0..n).map(|k| t.sample(from + k as i64)).collect();
                assert_eq!(out, expected, "from {from} n {n}");
            }
        }
    }
}
