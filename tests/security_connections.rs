//! The API under slow, idle, unauthenticated and greedy clients (issue
//! #13.5, #13.6): 320 connections sending half a request line used to make
//! `/healthz` hang; bodies were read (and `100 Continue` sent) before the
//! token was checked; nothing limited a token's request rate.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// Sends raw bytes on a new connection; returns the connection.
fn open(d: &Daemon, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(d.api).unwrap();
    s.write_all(bytes).unwrap();
    s
}

/// Reads what the server sends until it closes (or `within` passes).
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    s.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    let closed = match s.read_to_end(&mut out) {
        Ok(_) => true,
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{e}"
            );
            false
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[test]
fn half_sent_and_idle_connections_do_not_starve_the_api() {
    let d = Daemon::start(
        "security-connections",
        "[api]\nmax_connections = 16\nheader_timeout_s = 1\n",
    );
    // 40 clients send half a request line and stop.
    let started = Instant::now();
    let mut stuck: Vec<TcpStream> = (0..40).map(|_| open(&d, b"GET /heal")).collect();
    // Beyond the cap a client is told so at once, instead of hanging.
    let mut extra = open(&d, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let (answer, closed) = read_until_closed(&mut extra, Duration::from_secs(5));
    assert!(closed, "answered and closed");
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("too_many_connections"),
        "{answer}"
    );
    // The half-sent requests are cut at the header timeout...
    for s in stuck.iter_mut().take(16) {
        let (_, closed) = read_until_closed(s, Duration::from_secs(5));
        assert!(closed, "a half-sent request is cut");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // ...and the API answers again, ports and all.
    let (s, v) = d.request("GET", "/healthz", None, None);
    assert_eq!((s, &v["status"]), (200, &json!("ok")));
    let body = json!({"legs": [{"role": "caller"}]});
    let (s, v) = d.admin("POST", "/v1/calls", Some(&body.to_string()));
    assert_eq!(s, 201, "{v}");
    // An idle keep-alive connection is closed after the header timeout.
    let mut idle = open(
        &d,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    );
    let t = Instant::now();
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        closed && t.elapsed() < Duration::from_secs(4),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn the_token_is_checked_before_the_body_is_read() {
    let d = Daemon::start("security-auth-first", "");
    for token in ["", "Authorization: Bearer wrong\r\n"] {
        let mut s = open(
            &d,
            format!(
                "POST /v1/calls HTTP/1.1\r\nHost: x\r\n{token}Content-Type: application/json\r\n\
                 Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"
            )
            .as_bytes(),
        );
        // No body is sent: the answer comes all the same, and no 100.
        let (answer, _) = read_until_closed(&mut s, Duration::from_secs(3));
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(!answer.contains("100 Continue"), "{answer}");
        assert!(answer.contains("\"unauthorized\""), "{answer}");
    }
    // Refusals are logged with the peer, never with the token.
    let log = d.log_text();
    assert!(log.contains("authentication failed"), "{log}");
    assert!(log.contains("127.0.0.1:"), "the peer address is logged");
    assert!(!log.contains("wrong"), "the token is never logged");
}

#[test]
fn a_slow_body_gets_408() {
    let d = Daemon::start("security-slow-body", "[api]\nrequest_timeout_s = 1\n");
    let mut s = open(
        &d,
        format!(
            "POST /v1/calls HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"legs\""
        )
        .as_bytes(),
    );
    let t = Instant::now();
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(4));
}

#[test]
fn each_token_is_held_to_its_rate() {
    let d = Daemon::start(
        "security-rate",
        "[api]\nrate_limit_per_s = 2\nrate_limit_burst = 3\n",
    );
    for _ in 0..3 {
        assert_eq!(d.request("GET", "/v1/calls", None, Some(ACME)).0, 200);
    }
    let (s, raw) = d.request_raw("GET", "/v1/calls", None, Some(ACME), &[]);
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{v}"
    );
    // Another token has its own allowance; health needs none.
    assert_eq!(d.request("GET", "/v1/calls", None, Some(GLOBEX)).0, 200);
    assert_eq!(d.request("GET", "/healthz", None, None).0, 200);
    // Half a second refills one request.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(d.request("GET", "/v1/calls", None, Some(ACME)).0, 200);
}

#[test]
fn rate_limited_answers_say_when_to_retry() {
    let d = Daemon::start(
        "security-retry-after",
        "[api]\nrate_limit_per_s = 1\nrate_limit_burst = 1\n",
    );
    assert_eq!(d.request("GET", "/v1/calls", None, Some(ACME)).0, 200);
    let mut s = open(
        &d,
        format!("GET /v1/calls HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ACME}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{answer}"
    );
}
