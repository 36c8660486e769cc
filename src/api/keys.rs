//! Customer-held keys over HTTP: `POST/GET /v1/encryption-keys`,
//! `DELETE /v1/encryption-keys/{id}`. A tenant registers its public key;
//! from then on its recordings' data keys are wrapped for that key alone
//! (see `encryption::customer`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;

use super::{ApiResult, ApiState, RawBody, blocking, body, ok, parse, principal};
use crate::engine::encryption::{CustomerKey, CustomerKeyRequest};

/// The tenant's keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerKeyList {
    /// Newest first; at most one is active.
    pub data: Vec<CustomerKey>,
}

/// Register a customer key
///
/// The tenant's public key (PEM: X25519, or RSA of at least 2048 bits).
/// New recordings' data keys are wrapped for it alone: downloads serve the
/// ciphertext and `recengine decrypt --key private.pem` opens it. It
/// replaces (revokes) the tenant's earlier key. Needs encryption at rest
/// on (`[storage.encryption]`).
#[utoipa::path(post, path = "/v1/encryption-keys", operation_id = "register_encryption_key",
    tag = "encryption", request_body = CustomerKeyRequest,
    responses((status = 201, description = "The registered key, active", body = CustomerKey)))]
pub async fn register(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    raw: RawBody,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let req: CustomerKeyRequest = parse(&body(raw).await?)?;
    blocking(move || {
        ok(
            StatusCode::CREATED,
            s.engine.register_customer_key(&who, req)?,
        )
    })
    .await
}

/// List customer keys
#[utoipa::path(get, path = "/v1/encryption-keys", operation_id = "list_encryption_keys",
    tag = "encryption",
    responses((status = 200, description = "The tenant's keys, newest first", body = CustomerKeyList)))]
pub async fn list(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> ApiResult {
    let who = principal(&s, &headers)?;
    blocking(move || {
        let data = s.engine.customer_keys(&who)?;
        ok(StatusCode::OK, CustomerKeyList { data })
    })
    .await
}

/// Revoke a customer key
///
/// Later recordings are wrapped by the operator's key again; those made
/// for this key stay readable only with its private key.
#[utoipa::path(delete, path = "/v1/encryption-keys/{id}", operation_id = "revoke_encryption_key",
    tag = "encryption", params(("id" = String, Path, description = "The key id")),
    responses((status = 200, description = "The key, revoked", body = CustomerKey)))]
pub async fn revoke(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    blocking(move || ok(StatusCode::OK, s.engine.revoke_customer_key(&who, &id)?)).await
}
