//! Startup recovery: recordings the catalog shows unfinished were cut short
//! by a crash. Each `.part` file is repaired ([`crate::core::repair`]),
//! renamed into place, checksummed, given a sidecar, catalogued as
//! `completed` with `recovered: true`, and announced with
//! `recording.completed`. Nothing recorded is thrown away: a recording with
//! no file at all is marked `failed` (reason `internal`) and announced.
//!
//! An encrypted part file keeps its whole authenticated segments
//! ([`crate::encryption::segments::salvage`]); the format repair runs on
//! that plaintext, and the result is sealed again under a fresh data key
//! (never re-sealing other plaintext under a nonce the part file used),
//! wrapped as the original was: by the current key-encryption key, or for
//! the customer's own key.

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
use crate::encryption::customer::parse_public_key;
use crate::encryption::{DataKey, EncryptionInfo, Keyring, KeyringError, SealError, segments};
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
    #[error("encrypted recording: {0}")]
    Key(#[from] KeyringError),
    #[error("encrypted recording: {0}")]
    Seal(#[from] SealError),
    #[error("encrypted recording: {0}")]
    CustomerKey(String),
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
    let repair = plan_repair(part, &bytes, format)?;
    apply(part, &repair)?;
    Ok(apply_in_memory(&mut bytes, &repair, format))
}

/// Repairs a part file's plaintext in memory; returns the duration in ms.
fn repair_plain(part: &Path, bytes: &mut Vec<u8>, format: &str) -> std::io::Result<u64> {
    let repair = plan_repair(part, bytes, format)?;
    Ok(apply_in_memory(bytes, &repair, format))
}

fn plan_repair(part: &Path, bytes: &[u8], format: &str) -> std::io::Result<Repair> {
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} has no recognisable {format} header", part.display()),
        )
    };
    Ok(match format {
        "wav" => repair_wav(bytes, bytes.len()).ok_or_else(bad)?,
        "mp3" => repair_mp3(bytes),
        "opus" => repair_ogg(bytes),
        _ => return Err(bad()),
    })
}

fn apply_in_memory(bytes: &mut Vec<u8>, repair: &Repair, format: &str) -> u64 {
    bytes.truncate(repair.keep);
    for (at, p) in &repair.patches {
        bytes[*at..*at + p.len()].copy_from_slice(p);
    }
    match format {
        "wav" => wav_duration_ms(bytes).unwrap_or(0),
        "mp3" => mp3_duration_ms(bytes),
        _ => ogg_opus_duration_ms(bytes).unwrap_or(0),
    }
}

/// The data key of an unfinished encrypted recording: unwrapped by the
/// operator's key (for a customer-held one, the copy kept while recording).
fn unfinished_key(row: &RecordingRow, keyring: &Keyring) -> Result<Option<DataKey>, RecoveryError> {
    let Some(enc) = &row.encryption else {
        return Ok(None);
    };
    let wrapped = if enc.wrapping.is_customer() {
        row.recovery_key.as_ref().ok_or_else(|| {
            RecoveryError::CustomerKey(format!(
                "the data key is wrapped for the customer's key {:?} and no recovery copy was kept",
                enc.key_id
            ))
        })?
    } else {
        enc
    };
    Ok(Some(keyring.unwrap(wrapped)?))
}

/// A fresh data key for a recovered file, wrapped as `original` was.
fn rewrap_like(
    original: &EncryptionInfo,
    row: &RecordingRow,
    catalog: &Catalog,
    keyring: &Keyring,
) -> Result<(DataKey, EncryptionInfo), RecoveryError> {
    let key = DataKey::generate().map_err(|e| RecoveryError::Key(KeyringError::Random(e)))?;
    if !original.wrapping.is_customer() {
        let id = keyring.current_id().unwrap_or(&original.key_id).to_owned();
        let info = keyring.wrap(&key, &id)?;
        return Ok((key, info));
    }
    let customer = catalog
        .customer_keys(row.customer_id.as_deref())?
        .into_iter()
        .find(|k| k.key_id == original.key_id)
        .ok_or_else(|| {
            RecoveryError::CustomerKey(format!(
                "customer key {:?} is not registered",
                original.key_id
            ))
        })?;
    let parsed = parse_public_key(&customer.public_key)
        .map_err(|e| RecoveryError::CustomerKey(e.to_string()))?;
    let info = parsed
        .key
        .wrap(&key, &original.key_id)
        .map_err(|e| RecoveryError::CustomerKey(e.to_string()))?;
    Ok((key, info))
}

/// What recovering an encrypted file produced.
struct SealedRecovery {
    duration_ms: u64,
    encryption: EncryptionInfo,
    digest: segments::SealedDigest,
}

/// Salvages an encrypted part file, repairs its plaintext and seals it
/// again at `path` under a fresh key.
fn recover_sealed(
    part: &Path,
    path: &Path,
    row: &RecordingRow,
    key: &DataKey,
    catalog: &Catalog,
    keyring: &Keyring,
) -> Result<SealedRecovery, RecoveryError> {
    let original = row.encryption.as_ref().ok_or(RecoveryError::NoPath)?;
    let file = File::open(part).map_err(FileError::at("reading", part))?;
    let salvaged = segments::salvage(&file, key)?;
    tracing::warn!(recording = %row.recording_id, segments = salvaged.segments,
        bytes = salvaged.plain.len(), "kept the authenticated segments of an encrypted part file");
    let mut plain = salvaged.plain;
    let duration_ms =
        repair_plain(part, &mut plain, &row.format).map_err(FileError::at("repairing", part))?;
    let (fresh, mut encryption) = rewrap_like(original, row, catalog, keyring)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".recovering");
    let tmp = PathBuf::from(tmp);
    let out = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(FileError::at("creating", &tmp))?;
    segments::write_all(&out, &fresh, &plain).map_err(FileError::at("writing", &tmp))?;
    out.sync_all().map_err(FileError::at("writing", &tmp))?;
    let digest = segments::digest(&out, &fresh)?;
    std::fs::rename(&tmp, path).map_err(FileError::at("renaming", &tmp))?;
    std::fs::remove_file(part).map_err(FileError::at("removing", part))?;
    sync_dir(path);
    encryption.stored_sha256 = Some(digest.stored_sha256.clone());
    encryption.stored_size_bytes = Some(digest.stored_len);
    Ok(SealedRecovery {
        duration_ms,
        encryption,
        digest,
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
pub fn recover(catalog: &Catalog, events: &EventBus, keyring: &Keyring) -> RecoveryReport {
    let mut report = RecoveryReport::default();
    let rows = match catalog.unfinished() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "recovery could not read the catalog");
            return report;
        }
    };
    for row in rows {
        match recover_one(catalog, events, keyring, &row) {
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
    keyring: &Keyring,
    row: &RecordingRow,
) -> Result<bool, RecoveryError> {
    let now = rfc3339(unix_now());
    let Some(path) = row.path.as_ref().map(PathBuf::from) else {
        return Err(RecoveryError::NoPath);
    };
    let mut part = path.clone().into_os_string();
    part.push(".part");
    let part = PathBuf::from(part);
    let key = unfinished_key(row, keyring)?;
    let mut encryption = row.encryption.clone();
    let mut sealed_digest = None;
    let duration_ms = if let (true, Some(key)) = (part.exists(), key.as_ref()) {
        let r = recover_sealed(&part, &path, row, key, catalog, keyring)?;
        encryption = Some(r.encryption);
        sealed_digest = Some(r.digest);
        r.duration_ms
    } else if part.exists() {
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
    if let (None, Some(key)) = (&sealed_digest, key.as_ref()) {
        // Renamed into place before the crash: complete, and sealed with
        // the original key.
        let f = File::open(&path).map_err(FileError::at("reading", &path))?;
        let d = segments::digest(&f, key)?;
        if let Some(e) = encryption.as_mut() {
            e.stored_sha256 = Some(d.stored_sha256.clone());
            e.stored_size_bytes = Some(d.stored_len);
        }
        sealed_digest = Some(d);
    }
    let (size, sha) = match &sealed_digest {
        Some(d) => (d.plain_len, d.plain_sha256.clone()),
        None => (
            std::fs::metadata(&path)
                .map_err(FileError::at("reading", &path))?
                .len(),
            sha256_file(&path).map_err(FileError::at("checksumming", &path))?,
        ),
    };
    let mut sidecar = json!({
        "recording_id": row.recording_id, "call_id": row.call_id, "customer_id": row.customer_id,
        "reference_type": row.reference_type, "status": "completed", "format": row.format,
        "sample_rate": row.sample_rate, "channels": row.channels, "bitrate_kbps": row.bitrate_kbps,
        "participant": row.participant, "started_at": row.started_at, "stopped_at": row.stopped_at,
        "duration_ms": duration_ms, "file": path, "file_size_bytes": size,
        "checksum": {"algorithm": "sha256", "value": sha}, "recovered": true,
    });
    if let Some(e) = &encryption {
        sidecar["encryption"] = serde_json::to_value(e).unwrap_or_default();
    }
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
    done.encryption = encryption;
    done.recovery_key = None;
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
