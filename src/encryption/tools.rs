//! The key commands: `recengine keys rewrap` (every stored data key moved
//! to the current key-encryption key; the audio is not touched) and
//! `recengine decrypt` (a recording file opened offline, with a customer's
//! private key or the operator's keys).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::customer::CustomerPrivateKey;
use super::{EncryptionInfo, Keyring, KeyringError, segments};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::crypto::hex;
use crate::recording::RecordingStatus;

/// What `recengine keys rewrap` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RewrapReport {
    /// The key everything is wrapped with now.
    pub key_id: String,
    pub rewrapped: u64,
    pub already_current: u64,
    /// Wrapped for a customer's own key: not the operator's to move.
    pub customer_held: u64,
    /// Still being recorded: they finish under the key they started with;
    /// run rewrap again afterwards.
    pub in_progress: Vec<String>,
    pub failed: Vec<(String, String)>,
}

/// Why a key command could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Key(#[from] KeyringError),
    #[error("catalog: {0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(
        "storage.encryption must be enabled with key_id naming the key to rewrap to (it is {0:?})"
    )]
    NoCurrentKey(String),
    #[error("{0}")]
    Decrypt(String),
}

/// Rewraps every stored recording's data key to the current KEK.
pub fn rewrap(cfg: &Config) -> Result<RewrapReport, ToolError> {
    let keyring = Keyring::load(&cfg.storage.encryption)?;
    let Some(current) = keyring.current_id().map(str::to_owned) else {
        return Err(ToolError::NoCurrentKey(
            cfg.storage.encryption.key_id.clone(),
        ));
    };
    let catalog = Catalog::open_configured(&cfg.catalog, &PathBuf::from(&cfg.storage.dir))?;
    // A swapped key file is refused here too; a key no longer configured is
    // what rewrap cannot help with (it needs the old key to unwrap).
    crate::engine::encryption::check_keys(&keyring, &catalog)?;
    let mut report = RewrapReport {
        key_id: current,
        ..RewrapReport::default()
    };
    for row in catalog.encrypted_recordings()? {
        let name = match &row.customer_id {
            Some(c) => format!("{c}/{}", row.recording_id),
            None => row.recording_id.clone(),
        };
        if matches!(
            row.status,
            RecordingStatus::Recording | RecordingStatus::Paused | RecordingStatus::Processing
        ) {
            report.in_progress.push(name);
            continue;
        }
        let Some(enc) = &row.encryption else {
            continue;
        };
        if enc.wrapping.is_customer() {
            report.customer_held += 1;
            continue;
        }
        let next = match keyring.rewrap(enc) {
            Ok(Some(next)) => next,
            Ok(None) => {
                report.already_current += 1;
                continue;
            }
            Err(e) => {
                report.failed.push((name, e.to_string()));
                continue;
            }
        };
        let info_json = row.info_json.as_deref().and_then(|j| {
            let mut v: Value = serde_json::from_str(j).ok()?;
            v["encryption"] = serde_json::to_value(&next).ok()?;
            Some(v.to_string())
        });
        // The sidecar first: until the catalog follows, both wrappings are
        // valid (the old key is still configured).
        if let Some(path) = &row.path {
            let sidecar = Path::new(path).with_extension("json");
            if let Err(e) = rewrite_sidecar(&sidecar, &next) {
                report
                    .failed
                    .push((name, format!("sidecar {}: {e}", sidecar.display())));
                continue;
            }
        }
        catalog.set_wrapped_keys(
            row.customer_id.as_deref(),
            &row.recording_id,
            &Some(next),
            &None,
            info_json.as_deref(),
        )?;
        report.rewrapped += 1;
    }
    Ok(report)
}

fn rewrite_sidecar(path: &Path, enc: &EncryptionInfo) -> std::io::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut v: Value = serde_json::from_str(&text).map_err(std::io::Error::other)?;
    v["encryption"] = serde_json::to_value(enc).map_err(std::io::Error::other)?;
    crate::io::sink::write_sidecar(path, &v)
}

/// The `encryption` object in a JSON document: a sidecar or a recording's
/// detail (which carry it as `encryption`), or the object itself (the
/// `Recengine-Encryption` header of a download).
pub fn encryption_info_from_json(text: &str) -> Result<EncryptionInfo, ToolError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| ToolError::Decrypt(format!("the encryption info is not JSON: {e}")))?;
    let obj = v.get("encryption").cloned().unwrap_or(v);
    if obj.is_null() {
        return Err(ToolError::Decrypt(
            "the JSON says the recording is not encrypted (no \"encryption\")".into(),
        ));
    }
    serde_json::from_value(obj).map_err(|e| {
        ToolError::Decrypt(format!(
            "no usable \"encryption\" object (scheme, wrapping, key_id, wrapped_key): {e}"
        ))
    })
}

/// Where a file's encryption info is found when not given: its sidecar
/// (`rec-1.wav` → `rec-1.json`; a download `rec-1.wav.enc` → `rec-1.json`).
pub fn sidecar_of(file: &Path) -> PathBuf {
    let stem = match file.extension().and_then(|e| e.to_str()) {
        Some("enc") => file.with_extension(""),
        _ => file.to_path_buf(),
    };
    stem.with_extension("json")
}

/// What opens the data key.
pub enum Opener {
    /// A customer's private key (PEM).
    Customer(CustomerPrivateKey),
    /// The operator's key-encryption keys.
    Operator(Keyring),
}

/// Decrypts `file` into `out`; returns the plaintext's length and SHA-256
/// (compare it with the recording's `checksum`).
pub fn decrypt(
    file: &Path,
    info: &EncryptionInfo,
    opener: &Opener,
    out: &mut impl Write,
) -> Result<(u64, String), ToolError> {
    if info.scheme != segments::SCHEME {
        return Err(ToolError::Decrypt(format!(
            "scheme {:?} is not one this version reads ({})",
            info.scheme,
            segments::SCHEME
        )));
    }
    let key = match opener {
        Opener::Customer(k) => k
            .unwrap(info)
            .map_err(|e| ToolError::Decrypt(e.to_string()))?,
        Opener::Operator(ring) => ring.unwrap(info)?,
    };
    let f = File::open(file).map_err(|e| ToolError::Decrypt(format!("{}: {e}", file.display())))?;
    let reader = segments::SealedReader::open(&f, &key)
        .map_err(|e| ToolError::Decrypt(format!("{}: {e}", file.display())))?;
    let mut hash = Sha256::new();
    // Segment by segment; an altered segment stops the output there, and
    // the error says which.
    reader
        .read_range(&f, 0, reader.plain_len(), |chunk| {
            hash.update(chunk);
            out.write_all(chunk)
        })
        .map_err(|e| ToolError::Decrypt(format!("{}: {e}", file.display())))?;
    out.flush()
        .map_err(|e| ToolError::Decrypt(format!("writing the output: {e}")))?;
    Ok((reader.plain_len(), hex(&hash.finalize())))
}
