//! The mixer: selected legs' [`Track`]s in, interleaved PCM for one
//! recording out, on the call timeline.
//!
//! - **Selection and channels.** Each input is a track plus the output
//!   channel it goes to: all inputs on channel 0 for mono, or one channel per
//!   party (the caller of [`Mixer::new`] maps roles to channels, so the
//!   layout never depends on who spoke first).
//! - **Summing** is in 32 bits and saturates to 16, so loud parties clip
//!   instead of wrapping around.
//! - **Alignment.** A track's sample `i` belongs at call position
//!   `first_call_pos + i`. Before a leg starts and after it ends the mixer
//!   reads silence.
//! - **Exactness.** Tracks are already on the call timeline, drift
//!   corrections included (the legs make them, in silence: see
//!   [`crate::jitter`]), so the mixer copies every sample from the
//!   place it belongs and never resamples or shifts a track.
//! - **Mute and DTMF suppression** silence one input over intervals of call
//!   positions.
//! - **Pause.** Positions inside a pause are written as silence
//!   ([`PauseBehavior::Silence`]) or left out ([`PauseBehavior::Skip`]); each
//!   pause is kept as an interval for the recording's metadata.
//!
//! Like the rest of the core the mixer has no clock: callers say up to which
//! call position to mix, and convert times with [`Mixer::position_at`].

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::format::PauseBehavior;
use crate::leg::DtmfRecord;
use crate::time::nanos_to_ticks;
use crate::track::Track;

/// How far behind the tracks' playout point a recording mixes: room for
/// the packet granularity of the legs' output and for drift corrections
/// that insert samples.
pub const DEFAULT_MARGIN: Duration = Duration::from_millis(60);

/// DTMF tones may begin a little before their RFC 4733 event and ring on
/// after it: suppression is widened by this much on both sides.
pub const DTMF_GUARD: Duration = Duration::from_millis(40);

/// One selected leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixInput {
    /// Index of the leg's track in the slice given to [`Mixer::mix`].
    pub track: usize,
    /// Output channel (0-based).
    pub channel: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MixerError {
    #[error("recording is already paused")]
    AlreadyPaused,
    #[error("recording is not paused")]
    NotPaused,
    #[error("input {0} is not part of this recording")]
    NoSuchInput(usize),
}

/// A pause of the recording, in milliseconds of the recording timeline
/// (0 = recording start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PauseInterval {
    pub start_ms: u64,
    pub end_ms: Option<u64>,
}

/// Half-open interval of call positions; `end` None = still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: i64,
    end: Option<i64>,
}

impl Span {
    fn contains(&self, pos: i64) -> bool {
        pos >= self.start && self.end.is_none_or(|e| pos < e)
    }
    fn overlaps(&self, from: i64, to: i64) -> bool {
        self.start < to && self.end.is_none_or(|e| e > from)
    }
}

/// Audio laid over every channel (a recording notice): `samples` from
/// call position `start`, and again every `every` positions when given.
#[derive(Debug, Clone)]
struct Overlay {
    start: i64,
    samples: Arc<[i16]>,
    every: Option<i64>,
}

impl Overlay {
    /// Adds the overlay's samples over call positions `[from, from + n)`
    /// to every channel of `sums`.
    fn add_to(&self, from: i64, n: usize, ch: usize, sums: &mut [i32]) {
        let len = self.samples.len() as i64;
        let to = from + n as i64;
        if len == 0 || to <= self.start {
            return;
        }
        // Occurrences k start at start + k·every; those overlapping [from, to).
        let (first, last) = match self.every {
            Some(every) if every > 0 => (
                ((from - self.start - len + 1).max(0) + every - 1) / every,
                (to - 1 - self.start) / every,
            ),
            _ => (0, 0),
        };
        for k in first..=last {
            let at = self.start + k * self.every.unwrap_or(0);
            let (a, b) = (from.max(at), to.min(at + len));
            for pos in a..b {
                let s = i32::from(self.samples[(pos - at) as usize]);
                let frame = (pos - from) as usize * ch;
                for sum in &mut sums[frame..frame + ch] {
                    *sum += s;
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct InputState {
    input: MixInput,
    mutes: Vec<Span>,
    suppress: Vec<Span>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Mixer {
    rate: u32,
    channels: u16,
    pause_behavior: PauseBehavior,
    inputs: Vec<InputState>,
    /// Call position of the next output frame.
    cursor: i64,
    start: i64,
    pauses: Vec<Span>,
    frames_out: u64,
    sums: Vec<i32>,
    overlays: Vec<Overlay>,
}

impl Mixer {
    /// A mixer for a recording starting at call time `origin`. Callers mix
    /// up to [`DEFAULT_MARGIN`] behind the tracks' playout point.
    pub fn new(
        rate: u32,
        channels: u16,
        inputs: &[MixInput],
        pause_behavior: PauseBehavior,
        origin: Duration,
    ) -> Self {
        let start = nanos_to_ticks(origin.as_nanos() as i128, rate);
        let mut m = Self {
            rate,
            channels: channels.max(1),
            pause_behavior,
            inputs: Vec::with_capacity(inputs.len()),
            cursor: start,
            start,
            pauses: Vec::new(),
            frames_out: 0,
            sums: vec![0; usize::from(channels.max(1)) * 160],
            overlays: Vec::new(),
        };
        for &input in inputs {
            m.add_input(input);
        }
        m
    }

    /// How many legs the mixer takes.
    pub fn input_count(&self) -> usize {
        self.inputs.len()
    }

    /// The `i`-th leg the mixer takes, in the order they were added.
    pub fn input(&self, i: usize) -> Option<MixInput> {
        self.inputs.get(i).map(|s| s.input)
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Call position of a call-timeline instant.
    pub fn position_at(&self, at: Duration) -> i64 {
        nanos_to_ticks(at.as_nanos() as i128, self.rate)
    }

    /// Call position mixed up to.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Frames written so far.
    pub fn frames_out(&self) -> u64 {
        self.frames_out
    }

    fn ms_since_start(&self, pos: i64) -> u64 {
        ((pos - self.start).max(0) as u64) * 1000 / u64::from(self.rate)
    }

    /// Pauses at call time `at` (audio from then on is paused).
    pub fn pause(&mut self, at: Duration) -> Result<(), MixerError> {
        if self.pauses.last().is_some_and(|p| p.end.is_none()) {
            return Err(MixerError::AlreadyPaused);
        }
        let pos = self.position_at(at).max(self.cursor);
        self.pauses.push(Span {
            start: pos,
            end: None,
        });
        Ok(())
    }

    pub fn resume(&mut self, at: Duration) -> Result<(), MixerError> {
        let pos = self.position_at(at).max(self.cursor);
        match self.pauses.last_mut() {
            Some(p) if p.end.is_none() => {
                p.end = Some(pos.max(p.start));
                Ok(())
            }
            _ => Err(MixerError::NotPaused),
        }
    }

    pub fn is_paused(&self) -> bool {
        self.pauses.last().is_some_and(|p| p.end.is_none())
    }

    /// Every pause so far, in recording milliseconds.
    pub fn pauses(&self) -> Vec<PauseInterval> {
        self.pauses
            .iter()
            .map(|p| PauseInterval {
                start_ms: self.ms_since_start(p.start),
                end_ms: p.end.map(|e| self.ms_since_start(e)),
            })
            .collect()
    }

    fn input_mut(&mut self, track: usize) -> Result<&mut InputState, MixerError> {
        self.inputs
            .iter_mut()
            .find(|i| i.input.track == track)
            .ok_or(MixerError::NoSuchInput(track))
    }

    /// Adds an input (a conference participant joining a recording of
    /// everyone). Its audio counts from wherever its track has reached.
    /// The tracks mixed.
    pub fn tracks(&self) -> impl Iterator<Item = usize> + '_ {
        self.inputs.iter().map(|i| i.input.track)
    }

    pub fn add_input(&mut self, input: MixInput) {
        if self.inputs.iter().any(|i| i.input.track == input.track) {
            return;
        }
        self.inputs.push(InputState {
            input,
            mutes: Vec::new(),
            suppress: Vec::new(),
        });
    }

    /// Lays `samples` over every channel from call time `at` (a recording
    /// notice), and again every `every` (a reminder tone) when given.
    /// Paused stretches take it out like any audio.
    pub fn overlay(&mut self, at: Duration, samples: Arc<[i16]>, every: Option<Duration>) {
        let every = every.map(|e| self.position_at(e)).filter(|&e| e > 0);
        self.overlays.push(Overlay {
            start: self.position_at(at),
            samples,
            every,
        });
    }

    /// Mutes (`true`) or unmutes one input from call time `at`.
    pub fn set_muted(&mut self, track: usize, muted: bool, at: Duration) -> Result<(), MixerError> {
        let pos = self.position_at(at).max(self.cursor);
        let input = self.input_mut(track)?;
        let open = input.mutes.last().is_some_and(|m| m.end.is_none());
        match (muted, open) {
            (true, false) => input.mutes.push(Span {
                start: pos,
                end: None,
            }),
            (false, true) => {
                if let Some(m) = input.mutes.last_mut() {
                    m.end = Some(pos.max(m.start));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Silences one input over `[start, end)` call positions (`end` None:
    /// until further notice), for DTMF suppression. Overlapping or repeated
    /// intervals are merged.
    pub fn suppress(
        &mut self,
        track: usize,
        start: i64,
        end: Option<i64>,
    ) -> Result<(), MixerError> {
        let input = self.input_mut(track)?;
        if let Some(last) = input.suppress.last_mut()
            && last.start <= start
            && last.end.is_none_or(|e| e >= start)
        {
            last.end = match (last.end, end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => end,
            };
            return Ok(());
        }
        input.suppress.push(Span { start, end });
        Ok(())
    }

    /// Silences `track` around the DTMF its leg reported: every record
    /// from index `*applied` on, and an event still in progress (from its
    /// start, until its record arrives), each widened by [`DTMF_GUARD`].
    /// `offset` maps leg positions to call positions; `*applied` is moved
    /// past the records handled, so calling this every tick is cheap.
    pub fn suppress_dtmf(
        &mut self,
        track: usize,
        offset: i64,
        records: &[DtmfRecord],
        in_progress: Option<i64>,
        applied: &mut usize,
    ) {
        let guard = nanos_to_ticks(DTMF_GUARD.as_nanos() as i128, self.rate);
        for d in &records[(*applied).min(records.len())..] {
            let start = offset + d.position - guard;
            let end = offset + d.position + d.duration_ticks + guard;
            let _ = self.suppress(track, start, Some(end));
        }
        *applied = records.len();
        if let Some(pos) = in_progress {
            let _ = self.suppress(track, offset + pos - guard, None);
        }
    }

    /// Mixes call positions `[cursor, upto)` and appends the output frames
    /// (interleaved, `channels` samples each) to `out`.
    pub fn mix(&mut self, tracks: &[Track], upto: i64, out: &mut Vec<i16>) {
        if upto <= self.cursor {
            return;
        }
        let ch = usize::from(self.channels);
        while self.cursor < upto {
            // Work in blocks of at most 160 frames that lie wholly inside
            // or outside each pause.
            let mut end = upto.min(self.cursor + 160);
            let mut paused = false;
            for p in &self.pauses {
                if p.contains(self.cursor) {
                    paused = true;
                    if let Some(e) = p.end {
                        end = end.min(e);
                    }
                } else if p.start > self.cursor {
                    end = end.min(p.start);
                }
            }
            let n = (end - self.cursor) as usize;
            let from = self.cursor;
            self.sums.clear();
            self.sums.resize(n * ch, 0);
            for st in &self.inputs {
                read_input(st, tracks, from, n, ch, &mut self.sums);
            }
            for o in &self.overlays {
                o.add_to(from, n, ch, &mut self.sums);
            }
            self.cursor = end;
            if paused {
                match self.pause_behavior {
                    PauseBehavior::Skip => continue,
                    PauseBehavior::Silence => self.sums.iter_mut().for_each(|s| *s = 0),
                }
            }
            out.extend(self.sums.iter().map(|&s| s.clamp(-32_768, 32_767) as i16));
            self.frames_out += n as u64;
        }
    }
}

/// Adds `n` frames of one input, starting at call position `from`, to `sums`.
fn read_input(st: &InputState, tracks: &[Track], from: i64, n: usize, ch: usize, sums: &mut [i32]) {
    let Some(track) = tracks.get(st.input.track) else {
        return;
    };
    let Some(first) = track.first_call_pos() else {
        return; // the leg has not started: silence
    };
    let channel = usize::from(st.input.channel);
    let to = from + n as i64;
    for (offset, run) in track.held(from - first, n) {
        if ch == 1 {
            for (sum, &s) in sums[offset..offset + run.len()].iter_mut().zip(run) {
                *sum += i32::from(s);
            }
        } else {
            for (k, &s) in run.iter().enumerate() {
                sums[(offset + k) * ch + channel] += i32::from(s);
            }
        }
    }
    // Take muted and suppressed stretches back out (each position once,
    // however many spans cover it).
    let spans = || st.mutes.iter().chain(&st.suppress);
    if spans().any(|m| m.overlaps(from, to)) {
        for k in 0..n {
            let pos = from + k as i64;
            if spans().any(|m| m.contains(pos)) {
                sums[k * ch + channel] -= i32::from(track.sample(pos - first));
            }
        }
    }
}

#[cfg(test)]
mod tests;
