//! Encryption at rest (`[storage.encryption]`).
//!
//! Every recording file is sealed under its own random 256-bit **data key**
//! ([`segments`]: AES-256-GCM in 16 KiB segments). The data key is stored
//! only wrapped: by the operator's **key-encryption key** ([`keyring`],
//! from key files, with ids so keys rotate), or, for a tenant that
//! registered a public key, for that key alone ([`customer`]: HPKE X25519
//! or RSA-OAEP-SHA256), so only the customer can listen. The wrapped key
//! and its key id live in the sidecar and the catalog ([`EncryptionInfo`]);
//! plain keys live in memory only while in use and are zeroized.

pub mod cli;
pub mod customer;
pub mod keyring;
pub mod segments;
pub mod tools;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use keyring::{Keyring, KeyringError};
pub use segments::{SealError, SealedReader, SealedWriter};

/// A recording's data key: 32 random bytes, zeroized when dropped.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> std::io::Result<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        getrandom::fill(k.as_mut()).map_err(std::io::Error::other)?;
        Ok(Self(k))
    }

    /// A key from its 32 bytes (an unwrapped data key).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return None;
        }
        k.copy_from_slice(bytes);
        Some(Self(k))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Who can unwrap a recording's data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Wrapping {
    /// The operator's key-encryption key `key_id` (AES-256-GCM key wrap):
    /// the daemon decrypts downloads on the fly.
    Kek,
    /// The tenant's X25519 public key `key_id` (HPKE, RFC 9180:
    /// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM): only the
    /// holder of the private key can decrypt (`recengine decrypt`).
    CustomerX25519,
    /// The tenant's RSA public key `key_id` (RSA-OAEP with SHA-256 and
    /// MGF1-SHA-256): only the holder of the private key can decrypt.
    CustomerRsaOaepSha256,
}

impl Wrapping {
    pub fn is_customer(self) -> bool {
        !matches!(self, Wrapping::Kek)
    }
}

/// How a recording is encrypted: stored in its sidecar and catalog row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EncryptionInfo {
    /// The file format: `aes-256-gcm-segmented-v1`.
    pub scheme: String,
    pub wrapping: Wrapping,
    /// The key-encryption key's id, or the customer key's id.
    pub key_id: String,
    /// The wrapped data key, base64 (absent once the recording is
    /// deleted: the key is destroyed with the file).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub wrapped_key: String,
    /// SHA-256 (hex) of the bytes stored (the ciphertext), so storage
    /// corruption is told apart from a bad download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_sha256: Option<String>,
    /// Bytes stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_size_bytes: Option<u64>,
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64ct::Encoding;
    base64ct::Base64::encode_string(bytes)
}

pub(crate) fn unb64(text: &str) -> Option<Vec<u8>> {
    use base64ct::Encoding;
    base64ct::Base64::decode_vec(text.trim()).ok()
}
