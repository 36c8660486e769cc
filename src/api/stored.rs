//! A stored recording opened for a download: a plain file read as it is;
//! an encrypted one decrypted on the fly, segment by segment (a byte range
//! decrypts only the segments it touches, each authenticated before a
//! byte of it is sent); a customer-held one served as stored (ciphertext),
//! with the wrapped data key in the answer's headers for `recengine
//! decrypt`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use axum::http::HeaderValue;

use super::error::{ApiError, ErrorCode};
use crate::catalog::RecordingRow;
use crate::config::Format;
use crate::encryption::segments::SEGMENT_SIZE;
use crate::encryption::{EncryptionInfo, Keyring, SealedReader};

/// How a stored recording is read.
pub(super) enum Stored {
    Plain {
        file: File,
        size: u64,
    },
    /// Decrypted for the caller.
    Sealed {
        file: File,
        reader: Box<SealedReader>,
    },
    /// Only the customer's private key opens it: sent as stored.
    CustomerHeld {
        file: File,
        size: u64,
        info: Box<EncryptionInfo>,
    },
}

fn corrupt(row: &RecordingRow, e: impl std::fmt::Display) -> ApiError {
    tracing::error!(recording = %row.recording_id, customer = ?row.customer_id, error = %e,
        "a stored recording could not be decrypted");
    ApiError::new(
        ErrorCode::FileCorrupt,
        format!(
            "the stored recording failed its integrity check and is not served: {e}. Tell the operator"
        ),
    )
}

impl Stored {
    /// Opens `row`'s file at `path`.
    pub(super) fn open(
        keyring: &Keyring,
        row: &RecordingRow,
        path: &str,
    ) -> Result<Self, ApiError> {
        let file = File::open(path).map_err(|e| {
            tracing::error!(file = %path, error = %e, "catalogued recording file missing");
            ApiError::new(
                ErrorCode::FileMissing,
                "the recording's file is missing from storage",
            )
        })?;
        let stored_size = file.metadata().map(|m| m.len()).unwrap_or(0);
        match &row.encryption {
            None => Ok(Self::Plain {
                file,
                size: stored_size,
            }),
            Some(info) if info.wrapping.is_customer() => Ok(Self::CustomerHeld {
                file,
                size: stored_size,
                info: Box::new(info.clone()),
            }),
            Some(info) => {
                let key = keyring.unwrap(info).map_err(|e| corrupt(row, e))?;
                let reader = SealedReader::open(&file, &key).map_err(|e| corrupt(row, e))?;
                Ok(Self::Sealed {
                    file,
                    reader: Box::new(reader),
                })
            }
        }
    }

    /// Bytes a full download has.
    pub(super) fn size(&self) -> u64 {
        match self {
            Self::Plain { size, .. } | Self::CustomerHeld { size, .. } => *size,
            Self::Sealed { reader, .. } => reader.plain_len(),
        }
    }

    /// Whether the caller gets audio the server decrypted.
    pub(super) fn decrypts(&self) -> bool {
        matches!(self, Self::Sealed { .. })
    }

    /// The ETag: the SHA-256 of what is sent (the recording's checksum, or
    /// for customer-held recordings the stored ciphertext's).
    pub(super) fn etag(&self, row: &RecordingRow) -> String {
        let sha = match self {
            Self::CustomerHeld { info, .. } => info.stored_sha256.clone().unwrap_or_default(),
            _ => row.checksum.clone().unwrap_or_default(),
        };
        format!("\"{sha}\"")
    }

    pub(super) fn content_type(&self, row: &RecordingRow) -> &'static str {
        match self {
            Self::CustomerHeld { .. } => "application/octet-stream",
            _ => Format::content_type_of(&row.format),
        }
    }

    pub(super) fn filename(&self, row: &RecordingRow) -> String {
        match self {
            Self::CustomerHeld { .. } => format!("{}.{}.enc", row.recording_id, row.format),
            _ => format!("{}.{}", row.recording_id, row.format),
        }
    }

    /// Extra answer headers: for customer-held recordings, how the data
    /// key is wrapped and the wrapped key itself.
    pub(super) fn headers(&self) -> Vec<(&'static str, HeaderValue)> {
        let Self::CustomerHeld { info, .. } = self else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let json = serde_json::to_string(info.as_ref()).unwrap_or_default();
        if let Ok(v) = HeaderValue::from_str(&json) {
            out.push(("recengine-encryption", v));
        }
        out
    }

    /// Up to `max` bytes from `at` (for a sealed file: at most to the end
    /// of the segment `at` is in).
    pub(super) fn read_chunk(&self, at: u64, max: usize) -> io::Result<Vec<u8>> {
        match self {
            Self::Plain { file, .. } | Self::CustomerHeld { file, .. } => {
                let mut buf = vec![0u8; max];
                let n = file.read_at(&mut buf, at)?;
                buf.truncate(n);
                Ok(buf)
            }
            Self::Sealed { file, reader } => {
                // One segment at most: the rest of the one `at` is in.
                let segment = SEGMENT_SIZE as u64;
                let len = (max as u64).min(segment - at % segment);
                let mut out = Vec::with_capacity(len as usize);
                reader.read_range(file, at, len, |b| {
                    out.extend_from_slice(b);
                    Ok(())
                })?;
                Ok(out)
            }
        }
    }
}
