//! Control-plane errors. The API gives each its stable code and HTTP
//! status (`api::error::ErrorCode`).

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
    /// On a shared catalog: the call (or the recording's file) is on
    /// another recorder of the fleet.
    #[error("{what} is held by recorder {node}; send this request to that recorder")]
    HeldByOtherNode { what: String, node: String },
    #[error("call flow {0} not found")]
    CallFlowNotFound(String),
    #[error("call flow {0} already exists")]
    CallFlowExists(String),
    #[error("call flow {0} was changed by another request meanwhile; read it again and retry")]
    CallFlowChanged(String),
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
    #[error("public_key: {0}")]
    InvalidPublicKey(String),
    #[error("encryption key {0} not found")]
    EncryptionKeyNotFound(String),
    #[error(
        "encryption at rest is off on this server ([storage.encryption] enabled = false): a customer key would wrap nothing"
    )]
    EncryptionDisabled,
    #[error("internal error")]
    Internal(String),
}
