//! The operator's key-encryption keys (KEKs): loaded from key files at
//! start (each checked for length and permissions, named by its id in every
//! error), used to wrap each recording's data key with AES-256-GCM, and to
//! unwrap it for downloads, recovery and `recengine keys rewrap`.
//!
//! A key's *check value* (HMAC-SHA256 of a fixed label under the key) is
//! kept in the catalog the first time the key is used, so a key file
//! swapped for another with the same id is refused at start rather than
//! discovered at the first download.

use std::io;
use std::path::{Path, PathBuf};

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use zeroize::Zeroizing;

use super::{DataKey, EncryptionInfo, Wrapping, b64, segments, unb64};
use crate::config::EncryptionSection;

const WRAP_LABEL: &[u8] = b"recengine data key v1\0";
const CHECK_LABEL: &[u8] = b"recengine key check v1";

/// Why the keys could not be loaded or a data key not unwrapped.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("encryption key {id:?}: cannot read {path}: {source}")]
    Unreadable {
        id: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "encryption key {id:?}: {path} can be read by group or others (mode {mode:04o}); `chmod 600` it"
    )]
    TooOpen {
        id: String,
        path: PathBuf,
        mode: u32,
    },
    #[error(
        "encryption key {id:?}: {path} holds {len} bytes; a key file holds 32 random bytes (or 64 hex digits): `recengine keys generate {path}`"
    )]
    BadLength {
        id: String,
        path: PathBuf,
        len: usize,
    },
    #[error("storage.encryption.key_id {0:?} names no [[storage.encryption.keys]] entry")]
    UnknownCurrent(String),
    #[error(
        "storage.encryption.enabled is true but no key is configured: add [[storage.encryption.keys]] and set storage.encryption.key_id"
    )]
    NoKey,
    #[error(
        "encryption key {id:?}: {path} is not the key this catalog's recordings were wrapped with (its check value differs); restore the right file"
    )]
    WrongKey { id: String, path: PathBuf },
    #[error(
        "{count} stored recording(s) have data keys wrapped by key {id:?}, which is not configured: add it to [[storage.encryption.keys]] (keep it until `recengine keys rewrap` has moved them)"
    )]
    Missing { id: String, count: u64 },
    #[error("the data key is wrapped by key {0:?}, which is not configured")]
    NotConfigured(String),
    #[error(
        "the data key wrapped by key {0:?} does not open: it was altered, or the key file is not the one it was wrapped with"
    )]
    Unwrap(String),
    #[error(
        "the recording's data key is wrapped for the customer's own key {0:?}: only its holder can decrypt (`recengine decrypt`)"
    )]
    CustomerHeld(String),
    #[error(transparent)]
    Random(io::Error),
    /// The catalog, where key check values and wrapped keys are kept,
    /// could not be read or written.
    #[error("catalog: {0}")]
    Catalog(String),
}

struct Kek {
    id: String,
    path: PathBuf,
    key: Zeroizing<[u8; 32]>,
}

/// The configured key-encryption keys.
pub struct Keyring {
    keys: Vec<Kek>,
    /// The key new recordings are wrapped with; `None` when encryption is
    /// off (existing encrypted recordings are still readable).
    current: Option<usize>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.ids())
            .field("current", &self.current_id())
            .finish()
    }
}

/// Reads a key file: 32 raw bytes, or 64 hex digits (whitespace around
/// them allowed). Refuses files other users could read.
pub fn read_key_file(id: &str, path: &Path) -> Result<Zeroizing<[u8; 32]>, KeyringError> {
    let unreadable = |source| KeyringError::Unreadable {
        id: id.to_owned(),
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyringError::TooOpen {
                id: id.to_owned(),
                path: path.to_owned(),
                mode,
            });
        }
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(unreadable)?);
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() == 32 {
        key.copy_from_slice(&bytes);
        return Ok(key);
    }
    let text = std::str::from_utf8(&bytes).map(str::trim).unwrap_or("");
    let bad = || KeyringError::BadLength {
        id: id.to_owned(),
        path: path.to_owned(),
        len: bytes.len(),
    };
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| bad())?;
        key[i] = u8::from_str_radix(s, 16).map_err(|_| bad())?;
    }
    Ok(key)
}

/// Writes a new random key file (mode 0600); refuses to overwrite one.
pub fn generate_key_file(path: &Path) -> io::Result<()> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut()).map_err(io::Error::other)?;
    write_new_file(path, key.as_ref(), 0o600)
}

/// Writes `bytes` to a new file of `mode` (never over an existing one),
/// synced: for key material.
pub(crate) fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

impl Keyring {
    /// A keyring with no keys: nothing is encrypted, nothing encrypted can
    /// be read.
    pub fn empty() -> Self {
        Self {
            keys: Vec::new(),
            current: None,
        }
    }

    /// Loads every configured key (config validation has already checked
    /// ids and the current key's presence).
    pub fn load(cfg: &EncryptionSection) -> Result<Self, KeyringError> {
        let mut keys = Vec::new();
        for k in &cfg.keys {
            let path = PathBuf::from(&k.file);
            let key = read_key_file(&k.id, &path)?;
            keys.push(Kek {
                id: k.id.clone(),
                path,
                key,
            });
        }
        let current = if cfg.enabled {
            if cfg.key_id.is_empty() && keys.is_empty() {
                return Err(KeyringError::NoKey);
            }
            Some(
                keys.iter()
                    .position(|k| k.id == cfg.key_id)
                    .ok_or_else(|| KeyringError::UnknownCurrent(cfg.key_id.clone()))?,
            )
        } else {
            None
        };
        Ok(Self { keys, current })
    }

    /// Whether new recordings are encrypted.
    pub fn encrypting(&self) -> bool {
        self.current.is_some()
    }

    /// The key new recordings are wrapped with.
    pub fn current_id(&self) -> Option<&str> {
        self.current.map(|i| self.keys[i].id.as_str())
    }

    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    fn key(&self, id: &str) -> Option<&Kek> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Each key's id, file and check value (for the catalog's record of
    /// which key is which).
    pub fn check_values(&self) -> Vec<(String, PathBuf, String)> {
        self.keys
            .iter()
            .map(|k| {
                let mac = crate::crypto::hmac_sha256(k.key.as_ref(), CHECK_LABEL);
                (k.id.clone(), k.path.clone(), crate::crypto::hex(&mac[..16]))
            })
            .collect()
    }

    /// Wraps `key` under KEK `id`.
    pub fn wrap(&self, key: &DataKey, id: &str) -> Result<EncryptionInfo, KeyringError> {
        let kek = self
            .key(id)
            .ok_or_else(|| KeyringError::NotConfigured(id.to_owned()))?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| KeyringError::Random(io::Error::other(e)))?;
        let cipher = Aes256Gcm::new(&(*kek.key).into());
        let aad = [WRAP_LABEL, id.as_bytes()].concat();
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                aes_gcm::aead::Payload {
                    msg: key.bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| KeyringError::Unwrap(id.to_owned()))?;
        Ok(EncryptionInfo {
            scheme: segments::SCHEME.into(),
            wrapping: Wrapping::Kek,
            key_id: id.to_owned(),
            wrapped_key: b64(&[&nonce[..], &sealed].concat()),
            stored_sha256: None,
            stored_size_bytes: None,
        })
    }

    /// A fresh data key, wrapped under the current KEK.
    pub fn new_data_key(&self) -> Result<Option<(DataKey, EncryptionInfo)>, KeyringError> {
        let Some(id) = self.current_id() else {
            return Ok(None);
        };
        let key = DataKey::generate().map_err(KeyringError::Random)?;
        let info = self.wrap(&key, id)?;
        Ok(Some((key, info)))
    }

    /// Unwraps a recording's data key.
    pub fn unwrap(&self, info: &EncryptionInfo) -> Result<DataKey, KeyringError> {
        if info.wrapping.is_customer() {
            return Err(KeyringError::CustomerHeld(info.key_id.clone()));
        }
        let kek = self
            .key(&info.key_id)
            .ok_or_else(|| KeyringError::NotConfigured(info.key_id.clone()))?;
        let bad = || KeyringError::Unwrap(info.key_id.clone());
        let wrapped = unb64(&info.wrapped_key).ok_or_else(bad)?;
        if wrapped.len() != 12 + 32 + 16 {
            return Err(bad());
        }
        let cipher = Aes256Gcm::new(&(*kek.key).into());
        let aad = [WRAP_LABEL, info.key_id.as_bytes()].concat();
        let nonce = Nonce::try_from(&wrapped[..12]).map_err(|_| bad())?;
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    &nonce,
                    aes_gcm::aead::Payload {
                        msg: &wrapped[12..],
                        aad: &aad,
                    },
                )
                .map_err(|_| bad())?,
        );
        DataKey::from_slice(&plain).ok_or_else(bad)
    }

    /// Rewraps a KEK-wrapped data key under the current KEK (the audio is
    /// not touched). `None` if it already is, or is customer-held.
    pub fn rewrap(&self, info: &EncryptionInfo) -> Result<Option<EncryptionInfo>, KeyringError> {
        let Some(current) = self.current_id() else {
            return Ok(None);
        };
        if info.wrapping.is_customer() || info.key_id == current {
            return Ok(None);
        }
        let key = self.unwrap(info)?;
        let mut next = self.wrap(&key, current)?;
        next.stored_sha256 = info.stored_sha256.clone();
        next.stored_size_bytes = info.stored_size_bytes;
        Ok(Some(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KekEntry;
    use std::os::unix::fs::PermissionsExt;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("recengine-keyring-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn section(enabled: bool, current: &str, keys: &[(&str, &Path)]) -> EncryptionSection {
        EncryptionSection {
            enabled,
            key_id: current.into(),
            keys: keys
                .iter()
                .map(|(id, p)| KekEntry {
                    id: (*id).into(),
                    file: p.to_string_lossy().into_owned(),
                })
                .collect(),
        }
    }

    #[test]
    fn key_files_are_checked_and_keys_wrap_unwrap_and_rewrap() {
        let d = dir();
        let (a, b) = (d.join("a.key"), d.join("b.key"));
        generate_key_file(&a).unwrap();
        std::fs::write(&b, format!("{}\n", "ab".repeat(32))).unwrap();
        std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Keyring::load(&section(true, "b", &[("b", &b)])).unwrap_err();
        assert!(err.to_string().contains("\"b\"") && err.to_string().contains("chmod"));
        std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o400)).unwrap();
        let old = Keyring::load(&section(true, "a", &[("a", &a), ("b", &b)])).unwrap();
        let (key, info) = old.new_data_key().unwrap().unwrap();
        assert_eq!(info.key_id, "a");
        assert!(!info.wrapped_key.contains(&b64(key.bytes())));
        assert_eq!(old.unwrap(&info).unwrap().bytes(), key.bytes());
        // Rotate: b is current now; rewrap moves the data key to b.
        let new = Keyring::load(&section(true, "b", &[("a", &a), ("b", &b)])).unwrap();
        let moved = new.rewrap(&info).unwrap().unwrap();
        assert_eq!(moved.key_id, "b");
        assert_eq!(new.unwrap(&moved).unwrap().bytes(), key.bytes());
        assert!(new.rewrap(&moved).unwrap().is_none());
        // The wrong key under the right id does not open it.
        let wrong = d.join("wrong.key");
        generate_key_file(&wrong).unwrap();
        let swapped = Keyring::load(&section(true, "a", &[("a", &wrong)])).unwrap();
        assert!(matches!(
            swapped.unwrap(&info),
            Err(KeyringError::Unwrap(_))
        ));
        assert_ne!(swapped.check_values()[0].2, old.check_values()[0].2);
        // A missing file and a short one are named.
        let gone = Keyring::load(&section(true, "x", &[("x", &d.join("nope"))])).unwrap_err();
        assert!(gone.to_string().contains("\"x\""), "{gone}");
        let short = d.join("short.key");
        std::fs::write(&short, b"0123").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = Keyring::load(&section(true, "s", &[("s", &short)])).unwrap_err();
        assert!(matches!(e, KeyringError::BadLength { len: 4, .. }), "{e}");
        assert!(generate_key_file(&a).is_err(), "never overwrites a key");
    }
}
