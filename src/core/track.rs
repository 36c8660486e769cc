//! A leg's decoded audio on the call timeline: a fixed-size ring of samples
//! at the recording rate, written contiguously by a [`LegReceiver`]
//! (through [`Track::sink`]) and read by mixers.
//!
//! Sample `i` of a track (counting from its first) sits at call position
//! `first_call_pos + i` nominally; a mixer may read it slightly earlier or
//! later to absorb clock drift (see [`crate::core::mixer`]).
//!
//! [`LegReceiver`]: crate::core::leg::LegReceiver

use crate::core::leg::PcmSink;

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

    /// Copies samples `from..from + out.len()` into `out` (silence where not held).
    pub fn copy(&self, from: i64, out: &mut [i16]) {
        for (k, o) in out.iter_mut().enumerate() {
            *o = self.sample(from + k as i64);
        }
    }

    fn push(&mut self, pcm: &[i16]) {
        for &s in pcm {
            self.ring[(self.written & self.mask) as usize] = s;
            self.written += 1;
        }
    }

    fn push_silence(&mut self, len: u64) {
        for _ in 0..len {
            self.ring[(self.written & self.mask) as usize] = 0;
            self.written += 1;
        }
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
}
