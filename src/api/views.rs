//! Answer bodies the API builds on top of the engine's and the catalog's
//! types: pages of a list, a catalogued recording in full, a call's
//! recording link, a stored recording log, a webhook delivery, health.
//! The OpenAPI document's schemas are derived from these types, so what
//! the document says is what the handlers send.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::catalog::RecordingRow;
use crate::catalog::outbox::DeliveryRow;
use crate::config::PauseBehavior;
use crate::recording::{Checksum, RecordingStatus};

use super::recordings::RecordingLog;

/// Where a page sits in the whole list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Pagination {
    /// Items matching the filter, over all pages.
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
    /// True when items follow this page.
    pub has_more: bool,
}

impl Pagination {
    pub fn new(total: u64, limit: u32, offset: u64, on_page: usize) -> Self {
        Self {
            total,
            limit,
            offset,
            has_more: offset.saturating_add(on_page as u64) < total,
        }
    }
}

/// One page of a list, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub data: Vec<T>,
    pub pagination: Pagination,
}

/// A catalogued recording with what its sidecar adds (pauses, legs) and
/// what a recording log with the same id says (transcription, metadata).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordingDetail {
    #[serde(flatten)]
    pub row: RecordingRow,
    pub duration_seconds: f64,
    /// `audio/wav`, `audio/mpeg`, `audio/ogg`, or
    /// `application/octet-stream` for an external recording.
    pub content_type: &'static str,
    /// SHA-256 of the file; null until the recording is completed.
    pub checksum: Option<Checksum>,
    /// Pauses, in milliseconds of the recording timeline.
    #[schema(value_type = Vec<crate::core::mixer::PauseInterval>)]
    pub pauses: Vec<Value>,
    /// Each leg as recorded: channel, codecs, counters, DTMF.
    #[schema(value_type = Vec<crate::recording::LegInfo>)]
    pub legs: Vec<Value>,
    /// Null for a recording recovered after a crash or an external one.
    pub pause_behavior: Option<PauseBehavior>,
    pub channel_count: Option<u16>,
    #[serde(flatten)]
    pub owner: crate::recording::OwnerFields,
    /// The call flow whose rule started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_flow_id: Option<String>,
    /// The recording notice it played.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announcement: Option<crate::recording::AnnouncementInfo>,
    /// How the file is encrypted at rest (absent: it is not). For a
    /// customer-held recording, `wrapped_key` is what `recengine decrypt
    /// --key private.pem` needs besides the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<crate::encryption::EncryptionInfo>,
    /// For a call a SIPREC client sent: its metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub siprec: Option<Box<crate::siprec::SiprecCall>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcription_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcription_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_url: Option<String>,
    /// With `storage.backend = "s3"`: where the file is in the object
    /// store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadView>,
}

/// A recording's upload to the object store.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UploadView {
    /// `pending` (queued or being retried), `uploaded`, or `dropped`
    /// (deleted before it was uploaded).
    pub state: &'static str,
    pub bucket: String,
    pub object_key: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// RFC 3339, once uploaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uploaded_at: Option<String>,
}

/// The latest recording of a call, with a signed download URL once it is
/// completed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallRecordingLink {
    pub recording_id: String,
    pub call_id: String,
    /// Signed, time-limited download URL, absolute (`api.public_url`);
    /// null until completed.
    pub url: Option<String>,
    pub content_type: &'static str,
    /// When `url` stops working (RFC 3339).
    pub expires_at: Option<String>,
    pub recording_status: RecordingStatus,
    pub duration_seconds: f64,
    pub file_size_bytes: Option<u64>,
    pub recording_start_time: String,
}

/// A recording log as stored, with where it is attached.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordingLogView {
    #[serde(flatten)]
    pub log: RecordingLog,
    pub call_id: String,
    /// True when the engine made the recording this log describes; false
    /// for an external recording (catalogued with format `external`).
    pub attached_to_engine_recording: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A webhook delivery.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryView {
    #[serde(flatten)]
    pub row: DeliveryRow,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<String>,
}

impl From<DeliveryRow> for DeliveryView {
    fn from(row: DeliveryRow) -> Self {
        let next_attempt_at = (row.status == "pending").then(|| {
            crate::timefmt::rfc3339(std::time::Duration::from_millis(
                row.next_attempt_ms.max(0) as u64
            ))
        });
        Self {
            row,
            next_attempt_at,
        }
    }
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the daemon answers.
    pub status: &'static str,
    pub catalog: CatalogHealth,
    /// The NATS publisher, when `[events.nats]` is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsHealth>,
    /// The object-store uploader, with `storage.backend = "s3"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uploads: Option<UploadHealth>,
    /// The SIPREC server, when `[siprec]` is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub siprec: Option<SiprecHealth>,
}

/// The object-store uploader's state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UploadHealth {
    pub bucket: String,
    /// This recorder's finished recordings not yet in the store.
    pub backlog: u64,
    /// Uploads done since start.
    pub uploaded: u64,
    /// Failed attempts since start (each retried).
    pub failures: u64,
}

/// The catalog's state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CatalogHealth {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// This recorder's name in the fleet (`catalog.node_id`).
    pub node_id: String,
    /// PostgreSQL only: whether it answered a query within 2 s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    /// PostgreSQL only: this recorder's connection pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolHealth>,
}

/// A connection pool's state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PoolHealth {
    /// Connections open.
    pub connections: u32,
    /// Of those, idle.
    pub idle: u32,
}

/// The NATS publisher's state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NatsHealth {
    pub connected: bool,
    /// Events logged and not yet acknowledged by JetStream.
    pub backlog: u64,
}

/// The SIPREC server's state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SiprecHealth {
    /// SIPREC dialogs open.
    pub dialogs: u64,
}
