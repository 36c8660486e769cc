//! The control plane's side of encryption at rest: which key seals a new
//! recording (the tenant's registered public key, else the operator's
//! current key-encryption key), tenants' public keys (register, list,
//! revoke), and the start-up check that the configured keys are the ones
//! the catalog's recordings need.

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::catalog::keys::CustomerKeyRow;
use crate::encryption::customer::{CustomerKeyError, parse_public_key};
use crate::encryption::{DataKey, EncryptionInfo, Keyring, KeyringError};
use crate::timefmt::{rfc3339, unix_now};

use super::access::Principal;
use super::validate::check_id;
use super::{Engine, EngineError};

/// `POST /v1/encryption-keys`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerKeyRequest {
    /// A PEM public key (`-----BEGIN PUBLIC KEY-----`): X25519, or RSA of
    /// at least 2048 bits (`openssl genpkey -algorithm X25519 -out k.pem;
    /// openssl pkey -in k.pem -pubout`, or `recengine keys
    /// customer-keypair`).
    #[schema(max_length = 8192)]
    pub public_key: String,
}

/// A tenant's registered public key.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CustomerKey {
    /// `ck-` and the start of the SHA-256 of the key (the same key always
    /// has the same id).
    pub key_id: String,
    /// `x25519` or `rsa-oaep-sha256`.
    pub algorithm: String,
    pub public_key: String,
    /// Whether new recordings are wrapped for it (the newest registered
    /// key, until revoked).
    pub active: bool,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl From<CustomerKeyRow> for CustomerKey {
    fn from(r: CustomerKeyRow) -> Self {
        Self {
            key_id: r.key_id,
            algorithm: r.algorithm,
            public_key: r.public_key,
            active: r.revoked_at.is_none(),
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// A new recording's data key and how it is stored.
pub struct NewDataKey {
    pub key: DataKey,
    pub encryption: EncryptionInfo,
    /// For a customer-held key: the same data key under the operator's key,
    /// kept only while recording (crash recovery).
    pub recovery_key: Option<EncryptionInfo>,
}

const MAX_PUBLIC_KEY: usize = 8 * 1024;

fn internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(e.to_string())
}

fn key_error(e: KeyringError) -> EngineError {
    tracing::error!(error = %e, "could not wrap a data key");
    EngineError::Internal(e.to_string())
}

/// Checks the configured keys against what the catalog's recordings need:
/// a key file swapped under an id already used, or a key id still wrapping
/// stored recordings but no longer configured, stops the start with an
/// error naming the key.
pub fn check_keys(keyring: &Keyring, catalog: &Catalog) -> Result<(), KeyringError> {
    let now = rfc3339(unix_now());
    for (id, path, check) in keyring.check_values() {
        let stored = catalog
            .key_check_value(&id, &check, &now)
            .map_err(|e| KeyringError::Catalog(e.to_string()))?;
        if stored != check {
            return Err(KeyringError::WrongKey { id, path });
        }
    }
    let configured = keyring.ids();
    for (id, count) in catalog
        .kek_ids_in_use()
        .map_err(|e| KeyringError::Catalog(e.to_string()))?
    {
        if !configured.contains(&id.as_str()) {
            return Err(KeyringError::Missing { id, count });
        }
    }
    Ok(())
}

impl Engine {
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The data key a new recording of `tenant` is sealed with, or `None`
    /// when encryption is off.
    pub(super) fn new_data_key(
        &self,
        tenant: Option<&str>,
    ) -> Result<Option<NewDataKey>, EngineError> {
        let Some(current) = self.keyring.current_id() else {
            return Ok(None);
        };
        let key = DataKey::generate().map_err(internal)?;
        let customer = self.catalog.active_customer_key(tenant).map_err(internal)?;
        if let Some(row) = customer {
            let parsed = parse_public_key(&row.public_key).map_err(internal)?;
            let encryption = parsed.key.wrap(&key, &row.key_id).map_err(internal)?;
            let recovery_key = Some(self.keyring.wrap(&key, current).map_err(key_error)?);
            return Ok(Some(NewDataKey {
                key,
                encryption,
                recovery_key,
            }));
        }
        let encryption = self.keyring.wrap(&key, current).map_err(key_error)?;
        Ok(Some(NewDataKey {
            key,
            encryption,
            recovery_key: None,
        }))
    }

    /// Registers `who`'s public key: new recordings are wrapped for it
    /// alone. Needs encryption at rest on.
    pub fn register_customer_key(
        &self,
        who: &Principal,
        req: CustomerKeyRequest,
    ) -> Result<CustomerKey, EngineError> {
        if !self.keyring.encrypting() {
            return Err(EngineError::EncryptionDisabled);
        }
        if req.public_key.len() > MAX_PUBLIC_KEY {
            return Err(EngineError::InvalidPublicKey(format!(
                "longer than {MAX_PUBLIC_KEY} bytes"
            )));
        }
        let parsed = parse_public_key(&req.public_key).map_err(|e| match e {
            CustomerKeyError::NotAPublicKey | CustomerKeyError::RsaTooShort(_) => {
                EngineError::InvalidPublicKey(e.to_string())
            }
            other => internal(other),
        })?;
        let row = CustomerKeyRow {
            customer_id: who.tenant(),
            key_id: parsed.key_id,
            algorithm: parsed.key.algorithm().into(),
            public_key: parsed.pem,
            created_at: rfc3339(unix_now()),
            revoked_at: None,
        };
        self.catalog.register_customer_key(&row).map_err(internal)?;
        tracing::info!(customer = ?row.customer_id, key = %row.key_id, algorithm = %row.algorithm,
            "customer key registered: new recordings are wrapped for it alone");
        let stored = self
            .catalog
            .customer_keys(who.scope())
            .map_err(internal)?
            .into_iter()
            .find(|k| k.key_id == row.key_id)
            .unwrap_or(row);
        Ok(stored.into())
    }

    /// `who`'s registered keys, newest first.
    pub fn customer_keys(&self, who: &Principal) -> Result<Vec<CustomerKey>, EngineError> {
        Ok(self
            .catalog
            .customer_keys(who.scope())
            .map_err(internal)?
            .into_iter()
            .map(CustomerKey::from)
            .collect())
    }

    /// Revokes one of `who`'s keys: later recordings are wrapped by the
    /// operator's key again. Recordings already made stay the customer's.
    pub fn revoke_customer_key(
        &self,
        who: &Principal,
        key_id: &str,
    ) -> Result<CustomerKey, EngineError> {
        check_id("key_id", key_id)?;
        let row = self
            .catalog
            .revoke_customer_key(who.scope(), key_id, &rfc3339(unix_now()))
            .map_err(internal)?
            .ok_or_else(|| EngineError::EncryptionKeyNotFound(key_id.to_owned()))?;
        tracing::info!(customer = ?row.customer_id, key = %row.key_id, "customer key revoked");
        Ok(row.into())
    }
}
