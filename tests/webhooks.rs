//! Webhooks against a real HTTP server on 127.0.0.1: every event arrives
//! signed and identified; failed deliveries are retried until they succeed;
//! a daemon killed with undelivered events (and events never queued) loses
//! none of them after a restart; an endpoint that never answers ends up in
//! `GET /v1/webhooks/deliveries?status=failed` and can be retried.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const SECRET: &str = "whsec_test_0123456789abcdef";

/// One request the receiver took.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
    answered: u16,
}

/// A minimal HTTP/1.1 server: answers 500 while `failing` is set or the
/// first `fail_first` requests, 204 otherwise, and keeps every request.
struct Receiver {
    port: u16,
    failing: Arc<AtomicBool>,
    fail_first: Arc<AtomicUsize>,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(fail_first: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let failing = Arc::new(AtomicBool::new(false));
        let fail_first = Arc::new(AtomicUsize::new(fail_first));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (f, ff, g) = (failing.clone(), fail_first.clone(), got.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = HashMap::new();
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let fail = f.load(Ordering::SeqCst)
                    || ff
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                let answered = if fail { 500 } else { 204 };
                let reply = if fail {
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"
                } else {
                    "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
                };
                let _ = stream.write_all(reply.as_bytes());
                g.lock().unwrap().push(Received {
                    headers,
                    body,
                    answered,
                });
            }
        });
        Self {
            port,
            failing,
            fail_first,
            got,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Event ids answered with 2xx.
    fn delivered_ids(&self) -> BTreeSet<u64> {
        self.received()
            .iter()
            .filter(|r| r.answered == 204)
            .map(|r| r.headers["x-recengine-event-id"].parse().unwrap())
            .collect()
    }
}

/// Checks `X-Recengine-Signature` as a receiver would.
fn verify(r: &Received) {
    let sig = &r.headers["x-recengine-signature"];
    let (t, v1) = sig
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .unwrap_or_else(|| panic!("signature header {sig:?}"));
    let mut msg = t.as_bytes().to_vec();
    msg.push(b'.');
    msg.extend_from_slice(&r.body);
    let expected = recengine::crypto::hex(&recengine::crypto::hmac_sha256(SECRET.as_bytes(), &msg));
    assert_eq!(
        v1,
        expected,
        "signature of {}",
        String::from_utf8_lossy(&r.body)
    );
    let now = recengine::timefmt::unix_now().as_secs();
    let t: u64 = t.parse().unwrap();
    assert!(now.abs_diff(t) < 120, "signature time {t} vs now {now}");
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body["seq"].as_u64().unwrap().to_string(),
        r.headers["x-recengine-event-id"]
    );
    assert_eq!(body["event"], r.headers["x-recengine-event"].as_str());
    assert_eq!(r.headers["content-type"], "application/json");
}

fn logged_seqs(d: &Daemon) -> BTreeSet<u64> {
    std::fs::read_to_string(d.storage().join("events.log"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn config(good: &Receiver, dead: &Receiver) -> String {
    format!(
        r#"
[[webhooks]]
name = "crm"
url = "{good}"
secret = "{SECRET}"
retry_initial_ms = 100
retry_max_ms = 400
max_attempts = 50
[[webhooks]]
name = "broken"
url = "{dead}"
events = ["recording.completed"]
secret = "{SECRET}"
retry_initial_ms = 50
retry_max_ms = 100
max_attempts = 2
"#,
        good = good.url(),
        dead = dead.url(),
    )
}

fn record_a_call(d: &Daemon, call_id: &str) {
    let body = json!({"call_id": call_id, "legs": [{"role": "caller"}, {"role": "callee"}],
                      "recording": {"enabled": true, "format": "wav"}});
    let (s, call) = d.admin("POST", "/v1/calls", Some(&body.to_string()));
    assert_eq!(s, 201, "{call}");
    let speech = recengine::testkit::speech(8000, 8000 / 2);
    let (a, b) = (udp(), udp());
    stream(
        &[
            Leg {
                port: leg_port(&call, "caller"),
                ssrc: 1,
                signal: &speech,
                socket: &a,
                delay_packets: 0,
            },
            Leg {
                port: leg_port(&call, "callee"),
                ssrc: 2,
                signal: &speech,
                socket: &b,
                delay_packets: 0,
            },
        ],
        |_| {},
    );
    let (s, v) = d.admin("POST", &format!("/v1/calls/{call_id}/end"), Some("{}"));
    assert!(s < 300, "{s} {v}");
}

#[test]
fn webhooks_are_signed_retried_and_survive_a_crash() {
    let good = Receiver::start(3);
    let dead = Receiver::start(0);
    dead.failing.store(true, Ordering::SeqCst);
    let mut d = Daemon::start("webhooks", &config(&good, &dead));

    // First call: the first three deliveries get HTTP 500 and are retried.
    record_a_call(&d, "hook-1");
    wait_for("the first call's events", Duration::from_secs(20), || {
        good.delivered_ids() == logged_seqs(&d)
    });
    assert_eq!(good.fail_first.load(Ordering::SeqCst), 0);
    assert!(
        good.received()
            .iter()
            .any(|r| r.headers["x-recengine-delivery-attempt"] != "1"),
        "some delivery needed a second attempt"
    );

    // The receiver goes down; a second call's events pile up in the
    // outbox; the daemon is killed before any of them is delivered.
    good.failing.store(true, Ordering::SeqCst);
    record_a_call(&d, "hook-2");
    wait_for(
        "recording.completed of hook-2",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(d.storage().join("events.log"))
                .unwrap()
                .lines()
                .any(|l| l.contains("\"recording.completed\"") && l.contains("hook-2"))
        },
    );
    let before_crash = logged_seqs(&d);
    d.kill9();

    // Back up with a healthy receiver: nothing logged is lost.
    good.failing.store(false, Ordering::SeqCst);
    let dir = d.dir.clone();
    drop(d);
    let d = Daemon::launch("webhooks", &dir, &config(&good, &dead), 4);
    wait_for(
        "every logged event after the restart",
        Duration::from_secs(30),
        || {
            let delivered = good.delivered_ids();
            before_crash.is_subset(&delivered) && delivered == logged_seqs(&d)
        },
    );
    for r in good.received() {
        verify(&r);
    }

    // The API shows the state: nothing failed for "crm"; "broken" gave up
    // after two attempts per recording.completed.
    let (s, v) = d.admin(
        "GET",
        "/v1/webhooks/deliveries?status=failed&endpoint=crm",
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["pagination"]["total"], 0, "{v}");
    wait_for(
        "the broken endpoint to give up",
        Duration::from_secs(20),
        || {
            let (_, v) = d.admin(
                "GET",
                "/v1/webhooks/deliveries?status=failed&endpoint=broken",
                None,
            );
            v["pagination"]["total"] == 2
        },
    );
    let (_, v) = d.admin("GET", "/v1/webhooks/deliveries?status=failed", None);
    let failed = &v["data"][0];
    assert_eq!(failed["endpoint"], "broken", "{v}");
    assert_eq!(failed["event"], "recording.completed");
    assert_eq!(failed["attempts"], 2);
    assert!(
        failed["last_error"].as_str().unwrap().contains("HTTP 500"),
        "{v}"
    );
    for r in dead.received() {
        verify(&r);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["event"], "recording.completed", "filtered");
        // The server's filesystem path stays on the server (issue #13.15).
        assert!(body["data"].get("path").is_none(), "{body}");
        assert!(body["data"]["recording_id"].is_string(), "{body}");
    }

    // An operator fixes the endpoint and retries one delivery.
    dead.failing.store(false, Ordering::SeqCst);
    let id = failed["delivery_id"].as_i64().unwrap();
    let (s, v) = d.admin(
        "POST",
        &format!("/v1/webhooks/deliveries/{id}/retry"),
        Some(""),
    );
    assert_eq!(s, 202, "{v}");
    wait_for("the retried delivery", Duration::from_secs(10), || {
        let (_, v) = d.admin(
            "GET",
            "/v1/webhooks/deliveries?status=delivered&endpoint=broken",
            None,
        );
        v["pagination"]["total"] == 1
    });
    let (s, v) = d.admin(
        "POST",
        &format!("/v1/webhooks/deliveries/{id}/retry"),
        Some(""),
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("delivery_not_failed"))
    );
    let (s, v) = d.request("GET", "/v1/webhooks/deliveries", None, Some(ACME));
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
    let (s, v) = d.admin("GET", "/v1/webhooks/deliveries?status=sent", None);
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
}
