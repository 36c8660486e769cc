//! The HTTP control API (axum): routes and the call and recording-control
//! handlers, bearer-token auth, JSON bodies with errors that name the
//! field, and one error shape for everything (`error`):
//! `{"error":{"code":"…","message":"…"}}`. The OpenAPI document of it all
//! is `openapi`.

pub mod audit;
mod auth;
pub mod error;
mod flows;
mod guard;
mod keys;
pub mod openapi;
mod params;
mod recordings;
pub mod server;
mod stored;
mod urls;
mod views;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use auth::{Tokens, token_hash};
pub use error::{ApiError, ErrorCode};
pub use urls::UrlSigner;

use crate::engine::model::{
    ActionRequest, CallStatus, CallView, CreateCallRequest, LegRequest, RecordingRequest,
    RecordingView,
};
use crate::engine::{Engine, Principal};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// What the handlers share.
pub struct ApiState {
    pub engine: Arc<Engine>,
    pub tokens: Tokens,
    pub event_clients: Arc<std::sync::atomic::AtomicU64>,
    pub urls: UrlSigner,
    /// `api.public_url`, or `http://` and the bound address: the base of
    /// absolute URLs in answers, without a trailing `/`.
    pub public_url: String,
    pub webhooks: Arc<crate::events::webhooks::WebhookStats>,
    /// The SIPREC server's counters, when `[siprec]` is on.
    pub siprec: Option<Arc<crate::siprec::uas::UasStats>>,
    /// The NATS publisher's counters, when `[events.nats]` is on.
    pub nats: Option<Arc<crate::events::nats::NatsStats>>,
    /// The object-store uploader's counters, with `storage.backend = "s3"`.
    pub uploads: Option<Arc<crate::objects::uploader::UploadStats>>,
}

type ApiResult = Result<Response, ApiError>;

/// Runs a handler's engine work — registry locks, catalog (SQLite) and
/// event-log writes, file opens — on tokio's blocking pool, never in the
/// async runtime's poll: the runtime has few threads (one on a two-core
/// box), and one slow disk write would stall every connection.
async fn blocking(work: impl FnOnce() -> ApiResult + Send + 'static) -> ApiResult {
    crate::offload::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| {
            Err(ApiError::from(crate::engine::EngineError::Internal(
                format!("a request's engine work failed: {e}"),
            )))
        })
}

/// Runs call control `f` on the blocking pool and answers its result with
/// `status`. A call another recorder of the fleet holds is answered
/// `held_by_other_node`, naming it (`Engine::held_elsewhere`).
async fn call_control<T: serde::Serialize>(
    s: Arc<ApiState>,
    who: Principal,
    id: String,
    status: StatusCode,
    f: impl FnOnce(&Engine, &Principal, &str) -> Result<T, crate::engine::EngineError> + Send + 'static,
) -> ApiResult {
    blocking(move || {
        let answer = f(&s.engine, &who, &id).map_err(|e| s.engine.held_elsewhere(&who, &id, e))?;
        ok(status, answer)
    })
    .await
}

fn ok(status: StatusCode, value: impl serde::Serialize) -> ApiResult {
    Ok((status, axum::Json(value)).into_response())
}

/// Parses a JSON body, naming the field that is wrong.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "the request needs a JSON body",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the body is not valid UTF-8"))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("malformed JSON: {e}")))?;
    if depth(&value) > 16 {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
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
            ErrorCode::InvalidFormat
        } else {
            ErrorCode::InvalidRequest
        };
        ApiError::new(code, format!("{field}{inner}"))
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
        .route("/v1/openapi.json", get(openapi::openapi_json))
        .route("/v1/calls", post(create_call).get(list_calls))
        .route("/v1/calls/{id}", get(get_call))
        .route("/v1/calls/{id}/legs", post(add_leg))
        .route("/v1/calls/{id}/end", post(end_call))
        .route("/v1/calls/{id}/record/start", post(record_start))
        .route("/v1/calls/{id}/record/stop", post(record_stop))
        .route("/v1/calls/{id}/record/pause", post(record_pause))
        .route("/v1/calls/{id}/record/resume", post(record_resume))
        .route("/v1/calls/{id}/recordings", post(recordings_action))
        .route("/v1/calls/{id}/legs/{leg}/mute", post(leg_mute))
        .route("/v1/calls/{id}/legs/{leg}/unmute", post(leg_unmute))
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
        .route("/v1/call-flows", post(flows::create).get(flows::list))
        .route(
            "/v1/call-flows/{id}",
            get(flows::get).patch(flows::update).delete(flows::delete),
        )
        .route("/v1/encryption-keys", post(keys::register).get(keys::list))
        .route(
            "/v1/encryption-keys/{id}",
            axum::routing::delete(keys::revoke),
        )
        .route("/v1/audit", get(audit::list))
        .route("/v1/webhooks/deliveries", get(webhooks::list))
        .route("/v1/webhooks/deliveries/{id}/retry", post(webhooks::retry))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(guard, guard::guard))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this endpoint",
    )
}

/// Liveness
///
/// Answers while the daemon runs; no token. Also the catalog's state (on
/// PostgreSQL, whether it answers and the connection pool) and, with NATS
/// or SIPREC on, theirs (a NATS server that is away does not make the
/// daemon unhealthy: events wait in the log).
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses((status = 200, description = "The daemon answers", body = views::Health)))]
async fn healthz(State(s): State<Arc<ApiState>>) -> Response {
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let catalog = s.engine.catalog();
    let reachable = if catalog.is_shared() {
        // Off the runtime (the client blocks), and never for long.
        let c = catalog.clone();
        let ping = crate::offload::spawn_blocking(move || c.ping().is_ok());
        Some(matches!(
            tokio::time::timeout(std::time::Duration::from_secs(2), ping).await,
            Ok(Ok(true))
        ))
    } else {
        None
    };
    axum::Json(views::Health {
        status: "ok",
        catalog: views::CatalogHealth {
            backend: if catalog.is_shared() {
                "postgres"
            } else {
                "sqlite"
            },
            node_id: catalog.node_id().to_owned(),
            reachable,
            pool: catalog
                .pool_state()
                .map(|(connections, idle)| views::PoolHealth { connections, idle }),
        },
        nats: s.nats.as_ref().map(|n| views::NatsHealth {
            connected: load(&n.connected) == 1,
            backlog: load(&n.backlog),
        }),
        uploads: s.uploads.as_ref().map(|u| views::UploadHealth {
            bucket: s
                .engine
                .objects()
                .map(|o| o.bucket().to_owned())
                .unwrap_or_default(),
            backlog: load(&u.backlog),
            uploaded: load(&u.uploaded),
            failures: load(&u.failures),
        }),
        siprec: s.siprec.as_ref().map(|sip| views::SiprecHealth {
            dialogs: load(&sip.dialogs),
        }),
    })
    .into_response()
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
                ErrorCode::InvalidRequest,
                "X-Customer-Id: not a valid customer id",
            )
        })?;
    match who {
        Principal::Admin => Ok(Principal::Tenant(customer.to_owned())),
        Principal::Tenant(own) if own == customer => Ok(Principal::Tenant(own)),
        Principal::Tenant(_) => Err(ApiError::new(
            ErrorCode::Forbidden,
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
                ErrorCode::PayloadTooLarge,
                format!("bodies are limited to {MAX_BODY} bytes"),
            )
        } else {
            ApiError::new(ErrorCode::InvalidRequest, e.body_text())
        }
    })
}

type RawBody = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// Create a call
///
/// Allocates an RTP port pair for each leg (answered in `legs[].rtp`) and,
/// with a `recording` block whose `enabled` is true, starts recording at
/// once. All or nothing: a failure leaves no call behind.
#[utoipa::path(post, path = "/v1/calls", operation_id = "create_call", tag = "calls",
    request_body = CreateCallRequest,
    responses((status = 201, description = "The call, with each leg's RTP address", body = CallView)))]
async fn create_call(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    raw: RawBody,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let req: CreateCallRequest = parse(&body(raw).await?)?;
    blocking(move || ok(StatusCode::CREATED, s.engine.create_call(&who, req)?)).await
}

/// `GET /v1/calls` parameters.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CallListQuery {
    /// Calls on a page (default 50, at most 1000).
    #[param(minimum = 0, maximum = 1000)]
    limit: Option<u32>,
    /// Calls skipped.
    #[param(minimum = 0)]
    offset: Option<i64>,
    status: Option<CallStatus>,
}

/// Calls, newest first, a page at a time (`limit`, `offset`; `status`
/// `active` or `ended`), like recordings.
#[utoipa::path(get, path = "/v1/calls", operation_id = "list_calls", tag = "calls",
    params(CallListQuery),
    responses((status = 200, description = "A page of calls", body = views::Page<CallView>)))]
async fn list_calls(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    params::TypedQuery(q): params::TypedQuery<CallListQuery>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let (limit, offset) = recordings::page(q.limit, q.offset)?;
    let ended = q.status.map(|s| s == CallStatus::Ended);
    blocking(move || {
        let (data, total) = s.engine.list_calls(&who, ended, limit as usize, offset);
        let pagination = views::Pagination::new(total as u64, limit, offset, data.len());
        ok(StatusCode::OK, views::Page { data, pagination })
    })
    .await
}

/// Get a call
///
/// With its legs' ingest counters and its recordings.
#[utoipa::path(get, path = "/v1/calls/{id}", operation_id = "get_call", tag = "calls",
    params(("id" = String, Path, description = "The call id")),
    responses((status = 200, description = "The call", body = CallView)))]
async fn get_call(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    call_control(s, who, id, StatusCode::OK, move |engine, who, id| {
        engine.get_call(who, id)
    })
    .await
}

/// Add a leg
///
/// A new party (a conference participant, a transfer target) with its own
/// RTP port pair; recordings of `all` participants take it in.
#[utoipa::path(post, path = "/v1/calls/{id}/legs", operation_id = "add_leg", tag = "calls",
    params(("id" = String, Path, description = "The call id")), request_body = LegRequest,
    responses((status = 201, description = "The call with the new leg", body = CallView)))]
async fn add_leg(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: RawBody,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let req: LegRequest = parse(&body(raw).await?)?;
    call_control(s, who, id, StatusCode::CREATED, move |engine, who, id| {
        engine.add_leg(who, id, req)
    })
    .await
}

/// End a call
///
/// Stops its recordings (they are finalized) and releases its ports.
#[utoipa::path(post, path = "/v1/calls/{id}/end", operation_id = "end_call", tag = "calls",
    params(("id" = String, Path, description = "The call id")),
    responses((status = 200, description = "The ended call", body = CallView)))]
async fn end_call(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    call_control(s, who, id, StatusCode::OK, move |engine, who, id| {
        engine.end_call(who, id)
    })
    .await
}

/// Start recording a call
///
/// Every option is optional (defaults from `[recording]`); an empty body
/// takes them all. One recording at a time per call.
#[utoipa::path(post, path = "/v1/calls/{id}/record/start", operation_id = "start_recording",
    tag = "recording control", params(("id" = String, Path, description = "The call id")), request_body = Option<RecordingRequest>,
    responses((status = 201, description = "The recording started", body = RecordingView)))]
async fn record_start(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: RawBody,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let req: RecordingRequest = parse_or_default(&body(raw).await?)?;
    if req.enabled.is_some() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "enabled: only valid in a call's recording block",
        ));
    }
    call_control(s, who, id, StatusCode::CREATED, move |engine, who, id| {
        engine.start_recording(who, id, req)
    })
    .await
}

/// Stop recording a call
///
/// The recording is finalized in the background: `recording.completed`
/// (or `recording.failed`, `recording.discarded`) follows.
#[utoipa::path(post, path = "/v1/calls/{id}/record/stop", operation_id = "stop_recording",
    tag = "recording control", params(("id" = String, Path, description = "The call id")),
    responses((status = 200, description = "The recording, stopped", body = RecordingView)))]
async fn record_stop(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    call_control(s, who, id, StatusCode::OK, move |engine, who, id| {
        engine.stop_recording(who, id)
    })
    .await
}

/// Pause recording
///
/// Audio while paused is left out or recorded as silence
/// (`pause_behavior`).
#[utoipa::path(post, path = "/v1/calls/{id}/record/pause", operation_id = "pause_recording",
    tag = "recording control", params(("id" = String, Path, description = "The call id")),
    responses((status = 200, description = "The recording, paused", body = RecordingView)))]
async fn record_pause(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    call_control(s, who, id, StatusCode::OK, move |engine, who, id| {
        engine.pause_recording(who, id)
    })
    .await
}

/// Resume recording
#[utoipa::path(post, path = "/v1/calls/{id}/record/resume", operation_id = "resume_recording",
    tag = "recording control", params(("id" = String, Path, description = "The call id")),
    responses((status = 200, description = "The recording, resumed", body = RecordingView)))]
async fn record_resume(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    call_control(s, who, id, StatusCode::OK, move |engine, who, id| {
        engine.resume_recording(who, id)
    })
    .await
}

/// Start or stop recording (one endpoint)
///
/// `{"action": "start", …recording options}` or `{"action": "stop"}`; with
/// no action (`{}`, or no body at all) it starts. Another action is 400
/// `invalid_action`.
#[utoipa::path(post, path = "/v1/calls/{id}/recordings", operation_id = "recording_action",
    tag = "recording control", params(("id" = String, Path, description = "The call id")), request_body = Option<ActionRequest>,
    responses(
        (status = 201, description = "Started", body = RecordingView),
        (status = 200, description = "Stopped", body = RecordingView)))]
async fn recordings_action(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: RawBody,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let bytes = body(raw).await?;
    let req: ActionRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        ActionRequest {
            action: None,
            options: Default::default(),
        }
    } else {
        parse(&bytes)?
    };
    match req.action.as_deref().unwrap_or("start") {
        "start" => {
            let opts: RecordingRequest =
                serde_path_to_error::deserialize(Value::Object(req.options)).map_err(|e| {
                    ApiError::new(
                        ErrorCode::InvalidRequest,
                        format!("{}: {}", e.path(), e.inner()),
                    )
                })?;
            call_control(s, who, id, StatusCode::CREATED, move |engine, who, id| {
                engine.start_recording(who, id, opts)
            })
            .await
        }
        "stop" => {
            if !req.options.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "stop takes no options",
                ));
            }
            call_control(s, who, id, StatusCode::OK, move |engine, who, id| {
                engine.stop_recording(who, id)
            })
            .await
        }
        other => Err(ApiError::new(
            ErrorCode::InvalidAction,
            format!("action: {other:?} is not \"start\" or \"stop\""),
        )),
    }
}

/// Mute a leg
///
/// Its audio is recorded as silence until unmuted.
#[utoipa::path(post, path = "/v1/calls/{id}/legs/{leg}/mute", operation_id = "mute_leg",
    tag = "recording control",
    params(("id" = String, Path, description = "The call id"), ("leg" = String, Path, description = "The leg id")),
    responses((status = 200, description = "The call", body = CallView)))]
async fn leg_mute(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path((id, leg)): Path<(String, String)>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    call_control(s, who, id, StatusCode::OK, move |engine, who, id| {
        engine.set_muted(who, id, &leg, true)
    })
    .await
}

/// Unmute a leg
#[utoipa::path(post, path = "/v1/calls/{id}/legs/{leg}/unmute", operation_id = "unmute_leg",
    tag = "recording control",
    params(("id" = String, Path, description = "The call id"), ("leg" = String, Path, description = "The leg id")),
    responses((status = 200, description = "The call", body = CallView)))]
async fn leg_unmute(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path((id, leg)): Path<(String, String)>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    call_control(s, who, id, StatusCode::OK, move |engine, who, id| {
        engine.set_muted(who, id, &leg, false)
    })
    .await
}

/// Prometheus metrics
///
/// Calls, recordings by state, RTP counters and drops by reason, encode
/// time by format, finalize latency, webhook attempts; no token.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String,
        content_type = "text/plain")))]
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
    if let Some((connections, idle)) = s.engine.catalog().pool_state() {
        metric(
            "recengine_catalog_pool_connections",
            "PostgreSQL catalog connections this recorder holds, by state.",
            "gauge",
            vec![
                (
                    "{state=\"busy\"}".into(),
                    u64::from(connections.saturating_sub(idle)),
                ),
                ("{state=\"idle\"}".into(), u64::from(idle)),
            ],
        );
    }
    if let Some(u) = &s.uploads {
        metric(
            "recengine_uploads_total",
            "Uploads to the object store by outcome (failed: an attempt that will be retried).",
            "counter",
            vec![
                ("{outcome=\"uploaded\"}".into(), load(&u.uploaded)),
                ("{outcome=\"failed\"}".into(), load(&u.failures)),
            ],
        );
        metric(
            "recengine_upload_backlog",
            "Finished recordings of this recorder waiting for the object store.",
            "gauge",
            vec![(String::new(), load(&u.backlog))],
        );
        metric(
            "recengine_upload_latency_ms_sum",
            "Sum over uploads of the time from completion to the store confirming it (ms); divide by recengine_uploads_total{outcome=\"uploaded\"}.",
            "counter",
            vec![(String::new(), load(&u.latency_ms_sum))],
        );
    }
    if let Some(n) = &s.nats {
        metric(
            "recengine_nats_published_total",
            "Events JetStream acknowledged.",
            "counter",
            vec![(String::new(), load(&n.published))],
        );
        metric(
            "recengine_nats_publish_failures_total",
            "Connections or publishes to NATS that failed (retried with backoff).",
            "counter",
            vec![(String::new(), load(&n.failures))],
        );
        metric(
            "recengine_nats_backlog",
            "Events logged and not yet acknowledged by JetStream.",
            "gauge",
            vec![(String::new(), load(&n.backlog))],
        );
        metric(
            "recengine_nats_connected",
            "1 while connected to NATS.",
            "gauge",
            vec![(String::new(), load(&n.connected))],
        );
    }
    if let Some(sip) = &s.siprec {
        metric(
            "recengine_siprec_requests_total",
            "SIP requests received by the SIPREC server (retransmissions included).",
            "counter",
            vec![(String::new(), load(&sip.requests))],
        );
        metric(
            "recengine_siprec_malformed_total",
            "SIP messages that could not be parsed (dropped).",
            "counter",
            vec![(String::new(), load(&sip.malformed))],
        );
        metric(
            "recengine_siprec_retransmissions_total",
            "Retransmitted requests answered again from their transaction.",
            "counter",
            vec![(String::new(), load(&sip.retransmissions))],
        );
        metric(
            "recengine_siprec_sessions_total",
            "SIPREC sessions by outcome.",
            "counter",
            vec![
                ("{outcome=\"started\"}".into(), load(&sip.sessions_started)),
                ("{outcome=\"refused\"}".into(), load(&sip.sessions_refused)),
                ("{outcome=\"ended\"}".into(), load(&sip.sessions_ended)),
            ],
        );
        metric(
            "recengine_siprec_dialogs",
            "SIPREC dialogs open.",
            "gauge",
            vec![(String::new(), load(&sip.dialogs))],
        );
    }
    let (paths, exhaustions) = crate::io::receive::metrics();
    metric(
        "recengine_media_workers",
        "Media workers by how they read RTP sockets (workers.receive_path).",
        "gauge",
        paths
            .iter()
            .map(|(p, n)| (format!("{{receive_path=\"{}\"}}", p.name()), *n))
            .collect(),
    );
    metric(
        "recengine_io_uring_buffer_exhaustions_total",
        "Times a leg's io_uring receive ran out of buffers and the leg was read with recvmmsg until empty.",
        "counter",
        vec![(String::new(), exhaustions)],
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
