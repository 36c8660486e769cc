//! The audit trail over HTTP: a route layer that appends one record for
//! every access to a recording and every control action (see
//! [`action_of`]), and `GET /v1/audit` to read them.
//!
//! A record is written after the handler answered and before the answer
//! leaves: its status is the outcome. If it cannot be written the answer
//! is replaced by 503 `audit_unavailable`, so no audio (and no answer about
//! a recording) goes out unaudited; an action that already took effect
//! stays done, and the error says so. Records are written on the blocking
//! pool, never on a media thread. The tenant of a record is the tenant
//! whose object it was (from the answer's `customer_id`, the signed URL's
//! `customer`, or the caller's own tenant), so a tenant also sees the
//! admin's accesses to its recordings.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::params::TypedQuery;
use super::recordings::{check_id_param, page, time_param};
use super::views::{Page, Pagination};
use super::{ApiError, ApiResult, ApiState, ErrorCode, blocking, ok, principal};
use crate::catalog::audit::{AuditEntry, AuditFilter, AuditRecord};
use crate::engine::{EngineError, Principal};
use crate::timefmt::{rfc3339, unix_now};

/// Largest answer read back for the ids it names (a call view with 64
/// legs is a few tens of KiB); the read-back never applies to the trail's
/// own pages.
const MAX_READ_BACK: usize = 16 << 20;

/// The audit action of a route, or `None` for routes not audited (health,
/// metrics, the document, lists of calls and recordings, webhook state).
pub fn action_of(method: &Method, route: &str) -> Option<&'static str> {
    Some(match (method.as_str(), route) {
        ("POST", "/v1/calls") => "call.create",
        ("GET", "/v1/calls/{id}") => "call.get",
        ("POST", "/v1/calls/{id}/legs") => "call.add_leg",
        ("POST", "/v1/calls/{id}/end") => "call.end",
        ("POST", "/v1/calls/{id}/record/start") => "recording.start",
        ("POST", "/v1/calls/{id}/record/stop") => "recording.stop",
        ("POST", "/v1/calls/{id}/record/pause") => "recording.pause",
        ("POST", "/v1/calls/{id}/record/resume") => "recording.resume",
        ("POST", "/v1/calls/{id}/recordings") => "recording.action",
        ("POST", "/v1/calls/{id}/legs/{leg}/mute") => "leg.mute",
        ("POST", "/v1/calls/{id}/legs/{leg}/unmute") => "leg.unmute",
        ("GET", "/v1/recordings/{id}") => "recording.get",
        ("DELETE", "/v1/recordings/{id}") => "recording.delete",
        ("GET", "/v1/recordings/{id}/download") => "recording.download",
        ("GET", "/v1/files/{id}") => "recording.fetch",
        ("HEAD", "/v1/files/{id}") => "recording.fetch_head",
        ("GET", "/v1/calls/{id}/recording") => "recording.link",
        ("POST", "/v1/calls/{id}/recording-log") => "recording_log.write",
        ("POST", "/v1/call-flows") => "call_flow.create",
        ("GET", "/v1/call-flows/{id}") => "call_flow.get",
        ("PATCH", "/v1/call-flows/{id}") => "call_flow.update",
        ("DELETE", "/v1/call-flows/{id}") => "call_flow.delete",
        ("POST", "/v1/encryption-keys") => "encryption_key.register",
        ("DELETE", "/v1/encryption-keys/{id}") => "encryption_key.revoke",
        ("GET", "/v1/audit") => "audit.read",
        _ => return None,
    })
}

/// Set by a handler on its answer when the access it recorded is more
/// than the route says: a file fetch that decrypted the recording is
/// `recording.decrypt`.
#[derive(Debug, Clone, Copy)]
pub struct AuditAction(pub &'static str);

/// The value of each `{param}` of `route` in `path`, percent-decoded.
fn path_params(route: &str, path: &str) -> Vec<(String, String)> {
    route
        .split('/')
        .zip(path.split('/'))
        .filter_map(|(r, p)| {
            let name = r.strip_prefix('{')?.strip_suffix('}')?;
            let value = percent_decode(p);
            Some((name.to_owned(), value))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn query_param(req: &Request, name: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// What the audit layer knows before the handler runs.
struct Pending {
    action: &'static str,
    actor: String,
    tenant: Option<String>,
    peer: String,
    call_id: Option<String>,
    recording_id: Option<String>,
    detail: Option<String>,
}

fn pending(s: &ApiState, action: &'static str, route: &str, req: &Request) -> Pending {
    let headers = req.headers();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.to_string());
    let params = path_params(route, req.uri().path());
    let param = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let (actor, tenant) = if route == "/v1/files/{id}" {
        let by = query_param(req, "by").unwrap_or_else(|| "unknown".into());
        (format!("signed-url:{by}"), query_param(req, "customer"))
    } else {
        let tenant = match principal(s, headers) {
            Ok(Principal::Tenant(t)) => Some(t),
            _ => None,
        };
        (
            s.tokens
                .name_of(headers)
                .unwrap_or_else(|| "unauthenticated".into()),
            tenant,
        )
    };
    let (mut call_id, mut recording_id, mut detail) = (None, None, None);
    if route.starts_with("/v1/calls/{id}") {
        call_id = param("id");
    } else if route.starts_with("/v1/recordings/{id}") || route.starts_with("/v1/files/{id}") {
        recording_id = param("id");
    } else if route.starts_with("/v1/call-flows/{id}") {
        detail = param("id").map(|f| format!("call_flow_id={f}"));
    } else if route.starts_with("/v1/encryption-keys/{id}") {
        detail = param("id").map(|k| format!("key_id={k}"));
    }
    if let Some(leg) = param("leg") {
        detail = Some(format!("leg_id={leg}"));
    }
    if route == "/v1/files/{id}"
        && let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok())
    {
        detail = Some(format!("range={range}"));
    }
    Pending {
        action,
        actor,
        tenant,
        peer,
        call_id,
        recording_id,
        detail,
    }
}

/// The route layer (see the module documentation).
pub async fn record(State(s): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let Some((route, action)) = route.and_then(|r| action_of(req.method(), &r).map(|a| (r, a)))
    else {
        return next.run(req).await;
    };
    let mut p = pending(&s, action, &route, &req);
    // A change (not a read) that succeeded stays made even if its record
    // cannot be written: the refusal says so.
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    let response = next.run(req).await;
    let status = response.status();
    if let Some(AuditAction(a)) = response.extensions().get::<AuditAction>() {
        p.action = a;
    }
    // Ids the answer names: a created call's, a started recording's, and
    // the tenant whose object it was.
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let response = if is_json && status.is_success() && p.action != "audit.read" {
        let (parts, body) = response.into_parts();
        match axum::body::to_bytes(body, MAX_READ_BACK).await {
            Ok(bytes) => {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
                    p.call_id = p.call_id.or_else(|| text("call_id"));
                    p.recording_id = p.recording_id.or_else(|| text("recording_id"));
                    if let Some(t) = text("customer_id") {
                        p.tenant = Some(t);
                    }
                    if p.action.starts_with("call_flow.") {
                        p.detail = text("call_flow_id").map(|f| format!("call_flow_id={f}"));
                    }
                    if p.action.starts_with("encryption_key.") {
                        p.detail = text("key_id").map(|k| format!("key_id={k}"));
                    }
                }
                Response::from_parts(parts, Body::from(bytes))
            }
            Err(_) => {
                return ApiError::new(
                    ErrorCode::Internal,
                    "the answer could not be read back for the audit trail",
                )
                .into_response();
            }
        }
    } else {
        if status == StatusCode::FOUND
            && let Some(customer) = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| l.split_once("customer="))
                .map(|(_, rest)| rest.split('&').next().unwrap_or_default().to_owned())
        {
            p.tenant = Some(customer);
        }
        response
    };
    let now = unix_now();
    let entry = AuditEntry {
        at: rfc3339(now),
        at_ms: now.as_millis() as i64,
        actor: p.actor,
        customer_id: p.tenant,
        peer: p.peer,
        action: p.action.to_owned(),
        call_id: p.call_id,
        recording_id: p.recording_id,
        status: status.as_u16(),
        detail: p.detail,
    };
    let catalog = s.engine.catalog().clone();
    let written = crate::offload::spawn_blocking(move || catalog.append_audit(&entry)).await;
    match written {
        Ok(Ok(_)) => response,
        Ok(Err(e)) => refuse(&e.to_string(), changes && status.is_success()),
        Err(e) => refuse(&e.to_string(), changes && status.is_success()),
    }
}

/// Fail closed: the answer that could not be audited is not given.
fn refuse(error: &str, carried_out: bool) -> Response {
    tracing::error!(
        error,
        "could not write an audit record; the answer is withheld"
    );
    let done = if carried_out {
        " (the action itself was carried out)"
    } else {
        ""
    };
    ApiError::new(
        ErrorCode::AuditUnavailable,
        format!("the audit trail cannot be written, so this answer is withheld{done}; retry later"),
    )
    .into_response()
}

/// `GET /v1/audit` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    recording_id: Option<String>,
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    call_id: Option<String>,
    /// A token's name, or `signed-url:<issuer>`.
    actor: Option<String>,
    /// E.g. `recording.fetch`.
    action: Option<String>,
    /// At or after (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Before (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// Records on a page (default 50, at most 1000).
    #[param(minimum = 0, maximum = 1000)]
    limit: Option<u32>,
    /// Records skipped.
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// Read the audit trail
///
/// Newest first. An admin token sees every record; a tenant token the
/// records about its tenant's objects (including the admin's accesses to
/// them).
#[utoipa::path(get, path = "/v1/audit", operation_id = "list_audit", tag = "audit",
    params(AuditQuery),
    responses((status = 200, description = "A page of audit records", body = Page<AuditRecord>)))]
pub async fn list(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    TypedQuery(q): TypedQuery<AuditQuery>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let (limit, offset) = page(q.limit, q.offset)?;
    check_id_param("recording_id", &q.recording_id)?;
    check_id_param("call_id", &q.call_id)?;
    let filter = AuditFilter {
        customer_id: match &who {
            Principal::Admin => None,
            Principal::Tenant(t) => Some(Some(t.clone())),
        },
        recording_id: q.recording_id,
        call_id: q.call_id,
        actor: q.actor,
        action: q.action,
        since_ms: time_param("since", &q.since)?,
        until_ms: time_param("until", &q.until)?,
        limit,
        offset,
    };
    blocking(move || {
        let (data, total) = s
            .engine
            .catalog()
            .list_audit(&filter)
            .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))?;
        let pagination = Pagination::new(total, limit, offset, data.len());
        ok(StatusCode::OK, Page { data, pagination })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_params_are_read_from_the_route() {
        assert_eq!(
            path_params(
                "/v1/calls/{id}/legs/{leg}/mute",
                "/v1/calls/c%201/legs/caller/mute"
            ),
            [
                ("id".to_owned(), "c 1".to_owned()),
                ("leg".to_owned(), "caller".to_owned())
            ]
        );
        assert_eq!(action_of(&Method::GET, "/v1/recordings"), None);
        assert_eq!(
            action_of(&Method::HEAD, "/v1/files/{id}"),
            Some("recording.fetch_head")
        );
    }
}
