//! Recordings after the call: list, get, signed download, file serving with
//! `Range`, delete with tombstone, the latest recording of a call, and
//! recording logs with idempotency keys.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::audit::AuditAction;
use super::params::{Params, TypedQuery};
use super::stored::Stored;
use super::urls::UrlRefused;
use super::views::{CallRecordingLink, Page, Pagination, RecordingDetail, RecordingLogView};
use super::{
    ApiError, ApiResult, ApiState, ErrorCode, RawBody, blocking, body, ok, parse, principal,
};
use crate::catalog::{Claim, ListFilter, RecordingRow};
use crate::config::{Format, PauseBehavior};
use crate::engine::model::RecordingStatus;
use crate::engine::{EngineError, Principal};
use crate::ids::is_valid_id;
use crate::recording::Checksum;
use crate::timefmt::{parse_rfc3339, rfc3339, unix_now};

pub(super) const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;
/// Bytes per chunk of a plain file download.
const CHUNK: usize = 64 * 1024;

pub(super) fn bad_param(name: &str, msg: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, format!("{name}: {msg}"))
}

/// A list's `limit` (default 50, at most 1000) and `offset` (default 0).
pub(super) fn page(limit: Option<u32>, offset: Option<i64>) -> Result<(u32, u64), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(bad_param("limit", format!("at most {MAX_LIMIT}")));
    }
    let offset = u64::try_from(offset.unwrap_or(0))
        .map_err(|_| bad_param("offset", "must not be negative"))?;
    Ok((limit, offset))
}

/// A list's id filter: absent, or a valid id (400 naming it otherwise).
pub(super) fn check_id_param(name: &str, value: &Option<String>) -> Result<(), ApiError> {
    match value {
        Some(id) if !is_valid_id(id) => Err(bad_param(name, "not a valid id")),
        _ => Ok(()),
    }
}

/// A list's time filter as Unix ms: absent, or RFC 3339 (400 naming it
/// otherwise).
pub(super) fn time_param(name: &str, value: &Option<String>) -> Result<Option<i64>, ApiError> {
    value
        .as_deref()
        .map(|v| {
            parse_rfc3339(v)
                .map(|t| t.as_millis() as i64)
                .ok_or_else(|| bad_param(name, format!("{v:?} is not an RFC 3339 time")))
        })
        .transpose()
}

/// A catalogued recording in full.
fn detail(s: &ApiState, row: &RecordingRow) -> RecordingDetail {
    #[derive(Default, Deserialize)]
    struct SidecarPart {
        #[serde(default)]
        pauses: Vec<Value>,
        #[serde(default)]
        legs: Vec<Value>,
        pause_behavior: Option<PauseBehavior>,
        channel_count: Option<u16>,
        #[serde(flatten)]
        owner: crate::recording::OwnerFields,
        call_flow_id: Option<String>,
        announcement: Option<crate::recording::AnnouncementInfo>,
        siprec: Option<Box<crate::siprec::SiprecCall>>,
    }
    let info: SidecarPart = row
        .info_json
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    let mut row = row.clone();
    if let Some(live) = s
        .engine
        .live_duration_ms(row.customer_id.as_deref(), &row.recording_id)
    {
        row.duration_ms = live;
    }
    let mut d = RecordingDetail {
        duration_seconds: row.duration_ms as f64 / 1000.0,
        content_type: Format::content_type_of(&row.format),
        checksum: row.checksum.clone().map(Checksum::sha256),
        pauses: info.pauses,
        legs: info.legs,
        pause_behavior: info.pause_behavior,
        channel_count: info.channel_count,
        owner: info.owner,
        call_flow_id: info.call_flow_id,
        announcement: info.announcement,
        encryption: row.encryption.clone(),
        siprec: info.siprec,
        transcription_id: None,
        transcription_status: None,
        metadata: None,
        recording_url: None,
        upload: s.engine.objects().and_then(|o| {
            let u = s
                .engine
                .catalog()
                .upload_of(row.customer_id.as_deref(), &row.recording_id)
                .ok()??;
            Some(super::views::UploadView {
                state: u.state.as_str(),
                bucket: o.bucket().to_owned(),
                object_key: u.object_key,
                attempts: u.attempts,
                uploaded_at: u
                    .uploaded_ms
                    .map(|ms| rfc3339(std::time::Duration::from_millis(ms.max(0) as u64))),
            })
        }),
        row,
    };
    // Transcription and metadata from a recording log with the same id.
    if let Ok(Some((log, _, _))) = s.engine.catalog().get_log(
        d.row.customer_id.as_deref(),
        &d.row.call_id,
        &d.row.recording_id,
    ) && let Ok(log) = serde_json::from_str::<RecordingLog>(&log)
    {
        d.transcription_id = log.transcription_id;
        d.transcription_status = log.transcription_status;
        d.metadata = log.metadata;
        d.recording_url = log.recording_url;
    }
    d
}

/// `GET /v1/recordings` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordingListQuery {
    /// Recordings of this call only.
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    call_id: Option<String>,
    status: Option<RecordingStatus>,
    #[param(inline)]
    format: Option<Format>,
    /// Started at or after this time (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Started before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// Recordings on a page (default 50, at most 1000).
    #[param(minimum = 0, maximum = 1000)]
    limit: Option<u32>,
    /// Recordings skipped.
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// List recordings
///
/// Newest first, a page at a time; a customer token sees its own.
#[utoipa::path(get, path = "/v1/recordings", operation_id = "list_recordings", tag = "recordings",
    params(RecordingListQuery),
    responses((status = 200, description = "A page of recordings", body = Page<RecordingDetail>)))]
pub async fn list(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    TypedQuery(q): TypedQuery<RecordingListQuery>,
) -> ApiResult {
    blocking(move || {
        let who = principal(&s, &headers)?;
        let (limit, offset) = page(q.limit, q.offset)?;
        check_id_param("call_id", &q.call_id)?;
        let f = ListFilter {
            customer_id: match &who {
                Principal::Admin => None,
                Principal::Tenant(t) => Some(t.clone()),
            },
            since_ms: time_param("since", &q.since)?,
            until_ms: time_param("until", &q.until)?,
            call_id: q.call_id,
            status: q.status,
            format: q.format.map(|f| f.extension().to_owned()),
            limit,
            offset,
        };
        let (rows, total) = s
            .engine
            .catalog()
            .list(&f)
            .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))?;
        let pagination = Pagination::new(total, f.limit, f.offset, rows.len());
        let data = rows.iter().map(|r| detail(&s, r)).collect();
        ok(StatusCode::OK, Page { data, pagination })
    })
    .await
}

/// Get a recording
#[utoipa::path(get, path = "/v1/recordings/{id}", operation_id = "get_recording", tag = "recordings",
    params(("id" = String, Path, description = "The recording id")),
    responses((status = 200, description = "The recording", body = RecordingDetail)))]
pub async fn get(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    blocking(move || {
        let who = principal(&s, &headers)?;
        let row = s.engine.catalogued(&who, &id)?;
        ok(StatusCode::OK, detail(&s, &row))
    })
    .await
}

/// Where a completed recording's file is.
enum Source {
    /// On this recorder's disk.
    Local,
    /// In the object store, under this key.
    Object(String),
}

/// Finds the file: in the object store once uploaded (any recorder can
/// serve it), else on this recorder's disk (another recorder's file is
/// `held_by_other_node`).
fn source(s: &ApiState, row: &RecordingRow) -> Result<Source, ApiError> {
    use crate::catalog::uploads::UploadState;
    if s.engine.objects().is_some() {
        let upload = s
            .engine
            .catalog()
            .upload_of(row.customer_id.as_deref(), &row.recording_id)?;
        if let Some(u) = upload.filter(|u| u.state == UploadState::Uploaded) {
            return Ok(Source::Object(u.object_key));
        }
    }
    s.engine.file_is_here(row)?;
    Ok(Source::Local)
}

/// Where a download of `row` goes: a pre-signed object URL for a plain
/// file in the object store, else this daemon's signed URL (which
/// decrypts, or adds the wrapped key, as the file needs).
fn download_url(
    s: &ApiState,
    headers: &HeaderMap,
    row: &RecordingRow,
) -> Result<(String, u64), ApiError> {
    let now = unix_now();
    if let (Source::Object(key), None, Some(objects)) =
        (source(s, row)?, &row.encryption, s.engine.objects())
    {
        let ttl = u64::from(s.engine.config().storage.url_lifetime_s);
        let url = objects
            .presigned_get(&key, std::time::Duration::from_secs(ttl))
            .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))?;
        return Ok((url, now.as_secs() + ttl));
    }
    let by = s.tokens.name_of(headers).unwrap_or_default();
    let (url, expires) = s
        .urls
        .sign(row.customer_id.as_deref(), &row.recording_id, now, &by);
    Ok((format!("{}{url}", s.public_url), expires))
}

/// A copy of an object fetched to serve one download; removed when
/// dropped (an open file keeps reading it).
struct Fetched(std::path::PathBuf);

impl Drop for Fetched {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The file to serve `row` from: the local one, or the object fetched
/// into `<storage.dir>/.fetch/`.
fn file_to_serve(s: &ApiState, row: &RecordingRow) -> Result<(String, Option<Fetched>), ApiError> {
    let internal = |e: String| ApiError::from(EngineError::Internal(e));
    match (source(s, row)?, s.engine.objects()) {
        (Source::Object(key), Some(objects)) => {
            let dir = std::path::Path::new(&s.engine.config().storage.dir).join(".fetch");
            std::fs::create_dir_all(&dir).map_err(|e| internal(e.to_string()))?;
            let tmp = dir.join(crate::ids::random_id(&format!("{}-", row.recording_id)));
            let fetched = Fetched(tmp.clone());
            objects.fetch_to(&key, &tmp).map_err(|e| {
                tracing::error!(recording = %row.recording_id, key, error = %e, "could not fetch a recording from the object store");
                ApiError::new(
                    ErrorCode::FileMissing,
                    "the recording's file could not be read from the object store",
                )
            })?;
            Ok((tmp.to_string_lossy().into_owned(), Some(fetched)))
        }
        _ => Ok((
            row.path
                .clone()
                .ok_or_else(|| ApiError::new(ErrorCode::RecordingDeleted, "no file"))?,
            None,
        )),
    }
}

fn downloadable(row: &RecordingRow) -> Result<(), ApiError> {
    if row.deleted_at.is_some() {
        return Err(ApiError::new(
            ErrorCode::RecordingDeleted,
            "the recording was deleted",
        ));
    }
    if row.external {
        return Err(ApiError::new(
            ErrorCode::RecordingNotReady,
            "the recording was made elsewhere and only logged here (POST \
             /v1/calls/{id}/recording-log): its audio is at the recording_url \
             it was logged with, not on this server",
        ));
    }
    if row.status != RecordingStatus::Completed {
        return Err(ApiError::new(
            ErrorCode::RecordingNotReady,
            format!(
                "the recording is {}; only completed recordings can be downloaded",
                row.status
            ),
        ));
    }
    Ok(())
}

/// Download a recording
///
/// Redirects to a signed, time-limited URL of the file.
#[utoipa::path(get, path = "/v1/recordings/{id}/download", operation_id = "download_recording",
    tag = "recordings", params(("id" = String, Path, description = "The recording id")),
    responses((status = 302, description = "Redirect to the signed file URL",
        headers(("Location" = String, description = "The signed URL")))))]
pub async fn download(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    blocking(move || {
        let who = principal(&s, &headers)?;
        let row = s.engine.catalogued(&who, &id)?;
        downloadable(&row)?;
        let (url, _) = download_url(&s, &headers, &row)?;
        Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
    })
    .await
}

/// The latest recording of a call
///
/// With a signed download URL once it is completed.
#[utoipa::path(get, path = "/v1/calls/{id}/recording", operation_id = "call_recording",
    tag = "recordings", params(("id" = String, Path, description = "The call id")),
    responses((status = 200, description = "The call's latest recording", body = CallRecordingLink)))]
pub async fn call_recording(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(call): Path<String>,
) -> ApiResult {
    blocking(move || {
        let who = principal(&s, &headers)?;
        let row = s.engine.latest_recording(&who, &call)?;
        let (url, expires) = if row.status == RecordingStatus::Completed && row.deleted_at.is_none()
        {
            let (u, e) = download_url(&s, &headers, &row)?;
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
            CallRecordingLink {
                content_type: Format::content_type_of(&row.format),
                recording_id: row.recording_id,
                call_id: row.call_id,
                url,
                expires_at: expires,
                recording_status: row.status,
                duration_seconds: duration_ms as f64 / 1000.0,
                file_size_bytes: row.file_size_bytes,
                recording_start_time: row.started_at,
            },
        )
    })
    .await
}

/// Delete a recording
///
/// Removes the file and its sidecar; the catalog keeps a tombstone
/// (status `deleted`).
#[utoipa::path(delete, path = "/v1/recordings/{id}", operation_id = "delete_recording",
    tag = "recordings", params(("id" = String, Path, description = "The recording id")),
    responses((status = 200, description = "The deleted recording", body = RecordingDetail)))]
pub async fn delete(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    blocking(move || {
        let who = principal(&s, &headers)?;
        let row = s.engine.delete_recording(&who, &id)?;
        ok(StatusCode::OK, detail(&s, &row))
    })
    .await
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
#[utoipa::path(method(get, head), path = "/v1/files/{id}", operation_id = "get_file",
    tag = "recordings",
    params(("id" = String, Path, description = "The recording id"),
        ("customer" = Option<String>, Query, description = "The recording's customer, as signed"),
        ("expires" = u64, Query, description = "Unix time the URL expires, as signed"),
        ("by" = Option<String>, Query, description = "The token that asked for the URL, as signed"),
        ("sig" = String, Query, description = "The signature"),
        ("Range" = Option<String>, Header, description = "One byte range: `bytes=a-b`, `bytes=a-`, `bytes=-n`"),
        ("If-None-Match" = Option<String>, Header, description = "ETags already held")),
    responses(
        (status = 200, description = "The file", content(
            (Vec<u8> = "audio/wav"), (Vec<u8> = "audio/mpeg"), (Vec<u8> = "audio/ogg")),
            headers(("ETag" = String, description = "The SHA-256 of the file, quoted"))),
        (status = 206, description = "The requested range", content(
            (Vec<u8> = "audio/wav"), (Vec<u8> = "audio/mpeg"), (Vec<u8> = "audio/ogg")),
            headers(("Content-Range" = String))),
        (status = 304, description = "The file has one of the given ETags")))]
pub async fn file(
    State(s): State<Arc<ApiState>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Params(q): Params,
) -> ApiResult {
    blocking(move || {
        let forbidden = |code: ErrorCode, msg: &str| ApiError::new(code, msg);
        // The recording's customer (absent for the admin's own recordings),
        // the expiry and the signature; nothing else.
        if let Some(other) = q
            .keys()
            .find(|k| !["customer", "expires", "by", "sig"].contains(&k.as_str()))
        {
            return Err(forbidden(
                ErrorCode::InvalidSignature,
                &format!("{other}: not part of a signed URL"),
            ));
        }
        let expires: u64 = q
            .get("expires")
            .and_then(|e| canonical_u64(e))
            .ok_or_else(|| {
                forbidden(ErrorCode::InvalidSignature, "missing or malformed expires")
            })?;
        let sig = q
            .get("sig")
            .ok_or_else(|| forbidden(ErrorCode::InvalidSignature, "missing sig"))?;
        let customer = q.get("customer").map(String::as_str);
        if !crate::ids::is_valid_id(&id) || customer.is_some_and(|c| !crate::ids::is_valid_id(c)) {
            return Err(forbidden(
                ErrorCode::InvalidSignature,
                "the URL does not name a recording",
            ));
        }
        let by = q.get("by").map(String::as_str);
        match s.urls.verify(customer, &id, expires, by, sig, unix_now()) {
            Ok(()) => {}
            Err(UrlRefused::Expired) => {
                return Err(forbidden(
                    ErrorCode::UrlExpired,
                    "this download URL has expired; ask for a new one",
                ));
            }
            Err(UrlRefused::BadSignature) => {
                return Err(forbidden(
                    ErrorCode::InvalidSignature,
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
        let (path, fetched) = file_to_serve(&s, &row)?;
        let stored = Stored::open(s.engine.keyring(), &row, &path)?;
        // The open file reads on; a fetched copy's name can go now.
        drop(fetched);
        let etag = stored.etag(&row);
        let size = stored.size();
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
                    let mut r = ApiError::new(
                        ErrorCode::RangeNotSatisfiable,
                        format!("the file has {size} bytes"),
                    )
                    .into_response();
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                        r.headers_mut().insert(header::CONTENT_RANGE, v);
                    }
                    return Ok(r);
                }
            },
        };
        let (status, start, len) = match range {
            Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
            None => (StatusCode::OK, 0, size),
        };
        let mut resp = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, stored.content_type(&row))
            .header(header::ETAG, &etag)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::CONTENT_LENGTH, len.to_string())
            .header(
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", stored.filename(&row)),
            );
        for (name, value) in stored.headers() {
            resp = resp.header(name, value);
        }
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
        if stored.decrypts() {
            resp = resp.extension(AuditAction("recording.decrypt"));
        }
        // The first chunk is read (for an encrypted file: authenticated)
        // before the answer starts, so a damaged file is a clear error
        // rather than a cut-off download.
        let first = if len == 0 {
            Vec::new()
        } else {
            stored
                .read_chunk(start, len.min(CHUNK as u64) as usize)
                .map_err(|e| {
                    tracing::error!(recording = %row.recording_id, error = %e, "reading a stored recording failed");
                    ApiError::new(
                        ErrorCode::FileCorrupt,
                        format!("the stored recording could not be read: {e}. Tell the operator"),
                    )
                })?
        };
        let stored = Arc::new(stored);
        let recording = row.recording_id.clone();
        // Stream chunk by chunk (64 KiB, or one encrypted segment of 16 KiB), so large
        // files never sit in memory whole.
        let stream = futures_util::stream::unfold(
            (Some(first), start, len),
            move |(first, at, left)| {
                let stored = stored.clone();
                let recording = recording.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    let chunk = match first {
                        Some(c) => Ok(c),
                        // Off the runtime's threads, as every file read.
                        None => crate::offload::spawn_blocking(move || {
                            stored.read_chunk(at, left.min(CHUNK as u64) as usize)
                        })
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e))),
                    };
                    match chunk {
                        Ok(buf) if buf.is_empty() => None,
                        Ok(buf) => {
                            let n = (buf.len() as u64).min(left);
                            let mut buf = buf;
                            buf.truncate(n as usize);
                            Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), (None, at + n, left - n)))
                        }
                        Err(e) => {
                            tracing::error!(recording = %recording, error = %e,
                                "a stored recording failed mid-download; the answer is cut off");
                            Some((Err(e), (None, at, 0)))
                        }
                    }
                }
            },
        );
        resp.body(Body::from_stream(stream))
            .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))
    })
    .await
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
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordingLog {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub recording_id: String,
    /// Where the recording is kept elsewhere.
    #[schema(pattern = "^https://[^ ]+$", max_length = 2048)]
    pub recording_url: Option<String>,
    #[schema(minimum = 0, maximum = 604800)]
    pub duration_seconds: Option<f64>,
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pub transcription_id: Option<String>,
    /// `pending`, `completed` or `failed`.
    #[schema(pattern = "^(pending|completed|failed)$")]
    pub transcription_status: Option<String>,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    /// RFC 3339, not before `started_at`.
    #[schema(format = DateTime)]
    pub ended_at: Option<String>,
    /// Any JSON object, at most 16 KiB.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, Value>>,
}

impl RecordingLog {
    /// This post's fields over a stored log's: what the post leaves out
    /// stays as it was (`metadata`, when given, replaces the stored one).
    fn over(self, stored: RecordingLog) -> RecordingLog {
        RecordingLog {
            recording_id: self.recording_id,
            recording_url: self.recording_url.or(stored.recording_url),
            duration_seconds: self.duration_seconds.or(stored.duration_seconds),
            transcription_id: self.transcription_id.or(stored.transcription_id),
            transcription_status: self.transcription_status.or(stored.transcription_status),
            started_at: self.started_at.or(stored.started_at),
            ended_at: self.ended_at.or(stored.ended_at),
            metadata: self.metadata.or(stored.metadata),
        }
    }
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

/// Post a recording log
///
/// Attaches transcription and metadata to a recording of the call, or
/// catalogues a recording made elsewhere (format `external`). A new log
/// needs `recording_url` and `duration_seconds`; a later post changes only
/// the fields it carries (`metadata`, when given, replaces the stored
/// object). With `Idempotency-Key`, a retry answers the stored answer
/// (`Idempotent-Replayed: true`).
#[utoipa::path(post, path = "/v1/calls/{id}/recording-log", operation_id = "post_recording_log",
    tag = "recordings",
    params(("id" = String, Path, description = "The call id"),
        ("Idempotency-Key" = Option<String>, Header, description = "1-255 ASCII characters")),
    request_body = RecordingLog,
    responses(
        (status = 201, description = "A new log", body = super::views::RecordingLogView),
        (status = 200, description = "The log replaced an earlier one", body = super::views::RecordingLogView)))]
pub async fn recording_log(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(call): Path<String>,
    raw: RawBody,
) -> ApiResult {
    let who = principal(&s, &headers)?;
    let bytes = body(raw).await?;
    blocking(move || {
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
        let hash = request_fingerprint(&bytes);
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
                ErrorCode::IdempotencyKeyReused,
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
                ErrorCode::IdempotencyKeyInUse,
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
    })
    .await
}

/// What an Idempotency-Key is bound to: the SHA-256 of the body as a JSON
/// value with every object's keys sorted, so a retry that serializes the
/// same fields in another order or spacing is the same request. A body that
/// is not JSON (refused later anyway) is hashed as sent.
fn request_fingerprint(bytes: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(mut value) => {
            value.sort_all_objects();
            crate::crypto::sha256_hex(value.to_string().as_bytes())
        }
        Err(_) => crate::crypto::sha256_hex(bytes),
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
    let posted: RecordingLog = parse(bytes)?;
    validate_log(&posted)?;
    let now = rfc3339(unix_now());
    // A later post changes only the fields it carries; the merged log is
    // checked again (an ended_at against a stored started_at) and a new
    // log must say where its recording is and how long it lasts.
    let mut log = posted.clone();
    let created = s.engine.catalog().upsert_log_with(
        customer.as_deref(),
        call,
        &posted.recording_id,
        &now,
        |stored| {
            if let Some(stored) = stored.and_then(|t| serde_json::from_str::<RecordingLog>(t).ok())
            {
                log = posted.clone().over(stored);
            } else {
                for (field, given) in [
                    ("recording_url", log.recording_url.is_some()),
                    ("duration_seconds", log.duration_seconds.is_some()),
                ] {
                    if !given {
                        return Err(bad_param(field, "required when a recording log is created"));
                    }
                }
            }
            validate_log(&log)?;
            Ok(serde_json::to_string(&log).unwrap_or_default())
        },
    )?;
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
    let response = RecordingLogView {
        log: log.clone(),
        call_id: call.to_owned(),
        attached_to_engine_recording: engine_recording.is_some(),
        created_at,
        updated_at,
    };
    // A recording log for a recording the engine does not have catalogues
    // the external recording so it can be listed; a later log updates it.
    if catalogued
        .as_ref()
        .is_none_or(|r| r.external && r.call_id == call && r.deleted_at.is_none())
    {
        let started = log.started_at.clone().unwrap_or_else(|| now.clone());
        let started_ms = parse_rfc3339(&started).map_or(0, |t| t.as_millis() as i64);
        let row = RecordingRow {
            recording_id: log.recording_id.clone(),
            call_id: call.to_owned(),
            customer_id: customer.clone(),
            reference_type: "call".into(),
            status: RecordingStatus::Completed,
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
            created_at: catalogued
                .as_ref()
                .map_or_else(|| now.clone(), |r| r.created_at.clone()),
            updated_at: now.clone(),
            deleted_at: None,
            retention_days: None,
            recovered: false,
            external: true,
            info_json: None,
            encryption: None,
            recovery_key: None,
            node_id: String::new(),
        };
        let _ = s.engine.catalog().put_recording(&row);
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, serde_json::to_string(&response).unwrap_or_default()))
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
