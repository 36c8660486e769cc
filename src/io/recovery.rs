//! Startup recovery: recordings the catalog shows unfinished were cut short
//! by a crash. Each `.part` file is repaired ([`crate::core::repair`]),
//! renamed into place, checksummed, given a sidecar, catalogued as
//! `completed` with `recovered: true`, and announced with
//! `recording.completed`. Nothing recorded is thrown away: a recording with
//! no file at all is marked `failed` (reason `internal`) and announced.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::catalog::{Catalog, RecordingRow};
use crate::core::call::Failure;
use crate::core::repair::{
    Repair, mp3_duration_ms, ogg_opus_duration_ms, repair_mp3, repair_ogg, repair_wav,
    wav_duration_ms,
};
use crate::events::{Completed, Event, EventBus};
use crate::io::FileError;
use crate::io::sink::{sha256_file, write_sidecar};
use crate::recording::{Checksum, RecordingStatus};
use crate::timefmt::{rfc3339, unix_now};

/// What recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub recovered: Vec<String>,
    pub failed: Vec<String>,
}

/// Why one recording could not be recovered (its part file is left as it
/// is, for an operator to look at).
#[derive(Debug, thiserror::Error)]
enum RecoveryError {
    #[error("the catalog row has no file path")]
    NoPath,
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

fn apply(part: &Path, r: &Repair) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(part)?;
    f.set_len(r.keep as u64)?;
    for (at, bytes) in &r.patches {
        f.seek(SeekFrom::Start(*at as u64))?;
        f.write_all(bytes)?;
    }
    f.sync_all()
}

/// Repairs a part file in place; returns the audio duration in ms.
fn repair_file(part: &Path, format: &str) -> std::io::Result<u64> {
    let mut bytes = Vec::new();
    File::open(part)?.read_to_end(&mut bytes)?;
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} has no recognisable {format} header", part.display()),
        )
    };
    let repair = match format {
        "wav" => repair_wav(&bytes, bytes.len()).ok_or_else(bad)?,
        "mp3" => repair_mp3(&bytes),
        "opus" => repair_ogg(&bytes),
        _ => return Err(bad()),
    };
    apply(part, &repair)?;
    bytes.truncate(repair.keep);
    for (at, p) in &repair.patches {
        bytes[*at..*at + p.len()].copy_from_slice(p);
    }
    Ok(match format {
        "wav" => wav_duration_ms(&bytes).unwrap_or(0),
        "mp3" => mp3_duration_ms(&bytes),
        _ => ogg_opus_duration_ms(&bytes).unwrap_or(0),
    })
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Recovers every unfinished recording in the catalog.
pub fn recover(catalog: &Catalog, events: &EventBus) -> RecoveryReport {
    let mut report = RecoveryReport::default();
    let rows = match catalog.unfinished() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "recovery could not read the catalog");
            return report;
        }
    };
    for row in rows {
        match recover_one(catalog, events, &row) {
            Ok(true) => report.recovered.push(row.recording_id.clone()),
            Ok(false) => report.failed.push(row.recording_id.clone()),
            Err(e) => {
                tracing::error!(recording = %row.recording_id, error = %e, "recovery failed; the part file is left as it is");
                report.failed.push(row.recording_id.clone());
            }
        }
    }
    if let Err(e) = catalog.end_open_calls(&rfc3339(unix_now())) {
        tracing::error!(error = %e, "recovery could not mark calls ended");
    }
    report
}

fn recover_one(
    catalog: &Catalog,
    events: &EventBus,
    row: &RecordingRow,
) -> Result<bool, RecoveryError> {
    let now = rfc3339(unix_now());
    let Some(path) = row.path.as_ref().map(PathBuf::from) else {
        return Err(RecoveryError::NoPath);
    };
    let mut part = path.clone().into_os_string();
    part.push(".part");
    let part = PathBuf::from(part);
    let duration_ms = if part.exists() {
        let d = repair_file(&part, &row.format).map_err(FileError::at("repairing", &part))?;
        std::fs::rename(&part, &path).map_err(FileError::at("renaming", &part))?;
        sync_dir(&path);
        d
    } else if path.exists() {
        // Crashed after the rename, before the catalog heard of it.
        row.duration_ms
    } else {
        catalog.set_status(
            row.customer_id.as_deref(),
            &row.recording_id,
            RecordingStatus::Failed,
            &now,
            Some(Failure::Internal.reason()),
            None,
        )?;
        let _ = events.announce(Event::RecordingFailed {
            recording_id: row.recording_id.clone(),
            call_id: row.call_id.clone(),
            customer_id: row.customer_id.clone(),
            reason: Failure::Internal,
            message: "the daemon stopped before any audio of this recording reached the disk"
                .into(),
        });
        return Ok(false);
    };
    let size = std::fs::metadata(&path)
        .map_err(FileError::at("reading", &path))?
        .len();
    let sha = sha256_file(&path).map_err(FileError::at("checksumming", &path))?;
    let sidecar = json!({
        "recording_id": row.recording_id, "call_id": row.call_id, "customer_id": row.customer_id,
        "reference_type": row.reference_type, "status": "completed", "format": row.format,
        "sample_rate": row.sample_rate, "channels": row.channels, "bitrate_kbps": row.bitrate_kbps,
        "participant": row.participant, "started_at": row.started_at, "stopped_at": row.stopped_at,
        "duration_ms": duration_ms, "file": path, "file_size_bytes": size,
        "checksum": {"algorithm": "sha256", "value": sha}, "recovered": true,
    });
    let sidecar_path = path.with_extension("json");
    write_sidecar(&sidecar_path, &sidecar).map_err(FileError::at("writing", &sidecar_path))?;
    let mut done = row.clone();
    done.status = RecordingStatus::Completed;
    done.recovered = true;
    done.duration_ms = duration_ms;
    done.file_size_bytes = Some(size);
    done.checksum = Some(sha.clone());
    done.completed_at = Some(now.clone());
    done.completed_ms = Some(unix_now().as_millis() as i64);
    done.updated_at = now;
    done.info_json = Some(sidecar.to_string());
    catalog.put_recording(&done)?;
    tracing::warn!(recording = %row.recording_id, duration_ms, "recovered a recording cut short by a crash");
    let _ = events.announce(Event::RecordingCompleted(Box::new(Completed {
        recording_id: row.recording_id.clone(),
        call_id: row.call_id.clone(),
        customer_id: row.customer_id.clone(),
        format: row.format.clone(),
        content_type: crate::config::Format::content_type_of(&row.format).to_owned(),
        duration_ms,
        duration_seconds: duration_ms as f64 / 1000.0,
        started_at: row.started_at.clone(),
        completed_at: done.completed_at.clone().unwrap_or_default(),
        file_size_bytes: size,
        checksum: Checksum::sha256(sha),
        path: path.to_string_lossy().into_owned(),
        download_url: format!("/v1/recordings/{}/download", row.recording_id),
        pauses: Vec::new(),
        channels: row.channels.clone(),
        sample_rate: row.sample_rate,
        recovered: true,
    })));
    Ok(true)
}
