//! The HTTP control API (axum): routes, bearer-token auth, JSON bodies with
//! errors that name the field, and one error shape for everything:
//! `{"error":{"code":"…","message":"…"}}`.

mod auth;
mod guard;
mod params;
mod recordings;
pub mod server;
mod urls;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use auth::{Tokens, token_hash};
pub use urls::UrlSigner;

use crate::engine::model::{ActionRequest, CreateCallRequest, LegRequest, RecordingRequest};
use crate::engine::{Engine, EngineError, Principal};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// What the handlers share.
pub struct ApiState {
    pub engine: Arc<Engine>,
    pub tokens: Tokens,
    pub event_clients: Arc<std::sync::atomic::AtomicU64>,
    pub urls: UrlSigner,
    pub webhooks: Arc<crate::events::webhooks::WebhookStats>,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = match &e {
            // Internals stay in the log, not in the answer.
            EngineError::Internal(detail) => {
                tracing::error!(%detail, "internal error answering a request");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        Self::new(status, e.code(), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(status: StatusCode, value: impl serde::Serialize) -> ApiResult {
    Ok((status, axum::Json(value)).into_response())
}

/// Parses a JSON body, naming the field that is wrong.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the request needs a JSON body",
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is not valid UTF-8",
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("malformed JSON: {e}"),
        )
    })?;
    if depth(&value) > 16 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "JSON nested deeper than 16 levels",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        let code = if inner.contains("unknown variant")
            && (path.ends_with("format") || path.ends_with("channels"))
        {
            "invalid_format"
        } else {
            "invalid_request"
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, format!("{field}{inner}"))
    })
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Optional body: empty means defaults.
fn parse_or_default<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse(body)
    }
}

pub fn router(state: Arc<ApiState>) -> Router {
    let api = &state.engine.config().api;
    let guard = Arc::new(guard::Guard::new(
        state.tokens.clone(),
        guard::RateLimiter::new(api.rate_limit_per_s, api.rate_limit_burst),
        std::time::Duration::from_secs(u64::from(api.request_timeout_s)),
    ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/calls", post(create_call).get(list_calls))
        .route("/v1/calls/{id}", get(get_call))
        .route("/v1/calls/{id}/legs", post(add_leg))
        .route("/v1/calls/{id}/end", post(end_call))
        .route("/v1/calls/{id}/record/{action}", post(record_action))
        .route("/v1/calls/{id}/recordings", post(recordings_action))
        .route("/v1/calls/{id}/legs/{leg}/{action}", post(leg_action))
        .route("/v1/recordings", get(recordings::list))
        .route(
            "/v1/recordings/{id}",
            get(recordings::get).delete(recordings::delete),
        )
        .route("/v1/recordings/{id}/download", get(recordings::download))
        .route(
            "/v1/files/{id}",
            get(recordings::file).head(recordings::file),
        )
        .route("/v1/calls/{id}/recording", get(recordings::call_recording))
        .route(
            "/v1/calls/{id}/recording-log",
            post(recordings::recording_log),
        )
        .route("/v1/webhooks/deliveries", get(webhooks::list))
        .route("/v1/webhooks/deliveries/{id}/retry", post(webhooks::retry))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(guard, guard::guard))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Who the request is from. An admin token may act within one customer's
/// ids by naming it in `X-Customer-Id` (to reach a call or recording whose
/// id several customers use, or to create one for a customer); a customer
/// token may name only its own customer.
fn principal(state: &ApiState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let who = state.tokens.authenticate(headers)?;
    let Some(value) = headers.get("x-customer-id") else {
        return Ok(who);
    };
    let customer = value
        .to_str()
        .ok()
        .filter(|c| crate::ids::is_valid_id(c))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "X-Customer-Id: not a valid customer id",
            )
        })?;
    match who {
        Principal::Admin => Ok(Principal::Tenant(customer.to_owned())),
        Principal::Tenant(own) if own == customer => Ok(Principal::Tenant(own)),
        Principal::Tenant(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "X-Customer-Id: a customer token acts only for its own customer",
        )),
    }
}

/// Bodies over the limit come through axum as a 413 with a plain body;
/// this reads the body ourselves so the answer has our error shape.
async fn body(
    req_body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, ApiError> {
    req_body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("bodies are limited to {MAX_BODY} bytes"),
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text())
        }
    })
}

type RawBody = Result<Bytes, axum::extract::rejection::BytesRejection>;

async fn create_call(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    raw: RawBody,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let req: CreateCallRequest = parse(&body(raw).await?)?;
    ok(StatusCode::CREATED, s.engine.create_call(&who, req)?)
}

/// Calls, newest first, a page at a time (`limit`, `offset`; `status`
/// `active` or `ended`), like recordings.
async fn list_calls(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    params::Params(q): params::Params,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let (mut limit, mut offset) = (recordings::DEFAULT_LIMIT, 0u64);
    let mut status = None;
    for (k, v) in &q {
        if recordings::page_param(k, v, &mut limit, &mut offset)? {
            continue;
        }
        match (k.as_str(), v.as_str()) {
            ("status", "active") => status = Some(false),
            ("status", "ended") => status = Some(true),
            ("status", other) => {
                return Err(recordings::bad_param(
                    "status",
                    format!("{other:?} is not active or ended"),
                ));
            }
            (other, _) => {
                return Err(recordings::bad_param(other, "not a parameter of this list"));
            }
        }
    }
    let (calls, total) = s.engine.list_calls(&who, status, limit as usize, offset);
    let has_more = offset.saturating_add(calls.len() as u64) < total as u64;
    ok(
        StatusCode::OK,
        json!({"data": calls, "pagination": {"total": total, "limit": limit, "offset": offset, "has_more": has_more}}),
    )
}

async fn get_call(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    ok(StatusCode::OK, s.engine.get_call(&who, &id)?)
}

async fn add_leg(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: RawBody,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let req: LegRequest = parse(&body(raw).await?)?;
    ok(StatusCode::CREATED, s.engine.add_leg(&who, &id, req)?)
}

async fn end_call(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    ok(StatusCode::OK, s.engine.end_call(&who, &id)?)
}

async fn record_action(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    raw: RawBody,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let bytes = body(raw).await?;
    match action.as_str() {
        "start" => {
            let req: RecordingRequest = parse_or_default(&bytes)?;
            if req.enabled.is_some() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "enabled: only valid in a call's recording block",
                ));
            }
            ok(
                StatusCode::CREATED,
                s.engine.start_recording(&who, &id, req)?,
            )
        }
        "stop" => ok(StatusCode::OK, s.engine.stop_recording(&who, &id)?),
        "pause" => ok(StatusCode::OK, s.engine.pause_recording(&who, &id)?),
        "resume" => ok(StatusCode::OK, s.engine.resume_recording(&who, &id)?),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "actions are start, stop, pause and resume",
        )),
    }
}

async fn recordings_action(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: RawBody,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let req: ActionRequest = parse(&body(raw).await?)?;
    match req.action.as_str() {
        "start" => {
            let opts: RecordingRequest =
                serde_path_to_error::deserialize(Value::Object(req.options)).map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        format!("{}: {}", e.path(), e.inner()),
                    )
                })?;
            ok(
                StatusCode::CREATED,
                s.engine.start_recording(&who, &id, opts)?,
            )
        }
        "stop" => {
            if !req.options.is_empty() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "stop takes no options",
                ));
            }
            ok(StatusCode::OK, s.engine.stop_recording(&who, &id)?)
        }
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("action: {other:?} is not \"start\" or \"stop\""),
        )),
    }
}

async fn leg_action(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path((id, leg, action)): Path<(String, String, String)>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let muted = match action.as_str() {
        "mute" => true,
        "unmute" => false,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "leg actions are mute and unmute",
            ));
        }
    };
    ok(StatusCode::OK, s.engine.set_muted(&who, &id, &leg, muted)?)
}

async fn metrics(State(s): State<Arc<ApiState>>) -> Response {
    let g = s.engine.gauges();
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, lines: Vec<(String, u64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in lines {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    metric(
        "recengine_active_calls",
        "Calls not yet ended.",
        "gauge",
        vec![(String::new(), g.active_calls as u64)],
    );
    metric(
        "recengine_recordings",
        "Recordings by state.",
        "gauge",
        g.recordings_by_state
            .iter()
            .map(|(k, v)| (format!("{{state=\"{k}\"}}"), *v as u64))
            .collect(),
    );
    metric(
        "recengine_rtp_datagrams_total",
        "Datagrams received on RTP ports.",
        "counter",
        vec![(String::new(), g.datagrams)],
    );
    metric(
        "recengine_rtp_dropped_total",
        "Datagrams not recorded, by reason.",
        "counter",
        vec![
            ("{reason=\"queue_full\"}".into(), g.queue_drops),
            ("{reason=\"foreign_source\"}".into(), g.foreign_source),
            ("{reason=\"truncated\"}".into(), g.truncated),
            ("{reason=\"late\"}".into(), g.late),
            ("{reason=\"duplicate\"}".into(), g.duplicates),
            ("{reason=\"malformed\"}".into(), g.malformed),
        ],
    );
    metric(
        "recengine_rtp_lost_total",
        "Sequence numbers never received.",
        "counter",
        vec![(String::new(), g.lost)],
    );
    metric(
        "recengine_rtcp_packets_total",
        "RTCP packets received.",
        "counter",
        vec![(String::new(), g.rtcp)],
    );
    metric(
        "recengine_bytes_written_total",
        "Bytes of finalized recording files.",
        "counter",
        vec![(String::new(), g.bytes_finalized)],
    );
    metric(
        "recengine_event_socket_clients",
        "Clients connected to the event socket.",
        "gauge",
        vec![(
            String::new(),
            s.event_clients.load(std::sync::atomic::Ordering::Relaxed),
        )],
    );
    let hooks = &s.webhooks;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    metric(
        "recengine_webhook_attempts_total",
        "Webhook delivery attempts by outcome (retry: failed, will be retried; failed: given up).",
        "counter",
        vec![
            ("{outcome=\"delivered\"}".into(), load(&hooks.delivered)),
            ("{outcome=\"retry\"}".into(), load(&hooks.retried)),
            ("{outcome=\"failed\"}".into(), load(&hooks.failed)),
        ],
    );
    out.push_str(
        "# HELP recengine_encode_seconds_total Time spent mixing and encoding, by format.\n",
    );
    out.push_str("# TYPE recengine_encode_seconds_total counter\n");
    for (i, f) in ["wav", "mp3", "opus"].iter().enumerate() {
        let ns = crate::io::worker::ENCODE_NANOS[i].load(std::sync::atomic::Ordering::Relaxed);
        out.push_str(&format!(
            "recengine_encode_seconds_total{{format=\"{f}\"}} {}\n",
            ns as f64 / 1e9
        ));
    }
    out.push_str("# HELP recengine_finalize_latency_ms Time from stop to recording.completed.\n");
    out.push_str("# TYPE recengine_finalize_latency_ms histogram\n");
    for (i, b) in crate::engine::FINALIZE_BUCKETS_MS.iter().enumerate() {
        out.push_str(&format!(
            "recengine_finalize_latency_ms_bucket{{le=\"{b}\"}} {}\n",
            g.finalize_ms.counts[i]
        ));
    }
    out.push_str(&format!(
        "recengine_finalize_latency_ms_bucket{{le=\"+Inf\"}} {}\n",
        g.finalize_ms.count
    ));
    out.push_str(&format!(
        "recengine_finalize_latency_ms_sum {}\n",
        g.finalize_ms.sum_ms
    ));
    out.push_str(&format!(
        "recengine_finalize_latency_ms_count {}\n",
        g.finalize_ms.count
    ));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response()
}
