//! Recordings after the call: list, get, signed download, file serving with
//! `Range`, delete with tombstone, the latest recording of a call, and
//! recording logs with idempotency keys.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::params::Params;
use super::urls::UrlRefused;
use super::{ApiError, ApiResult, ApiState, RawBody, body, ok, parse, principal};
use crate::catalog::{Claim, ListFilter, RecordingRow};
use crate::engine::{EngineError, Principal};
use crate::ids::is_valid_id;
use crate::timefmt::{parse_rfc3339, rfc3339, unix_now};

pub(super) const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

pub(super) fn bad_param(name: &str, msg: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        format!("{name}: {msg}"),
    )
}

/// Takes `limit` or `offset` from a query; false for any other key.
pub(super) fn page_param(
    key: &str,
    value: &str,
    limit: &mut u32,
    offset: &mut u64,
) -> Result<bool, ApiError> {
    match key {
        "limit" => {
            let n: u32 = value.parse().map_err(|_| {
                bad_param("limit", format!("{value:?} is not a number 0-{MAX_LIMIT}"))
            })?;
            *limit = n.min(MAX_LIMIT);
        }
        "offset" => {
            *offset = value.parse().map_err(|_| {
                bad_param("offset", format!("{value:?} is not a non-negative number"))
            })?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn content_type(format: &str) -> &'static str {
    match format {
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "opus" => "audio/ogg",
        _ => "application/octet-stream",
    }
}

/// The full JSON of a catalogued recording.
fn detail(s: &ApiState, row: &RecordingRow) -> Value {
    let mut v = serde_json::to_value(row).unwrap_or(Value::Null);
    let info: Value = row
        .info_json
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        if let Some(live) = s
            .engine
            .live_duration_ms(row.customer_id.as_deref(), &row.recording_id)
        {
            o.insert("duration_ms".into(), json!(live));
        }
        o.insert(
            "duration_seconds".into(),
            json!(o["duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0),
        );
        o.insert("content_type".into(), json!(content_type(&row.format)));
        o.insert(
            "checksum".into(),
            row.checksum
                .as_ref()
                .map_or(Value::Null, |c| json!({"algorithm": "sha256", "value": c})),
        );
        o.insert(
            "pauses".into(),
            info.get("pauses").cloned().unwrap_or(json!([])),
        );
        o.insert(
            "legs".into(),
            info.get("legs").cloned().unwrap_or(json!([])),
        );
        o.insert(
            "pause_behavior".into(),
            info.get("pause_behavior").cloned().unwrap_or(Value::Null),
        );
        o.insert(
            "channel_count".into(),
            info.get("channel_count").cloned().unwrap_or(Value::Null),
        );
        // Transcription and metadata from a recording log with the same id.
        if let Ok(Some((log, _, _))) =
            s.engine
                .catalog()
                .get_log(row.customer_id.as_deref(), &row.call_id, &row.recording_id)
            && let Ok(log) = serde_json::from_str::<Value>(&log)
        {
            for k in [
                "transcription_id",
                "transcription_status",
                "metadata",
                "recording_url",
            ] {
                if let Some(x) = log.get(k) {
                    o.insert(k.into(), x.clone());
                }
            }
        }
    }
    v
}

pub async fn list(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Params(q): Params,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let mut f = ListFilter {
        customer_id: match &who {
            Principal::Admin => None,
            Principal::Tenant(t) => Some(t.clone()),
        },
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (k, v) in &q {
        match k.as_str() {
            "call_id" => {
                if !is_valid_id(v) {
                    return Err(bad_param("call_id", "not a valid id"));
                }
                f.call_id = Some(v.clone());
            }
            "status" => {
                const STATES: [&str; 8] = [
                    "recording",
                    "paused",
                    "stopped",
                    "processing",
                    "completed",
                    "failed",
                    "discarded",
                    "deleted",
                ];
                if !STATES.contains(&v.as_str()) {
                    return Err(bad_param(
                        "status",
                        format!("{v:?} is not one of {}", STATES.join(", ")),
                    ));
                }
                f.status = Some(v.clone());
            }
            "format" => {
                if !["wav", "mp3", "opus"].contains(&v.as_str()) {
                    return Err(bad_param(
                        "format",
                        format!("{v:?} is not wav, mp3 or opus"),
                    ));
                }
                f.format = Some(v.clone());
            }
            "since" | "until" => {
                let t = parse_rfc3339(v)
                    .ok_or_else(|| bad_param(k, format!("{v:?} is not an RFC 3339 time")))?;
                let ms = t.as_millis() as i64;
                if k == "since" {
                    f.since_ms = Some(ms);
                } else {
                    f.until_ms = Some(ms);
                }
            }
            other => {
                if !page_param(other, v, &mut f.limit, &mut f.offset)? {
                    return Err(bad_param(other, "unknown query parameter"));
                }
            }
        }
    }
    let (rows, total) = s
        .engine
        .catalog()
        .list(&f)
        .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))?;
    let data: Vec<Value> = rows.iter().map(|r| detail(&s, r)).collect();
    let has_more = f.offset.saturating_add(rows.len() as u64) < total;
    ok(
        StatusCode::OK,
        json!({"data": data, "pagination": {"total": total, "limit": f.limit, "offset": f.offset, "has_more": has_more}}),
    )
}

pub async fn get(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let row = s.engine.catalogued(&who, &id)?;
    ok(StatusCode::OK, detail(&s, &row))
}

fn downloadable(row: &RecordingRow) -> Result<(), ApiError> {
    if row.deleted_at.is_some() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "recording_deleted",
            "the recording was deleted",
        ));
    }
    if row.status != "completed" || row.external {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "recording_not_ready",
            format!(
                "the recording is {}; only completed recordings can be downloaded",
                row.status
            ),
        ));
    }
    Ok(())
}

pub async fn download(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let row = s.engine.catalogued(&who, &id)?;
    downloadable(&row)?;
    let (url, _) = s
        .urls
        .sign(row.customer_id.as_deref(), &row.recording_id, unix_now());
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}

pub async fn call_recording(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(call): Path<String>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let row = s.engine.latest_recording(&who, &call)?;
    let (url, expires) = if row.status == "completed" && row.deleted_at.is_none() {
        let (u, e) = s
            .urls
            .sign(row.customer_id.as_deref(), &row.recording_id, unix_now());
        (Some(u), Some(rfc3339(std::time::Duration::from_secs(e))))
    } else {
        (None, None)
    };
    let duration_ms = s
        .engine
        .live_duration_ms(row.customer_id.as_deref(), &row.recording_id)
        .unwrap_or(row.duration_ms);
    ok(
        StatusCode::OK,
        json!({"recording_id": row.recording_id, "call_id": row.call_id, "url": url,
               "content_type": content_type(&row.format), "expires_at": expires,
               "recording_status": row.status, "duration_seconds": duration_ms as f64 / 1000.0,
               "file_size_bytes": row.file_size_bytes, "recording_start_time": row.started_at}),
    )
}

pub async fn delete(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let row = s.engine.delete_recording(&who, &id)?;
    ok(StatusCode::OK, detail(&s, &row))
}

/// A decimal number written the one way it is written: digits only, no
/// sign, no leading zero (so a signed URL has exactly one spelling).
fn canonical_u64(s: &str) -> Option<u64> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits && (s == "0" || !s.starts_with('0')))
        .then(|| s.parse().ok())
        .flatten()
}

/// Serves a file through a signed URL (no bearer token): Content-Type,
/// ETag (the sha256), Accept-Ranges, single `Range` requests, HEAD.
pub async fn file(
    State(s): State<Arc<ApiState>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Params(q): Params,
) -> ApiResult {
    let forbidden = |code: &'static str, msg: &str| ApiError::new(StatusCode::FORBIDDEN, code, msg);
    // The recording's customer (absent for the admin's own recordings),
    // the expiry and the signature; nothing else.
    if let Some(other) = q
        .keys()
        .find(|k| !["customer", "expires", "sig"].contains(&k.as_str()))
    {
        return Err(forbidden(
            "invalid_signature",
            &format!("{other}: not part of a signed URL"),
        ));
    }
    let expires: u64 = q
        .get("expires")
        .and_then(|e| canonical_u64(e))
        .ok_or_else(|| forbidden("invalid_signature", "missing or malformed expires"))?;
    let sig = q
        .get("sig")
        .ok_or_else(|| forbidden("invalid_signature", "missing sig"))?;
    let customer = q.get("customer").map(String::as_str);
    if !crate::ids::is_valid_id(&id) || customer.is_some_and(|c| !crate::ids::is_valid_id(c)) {
        return Err(forbidden(
            "invalid_signature",
            "the URL does not name a recording",
        ));
    }
    match s.urls.verify(customer, &id, expires, sig, unix_now()) {
        Ok(()) => {}
        Err(UrlRefused::Expired) => {
            return Err(forbidden(
                "url_expired",
                "this download URL has expired; ask for a new one",
            ));
        }
        Err(UrlRefused::BadSignature) => {
            return Err(forbidden(
                "invalid_signature",
                "the URL signature does not match",
            ));
        }
    }
    let row = s
        .engine
        .catalog()
        .get(customer, &id)
        .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))?
        .ok_or_else(|| ApiError::from(EngineError::RecordingNotFound(id.clone())))?;
    downloadable(&row)?;
    let path = row
        .path
        .clone()
        .ok_or_else(|| ApiError::new(StatusCode::GONE, "recording_deleted", "no file"))?;
    let etag = format!("\"{}\"", row.checksum.clone().unwrap_or_default());
    let mut f = std::fs::File::open(&path).map_err(|e| {
        tracing::error!(file = %path, error = %e, "catalogued recording file missing");
        ApiError::new(
            StatusCode::GONE,
            "file_missing",
            "the recording's file is missing from storage",
        )
    })?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match(v, &etag))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(r) => match parse_range(r, size) {
            Some(r) => Some(r),
            None => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                    axum::Json(json!({"error": {"code": "range_not_satisfiable", "message": format!("the file has {size} bytes")}})),
                )
                    .into_response());
            }
        },
    };
    let (status, start, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type(&row.format))
        .header(header::ETAG, &etag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, len.to_string())
        .header(
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"{}.{}\"",
                row.recording_id, row.format
            ),
        );
    if range.is_some() {
        resp = resp.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", start, start + len - 1),
        );
    }
    if method == Method::HEAD {
        return resp
            .body(Body::empty())
            .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())));
    }
    f.seek(SeekFrom::Start(start))
        .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))?;
    // Stream in 64 KiB chunks so large files never sit in memory whole.
    let stream = futures_util::stream::unfold((f, len), |(mut f, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; left.min(64 * 1024) as usize];
        match f.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<Bytes, std::io::Error>(Bytes::from(buf)),
                    (f, left - n as u64),
                ))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    resp.body(Body::from_stream(stream))
        .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))
}

/// Whether an `If-None-Match` value matches `etag` (RFC 9110 13.1.2: `*`
/// matches any current file, and the comparison is weak, so `W/"x"`
/// matches `"x"`).
fn none_match(header: &str, etag: &str) -> bool {
    header.trim() == "*"
        || header
            .split(',')
            .map(|t| t.trim())
            .any(|t| t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// One `bytes=a-b`, `bytes=a-` or `bytes=-n` range within `size`.
fn parse_range(h: &str, size: u64) -> Option<(u64, u64)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size - 1
        } else {
            b.parse::<u64>().ok()?.min(size - 1)
        };
        (start, end)
    };
    (start <= end && start < size).then_some((start, end))
}

/// A recording log as posted.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingLog {
    pub recording_id: String,
    pub recording_url: Option<String>,
    pub duration_seconds: Option<f64>,
    pub transcription_id: Option<String>,
    pub transcription_status: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub metadata: Option<serde_json::Map<String, Value>>,
}

/// The longest recording a recording log may describe: a week.
const MAX_LOG_DURATION_S: f64 = 7.0 * 86_400.0;

fn validate_log(l: &RecordingLog) -> Result<(), ApiError> {
    if !is_valid_id(&l.recording_id) {
        return Err(bad_param("recording_id", "not a valid id"));
    }
    if let Some(u) = &l.recording_url
        && (!u.starts_with("https://")
            || u.len() > 2048
            || u.chars().any(|c| c.is_control() || c == ' '))
    {
        return Err(bad_param(
            "recording_url",
            "must be an https:// URL without spaces or control characters",
        ));
    }
    if let Some(d) = l.duration_seconds
        && !(d.is_finite() && (0.0..=MAX_LOG_DURATION_S).contains(&d))
    {
        return Err(bad_param(
            "duration_seconds",
            format!("must be a number of seconds from 0 to {MAX_LOG_DURATION_S}"),
        ));
    }
    if let Some(t) = &l.transcription_status
        && !["pending", "completed", "failed"].contains(&t.as_str())
    {
        return Err(bad_param(
            "transcription_status",
            "must be pending, completed or failed",
        ));
    }
    if let Some(t) = &l.transcription_id
        && !is_valid_id(t)
    {
        return Err(bad_param("transcription_id", "not a valid id"));
    }
    let start = match &l.started_at {
        Some(t) => {
            Some(parse_rfc3339(t).ok_or_else(|| bad_param("started_at", "not an RFC 3339 time"))?)
        }
        None => None,
    };
    let end = match &l.ended_at {
        Some(t) => {
            Some(parse_rfc3339(t).ok_or_else(|| bad_param("ended_at", "not an RFC 3339 time"))?)
        }
        None => None,
    };
    if let (Some(a), Some(b)) = (start, end)
        && b < a
    {
        return Err(bad_param("ended_at", "is before started_at"));
    }
    if let Some(m) = &l.metadata {
        let text = serde_json::to_string(m).unwrap_or_default();
        if text.len() > 16 * 1024 {
            return Err(bad_param("metadata", "larger than 16 KiB"));
        }
    }
    Ok(())
}

pub async fn recording_log(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(call): Path<String>,
    raw: RawBody,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let bytes = body(raw).await?;
    let customer = s.engine.call_visible(&who, &call)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255 && k.is_ascii());
            Some(
                k.ok_or_else(|| bad_param("Idempotency-Key", "1-255 ASCII characters"))?
                    .to_owned(),
            )
        }
    };
    let Some(key) = key else {
        let (status, text) = store_recording_log(&s, &call, customer, &bytes)?;
        return Ok(json_answer(status, text, false));
    };
    // One transaction claims the key: of concurrent requests with it,
    // one runs and the others are told it is in progress.
    let scope = format!(
        "{}:recording-log:{call}",
        customer.clone().unwrap_or_default()
    );
    let hash = crate::crypto::sha256_hex(&bytes);
    let catalog = s.engine.catalog();
    let internal =
        |e: crate::catalog::CatalogError| ApiError::from(EngineError::Internal(e.to_string()));
    let claim = catalog
        .claim_idempotency(
            &key,
            &scope,
            &hash,
            &rfc3339(unix_now()),
            &s.engine.idempotency_cutoff(),
        )
        .map_err(internal)?;
    let reused = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different body",
        )
    };
    match claim {
        Claim::Done {
            request_hash,
            status,
            response,
        } => {
            if request_hash != hash {
                return Err(reused());
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            Ok(json_answer(status, response, true))
        }
        Claim::InProgress { request_hash } if request_hash != hash => Err(reused()),
        Claim::InProgress { .. } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_use",
            "a request with this Idempotency-Key is in progress; retry it in a moment",
        )),
        Claim::Claimed => match store_recording_log(&s, &call, customer, &bytes) {
            Ok((status, text)) => {
                catalog
                    .finish_idempotency(&key, &scope, status.as_u16(), &text)
                    .map_err(internal)?;
                Ok(json_answer(status, text, false))
            }
            Err(e) => {
                let _ = catalog.release_idempotency(&key, &scope);
                Err(e)
            }
        },
    }
}

/// A JSON body already serialized, with `Idempotent-Replayed` when it is
/// a stored answer.
fn json_answer(status: StatusCode, text: String, replayed: bool) -> Response {
    let mut resp = (status, text).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

/// Validates and stores a recording log for the customer's call: 201 and
/// the log when it is new, 200 when it replaced one.
fn store_recording_log(
    s: &ApiState,
    call: &str,
    customer: Option<String>,
    bytes: &[u8],
) -> Result<(StatusCode, String), ApiError> {
    let log: RecordingLog = parse(bytes)?;
    validate_log(&log)?;
    let now = rfc3339(unix_now());
    let stored = serde_json::to_string(&log).unwrap_or_default();
    let created = s
        .engine
        .catalog()
        .upsert_log(customer.as_deref(), call, &log.recording_id, &stored, &now)
        .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))?;
    let catalogued = s
        .engine
        .catalog()
        .get(customer.as_deref(), &log.recording_id)
        .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))?;
    let engine_recording = catalogued
        .as_ref()
        .filter(|r| r.call_id == call && !r.external);
    let (_, created_at, updated_at) = s
        .engine
        .catalog()
        .get_log(customer.as_deref(), call, &log.recording_id)
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut response = serde_json::to_value(&log).unwrap_or(Value::Null);
    if let Some(o) = response.as_object_mut() {
        o.insert("call_id".into(), json!(call));
        o.insert(
            "attached_to_engine_recording".into(),
            json!(engine_recording.is_some()),
        );
        o.insert("created_at".into(), json!(created_at));
        o.insert("updated_at".into(), json!(updated_at));
    }
    // A recording log for a recording the engine does not have catalogues
    // the external recording so it can be listed.
    if catalogued.is_none() {
        let started = log.started_at.clone().unwrap_or_else(|| now.clone());
        let started_ms = parse_rfc3339(&started).map_or(0, |t| t.as_millis() as i64);
        let row = RecordingRow {
            recording_id: log.recording_id.clone(),
            call_id: call.to_owned(),
            customer_id: customer.clone(),
            reference_type: "call".into(),
            status: "completed".into(),
            format: "external".into(),
            sample_rate: 0,
            channels: "unknown".into(),
            bitrate_kbps: 0,
            participant: "all".into(),
            path: None,
            duration_ms: (log.duration_seconds.unwrap_or(0.0) * 1000.0) as u64,
            file_size_bytes: None,
            checksum: None,
            failure_reason: None,
            started_at: started,
            started_ms,
            stopped_at: log.ended_at.clone(),
            completed_at: log.ended_at.clone(),
            completed_ms: None,
            created_at: now.clone(),
            updated_at: now.clone(),
            deleted_at: None,
            retention_days: None,
            recovered: false,
            external: true,
            info_json: None,
        };
        let _ = s.engine.catalog().put_recording(&row);
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, response.to_string()))
}

#[cfg(test)]
mod tests {
    use super::{canonical_u64, none_match, parse_range};

    #[test]
    fn if_none_match_is_weak_and_takes_any() {
        let tag = "\"abc\"";
        for matching in [
            "\"abc\"",
            "W/\"abc\"",
            "*",
            " \"x\", W/\"abc\" ",
            "\"x\",\"abc\"",
        ] {
            assert!(none_match(matching, tag), "{matching}");
        }
        for other in ["\"abd\"", "abc", "W/abc", "\"x\", \"y\"", ""] {
            assert!(!none_match(other, tag), "{other}");
        }
    }

    #[test]
    fn signed_url_numbers_have_one_spelling() {
        assert_eq!(canonical_u64("1700000000"), Some(1_700_000_000));
        assert_eq!(canonical_u64("0"), Some(0));
        for other in ["+1700000000", "01700000000", "", " 1", "1e9", "-1"] {
            assert_eq!(canonical_u64(other), None, "{other:?}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
