//! Requests the daemon refuses (issue #13.9, #13.10, #13.13): a refused
//! create leaves no trace (no call, no event, its id still free), and every
//! free-text or numeric field has a limit, named in the 400.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

fn post(d: &Daemon, path: &str, body: &Value, token: &str) -> (u16, Value) {
    d.request("POST", path, Some(&body.to_string()), Some(token))
}

fn code(v: &Value) -> Option<&str> {
    v["error"]["code"].as_str()
}

/// Every event up to and including the `call.created` of a marker call
/// created now: what the refused requests before it announced.
fn events_before_marker(d: &Daemon, marker: &str) -> Vec<Value> {
    let mut ev = d.events(Some(0));
    let body = json!({"call_id": marker, "legs": [{"role": "caller"}]});
    assert_eq!(post(d, "/v1/calls", &body, ADMIN).0, 201);
    let mut out = Vec::new();
    loop {
        let e = ev
            .next(Duration::from_secs(5))
            .expect("the marker's call.created");
        let done = e["event"] == "call.created" && e["data"]["call_id"] == marker;
        out.push(e);
        if done {
            let (s, _) = d.admin("POST", &format!("/v1/calls/{marker}/end"), None);
            assert_eq!(s, 200);
            return out;
        }
    }
}

fn mentions(events: &[Value], call_id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["data"]["call_id"] == call_id)
        .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// #13.9: a 503 `ports_exhausted` used to burn the `call_id` (a retry got
/// 409 until restart) and announce `call.ended` for a call never created.
#[test]
fn a_create_refused_for_ports_leaves_no_trace() {
    // One port pair: the first call takes it.
    let d = Daemon::start_with("security-ports-refused", "", 1);
    let one_leg = |id: &str| json!({"call_id": id, "legs": [{"role": "caller"}]});
    assert_eq!(post(&d, "/v1/calls", &one_leg("holder"), ADMIN).0, 201);
    let (s, v) = post(&d, "/v1/calls", &one_leg("refused"), ACME);
    assert_eq!((s, code(&v)), (503, Some("ports_exhausted")), "{v}");
    let (s, _) = d.request("GET", "/v1/calls/refused", None, Some(ACME));
    assert_eq!(s, 404);
    // The pair comes back (after its 1 s rest) and the same id is free.
    let (s, _) = d.admin("POST", "/v1/calls/holder/end", None);
    assert_eq!(s, 200);
    std::thread::sleep(Duration::from_millis(1300));
    let (s, v) = post(&d, "/v1/calls", &one_leg("refused"), ACME);
    assert_eq!(s, 201, "{v}");
    let (s, _) = d.request("POST", "/v1/calls/refused/end", None, Some(ACME));
    assert_eq!(s, 200);
    std::thread::sleep(Duration::from_millis(1300));
    let seen = mentions(&events_before_marker(&d, "marker"), "refused");
    assert_eq!(
        seen,
        ["call.created", "call.ended"],
        "only the accepted create is announced"
    );
}

/// #13.10: a create whose recording was refused on quota (429) used to
/// create the call all the same (`call.created`; a retry got 409).
#[test]
fn a_create_whose_recording_is_refused_creates_nothing() {
    let d = Daemon::start(
        "security-quota-refused",
        "[storage]\nmin_free_bytes = 9223372036854775807\n",
    );
    let body = json!({"call_id": "quota-1", "legs": [{"role": "caller"}],
        "recording": {"enabled": true, "format": "wav"}});
    let (s, v) = post(&d, "/v1/calls", &body, ACME);
    assert_eq!((s, code(&v)), (429, Some("quota_exceeded")), "{v}");
    let (s, _) = d.request("GET", "/v1/calls/quota-1", None, Some(ACME));
    assert_eq!(s, 404);
    // The id is free: the call without a recording is created.
    let body = json!({"call_id": "quota-1", "legs": [{"role": "caller"}]});
    assert_eq!(post(&d, "/v1/calls", &body, ACME).0, 201);
    let seen = mentions(&events_before_marker(&d, "marker"), "quota-1");
    assert_eq!(seen, ["call.created"]);
}

/// #13.13: `from`/`to` took 65 KB, `participant: ["caller","caller"]` was
/// accepted, and a recording log's `duration_seconds: 1e308` was stored as
/// u64::MAX. Each is now a 400 naming the field.
#[test]
fn every_field_has_a_limit() {
    let d = Daemon::start("security-limits", "");
    let long = "x".repeat(257);
    for (field, body) in [
        ("from", json!({"from": long, "legs": [{"role": "caller"}]})),
        ("to", json!({"to": long, "legs": [{"role": "caller"}]})),
        (
            "legs[0].label",
            json!({"legs": [{"role": "caller", "label": long}]}),
        ),
        (
            "from",
            json!({"from": "a\u{7}b", "legs": [{"role": "caller"}]}),
        ),
        (
            "participant[1]",
            json!({"legs": [{"role": "caller"}, {"role": "callee"}],
                   "recording": {"participant": ["caller", "caller"]}}),
        ),
        (
            "legs",
            json!({"reference_type": "conference",
                   "legs": (0..65).map(|_| json!({"role": "participant"})).collect::<Vec<_>>()}),
        ),
    ] {
        let (s, v) = post(&d, "/v1/calls", &body, ACME);
        assert_eq!(
            (s, code(&v)),
            (400, Some("invalid_request")),
            "{field}: {v}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}:")),
            "{field}: {message}"
        );
    }
    // Nothing was created by any of them.
    let (_, calls) = d.request("GET", "/v1/calls", None, Some(ACME));
    assert_eq!(calls["data"], json!([]), "{calls}");
    // Within the limits all is well.
    let ok = json!({"call_id": "limits-ok", "from": "x".repeat(256), "legs": [{"role": "caller"}]});
    assert_eq!(post(&d, "/v1/calls", &ok, ACME).0, 201);
    for duration in [1e308, -1.0, 604_801.0] {
        let log = json!({"recording_id": "ext-1", "duration_seconds": duration});
        let (s, v) = post(&d, "/v1/calls/limits-ok/recording-log", &log, ACME);
        assert_eq!(
            (s, code(&v)),
            (400, Some("invalid_request")),
            "{duration}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("duration_seconds:"),
            "{v}"
        );
    }
    let log = json!({"recording_id": "ext-1", "duration_seconds": 3600.5,
                     "recording_url": "https://cdn.example.com/ext-1.wav"});
    let (s, v) = post(&d, "/v1/calls/limits-ok/recording-log", &log, ACME);
    assert_eq!(s, 201, "{v}");
}

/// #13.15: a repeated query parameter answered a plain-text 400;
/// `If-None-Match` with a weak tag or `*` did not give 304 (RFC 9110); a
/// signed URL's `expires` had more than one spelling (`+N`, `0N`).
#[test]
fn http_details_follow_the_rfcs_and_the_error_shape() {
    let d = Daemon::start("security-http", "");
    let (s, v) = d.request(
        "GET",
        "/v1/recordings?status=completed&status=failed",
        None,
        Some(ACME),
    );
    assert_eq!((s, code(&v)), (400, Some("invalid_request")), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("status:"),
        "{v}"
    );
    let body = json!({"call_id": "etag-1", "legs": [{"role": "caller"}],
        "recording": {"enabled": true, "format": "wav"}});
    let done = record_tone_call(&d, ACME, &body, 440.0);
    let (_, latest) = d.request("GET", "/v1/calls/etag-1/recording", None, Some(ACME));
    let url = latest["url"].as_str().unwrap().to_owned();
    let etag = format!("\"{}\"", done["checksum"]["value"].as_str().unwrap());
    for tag in [
        etag.clone(),
        format!("W/{etag}"),
        "*".into(),
        format!("\"x\", {etag}"),
    ] {
        let (s, body) = d.request_raw("GET", &url, None, None, &[("If-None-Match", &tag)]);
        assert_eq!((s, body.len()), (304, 0), "If-None-Match: {tag}");
    }
    let (s, _) = d.request_raw("GET", &url, None, None, &[("If-None-Match", "\"other\"")]);
    assert_eq!(s, 200);
    let expires = url
        .split("expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    for respelled in [format!("%2B{expires}"), format!("0{expires}")] {
        let bad = url.replace(
            &format!("expires={expires}"),
            &format!("expires={respelled}"),
        );
        let (s, v) = d.request("GET", &bad, None, None);
        assert_eq!(
            (s, code(&v)),
            (403, Some("invalid_signature")),
            "{bad}: {v}"
        );
    }
    let (s, _) = d.request_raw("GET", &format!("{url}&sig=00"), None, None, &[]);
    assert_eq!(s, 400, "a repeated signed-URL parameter");
}

/// #13.12: `GET /v1/calls` had no pagination and ended calls stayed in
/// memory for good (1,040 calls made a 731 KB answer).
#[test]
fn calls_are_paged_and_ended_ones_forgotten() {
    let d = Daemon::start_with("security-calls-paged", "[api]\nended_calls_kept_s = 1\n", 8);
    for i in 0..5 {
        let body = json!({"call_id": format!("page-{i}"), "legs": [{"role": "caller"}]});
        assert_eq!(post(&d, "/v1/calls", &body, ACME).0, 201);
    }
    let (s, page) = d.request("GET", "/v1/calls?limit=2", None, Some(ACME));
    assert_eq!(s, 200, "{page}");
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["page-4", "page-3"], "newest first");
    assert_eq!(
        page["pagination"],
        json!({"total": 5, "limit": 2, "offset": 0, "has_more": true})
    );
    let (_, last) = d.request("GET", "/v1/calls?limit=2&offset=4", None, Some(ACME));
    assert_eq!(last["data"][0]["call_id"], "page-0");
    assert_eq!(last["pagination"]["has_more"], false);
    let (s, v) = d.request("GET", "/v1/calls?status=gone", None, Some(ACME));
    assert_eq!((s, code(&v)), (400, Some("invalid_request")), "{v}");
    for i in [0, 1] {
        let (s, _) = d.request("POST", &format!("/v1/calls/page-{i}/end"), None, Some(ACME));
        assert_eq!(s, 200);
    }
    let (_, ended) = d.request("GET", "/v1/calls?status=ended", None, Some(ACME));
    assert_eq!(ended["pagination"]["total"], 2, "{ended}");
    // A second later the ended calls are forgotten (the catalog keeps them).
    std::thread::sleep(Duration::from_millis(1600));
    let (_, all) = d.request("GET", "/v1/calls", None, Some(ACME));
    assert_eq!(all["pagination"]["total"], 3, "{all}");
    let (s, _) = d.request("GET", "/v1/calls/page-0", None, Some(ACME));
    assert_eq!(s, 404);
}

/// Posts a recording log for call `idem-1` with `Idempotency-Key:
/// same-key`; returns the status and the answer.
fn post_log_once(d: &Daemon, token: &str, log: &str) -> (u16, Value) {
    let (s, raw) = d.request_raw(
        "POST",
        "/v1/calls/idem-1/recording-log",
        Some(log.as_bytes()),
        Some(token),
        &[("Idempotency-Key", "same-key")],
    );
    (s, serde_json::from_slice(&raw).unwrap_or(Value::Null))
}

/// #13.16: the idempotency check and the insert were two steps, so
/// concurrent requests with one key could both run. Sixteen at once: one
/// runs, every other is its replay or told the key is in use, and the log
/// is stored once.
#[test]
fn concurrent_requests_with_one_idempotency_key_run_once() {
    let d = Daemon::start("security-idempotency", "");
    let call = json!({"call_id": "idem-1", "legs": [{"role": "caller"}]});
    assert_eq!(post(&d, "/v1/calls", &call, ACME).0, 201);
    let log = json!({"recording_id": "ext-idem", "duration_seconds": 12.5,
                     "recording_url": "https://cdn.example.com/ext-idem.wav", "metadata": {"n": 1}})
    .to_string();
    let answers: Vec<(u16, String)> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    let (s, v) = post_log_once(&d, ACME, &log);
                    (s, v.to_string())
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let created: Vec<&String> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, body)| body)
        .collect();
    assert!(!created.is_empty(), "{answers:?}");
    assert!(
        created.iter().all(|b| *b == created[0]),
        "one answer: {answers:?}"
    );
    for (s, body) in &answers {
        assert!(
            *s == 201 || (*s == 409 && body.contains("idempotency_key_in_use")),
            "{s} {body}"
        );
    }
    // Once done, the key replays; with another body it is refused.
    let (s, replay) = post_log_once(&d, ACME, &log);
    assert_eq!((s, &replay.to_string()), (201, created[0]));
    let other = json!({"recording_id": "ext-idem", "duration_seconds": 13.0,
                       "recording_url": "https://cdn.example.com/ext-idem.wav"})
    .to_string();
    let (s, v) = post_log_once(&d, ACME, &other);
    assert_eq!((s, code(&v)), (409, Some("idempotency_key_reused")), "{v}");
    // Another customer's key of the same name is its own.
    let call = json!({"call_id": "idem-1", "legs": [{"role": "caller"}]});
    assert_eq!(post(&d, "/v1/calls", &call, GLOBEX).0, 201);
    assert_eq!(post_log_once(&d, GLOBEX, &other).0, 201);
}
