//! What every API request passes before its handler runs: the token is
//! checked from the headers alone (a request without a valid token is
//! answered 401 before its body is read, and no `100 Continue` goes out),
//! each token is held to `api.rate_limit_per_s` (429 `rate_limited` with
//! `Retry-After`), and the whole request, body included, to
//! `api.request_timeout_s` (408 `request_timeout`). Refused
//! authentications are logged with the peer address, at most once a
//! second (with how many were not logged), never with the token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::Tokens;
use super::{ApiError, ErrorCode};

/// See the module documentation.
pub struct Guard {
    pub tokens: Tokens,
    pub limiter: RateLimiter,
    pub timeout: Duration,
    refusals: RefusalLog,
}

impl Guard {
    pub fn new(tokens: Tokens, limiter: RateLimiter, timeout: Duration) -> Self {
        Self {
            tokens,
            limiter,
            timeout,
            refusals: RefusalLog::default(),
        }
    }
}

/// Routes that take no bearer token: health, metrics, the OpenAPI
/// document, and signed URLs (the signature is their authority).
fn needs_token(path: &str) -> bool {
    path.starts_with("/v1/") && !path.starts_with("/v1/files/") && path != "/v1/openapi.json"
}

/// The middleware (see the module documentation).
pub async fn guard(State(g): State<std::sync::Arc<Guard>>, req: Request, next: Next) -> Response {
    if needs_token(req.uri().path()) {
        match g.tokens.identify(req.headers()) {
            Err(e) => {
                let peer = req
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0);
                g.refusals.note(peer, req.uri().path(), e.message());
                return e.into_response();
            }
            Ok((_, token)) => {
                if let Err(wait) = g.limiter.take(token, Instant::now()) {
                    return rate_limited(wait);
                }
            }
        }
    }
    match tokio::time::timeout(g.timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request took longer than api.request_timeout_s ({} s)",
                g.timeout.as_secs()
            ),
        )
        .into_response(),
    }
}

fn rate_limited(wait: Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut r = ApiError::new(
        ErrorCode::RateLimited,
        format!("this token is over api.rate_limit_per_s; retry in {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// A token bucket per token: `burst` requests at once, refilled at
/// `per_s` a second. Only valid tokens get a bucket, so the map is as
/// large as the configured token list.
pub struct RateLimiter {
    per_s: f64,
    burst: f64,
    buckets: Mutex<HashMap<[u8; 32], (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_s` = 0: no limit.
    pub fn new(per_s: u32, burst: u32) -> Self {
        Self {
            per_s: f64::from(per_s),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request for `token` at `now`, or says how long until one
    /// is allowed.
    pub fn take(&self, token: [u8; 32], now: Instant) -> Result<(), Duration> {
        if self.per_s == 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (level, last) = buckets.entry(token).or_insert((self.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.per_s;
        *level = (*level + refill).min(self.burst);
        *last = now;
        if *level >= 1.0 {
            *level -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *level) / self.per_s))
        }
    }
}

/// Logs refused authentications at most once a second.
#[derive(Default)]
struct RefusalLog {
    /// Seconds (since the first refusal) of the last line logged.
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RefusalLog {
    fn note(&self, peer: Option<SocketAddr>, path: &str, why: &str) {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1)) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        tracing::warn!(%peer, path, reason = why, suppressed, "API request refused: authentication failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_the_rate_and_hold_the_burst() {
        let limiter = RateLimiter::new(10, 3);
        let t0 = Instant::now();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        for _ in 0..3 {
            assert_eq!(limiter.take(a, t0), Ok(()));
        }
        let wait = limiter.take(a, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // Another token has its own bucket.
        assert_eq!(limiter.take(b, t0), Ok(()));
        // 100 ms later one more; a long pause refills only to the burst.
        assert_eq!(limiter.take(a, t0 + Duration::from_millis(100)), Ok(()));
        assert!(limiter.take(a, t0 + Duration::from_millis(100)).is_err());
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.take(a, later), Ok(()));
        }
        assert!(limiter.take(a, later).is_err());
        // No limit configured: never refused.
        let open = RateLimiter::new(0, 1);
        for _ in 0..10_000 {
            assert_eq!(open.take(a, t0), Ok(()));
        }
    }

    #[test]
    fn signed_urls_health_and_metrics_take_no_token() {
        for path in ["/healthz", "/metrics", "/v1/files/rec-1"] {
            assert!(!needs_token(path), "{path}");
        }
        for path in ["/v1/calls", "/v1/recordings/x", "/v1/webhooks/deliveries"] {
            assert!(needs_token(path), "{path}");
        }
    }
}
