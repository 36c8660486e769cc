//! What the catalog keeps for encryption at rest: the check value of each
//! key-encryption key (so a swapped key file is caught at start), tenants'
//! registered public keys, and the recordings' wrapped data keys (read and
//! rewritten by `recengine keys rewrap`).

use rusqlite::{OptionalExtension, params};

use super::{Catalog, CatalogError, RecordingRow, scope, to_json_column};
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

fn row_to_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<CustomerKeyRow> {
    Ok(CustomerKeyRow {
        customer_id: Some(r.get::<_, String>(0)?).filter(|c| !c.is_empty()),
        key_id: r.get(1)?,
        algorithm: r.get(2)?,
        public_key: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
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
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO encryption_keys (key_id, check_value, first_used_at) VALUES (?1, ?2, ?3)",
            params![key_id, check, now],
        )?;
        Ok(conn.query_row(
            "SELECT check_value FROM encryption_keys WHERE key_id = ?1",
            params![key_id],
            |r| r.get(0),
        )?)
    }

    /// Key-encryption key ids that wrap the data keys of recordings still
    /// stored (or of recordings being made), with how many each.
    pub fn kek_ids_in_use(&self) -> Result<Vec<(String, u64)>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT key_id, COUNT(*) FROM (
                 SELECT json_extract(encryption, '$.key_id') AS key_id FROM recordings
                  WHERE encryption IS NOT NULL AND deleted_at IS NULL
                    AND json_extract(encryption, '$.wrapping') = 'kek'
                 UNION ALL
                 SELECT json_extract(recovery_key, '$.key_id') FROM recordings
                  WHERE recovery_key IS NOT NULL)
             GROUP BY key_id ORDER BY key_id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every stored recording with a wrapped key (encrypted, not deleted).
    pub fn encrypted_recordings(&self) -> Result<Vec<RecordingRow>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {} FROM recordings
              WHERE (encryption IS NOT NULL AND deleted_at IS NULL) OR recovery_key IS NOT NULL
              ORDER BY customer_id, recording_id",
            super::COLUMNS
        ))?;
        let rows = stmt
            .query_map([], super::row_to_recording)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
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
        self.conn().execute(
            "UPDATE recordings SET encryption = ?3, recovery_key = ?4, info_json = COALESCE(?5, info_json)
              WHERE customer_id = ?1 AND recording_id = ?2",
            params![
                scope(customer_id),
                recording_id,
                to_json_column(encryption),
                to_json_column(recovery_key),
                info_json
            ],
        )?;
        Ok(())
    }

    /// Registers a tenant's public key as its only active one (earlier
    /// keys are revoked). Registering the active key again changes nothing.
    pub fn register_customer_key(&self, k: &CustomerKeyRow) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE customer_keys SET revoked_at = ?3
              WHERE customer_id = ?1 AND key_id <> ?2 AND revoked_at IS NULL",
            params![scope(k.customer_id.as_deref()), k.key_id, k.created_at],
        )?;
        tx.execute(
            "INSERT INTO customer_keys (customer_id, key_id, algorithm, public_key, created_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, NULL)
             ON CONFLICT(customer_id, key_id) DO UPDATE SET revoked_at = NULL",
            params![
                scope(k.customer_id.as_deref()),
                k.key_id,
                k.algorithm,
                k.public_key,
                k.created_at
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The tenant's active public key, if any.
    pub fn active_customer_key(
        &self,
        customer_id: Option<&str>,
    ) -> Result<Option<CustomerKeyRow>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM customer_keys
                      WHERE customer_id = ?1 AND revoked_at IS NULL
                      ORDER BY created_at DESC LIMIT 1"
                ),
                params![scope(customer_id)],
                row_to_key,
            )
            .optional()?)
    }

    /// The tenant's keys, newest first.
    pub fn customer_keys(
        &self,
        customer_id: Option<&str>,
    ) -> Result<Vec<CustomerKeyRow>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {KEY_COLUMNS} FROM customer_keys WHERE customer_id = ?1
              ORDER BY created_at DESC, key_id"
        ))?;
        let rows = stmt
            .query_map(params![scope(customer_id)], row_to_key)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Revokes one of the tenant's keys; its row, or `None` if it has none
    /// with this id.
    pub fn revoke_customer_key(
        &self,
        customer_id: Option<&str>,
        key_id: &str,
        now: &str,
    ) -> Result<Option<CustomerKeyRow>, CatalogError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE customer_keys SET revoked_at = ?3
              WHERE customer_id = ?1 AND key_id = ?2 AND revoked_at IS NULL",
            params![scope(customer_id), key_id, now],
        )?;
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM customer_keys WHERE customer_id = ?1 AND key_id = ?2"
                ),
                params![scope(customer_id), key_id],
                row_to_key,
            )
            .optional()?)
    }
}
