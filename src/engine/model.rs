//! Requests and views of the control API for calls and recordings, with
//! their validation. Unknown fields are refused so a typo is an error, not
//! a silently ignored option.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Channels, Format, PauseBehavior};
use crate::core::leg::LegStats;
use crate::io::udp::IngestSnapshot;
pub use crate::recording::OwnerFields;
pub use crate::recording::RecordingStatus;
use crate::recording::{Checksum, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceType {
    #[default]
    Call,
    /// Also accepted as `confbridge` (VoIPbin's name).
    #[serde(alias = "confbridge")]
    Conference,
}

impl ReferenceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ReferenceType::Call => "call",
            ReferenceType::Conference => "conference",
        }
    }
}

/// Where a call is: `active` until it is ended (by the API, its last
/// leg's media timeout or shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallStatus {
    Active,
    Ended,
}

/// A leg in a create-call or add-leg request.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegRequest {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leg_id: Option<String>,
    pub role: Role,
    #[schema(max_length = 256)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Dynamic payload types: `{"101": "telephone-event/8000", "111": "opus/48000/2"}`
    /// (at most 32).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub payload_types: BTreeMap<String, String>,
    /// The only source this leg accepts, from its first packet:
    /// `"203.0.113.5"` or `"203.0.113.5:4000"` (e.g. from the SDP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Which legs a recording contains.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ParticipantRequest {
    /// `"all"`, `"caller"` or `"callee"`.
    Named(String),
    /// Explicit leg ids.
    Legs(Vec<String>),
}

impl ParticipantRequest {
    /// As events and the catalog name it: the name, or the leg ids joined
    /// with commas.
    pub fn name(&self) -> String {
        match self {
            ParticipantRequest::Named(n) => n.clone(),
            ParticipantRequest::Legs(ids) => ids.join(","),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DtmfPolicy {
    #[default]
    Keep,
    Suppress,
}

/// Where a recording notice is played.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AnnounceTarget {
    /// Laid over the recording's start (and its reminders over the
    /// recording): the file itself documents the notice.
    Recording,
    /// Sent as RTP to each party, from the leg's port to the leg's source,
    /// in the codec the party sends.
    Parties,
}

/// Recording options (all optional: defaults come from `[recording]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordingRequest {
    /// Only in a create-call `recording` block: start recording at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant: Option<ParticipantRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Channels>,
    /// kbit/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_behavior: Option<PauseBehavior>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtmf: Option<DtmfPolicy>,
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_id: Option<String>,
    /// Days to keep this recording (overrides `storage.retention_days`; 0 = forever).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// Opaque: stored with the recording and returned as given.
    #[schema(max_length = 256)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_type: Option<String>,
    /// Opaque: stored with the recording and returned as given.
    #[schema(max_length = 256)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// Opaque: stored with the recording and returned as given (the flow a
    /// platform runs when the recording ends).
    #[schema(max_length = 256)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_end_flow_id: Option<String>,
    /// Play a recording notice (`announcement`, else
    /// `notices.default_prompt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announce: Option<bool>,
    /// A prompt name (`beep`, or a file in `notices.prompts_dir`), or text
    /// for `notices.tts_command`. Implies `announce`.
    #[schema(max_length = 2000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announcement: Option<String>,
    /// Where the notice goes (default `["recording"]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announce_to: Option<Vec<AnnounceTarget>>,
    /// A short reminder tone every this many seconds (5-3600), wherever
    /// the notice goes; 0 or absent = none.
    #[schema(maximum = 3600)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reminder_interval_s: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCallRequest {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    #[serde(default)]
    #[schema(max_length = 256)]
    pub from: String,
    #[serde(default)]
    #[schema(max_length = 256)]
    pub to: String,
    #[serde(default)]
    pub direction: Direction,
    #[serde(default)]
    pub reference_type: ReferenceType,
    #[schema(min_items = 1, max_items = 64)]
    pub legs: Vec<LegRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingRequest>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// `start` (the default) or `stop`.
    #[serde(default)]
    pub action: Option<String>,
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RtpAddress {
    pub host: String,
    pub port: u16,
    pub rtcp_port: u16,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LegView {
    pub leg_id: String,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub rtp: RtpAddress,
    pub muted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub ingest: IngestSnapshot,
    pub stats: Option<LegStats>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallView {
    pub call_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    pub from: String,
    pub to: String,
    pub direction: Direction,
    pub reference_type: ReferenceType,
    pub status: CallStatus,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    pub sample_rate: u32,
    /// The call flow whose rule started its recording.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_flow_id: Option<String>,
    /// For a call a SIPREC client sent: its address, the INVITE's Call-ID
    /// and the recording metadata (parsed and as sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub siprec: Option<Box<crate::siprec::SiprecCall>>,
    pub legs: Vec<LegView>,
    pub recordings: Vec<RecordingView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecordingView {
    pub recording_id: String,
    pub call_id: String,
    pub status: RecordingStatus,
    pub format: Format,
    pub sample_rate: u32,
    pub channels: Channels,
    pub bitrate_kbps: u32,
    pub participant: ParticipantRequest,
    pub pause_behavior: PauseBehavior,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_size_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(flatten)]
    pub owner: OwnerFields,
    /// The call flow whose rule started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_flow_id: Option<String>,
}
