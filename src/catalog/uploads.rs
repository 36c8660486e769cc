//! The upload queue to object storage (`storage.backend = "s3"`): one row
//! per finished recording of this node, `pending` until its file and
//! sidecar are in the store (`uploaded`), or `dropped` when the recording
//! was deleted first. The queue lives in the catalog, so it survives
//! restarts; on a shared catalog each node works only its own rows (the
//! files are on its disk).

use super::db::{Row, args};
use super::{Catalog, CatalogError, all, scope};

/// Where an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadState {
    Pending,
    Uploaded,
    Dropped,
}

impl UploadState {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Pending => "pending",
            UploadState::Uploaded => "uploaded",
            UploadState::Dropped => "dropped",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => UploadState::Pending,
            "uploaded" => UploadState::Uploaded,
            "dropped" => UploadState::Dropped,
            _ => return None,
        })
    }
}

/// One queued upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    pub customer_id: Option<String>,
    pub recording_id: String,
    pub node_id: String,
    pub state: UploadState,
    /// The audio's key in the bucket (the sidecar's: with `.json`).
    pub object_key: String,
    /// The file on this node's disk.
    pub local_path: String,
    pub size_bytes: u64,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    /// When the recording was finalized and queued (Unix ms).
    pub queued_ms: i64,
    pub uploaded_ms: Option<i64>,
}

const UPLOAD_COLUMNS: &str =
    "customer_id, recording_id, node_id, state, object_key, local_path, size_bytes,
    attempts, next_attempt_ms, last_error, queued_ms, uploaded_ms";

fn row_to_upload(r: &Row) -> Result<UploadRow, CatalogError> {
    let state: String = r.get(3)?;
    Ok(UploadRow {
        customer_id: Some(r.get::<String>(0)?).filter(|c| !c.is_empty()),
        recording_id: r.get(1)?,
        node_id: r.get(2)?,
        state: UploadState::parse(&state)
            .ok_or_else(|| CatalogError::Invalid(format!("unknown upload state {state:?}")))?,
        object_key: r.get(4)?,
        local_path: r.get(5)?,
        size_bytes: r.get(6)?,
        attempts: r.get(7)?,
        next_attempt_ms: r.get(8)?,
        last_error: r.get(9)?,
        queued_ms: r.get(10)?,
        uploaded_ms: r.get(11)?,
    })
}

impl Catalog {
    /// Queues a finished recording's upload (again, if it was queued
    /// before: a recovered recording replaces its file).
    pub fn queue_upload(
        &self,
        customer_id: Option<&str>,
        recording_id: &str,
        object_key: &str,
        local_path: &str,
        size_bytes: u64,
        now_ms: i64,
    ) -> Result<(), CatalogError> {
        self.run(|db| {
            db.execute(
                "INSERT INTO uploads (customer_id, recording_id, node_id, state, object_key, local_path,
                     size_bytes, attempts, next_attempt_ms, queued_ms)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, 0, ?7, ?7)
                 ON CONFLICT (customer_id, recording_id) DO UPDATE SET state = 'pending',
                     node_id = excluded.node_id, object_key = excluded.object_key,
                     local_path = excluded.local_path, size_bytes = excluded.size_bytes,
                     attempts = 0, next_attempt_ms = excluded.next_attempt_ms,
                     last_error = NULL, queued_ms = excluded.queued_ms, uploaded_ms = NULL",
                args![
                    scope(customer_id),
                    recording_id,
                    &self.node_id,
                    object_key,
                    local_path,
                    size_bytes,
                    now_ms
                ],
            )
        })?;
        Ok(())
    }

    /// This node's pending uploads due at `now_ms`, oldest first.
    pub fn due_uploads(&self, now_ms: i64, limit: u32) -> Result<Vec<UploadRow>, CatalogError> {
        let rows = self.run(|db| {
            db.query(
                &format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads
                     WHERE (?1 = '' OR node_id = ?1) AND state = 'pending' AND next_attempt_ms <= ?2
                     ORDER BY next_attempt_ms, queued_ms LIMIT ?3"
                ),
                args![self.mine().unwrap_or(""), now_ms, limit],
            )
        })?;
        all(rows, row_to_upload)
    }

    /// When this node's next pending upload is due, if any.
    pub fn next_upload_due_ms(&self) -> Result<Option<i64>, CatalogError> {
        self.run(|db| {
            db.query_one(
                "SELECT MIN(next_attempt_ms) FROM uploads WHERE (?1 = '' OR node_id = ?1) AND state = 'pending'",
                args![self.mine().unwrap_or("")],
            )?
            .get(0)
        })
    }

    /// How many of this node's uploads are pending.
    pub fn upload_backlog(&self) -> Result<u64, CatalogError> {
        self.run(|db| {
            db.query_one(
                "SELECT COUNT(*) FROM uploads WHERE (?1 = '' OR node_id = ?1) AND state = 'pending'",
                args![self.mine().unwrap_or("")],
            )?
            .get(0)
        })
    }

    /// The recording's upload, if it was queued.
    pub fn upload_of(
        &self,
        customer_id: Option<&str>,
        recording_id: &str,
    ) -> Result<Option<UploadRow>, CatalogError> {
        self.run(|db| {
            db.query_opt(
                &format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE customer_id = ?1 AND recording_id = ?2"
                ),
                args![scope(customer_id), recording_id],
            )?
            .as_ref()
            .map(row_to_upload)
            .transpose()
        })
    }

    /// Moves a pending upload to `state` (`uploaded` at `now_ms`, or
    /// `dropped`); false when it was no longer pending.
    pub fn finish_upload(
        &self,
        customer_id: Option<&str>,
        recording_id: &str,
        state: UploadState,
        now_ms: i64,
    ) -> Result<bool, CatalogError> {
        let n = self.run(|db| {
            db.execute(
                "UPDATE uploads SET state = ?3, uploaded_ms = CASE WHEN ?3 = 'uploaded' THEN ?4 ELSE uploaded_ms END,
                     last_error = NULL
                 WHERE customer_id = ?1 AND recording_id = ?2 AND state = 'pending'",
                args![scope(customer_id), recording_id, state.as_str(), now_ms],
            )
        })?;
        Ok(n == 1)
    }

    /// Records a failed attempt; the next one is due at `retry_at_ms`.
    pub fn upload_failed(
        &self,
        customer_id: Option<&str>,
        recording_id: &str,
        error: &str,
        retry_at_ms: i64,
    ) -> Result<(), CatalogError> {
        self.run(|db| {
            db.execute(
                "UPDATE uploads SET attempts = attempts + 1, last_error = ?3, next_attempt_ms = ?4
                 WHERE customer_id = ?1 AND recording_id = ?2 AND state = 'pending'",
                args![scope(customer_id), recording_id, error, retry_at_ms],
            )
        })?;
        Ok(())
    }

    /// This node's finished recordings that are stored locally and were
    /// never queued (made before object storage was turned on, or
    /// finalized by crash recovery): (customer, id, path, size).
    #[allow(clippy::type_complexity)]
    pub fn unqueued_uploads(
        &self,
    ) -> Result<Vec<(Option<String>, String, String, u64)>, CatalogError> {
        let node = self.mine().unwrap_or("");
        let rows = self.run(|db| {
            db.query(
                "SELECT customer_id, recording_id, path, COALESCE(file_size_bytes, 0) FROM recordings r
                 WHERE status = 'completed' AND deleted_at IS NULL AND external = 0 AND path IS NOT NULL
                   AND (?1 = '' OR node_id = ?1)
                   AND NOT EXISTS (SELECT 1 FROM uploads u
                       WHERE u.customer_id = r.customer_id AND u.recording_id = r.recording_id)",
                args![node],
            )
        })?;
        all(rows, |r| {
            Ok((
                Some(r.get::<String>(0)?).filter(|c| !c.is_empty()),
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
            ))
        })
    }
}
