//! `recengine reindex`: rebuilds the catalog's recording rows from the
//! sidecar JSON files under the storage directory (after a lost or damaged
//! catalog, or files restored from backup). Rows for recordings whose
//! sidecar is gone are kept as they are.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Catalog, CatalogError, RecordingRow};
use crate::recording::RecordingStatus;
use crate::timefmt::{parse_rfc3339, rfc3339, unix_now};

/// What a reindex did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReindexReport {
    pub sidecars: usize,
    pub indexed: usize,
    /// Sidecars that could not be read, with why.
    pub skipped: Vec<(PathBuf, String)>,
}

fn sidecars(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            sidecars(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

/// Why a sidecar cannot be catalogued.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("no {0}")]
    Missing(&'static str),
    #[error("recording_id {0:?} is not a valid id")]
    InvalidId(String),
    #[error("its audio file {} is missing", .0.display())]
    AudioMissing(PathBuf),
    #[error("started_at {0:?} is not RFC 3339")]
    BadTime(String),
}

/// The catalog row a sidecar describes.
pub fn row_from_sidecar(path: &Path, text: &str) -> Result<RecordingRow, SidecarError> {
    let v: Value = serde_json::from_str(text)?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    let id = s("recording_id").ok_or(SidecarError::Missing("recording_id"))?;
    if !crate::ids::is_valid_id(&id) {
        return Err(SidecarError::InvalidId(id));
    }
    let format = s("format").ok_or(SidecarError::Missing("format"))?;
    let audio = path.with_extension(&format);
    if !audio.exists() {
        return Err(SidecarError::AudioMissing(audio));
    }
    let started_at = s("started_at").ok_or(SidecarError::Missing("started_at"))?;
    let started_ms = parse_rfc3339(&started_at)
        .ok_or_else(|| SidecarError::BadTime(started_at.clone()))?
        .as_millis() as i64;
    let modified = std::fs::metadata(&audio)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_else(unix_now);
    let now = rfc3339(unix_now());
    Ok(RecordingRow {
        recording_id: id,
        call_id: s("call_id").ok_or(SidecarError::Missing("call_id"))?,
        customer_id: s("customer_id"),
        reference_type: s("reference_type").unwrap_or_else(|| "call".into()),
        status: RecordingStatus::Completed,
        format,
        sample_rate: n("sample_rate").unwrap_or(0) as u32,
        channels: s("channels").unwrap_or_else(|| "mono".into()),
        bitrate_kbps: n("bitrate_kbps").unwrap_or(0) as u32,
        participant: s("participant").unwrap_or_else(|| "all".into()),
        path: Some(audio.to_string_lossy().into_owned()),
        duration_ms: n("duration_ms").unwrap_or(0),
        file_size_bytes: n("file_size_bytes"),
        checksum: v
            .pointer("/checksum/value")
            .and_then(Value::as_str)
            .map(str::to_owned),
        failure_reason: None,
        started_at,
        started_ms,
        stopped_at: s("stopped_at"),
        completed_at: Some(rfc3339(modified)),
        completed_ms: Some(modified.as_millis() as i64),
        created_at: now.clone(),
        updated_at: now,
        deleted_at: None,
        retention_days: None,
        recovered: v.get("recovered").and_then(Value::as_bool).unwrap_or(false),
        external: false,
        info_json: Some(text.trim().to_owned()),
        encryption: v
            .get("encryption")
            .and_then(|e| serde_json::from_value(e.clone()).ok()),
        recovery_key: None,
        node_id: String::new(),
    })
}

/// Indexes every sidecar under `storage` into `catalog`.
pub fn reindex(catalog: &Catalog, storage: &Path) -> Result<ReindexReport, CatalogError> {
    let mut files = Vec::new();
    sidecars(storage, &mut files);
    files.sort();
    let mut report = ReindexReport::default();
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                report.skipped.push((f, e.to_string()));
                continue;
            }
        };
        // Only recording sidecars (they name a recording and its format).
        if !text.contains("\"recording_id\"") {
            continue;
        }
        report.sidecars += 1;
        match row_from_sidecar(&f, &text) {
            Ok(mut row) => {
                // Keep what only the catalog knew (retention, creation).
                if let Some(old) = catalog.get(row.customer_id.as_deref(), &row.recording_id)? {
                    row.retention_days = old.retention_days;
                    row.created_at = old.created_at;
                    row.completed_at = old.completed_at.or(row.completed_at);
                    row.completed_ms = old.completed_ms.or(row.completed_ms);
                }
                catalog.put_recording(&row)?;
                report.indexed += 1;
            }
            Err(why) => report.skipped.push((f, why.to_string())),
        }
    }
    Ok(report)
}
