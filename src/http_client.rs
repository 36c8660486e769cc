//! The outbound HTTP client shared by webhook delivery and `recengine ctl`:
//! hyper over plain TCP or rustls (ring provider; the system's CA store, or
//! the bundled webpki roots where the system has none), so it builds with
//! cargo alone. HTTP/1.1 only; every request has a deadline.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HttpError {
    #[error("invalid URL {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("{0}")]
    Request(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("reading the answer: {0}")]
    Body(String),
}

/// A reusable client (connections are pooled per host).
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A whole answer, body read into memory.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl HttpClient {
    /// Must be called inside a tokio runtime.
    pub fn new() -> Self {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let https = match builder.with_native_roots() {
            Ok(b) => b,
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots(),
        }
        .https_or_http()
        .enable_http1()
        .build();
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Self { inner }
    }

    /// Sends a request and returns the answer head with its body unread
    /// (for downloads that stream to a file).
    pub async fn send(
        &self,
        method: hyper::Method,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<hyper::Response<Incoming>, HttpError> {
        let uri: hyper::Uri =
            url.parse()
                .map_err(|e: hyper::http::uri::InvalidUri| HttpError::BadUrl {
                    url: url.to_owned(),
                    why: e.to_string(),
                })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(HttpError::BadUrl {
                url: url.to_owned(),
                why: "must be http:// or https:// with a host".into(),
            });
        }
        let mut req = hyper::Request::builder().method(method).uri(uri).header(
            "user-agent",
            concat!("recengine/", env!("CARGO_PKG_VERSION")),
        );
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| HttpError::Request(e.to_string()))?;
        match tokio::time::timeout(timeout, self.inner.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(HttpError::Request(describe(&e))),
            Err(_) => Err(HttpError::Timeout(timeout)),
        }
    }

    /// Sends a request and reads the whole answer, all within `timeout`.
    pub async fn call(
        &self,
        method: hyper::Method,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Answer, HttpError> {
        let work = async {
            let resp = self.send(method, url, headers, body, timeout).await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| HttpError::Body(e.to_string()))?
                .to_bytes();
            Ok(Answer {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(HttpError::Timeout(timeout)))
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

/// hyper's error with its causes ("client error (Connect): tcp connect
/// error: Connection refused"), which is what an operator needs.
fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn refuses_urls_that_are_not_http() {
        rt().block_on(async {
            let c = HttpClient::new();
            for url in ["ftp://127.0.0.1/x", "127.0.0.1:80/x", "http:///x"] {
                let e = c
                    .call(
                        hyper::Method::GET,
                        url,
                        &[],
                        Bytes::new(),
                        Duration::from_secs(1),
                    )
                    .await
                    .unwrap_err();
                assert!(matches!(e, HttpError::BadUrl { .. }), "{url}: {e}");
            }
        });
    }

    #[test]
    fn https_to_a_plain_tcp_server_is_a_tls_error_not_a_hang() {
        rt().block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                while let Ok((mut s, _)) = listener.accept().await {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                }
            });
            let e = HttpClient::new()
                .call(
                    hyper::Method::POST,
                    &format!("https://127.0.0.1:{port}/hook"),
                    &[],
                    Bytes::from_static(b"{}"),
                    Duration::from_secs(5),
                )
                .await
                .unwrap_err();
            assert!(matches!(e, HttpError::Request(_)), "{e}");
        });
    }
}
