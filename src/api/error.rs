//! The one error shape of the API, `{"error":{"code":"…","message":"…"}}`,
//! and the closed list of its codes. Each code has one HTTP status, so a
//! client may switch on either; the OpenAPI document lists the codes each
//! operation can answer with (see `openapi`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::EngineError;

/// Every error code the API answers with. The wire name is the snake_case
/// variant name (`ErrorCode::CallNotFound` is `"call_not_found"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // 400
    InvalidJson,
    InvalidRequest,
    InvalidFormat,
    InvalidAction,
    InvalidPublicKey,
    // 401, 403
    Unauthorized,
    Forbidden,
    InvalidSignature,
    UrlExpired,
    // 404, 405
    NotFound,
    MethodNotAllowed,
    CallNotFound,
    LegNotFound,
    RecordingNotFound,
    RecordingNotStarted,
    DeliveryNotFound,
    CallFlowNotFound,
    EncryptionKeyNotFound,
    // 408
    RequestTimeout,
    // 409
    CallExists,
    CallEnded,
    HeldByOtherNode,
    RecordingInProgress,
    RecordingAlreadyPaused,
    RecordingNotPaused,
    RecordingPathInUse,
    RecordingNotReady,
    AmbiguousId,
    IdempotencyKeyReused,
    IdempotencyKeyInUse,
    DeliveryNotFailed,
    CallFlowExists,
    CallFlowChanged,
    EncryptionDisabled,
    // 410
    RecordingDeleted,
    FileMissing,
    // 413, 416
    PayloadTooLarge,
    RangeNotSatisfiable,
    // 429
    RateLimited,
    QuotaExceeded,
    // 500
    Internal,
    FileCorrupt,
    // 503
    PortsExhausted,
    ShuttingDown,
    OutOfResources,
    TooManyConnections,
    AuditUnavailable,
}

impl ErrorCode {
    /// Every code, in the order of the enum.
    pub const ALL: [ErrorCode; 47] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidFormat,
        ErrorCode::InvalidAction,
        ErrorCode::InvalidPublicKey,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::InvalidSignature,
        ErrorCode::UrlExpired,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::CallNotFound,
        ErrorCode::LegNotFound,
        ErrorCode::RecordingNotFound,
        ErrorCode::RecordingNotStarted,
        ErrorCode::DeliveryNotFound,
        ErrorCode::CallFlowNotFound,
        ErrorCode::EncryptionKeyNotFound,
        ErrorCode::RequestTimeout,
        ErrorCode::CallExists,
        ErrorCode::CallEnded,
        ErrorCode::HeldByOtherNode,
        ErrorCode::RecordingInProgress,
        ErrorCode::RecordingAlreadyPaused,
        ErrorCode::RecordingNotPaused,
        ErrorCode::RecordingPathInUse,
        ErrorCode::RecordingNotReady,
        ErrorCode::AmbiguousId,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::IdempotencyKeyInUse,
        ErrorCode::DeliveryNotFailed,
        ErrorCode::CallFlowExists,
        ErrorCode::CallFlowChanged,
        ErrorCode::EncryptionDisabled,
        ErrorCode::RecordingDeleted,
        ErrorCode::FileMissing,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RangeNotSatisfiable,
        ErrorCode::RateLimited,
        ErrorCode::QuotaExceeded,
        ErrorCode::Internal,
        ErrorCode::FileCorrupt,
        ErrorCode::PortsExhausted,
        ErrorCode::ShuttingDown,
        ErrorCode::OutOfResources,
        ErrorCode::TooManyConnections,
        ErrorCode::AuditUnavailable,
    ];

    /// The HTTP status every answer with this code has.
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidJson | InvalidRequest | InvalidFormat | InvalidAction | InvalidPublicKey => {
                StatusCode::BAD_REQUEST
            }
            Unauthorized => StatusCode::UNAUTHORIZED,
            Forbidden | InvalidSignature | UrlExpired => StatusCode::FORBIDDEN,
            NotFound
            | CallNotFound
            | LegNotFound
            | RecordingNotFound
            | RecordingNotStarted
            | DeliveryNotFound
            | CallFlowNotFound
            | EncryptionKeyNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            CallExists
            | CallEnded
            | HeldByOtherNode
            | RecordingInProgress
            | RecordingAlreadyPaused
            | RecordingNotPaused
            | RecordingPathInUse
            | RecordingNotReady
            | AmbiguousId
            | IdempotencyKeyReused
            | IdempotencyKeyInUse
            | DeliveryNotFailed
            | CallFlowExists
            | CallFlowChanged
            | EncryptionDisabled => StatusCode::CONFLICT,
            RecordingDeleted | FileMissing => StatusCode::GONE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            RateLimited | QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Internal | FileCorrupt => StatusCode::INTERNAL_SERVER_ERROR,
            PortsExhausted | ShuttingDown | OutOfResources | TooManyConnections
            | AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidJson => "invalid_json",
            InvalidRequest => "invalid_request",
            InvalidAction => "invalid_action",
            InvalidFormat => "invalid_format",
            InvalidPublicKey => "invalid_public_key",
            EncryptionKeyNotFound => "encryption_key_not_found",
            EncryptionDisabled => "encryption_disabled",
            FileCorrupt => "file_corrupt",
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            InvalidSignature => "invalid_signature",
            UrlExpired => "url_expired",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            CallNotFound => "call_not_found",
            LegNotFound => "leg_not_found",
            RecordingNotFound => "recording_not_found",
            RecordingNotStarted => "recording_not_started",
            DeliveryNotFound => "delivery_not_found",
            RequestTimeout => "request_timeout",
            CallExists => "call_exists",
            CallEnded => "call_ended",
            HeldByOtherNode => "held_by_other_node",
            RecordingInProgress => "recording_in_progress",
            RecordingAlreadyPaused => "recording_already_paused",
            RecordingNotPaused => "recording_not_paused",
            RecordingPathInUse => "recording_path_in_use",
            RecordingNotReady => "recording_not_ready",
            AmbiguousId => "ambiguous_id",
            IdempotencyKeyReused => "idempotency_key_reused",
            IdempotencyKeyInUse => "idempotency_key_in_use",
            DeliveryNotFailed => "delivery_not_failed",
            CallFlowNotFound => "call_flow_not_found",
            CallFlowExists => "call_flow_exists",
            CallFlowChanged => "call_flow_changed",
            RecordingDeleted => "recording_deleted",
            FileMissing => "file_missing",
            PayloadTooLarge => "payload_too_large",
            RangeNotSatisfiable => "range_not_satisfiable",
            RateLimited => "rate_limited",
            QuotaExceeded => "quota_exceeded",
            Internal => "internal",
            PortsExhausted => "ports_exhausted",
            ShuttingDown => "shutting_down",
            OutOfResources => "out_of_resources",
            TooManyConnections => "too_many_connections",
            AuditUnavailable => "audit_unavailable",
        }
    }
}

impl From<&EngineError> for ErrorCode {
    fn from(e: &EngineError) -> Self {
        match e {
            EngineError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            EngineError::InvalidFormat(_) => ErrorCode::InvalidFormat,
            EngineError::CallNotFound(_) => ErrorCode::CallNotFound,
            EngineError::LegNotFound(_) => ErrorCode::LegNotFound,
            EngineError::RecordingNotFound(_) => ErrorCode::RecordingNotFound,
            EngineError::RecordingNotStarted(_) => ErrorCode::RecordingNotStarted,
            EngineError::RecordingInProgress(_) | EngineError::RecordingBusy(_) => {
                ErrorCode::RecordingInProgress
            }
            EngineError::AlreadyPaused => ErrorCode::RecordingAlreadyPaused,
            EngineError::NotPaused => ErrorCode::RecordingNotPaused,
            EngineError::CallExists(_) => ErrorCode::CallExists,
            EngineError::CallEnded(_) => ErrorCode::CallEnded,
            EngineError::HeldByOtherNode { .. } => ErrorCode::HeldByOtherNode,
            EngineError::CallFlowNotFound(_) => ErrorCode::CallFlowNotFound,
            EngineError::CallFlowExists(_) => ErrorCode::CallFlowExists,
            EngineError::CallFlowChanged(_) => ErrorCode::CallFlowChanged,
            EngineError::PortsExhausted => ErrorCode::PortsExhausted,
            EngineError::ShuttingDown => ErrorCode::ShuttingDown,
            EngineError::OutOfResources => ErrorCode::OutOfResources,
            EngineError::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            EngineError::PathInUse(_) => ErrorCode::RecordingPathInUse,
            EngineError::AmbiguousId { .. } => ErrorCode::AmbiguousId,
            EngineError::Internal(_) => ErrorCode::Internal,
            EngineError::InvalidPublicKey(_) => ErrorCode::InvalidPublicKey,
            EngineError::EncryptionKeyNotFound(_) => ErrorCode::EncryptionKeyNotFound,
            EngineError::EncryptionDisabled => ErrorCode::EncryptionDisabled,
        }
    }
}

/// What an error answer says (the `error` member of [`ErrorBody`]).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people: what was wrong, naming the field or parameter.
    pub message: String,
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// An error answer: its code decides the status.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The body, serialized.
    pub fn to_json(&self) -> String {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
            },
        };
        serde_json::to_string(&body).unwrap_or_default()
    }
}

impl From<crate::catalog::CatalogError> for ApiError {
    fn from(e: crate::catalog::CatalogError) -> Self {
        ApiError::from(EngineError::Internal(e.to_string()))
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let message = match &e {
            // Internals stay in the log, not in the answer.
            EngineError::Internal(detail) => {
                tracing::error!(%detail, "internal error answering a request");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        Self::new(ErrorCode::from(&e), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.code.status(),
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            self.to_json(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_and_named_as_serde_names_it() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code), "{code:?} listed twice");
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
    }

    #[test]
    fn every_engine_error_keeps_its_code_and_status() {
        let cases = [
            (EngineError::CallNotFound("c".into()), "call_not_found", 404),
            (
                EngineError::RecordingBusy("r".into()),
                "recording_in_progress",
                409,
            ),
            (
                EngineError::QuotaExceeded("q".into()),
                "quota_exceeded",
                429,
            ),
            (EngineError::OutOfResources, "out_of_resources", 503),
            (EngineError::Internal("secret".into()), "internal", 500),
        ];
        for (e, code, status) in cases {
            let a = ApiError::from(e);
            assert_eq!(a.code().as_str(), code);
            assert_eq!(a.code().status().as_u16(), status);
            assert!(!a.message().contains("secret"));
        }
    }
}
