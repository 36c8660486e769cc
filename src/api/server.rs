//! The API's HTTP/1 server. Every connection is bounded: at most
//! `api.max_connections` are open (a connection beyond it is answered 503
//! `too_many_connections` and closed, so a client sees why), a client has
//! `api.header_timeout_s` to send each request's headers (which also ends
//! idle keep-alive connections), and `api::guard` bounds the request
//! as a whole. An accept that fails (`EMFILE` with the descriptors all in
//! use, `ENFILE`, ...) is logged at most once a second and retried after a
//! short pause: it never stops the server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// The answer to a connection over `max_connections`.
fn too_many_connections() -> Vec<u8> {
    let body = super::ApiError::new(
        super::ErrorCode::TooManyConnections,
        "the API is at api.max_connections; retry in a moment",
    )
    .to_json();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` until `stop` changes, then waits (at most
/// five seconds) for the connections in progress.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut last_error: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            // Also when the stop came before this task first ran.
            _ = stop.wait_for(|stopped| *stopped) => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let app = app.clone();
                    tokio::spawn(async move {
                        connection(stream, peer, app, limits).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tokio::spawn(refuse(stream));
                }
            },
            Err(e) => {
                // Out of descriptors (or another local, passing trouble):
                // the connection waits in the backlog; try again shortly.
                if last_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(error = %e, "API accept failed; retrying");
                    last_error = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while permits.available_permits() < limits.max_connections && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, app: Router, limits: Limits) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move {
            let response = app.call(req.map(axum::body::Body::new)).await;
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "API connection ended");
    }
}

async fn refuse(mut stream: TcpStream) {
    let answer = too_many_connections();
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&answer)).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_well_formed_answer() {
        let answer = too_many_connections();
        let text = std::str::from_utf8(&answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_many_connections");
    }
}
