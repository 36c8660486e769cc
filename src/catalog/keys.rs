//! What the catalog keeps for encryption at rest: the check value of each
//! key-encryption key (so a swapped key file is caught at start), tenants'
//! registered public keys, and the recordings' wrapped data keys (read and
//! rewritten by `recengine keys rewrap`).

use super::db::{Row, args};
use super::{Catalog, CatalogError, RecordingRow, all, scope, to_json_column};
use crate::encryption::EncryptionInfo;

/// A tenant's registered public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerKeyRow {
    pub customer_id: Option<String>,
    pub key_id: String,
    /// `x25519` or `rsa-oaep-sha256`.
    pub algorithm: String,
    /// PEM (SubjectPublicKeyInfo).
    pub public_key: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

const KEY_COLUMNS: &str = "customer_id, key_id, algorithm, public_key, created_at, revoked_at";

fn row_to_key(r: &Row) -> Result<CustomerKeyRow, CatalogError> {
    Ok(CustomerKeyRow {
        customer_id: Some(r.get::<String>(0)?).filter(|c| !c.is_empty()),
        key_id: r.get(1)?,
        algorithm: r.get(2)?,
        public_key: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

/// The `key_id` of a wrapped key stored as JSON, if wrapped by a KEK
/// (`only_kek`) or at all.
fn kek_of(json: Option<String>, only_kek: bool) -> Option<String> {
    let info: EncryptionInfo = serde_json::from_str(&json?).ok()?;
    (!only_kek || info.wrapping == crate::encryption::Wrapping::Kek).then_some(info.key_id)
}

impl Catalog {
    /// The check value recorded for key `key_id`, recording `check` if
    /// there is none yet. Returns the stored value.
    pub fn key_check_value(
        &self,
        key_id: &str,
        check: &str,
        now: &str,
    ) -> Result<String, CatalogError> {
        self.run(|db| {
            db.execute(
                "INSERT INTO encryption_keys (key_id, check_value, first_used_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                args![key_id, check, now],
            )?;
            db.query_one(
                "SELECT check_value FROM encryption_keys WHERE key_id = ?1",
                args![key_id],
            )?
            .get(0)
        })
    }

    /// Key-encryption key ids that wrap the data keys of recordings still
    /// stored (or of recordings being made), with how many each.
    pub fn kek_ids_in_use(&self) -> Result<Vec<(String, u64)>, CatalogError> {
        let rows = self.run(|db| {
            db.query(
                "SELECT encryption, recovery_key, deleted_at FROM recordings
                  WHERE encryption IS NOT NULL OR recovery_key IS NOT NULL",
                &[],
            )
        })?;
        let mut counts = std::collections::BTreeMap::<String, u64>::new();
        for r in rows {
            let deleted = r.get::<Option<String>>(2)?.is_some();
            let sealed = if deleted {
                None
            } else {
                kek_of(r.get(0)?, true)
            };
            for id in sealed.into_iter().chain(kek_of(r.get(1)?, false)) {
                *counts.entry(id).or_default() += 1;
            }
        }
        Ok(counts.into_iter().collect())
    }

    /// Every stored recording with a wrapped key (encrypted, not deleted).
    pub fn encrypted_recordings(&self) -> Result<Vec<RecordingRow>, CatalogError> {
        let rows = self.run(|db| {
            db.query(
                &format!(
                    "SELECT {} FROM recordings
                      WHERE (encryption IS NOT NULL AND deleted_at IS NULL) OR recovery_key IS NOT NULL
                      ORDER BY customer_id, recording_id",
                    super::COLUMNS
                ),
                &[],
            )
        })?;
        all(rows, super::row_to_recording)
    }

    /// Replaces a recording's wrapped keys (and its info JSON, which
    /// carries the same `encryption`).
    pub fn set_wrapped_keys(
        &self,
        customer_id: Option<&str>,
        recording_id: &str,
        encryption: &Option<EncryptionInfo>,
        recovery_key: &Option<EncryptionInfo>,
        info_json: Option<&str>,
    ) -> Result<(), CatalogError> {
        self.run(|db| {
            db.execute(
                "UPDATE recordings SET encryption = ?3, recovery_key = ?4, info_json = COALESCE(?5, info_json)
                  WHERE customer_id = ?1 AND recording_id = ?2",
                args![
                    scope(customer_id),
                    recording_id,
                    to_json_column(encryption),
                    to_json_column(recovery_key),
                    info_json
                ],
            )
        })?;
        Ok(())
    }

    /// Registers a tenant's public key as its only active one (earlier
    /// keys are revoked). Registering the active key again changes nothing.
    pub fn register_customer_key(&self, k: &CustomerKeyRow) -> Result<(), CatalogError> {
        self.tx(|db| {
            db.execute(
                "UPDATE customer_keys SET revoked_at = ?3
                  WHERE customer_id = ?1 AND key_id <> ?2 AND revoked_at IS NULL",
                args![scope(k.customer_id.as_deref()), &k.key_id, &k.created_at],
            )?;
            db.execute(
                "INSERT INTO customer_keys (customer_id, key_id, algorithm, public_key, created_at, revoked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, NULL)
                 ON CONFLICT(customer_id, key_id) DO UPDATE SET revoked_at = NULL",
                args![
                    scope(k.customer_id.as_deref()),
                    &k.key_id,
                    &k.algorithm,
                    &k.public_key,
                    &k.created_at
                ],
            )?;
            Ok(())
        })
    }

    /// The tenant's active public key, if any.
    pub fn active_customer_key(
        &self,
        customer_id: Option<&str>,
    ) -> Result<Option<CustomerKeyRow>, CatalogError> {
        self.run(|db| {
            db.query_opt(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM customer_keys
                      WHERE customer_id = ?1 AND revoked_at IS NULL
                      ORDER BY created_at DESC LIMIT 1"
                ),
                args![scope(customer_id)],
            )?
            .as_ref()
            .map(row_to_key)
            .transpose()
        })
    }

    /// The tenant's keys, newest first.
    pub fn customer_keys(
        &self,
        customer_id: Option<&str>,
    ) -> Result<Vec<CustomerKeyRow>, CatalogError> {
        let rows = self.run(|db| {
            db.query(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM customer_keys WHERE customer_id = ?1
                      ORDER BY created_at DESC, key_id"
                ),
                args![scope(customer_id)],
            )
        })?;
        all(rows, row_to_key)
    }

    /// Revokes one of the tenant's keys; its row, or `None` if it has none
    /// with this id.
    pub fn revoke_customer_key(
        &self,
        customer_id: Option<&str>,
        key_id: &str,
        now: &str,
    ) -> Result<Option<CustomerKeyRow>, CatalogError> {
        self.run(|db| {
            db.execute(
                "UPDATE customer_keys SET revoked_at = ?3
                  WHERE customer_id = ?1 AND key_id = ?2 AND revoked_at IS NULL",
                args![scope(customer_id), key_id, now],
            )?;
            db.query_opt(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM customer_keys WHERE customer_id = ?1 AND key_id = ?2"
                ),
                args![scope(customer_id), key_id],
            )?
            .as_ref()
            .map(row_to_key)
            .transpose()
        })
    }
}
