//! What is known about a finished (or failed) recording: the content of
//! its sidecar `<id>.json`, and later of its catalog row.

use serde::{Deserialize, Serialize};

use crate::config::{Channels, Format, PauseBehavior};
use crate::core::leg::{DtmfRecord, LegStats};
use crate::core::mixer::PauseInterval;

pub use crate::core::call::plan::Role;

/// Where a recording is, as the API and the catalog name it: `recording`
/// and `paused` while the call is recorded, `stopped` and `processing`
/// while it is finished, then `completed`, `failed` or `discarded`
/// (shorter than `recording.min_duration_ms`); `deleted` after a DELETE
/// or retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordingStatus {
    Recording,
    Paused,
    Stopped,
    Processing,
    Completed,
    Failed,
    Discarded,
    Deleted,
}

impl std::fmt::Display for RecordingStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RecordingStatus {
    pub const ALL: [RecordingStatus; 8] = [
        RecordingStatus::Recording,
        RecordingStatus::Paused,
        RecordingStatus::Stopped,
        RecordingStatus::Processing,
        RecordingStatus::Completed,
        RecordingStatus::Failed,
        RecordingStatus::Discarded,
        RecordingStatus::Deleted,
    ];

    /// Still being recorded or finished: its file is not final yet.
    pub fn in_progress(self) -> bool {
        matches!(
            self,
            RecordingStatus::Recording
                | RecordingStatus::Paused
                | RecordingStatus::Stopped
                | RecordingStatus::Processing
        )
    }

    /// The status a catalog row names.
    pub fn parse(name: &str) -> Option<RecordingStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecordingStatus::Recording => "recording",
            RecordingStatus::Paused => "paused",
            RecordingStatus::Stopped => "stopped",
            RecordingStatus::Processing => "processing",
            RecordingStatus::Completed => "completed",
            RecordingStatus::Failed => "failed",
            RecordingStatus::Discarded => "discarded",
            RecordingStatus::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checksum {
    pub algorithm: String,
    pub value: String,
}

impl Checksum {
    pub fn sha256(hex: String) -> Self {
        Self {
            algorithm: "sha256".into(),
            value: hex,
        }
    }
}

/// One leg as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LegInfo {
    pub leg_id: String,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Output channel in the file (0-based); `None` when not selected.
    pub channel: Option<u16>,
    /// Codecs seen, by SDP name.
    pub codecs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub stats: LegStats,
    pub dtmf: Vec<DtmfRecord>,
}

/// Fields a platform attaches to a recording for its own bookkeeping
/// (VoIPbin's owner and end-of-recording flow): stored, returned and put in
/// the sidecar as given, never interpreted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OwnerFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_end_flow_id: Option<String>,
}

/// The recording notice a recording played.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnnouncementInfo {
    /// The announcement as given (a prompt name or the text).
    pub prompt: String,
    /// `builtin`, `file` or `text`.
    pub source: String,
    /// `recording`, `parties`.
    pub to: Vec<String>,
    pub duration_ms: u64,
    /// Seconds between reminder tones; absent = none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder_interval_s: Option<u32>,
}

/// Everything the sidecar states.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordingInfo {
    pub recording_id: String,
    pub call_id: String,
    /// The tenant (absent for admin-created calls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// call | conference
    pub reference_type: String,
    pub status: RecordingStatus,
    pub format: Format,
    pub content_type: String,
    pub sample_rate: u32,
    pub channels: Channels,
    pub channel_count: u16,
    pub bitrate_kbps: u32,
    pub participant: String,
    pub pause_behavior: PauseBehavior,
    pub started_at: String,
    pub stopped_at: String,
    /// Audio in the file, in milliseconds.
    pub duration_ms: u64,
    pub file: String,
    pub file_size_bytes: u64,
    pub checksum: Checksum,
    pub pauses: Vec<PauseInterval>,
    pub legs: Vec<LegInfo>,
    #[serde(default)]
    pub recovered: bool,
    #[serde(flatten)]
    pub owner: OwnerFields,
    /// The call flow whose rule started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_flow_id: Option<String>,
    /// The recording notice it played.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announcement: Option<AnnouncementInfo>,
    /// How the file is encrypted at rest (absent: it is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<crate::encryption::EncryptionInfo>,
    /// For a call a SIPREC client sent: its metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub siprec: Option<Box<crate::siprec::SiprecCall>>,
}
