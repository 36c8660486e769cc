//! The daemon's clock: monotonic time since the daemon started, the one
//! `now` every core call receives. Tests of the core use plain `Duration`s
//! instead.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    start: Instant,
}

impl MonotonicClock {
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// Time since the daemon started.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }
}
