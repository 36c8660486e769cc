//! Call flows over HTTP: `POST/GET /v1/call-flows`,
//! `GET/PATCH/DELETE /v1/call-flows/{id}`. A tenant token sees and changes
//! its own rules; the admin sees everyone's and creates its own (or, with
//! `X-Customer-Id`, a customer's). What a rule does is `engine::flows`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};

use super::params::TypedQuery;
use super::recordings::page;
use super::views::{Page, Pagination};
use super::{ApiResult, ApiState, RawBody, blocking, body, ok, parse, principal};
use crate::engine::flows::{CallFlow, CallFlowPatch, CallFlowRequest};

/// Create a call flow
///
/// A rule that records every new call to (`inbound`), from (`outbound`)
/// or either way (`both`) a number or prefix, with its recording options,
/// when the call is created without a `recording` block. Exact numbers
/// beat prefixes, longer prefixes beat shorter ones, and of equals the
/// oldest rule wins.
#[utoipa::path(post, path = "/v1/call-flows", operation_id = "create_call_flow", tag = "call flows",
    request_body = CallFlowRequest,
    responses((status = 201, description = "The rule, at version 1", body = CallFlow)))]
pub async fn create(State(s): State<Arc<ApiState>>, headers: HeaderMap, raw: RawBody) -> ApiResult {
    let who = principal(&s, &headers)?;
    let req: CallFlowRequest = parse(&body(raw).await?)?;
    blocking(move || ok(StatusCode::CREATED, s.engine.create_flow(&who, req)?)).await
}

/// `GET /v1/call-flows` parameters.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FlowListQuery {
    /// Rules on a page (default 50, at most 1000).
    #[param(minimum = 0, maximum = 1000)]
    limit: Option<u32>,
    /// Rules skipped.
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// List call flows
///
/// Oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/call-flows", operation_id = "list_call_flows", tag = "call flows",
    params(FlowListQuery),
    responses((status = 200, description = "A page of rules", body = Page<CallFlow>)))]
pub async fn list(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    TypedQuery(q): TypedQuery<FlowListQuery>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let (limit, offset) = page(q.limit, q.offset)?;
    blocking(move || {
        let (data, total) = s.engine.list_flows(&who, limit, offset)?;
        let pagination = Pagination::new(total, limit, offset, data.len());
        ok(StatusCode::OK, Page { data, pagination })
    })
    .await
}

/// Get a call flow
#[utoipa::path(get, path = "/v1/call-flows/{id}", operation_id = "get_call_flow", tag = "call flows",
    params(("id" = String, Path, description = "The call flow id")),
    responses((status = 200, description = "The rule", body = CallFlow)))]
pub async fn get(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    blocking(move || ok(StatusCode::OK, s.engine.get_flow(&who, &id)?)).await
}

/// Change a call flow
///
/// The fields given replace the stored ones (`recording` as a whole); the
/// version goes up by one. Calls already created keep what they matched.
#[utoipa::path(patch, path = "/v1/call-flows/{id}", operation_id = "update_call_flow", tag = "call flows",
    params(("id" = String, Path, description = "The call flow id")), request_body = CallFlowPatch,
    responses((status = 200, description = "The rule as changed", body = CallFlow)))]
pub async fn update(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: RawBody,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let patch: CallFlowPatch = parse(&body(raw).await?)?;
    blocking(move || ok(StatusCode::OK, s.engine.update_flow(&who, &id, patch)?)).await
}

/// Delete a call flow
///
/// New calls no longer match it; calls it already records go on.
#[utoipa::path(delete, path = "/v1/call-flows/{id}", operation_id = "delete_call_flow", tag = "call flows",
    params(("id" = String, Path, description = "The call flow id")),
    responses((status = 200, description = "The rule as it was", body = CallFlow)))]
pub async fn delete(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    blocking(move || ok(StatusCode::OK, s.engine.delete_flow(&who, &id)?)).await
}
