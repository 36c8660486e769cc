//! Bearer tokens: `Authorization: Bearer …` or `X-Auth-Token: …`, checked
//! against SHA-256 hashes from the configuration in constant time. A token
//! is admin or limited to one tenant. The set can be swapped at runtime
//! (SIGHUP).

use std::sync::{Arc, RwLock};

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use super::{ApiError, ErrorCode};
use crate::config::TokenEntry;
use crate::engine::Principal;

/// A configured token: the SHA-256 of the secret, who it stands for, and
/// its name (for the audit trail).
type TokenHash = ([u8; 32], Principal, String);

#[derive(Clone, Default)]
pub struct Tokens {
    entries: Arc<RwLock<Vec<TokenHash>>>,
}

fn decode_hex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex SHA-256 of a token, as configured.
pub fn token_hash(token: &str) -> String {
    crate::crypto::sha256_hex(token.as_bytes())
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl Tokens {
    pub fn new(entries: &[TokenEntry]) -> Self {
        let t = Self::default();
        t.replace(entries);
        t
    }

    /// Swaps in a new set (configuration reload).
    pub fn replace(&self, entries: &[TokenEntry]) {
        let parsed = entries
            .iter()
            .filter_map(|e| {
                let hash = decode_hex(&e.sha256.to_ascii_lowercase())?;
                let who = if e.customer_id.is_empty() {
                    Principal::Admin
                } else {
                    Principal::Tenant(e.customer_id.clone())
                };
                Some((hash, who, e.name.clone()))
            })
            .collect();
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = parsed;
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        self.lookup(headers).map(|(who, _, _)| who)
    }

    /// The configured name of the request's token (for the audit trail),
    /// if it presents a valid one.
    pub fn name_of(&self, headers: &HeaderMap) -> Option<String> {
        self.lookup(headers).ok().map(|(_, _, name)| name)
    }

    /// Who the token stands for, and the SHA-256 that names the token (for
    /// per-token limits; never logged).
    pub fn identify(&self, headers: &HeaderMap) -> Result<(Principal, [u8; 32]), ApiError> {
        self.lookup(headers).map(|(who, digest, _)| (who, digest))
    }

    /// The presented token's principal, SHA-256 and configured name.
    fn lookup(&self, headers: &HeaderMap) -> Result<(Principal, [u8; 32], String), ApiError> {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .or_else(|| headers.get("x-auth-token").and_then(|v| v.to_str().ok()))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "missing token: send Authorization: Bearer <token> or X-Auth-Token",
                )
            })?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        // Compare against every entry so timing does not reveal which matched.
        let mut found = None;
        for (hash, who, name) in entries.iter() {
            if constant_time_eq(hash, &digest) && found.is_none() {
                found = Some((who.clone(), name.clone()));
            }
        }
        found
            .map(|(who, name)| (who, digest, name))
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "invalid token"))
    }
}
