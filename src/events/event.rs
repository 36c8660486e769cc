//! Every event the engine announces, as one type: its name and its data
//! are decided here, once, not by a `json!` at each place that emits it.
//! The event log line is `{"seq", "event": <name>, "time", "data": <the
//! variant's fields>}`; every event names its `call_id` and `customer_id`
//! (null for the admin's own calls), so consumers can scope it.

use serde::Serialize;
use serde_json::Value;

use crate::core::call::Failure;
use crate::core::mixer::PauseInterval;
use crate::engine::flows::CallFlow;
use crate::engine::model::{ParticipantRequest, ReferenceType};
use crate::recording::{Checksum, Role};

/// See the module documentation.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", content = "data")]
pub enum Event {
    #[serde(rename = "call.created")]
    CallCreated {
        call_id: String,
        customer_id: Option<String>,
        from: String,
        to: String,
        reference_type: ReferenceType,
        /// The call flow that records it, if a rule matched.
        #[serde(skip_serializing_if = "Option::is_none")]
        call_flow_id: Option<String>,
        /// `leg_id`, `role`, `label`, `port` of each leg.
        legs: Vec<Value>,
        /// For a call a SIPREC client sent: its metadata.
        #[serde(skip_serializing_if = "Option::is_none")]
        siprec: Option<Box<crate::siprec::SiprecCall>>,
    },
    #[serde(rename = "call.leg_added")]
    LegAdded {
        call_id: String,
        customer_id: Option<String>,
        leg_id: String,
        role: Role,
        label: Option<String>,
    },
    #[serde(rename = "call.ended")]
    CallEnded {
        call_id: String,
        customer_id: Option<String>,
        reason: StopReason,
    },
    #[serde(rename = "leg.muted")]
    LegMuted {
        call_id: String,
        customer_id: Option<String>,
        leg_id: String,
    },
    #[serde(rename = "leg.unmuted")]
    LegUnmuted {
        call_id: String,
        customer_id: Option<String>,
        leg_id: String,
    },
    #[serde(rename = "recording.started")]
    RecordingStarted {
        recording_id: String,
        call_id: String,
        customer_id: Option<String>,
        format: crate::config::Format,
        sample_rate: u32,
        channels: crate::config::Channels,
        participant: ParticipantRequest,
        /// RFC 3339.
        started_at: String,
    },
    /// A recording notice was scheduled at the recording's start: into the
    /// recording at once, to each party once its codec is known.
    #[serde(rename = "recording.announced")]
    RecordingAnnounced {
        recording_id: String,
        call_id: String,
        customer_id: Option<String>,
        /// The announcement as given (a prompt name, or the text).
        prompt: String,
        /// `builtin`, `file` or `text`.
        source: String,
        /// `recording`, `parties`.
        to: Vec<String>,
        /// RFC 3339.
        at: String,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        reminder_interval_s: Option<u32>,
    },
    #[serde(rename = "recording.paused")]
    RecordingPaused {
        recording_id: String,
        call_id: String,
        customer_id: Option<String>,
    },
    #[serde(rename = "recording.resumed")]
    RecordingResumed {
        recording_id: String,
        call_id: String,
        customer_id: Option<String>,
    },
    #[serde(rename = "recording.stopped")]
    RecordingStopped {
        recording_id: String,
        call_id: String,
        customer_id: Option<String>,
        reason: StopReason,
        /// RFC 3339.
        stopped_at: String,
        /// Audio recorded up to the stop (the file may hold a little more:
        /// what the jitter buffer still held).
        duration_seconds: f64,
    },
    #[serde(rename = "recording.completed")]
    RecordingCompleted(Box<Completed>),
    /// The file and sidecar are in the object store (`storage.backend =
    /// "s3"`); the local copy is gone.
    #[serde(rename = "recording.uploaded")]
    RecordingUploaded {
        recording_id: String,
        call_id: String,
        customer_id: Option<String>,
        bucket: String,
        object_key: String,
        size_bytes: u64,
        /// RFC 3339.
        uploaded_at: String,
        /// From the recording's completion to the store confirming it.
        latency_ms: u64,
    },
    #[serde(rename = "recording.failed")]
    RecordingFailed {
        recording_id: String,
        call_id: String,
        customer_id: Option<String>,
        reason: Failure,
        message: String,
    },
    #[serde(rename = "recording.discarded")]
    RecordingDiscarded {
        recording_id: String,
        call_id: String,
        customer_id: Option<String>,
        reason: DiscardReason,
        duration_ms: u64,
        min_duration_s: u32,
    },
    /// A rule's whole state (customer, number, direction, recording
    /// options, version).
    #[serde(rename = "call_flow.created")]
    CallFlowCreated(Box<CallFlow>),
    #[serde(rename = "call_flow.updated")]
    CallFlowUpdated(Box<CallFlow>),
    /// The rule as it was.
    #[serde(rename = "call_flow.deleted")]
    CallFlowDeleted(Box<CallFlow>),
    #[serde(rename = "recording.deleted")]
    RecordingDeleted {
        recording_id: String,
        call_id: String,
        customer_id: Option<String>,
        reason: DeleteReason,
    },
}

/// Why a call ended or a recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Asked for through the API (or `recengine ctl`).
    Api,
    /// The recording reached `recording.max_duration_s`.
    MaxDuration,
    /// No media on any leg for `rtp.media_timeout_s`.
    MediaTimeout,
    /// The daemon is shutting down.
    Shutdown,
    /// A leg of the new call could not be opened; the call was never
    /// answered.
    SetupFailed,
    /// The call's media worker failed.
    InternalError,
}

/// Why a recording was dropped without a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscardReason {
    /// Shorter than `recording.min_duration_s`.
    MinDuration,
}

/// Why a recording's file was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteReason {
    /// `DELETE /v1/recordings/{id}`.
    Api,
    /// Older than its retention.
    Retention,
}

/// `recording.completed`: the file is final and catalogued.
#[derive(Debug, Clone, Serialize)]
pub struct Completed {
    pub recording_id: String,
    pub call_id: String,
    pub customer_id: Option<String>,
    /// `wav`, `mp3` or `opus`.
    pub format: String,
    pub content_type: String,
    pub duration_ms: u64,
    /// `duration_ms` in seconds.
    pub duration_seconds: f64,
    /// RFC 3339.
    pub started_at: String,
    /// When the file became final (RFC 3339).
    pub completed_at: String,
    pub file_size_bytes: u64,
    pub checksum: Checksum,
    /// Where the file is on this server (the event socket only: webhooks
    /// leave it out).
    pub path: String,
    pub download_url: String,
    pub pauses: Vec<PauseInterval>,
    /// `mono` or `dual`.
    pub channels: String,
    pub sample_rate: u32,
    /// Finished by crash recovery rather than by its call.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
}

impl Event {
    /// The event's name and data, as the log writes them.
    pub fn into_parts(self) -> (String, Value) {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        let name = v["event"].as_str().unwrap_or_default().to_owned();
        (name, v["data"].take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_named_as_the_configuration_knows_it() {
        let ended = Event::CallEnded {
            call_id: "c".into(),
            customer_id: None,
            reason: StopReason::Api,
        };
        let (name, data) = ended.into_parts();
        assert_eq!(name, "call.ended");
        assert_eq!(
            data,
            serde_json::json!({"call_id": "c", "customer_id": null, "reason": "api"})
        );
        // The names webhook filters are checked against.
        let source = include_str!("event.rs");
        let mut named = 0;
        for line in source.lines() {
            if let Some(rest) = line.trim().strip_prefix("#[serde(rename = \"") {
                let name = rest.split('"').next().unwrap();
                assert!(
                    crate::config::schema::EVENT_NAMES.contains(&name),
                    "{name} is not in EVENT_NAMES"
                );
                named += 1;
            }
        }
        assert_eq!(named, crate::config::schema::EVENT_NAMES.len());
    }
}
