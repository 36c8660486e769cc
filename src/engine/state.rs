//! The engine's live state: calls, their legs and recordings, the
//! recording state machine, and the registry that holds them by
//! [`scoped_key`](super::scoped_key).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::{Channels, Format, PauseBehavior};
use crate::io::legs::LegPorts;
use crate::io::worker::{CallShared, RecordingShared};
use crate::recording::{RecordingInfo, Role};

use super::model::*;
use crate::core::call::Failure;

/// A live recording's state is its [`RecordingStatus`] (never `deleted`:
/// only a catalogued recording can be); its edges are here.
impl RecordingStatus {
    /// The state after `event`, `None` where the machine has no such edge
    /// (the caller answers that as an error or ignores a late report):
    ///
    /// ```text
    /// recording ⇄ paused ─stop→ stopped ─worker done→ processing ─file final→ completed
    ///     any unfinished state ─fail→ failed
    ///     ─worker: too short→ discarded
    /// ```
    ///
    /// Writers and workers report on separate channels, so a file can be
    /// final before its worker's "done" is read: `completed` and
    /// `discarded` are reached from any state, and "done" is ignored once
    /// finished.
    pub(super) fn after(self, event: Transition) -> Option<RecordingStatus> {
        use RecordingStatus::*;
        match (self, event) {
            (Recording, Transition::Pause) => Some(Paused),
            (Paused, Transition::Resume) => Some(Recording),
            (Recording | Paused, Transition::Stop) => Some(Stopped),
            (s, Transition::WorkerDone) if !s.finished() => Some(Processing),
            (s, Transition::Fail) if !s.finished() => Some(Failed),
            (_, Transition::FileFinal) => Some(Completed),
            (_, Transition::TooShort) => Some(Discarded),
            _ => None,
        }
    }

    pub(super) fn active(self) -> bool {
        matches!(self, RecordingStatus::Recording | RecordingStatus::Paused)
    }

    pub(super) fn finished(self) -> bool {
        !self.in_progress()
    }
}

/// What moves a recording from one [`RecordingStatus`] to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transition {
    Pause,
    Resume,
    Stop,
    /// Its worker has encoded the last audio; the writer is finalizing.
    WorkerDone,
    /// Its writer renamed the file into place.
    FileFinal,
    /// Its worker found it shorter than `min_duration_s`.
    TooShort,
    Fail,
}

pub(super) struct Leg {
    pub(super) id: String,
    pub(super) role: Role,
    pub(super) label: Option<String>,
    pub(super) ports: LegPorts,
    pub(super) muted: bool,
}

pub(super) struct Call {
    /// [`scoped_key`] of the customer and `id`.
    pub(super) key: String,
    pub(super) id: String,
    pub(super) num: u64,
    pub(super) tenant: Option<String>,
    pub(super) from: String,
    pub(super) to: String,
    pub(super) direction: Direction,
    pub(super) reference_type: ReferenceType,
    pub(super) created_at: String,
    pub(super) created_mono: Duration,
    pub(super) ended_at: Option<String>,
    /// When it ended, on the engine's clock.
    pub(super) ended_mono: Option<Duration>,
    pub(super) rate: u32,
    /// The call flow that started its recording, if one did.
    pub(super) call_flow_id: Option<String>,
    pub(super) legs: Vec<Leg>,
    pub(super) shared: Arc<CallShared>,
    /// Keys of the call's recordings.
    pub(super) recordings: Vec<String>,
    /// What a SIPREC client said about the call, if one made it.
    pub(super) siprec: Option<Box<crate::siprec::SiprecCall>>,
}

pub(super) struct Recording {
    /// [`scoped_key`] of the customer and `id`.
    pub(super) key: String,
    pub(super) id: String,
    /// The call's customer.
    pub(super) tenant: Option<String>,
    pub(super) call_id: String,
    pub(super) call_num: u64,
    pub(super) state: RecordingStatus,
    pub(super) format: Format,
    pub(super) sample_rate: u32,
    pub(super) channels: Channels,
    pub(super) bitrate_kbps: u32,
    pub(super) participant: ParticipantRequest,
    pub(super) pause_behavior: PauseBehavior,
    pub(super) owner: OwnerFields,
    pub(super) call_flow_id: Option<String>,
    pub(super) started_at: String,
    pub(super) started_mono: Duration,
    pub(super) stopped_at: Option<String>,
    pub(super) shared: Arc<RecordingShared>,
    pub(super) info: Option<Box<RecordingInfo>>,
    pub(super) failure: Option<Failure>,
    /// Legs selected as "all": new conference legs join mono recordings.
    pub(super) all_legs_mono: bool,
    /// When it was stopped (for the finalize-latency histogram).
    pub(super) stopped_mono: Option<Duration>,
}

/// Live calls and recordings, by [`scoped_key`].
#[derive(Default)]
pub(super) struct Registry {
    pub(super) calls: HashMap<String, Call>,
    pub(super) recordings: HashMap<String, Recording>,
}

pub(super) fn recording_view(r: &Recording) -> RecordingView {
    RecordingView {
        recording_id: r.id.clone(),
        call_id: r.call_id.clone(),
        status: r.state,
        format: r.format,
        sample_rate: r.sample_rate,
        channels: r.channels,
        bitrate_kbps: r.bitrate_kbps,
        participant: r.participant.clone(),
        pause_behavior: r.pause_behavior,
        started_at: r.started_at.clone(),
        stopped_at: r.stopped_at.clone(),
        duration_ms: r.shared.duration_ms.load(Ordering::Relaxed),
        file_size_bytes: r.info.as_ref().map(|i| i.file_size_bytes),
        checksum: r.info.as_ref().map(|i| i.checksum.clone()),
        failure_reason: r.failure.map(|f| f.reason().to_owned()),
        owner: r.owner.clone(),
        call_flow_id: r.call_flow_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::{RecordingStatus, Transition};

    #[test]
    fn the_recording_state_machine_has_only_its_edges() {
        use RecordingStatus::*;
        use Transition::*;
        assert_eq!(Recording.after(Pause), Some(Paused));
        assert_eq!(Paused.after(Pause), None);
        assert_eq!(Paused.after(Resume), Some(Recording));
        assert_eq!(Recording.after(Resume), None);
        assert_eq!(Paused.after(Stop), Some(Stopped));
        assert_eq!(Stopped.after(Stop), None);
        assert_eq!(Stopped.after(WorkerDone), Some(Processing));
        assert_eq!(Completed.after(WorkerDone), None, "a late report");
        assert_eq!(Processing.after(FileFinal), Some(Completed));
        assert_eq!(Stopped.after(FileFinal), Some(Completed), "reports race");
        assert_eq!(Processing.after(Fail), Some(Failed));
        assert_eq!(Failed.after(Fail), None);
        assert_eq!(Completed.after(Pause), None);
        assert_eq!(Recording.after(TooShort), Some(Discarded));
    }
}
