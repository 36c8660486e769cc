//! Control-plane errors, each with the stable code and HTTP status the API
//! answers with.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidFormat(String),
    #[error("call {0} not found")]
    CallNotFound(String),
    #[error("leg {0} not found")]
    LegNotFound(String),
    #[error("recording {0} not found")]
    RecordingNotFound(String),
    #[error("call {0} has no recording in progress")]
    RecordingNotStarted(String),
    #[error("call {0} already has a recording in progress")]
    RecordingInProgress(String),
    #[error("the recording is already paused")]
    AlreadyPaused,
    #[error("the recording is not paused")]
    NotPaused,
    #[error("call {0} already exists")]
    CallExists(String),
    #[error("call {0} has ended")]
    CallEnded(String),
    #[error("no free RTP port: every port pair in the configured range is in use or resting")]
    PortsExhausted,
    #[error("the engine is shutting down and takes no new calls or recordings")]
    ShuttingDown,
    #[error(
        "the daemon is out of file descriptors or socket memory; retry shortly (see LimitNOFILE)"
    )]
    OutOfResources,
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("recording {0} is still in progress; stop it first")]
    RecordingBusy(String),
    #[error(
        "recording_id: another recording's file has this storage path ({0}); choose another recording_id"
    )]
    PathInUse(String),
    #[error(
        "{what} {id:?} exists for several customers ({customers}); an admin token chooses one with the X-Customer-Id header"
    )]
    AmbiguousId {
        what: &'static str,
        id: String,
        customers: String,
    },
    #[error("internal error")]
    Internal(String),
}

impl EngineError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::InvalidRequest(_) => "invalid_request",
            EngineError::InvalidFormat(_) => "invalid_format",
            EngineError::CallNotFound(_) => "call_not_found",
            EngineError::LegNotFound(_) => "leg_not_found",
            EngineError::RecordingNotFound(_) => "recording_not_found",
            EngineError::RecordingNotStarted(_) => "recording_not_started",
            EngineError::RecordingInProgress(_) => "recording_in_progress",
            EngineError::AlreadyPaused => "recording_already_paused",
            EngineError::NotPaused => "recording_not_paused",
            EngineError::CallExists(_) => "call_exists",
            EngineError::CallEnded(_) => "call_ended",
            EngineError::PortsExhausted => "ports_exhausted",
            EngineError::ShuttingDown => "shutting_down",
            EngineError::OutOfResources => "out_of_resources",
            EngineError::QuotaExceeded(_) => "quota_exceeded",
            EngineError::RecordingBusy(_) => "recording_in_progress",
            EngineError::PathInUse(_) => "recording_path_in_use",
            EngineError::AmbiguousId { .. } => "ambiguous_id",
            EngineError::Internal(_) => "internal",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            EngineError::InvalidRequest(_) | EngineError::InvalidFormat(_) => 400,
            EngineError::CallNotFound(_)
            | EngineError::LegNotFound(_)
            | EngineError::RecordingNotFound(_)
            | EngineError::RecordingNotStarted(_) => 404,
            EngineError::RecordingInProgress(_)
            | EngineError::AlreadyPaused
            | EngineError::NotPaused
            | EngineError::CallExists(_)
            | EngineError::CallEnded(_) => 409,
            EngineError::RecordingBusy(_)
            | EngineError::PathInUse(_)
            | EngineError::AmbiguousId { .. } => 409,
            EngineError::QuotaExceeded(_) => 429,
            EngineError::PortsExhausted
            | EngineError::ShuttingDown
            | EngineError::OutOfResources => 503,
            EngineError::Internal(_) => 500,
        }
    }
}
