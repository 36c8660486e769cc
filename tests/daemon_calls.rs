//! The real daemon on loopback: calls created through the API, legs
//! streamed over real UDP sockets in real time, recordings checked on disk
//! and through the event socket.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const SECOND: Duration = Duration::from_secs(1);

fn create(d: &Daemon, token: &str, body: Value) -> Value {
    let (status, call) = d.request("POST", "/v1/calls", Some(&body.to_string()), Some(token));
    assert_eq!(status, 201, "{call}");
    call
}

fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// The end-to-end story: a two-party call recorded in dual WAV, paused
/// and resumed, stopped; the file decodes to the right parties on the right
/// channels, its length and checksum are right, and the events come in
/// order with gap-free sequence numbers.
#[test]
fn two_party_call_is_recorded_with_pause_and_exact_events() {
    let d = Daemon::start("two-party", "");
    // since_seq 0: every event, even those emitted before the socket server
    // has taken the connection.
    let mut ev = d.events(Some(0));
    let call = create(
        &d,
        ADMIN,
        json!({"call_id": "call-1", "from": "+15550001", "to": "+15550002",
               "legs": [{"role": "caller", "label": "alice"}, {"role": "callee", "label": "bob"}],
               "recording": {"enabled": true, "format": "wav", "channels": "dual"}}),
    );
    assert_eq!(call["recordings"][0]["status"], "recording");
    let caller_tone = recengine::testkit::tone(8000, 1000.0, 8000.0, 8000 * 3);
    let callee_speech = recengine::testkit::speech(8000, 8000 * 3);
    let (a, b) = (udp(), udp());
    // The callee starts sending first; channels must still follow roles.
    stream(
        &[
            Leg {
                port: leg_port(&call, "caller"),
                ssrc: 0xa,
                signal: &caller_tone,
                socket: &a,
                delay_packets: 10,
            },
            Leg {
                port: leg_port(&call, "callee"),
                ssrc: 0xb,
                signal: &callee_speech,
                socket: &b,
                delay_packets: 0,
            },
        ],
        |i| {
            if i == 60 {
                assert_eq!(
                    d.admin("POST", "/v1/calls/call-1/record/pause", None).0,
                    200
                );
                let (s, e) = d.admin("POST", "/v1/calls/call-1/record/pause", None);
                assert_eq!(
                    (s, e["error"]["code"].as_str()),
                    (409, Some("recording_already_paused"))
                );
            }
            if i == 85 {
                assert_eq!(
                    d.admin("POST", "/v1/calls/call-1/record/resume", None).0,
                    200
                );
            }
        },
    );
    let (s, rec) = d.admin("POST", "/v1/calls/call-1/record/stop", None);
    assert_eq!(s, 200, "{rec}");
    assert_eq!(rec["status"], "stopped");
    let (s, e) = d.admin("POST", "/v1/calls/call-1/record/stop", None);
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (404, Some("recording_not_started"))
    );

    let events = ev.until("recording.completed", 10 * SECOND);
    assert_eq!(
        names(&events),
        [
            "call.created",
            "recording.started",
            "recording.paused",
            "recording.resumed",
            "recording.stopped",
            "recording.completed"
        ]
    );
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "gap-free: {seqs:?}"
    );
    let done = &events[5]["data"];
    // The times a platform books the recording by.
    let started = &events[1]["data"];
    let stopped = &events[4]["data"];
    assert_eq!(done["started_at"], started["started_at"], "{done}");
    assert!(
        done["completed_at"].as_str().unwrap() >= stopped["stopped_at"].as_str().unwrap(),
        "{done} {stopped}"
    );
    assert_eq!(
        done["duration_seconds"].as_f64().unwrap(),
        done["duration_ms"].as_f64().unwrap() / 1000.0
    );
    assert!(
        stopped["duration_seconds"].as_f64().unwrap() > 2.5,
        "{stopped}"
    );
    let path = PathBuf::from(done["path"].as_str().unwrap());
    assert_eq!(
        done["checksum"]["value"].as_str().unwrap(),
        sha256_file(&path)
    );
    let sidecar: Value =
        serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
    assert_eq!(sidecar["checksum"], done["checksum"]);
    assert_eq!(sidecar["legs"][0]["label"], "alice");
    assert_eq!(sidecar["pauses"].as_array().unwrap().len(), 1);

    let (samples, channels, rate) = read_wav(&path);
    assert_eq!((channels, rate), (2, 8000));
    let frames = samples.len() / 2;
    let ms = done["duration_ms"].as_u64().unwrap();
    assert!(
        (frames as u64 * 1000 / 8000).abs_diff(ms) <= 20,
        "{frames} frames vs {ms} ms"
    );
    // Recording ran from call creation to stop: about the 3.2 s streamed.
    assert!((2900..4500).contains(&ms), "duration {ms} ms");
    let left = channel(&samples, 2, 0);
    let right = channel(&samples, 2, 1);
    let l = tone_power(&left[4000..8000], 8000, 1000.0);
    let r = tone_power(&right[4000..8000], 8000, 1000.0);
    assert!(
        l > 1e6 && l > 50.0 * r,
        "caller tone on the left: {l:.0} vs {r:.0}"
    );
    // Pause (about 1.2 s to 1.7 s of the call) is silent on both channels.
    let pause = sidecar["pauses"][0].clone();
    let (p0, p1) = (
        pause["start_ms"].as_u64().unwrap() as usize,
        pause["end_ms"].as_u64().unwrap() as usize,
    );
    assert!(p1 > p0 + 300, "{pause}");
    let quiet = &samples[(p0 * 8 + 160) * 2..(p1 * 8 - 160) * 2];
    assert!(quiet.iter().all(|&s| s == 0), "paused stretch is silent");
}

#[test]
fn replay_since_seq_gives_every_later_event_then_live_ones() {
    let d = Daemon::start("replay", "");
    let call = create(&d, ADMIN, json!({"legs": [{"role": "caller"}]}));
    let id = call["call_id"].as_str().unwrap().to_owned();
    assert_eq!(
        d.admin("POST", &format!("/v1/calls/{id}/record/start"), None)
            .0,
        201
    );
    assert_eq!(
        d.admin("POST", &format!("/v1/calls/{id}/record/pause"), None)
            .0,
        200
    );
    // Reconnect having seen only seq 1: get 2 and 3 from the log…
    let mut ev = d.events(Some(1));
    let a = ev.next(2 * SECOND).unwrap();
    let b = ev.next(2 * SECOND).unwrap();
    assert_eq!(
        (a["seq"].as_u64(), a["event"].as_str()),
        (Some(2), Some("recording.started"))
    );
    assert_eq!(
        (b["seq"].as_u64(), b["event"].as_str()),
        (Some(3), Some("recording.paused"))
    );
    // …then live ones, no repeats.
    assert_eq!(d.admin("POST", &format!("/v1/calls/{id}/end"), None).0, 200);
    let mut rest = ev.until("call.ended", 5 * SECOND);
    // The recording never saw a packet, so it fails `no_media`; that event
    // comes from finalization, which may finish before or after the call's
    // own end is announced.
    if !names(&rest).iter().any(|n| n == "recording.failed") {
        rest.extend(ev.until("recording.failed", 5 * SECOND));
    }
    let seqs: Vec<u64> = rest.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, [4, 5, 6], "gap-free, no repeats: {rest:#?}");
    assert_eq!(names(&rest[..1]), ["recording.stopped"]);
    let mut later = names(&rest[1..]);
    later.sort();
    assert_eq!(later, ["call.ended", "recording.failed"]);
    let failed = rest.iter().find(|e| e["event"] == "recording.failed");
    assert_eq!(failed.unwrap()["data"]["reason"], "no_media", "{rest:#?}");
}

#[test]
fn sigterm_mid_call_leaves_a_completed_recording() {
    let mut d = Daemon::start("sigterm", "");
    let call = create(
        &d,
        ADMIN,
        json!({"legs": [{"role": "caller"}], "recording": {"enabled": true, "format": "opus"}}),
    );
    let speech = recengine::testkit::speech(8000, 8000 * 2);
    let s = udp();
    stream(
        &[Leg {
            port: leg_port(&call, "caller"),
            ssrc: 7,
            signal: &speech,
            socket: &s,
            delay_packets: 0,
        }],
        |_| {},
    );
    let status = d.terminate();
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        d.log_text()
    );
    let log = std::fs::read_to_string(d.storage().join("events.log")).unwrap();
    let events: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let done = events
        .iter()
        .find(|e| e["event"] == "recording.completed")
        .expect("completed event logged");
    assert_eq!(done["data"]["call_id"], call["call_id"]);
    let path = PathBuf::from(done["data"]["path"].as_str().unwrap());
    assert_eq!(
        done["data"]["checksum"]["value"].as_str().unwrap(),
        sha256_file(&path)
    );
    assert!(done["data"]["duration_ms"].as_u64().unwrap() >= 1900);
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "call.ended" && e["data"]["reason"] == "shutdown")
    );
}

#[test]
fn packets_from_a_second_source_are_not_recorded() {
    let d = Daemon::start("latch", "");
    let mut ev = d.events(Some(0));
    let call = create(
        &d,
        ADMIN,
        json!({"legs": [{"role": "caller"}], "recording": {"enabled": true}}),
    );
    let id = call["call_id"].as_str().unwrap();
    let port = leg_port(&call, "caller");
    let tone = recengine::testkit::tone(8000, 1000.0, 8000.0, 8000 * 2);
    let intruder = recengine::testkit::tone(8000, 2500.0, 8000.0, 8000 * 2);
    let (a, b) = (udp(), udp());
    stream(
        &[
            Leg {
                port,
                ssrc: 1,
                signal: &tone,
                socket: &a,
                delay_packets: 0,
            },
            Leg {
                port,
                ssrc: 2,
                signal: &intruder,
                socket: &b,
                delay_packets: 5,
            },
        ],
        |_| {},
    );
    let (_, view) = d.admin("GET", &format!("/v1/calls/{id}"), None);
    assert!(
        view["legs"][0]["ingest"]["foreign_source"]
            .as_u64()
            .unwrap()
            >= 95,
        "{view}"
    );
    d.admin("POST", &format!("/v1/calls/{id}/end"), None);
    let events = ev.until("recording.completed", 10 * SECOND);
    let path = PathBuf::from(events.last().unwrap()["data"]["path"].as_str().unwrap());
    let (pcm, _, _) = read_wav(&path);
    let body = &pcm[4000..12_000];
    assert!(tone_power(body, 8000, 1000.0) > 1e6);
    assert!(
        tone_power(body, 8000, 2500.0) < 1e3,
        "intruder audio recorded"
    );
}

#[test]
fn conference_of_three_mixes_everyone() {
    let d = Daemon::start("conference", "");
    let mut ev = d.events(Some(0));
    let call = create(
        &d,
        ADMIN,
        json!({"reference_type": "conference", "legs": [{"role": "participant", "leg_id": "p1"}, {"role": "participant", "leg_id": "p2"}],
               "recording": {"enabled": true}}),
    );
    let id = call["call_id"].as_str().unwrap().to_owned();
    // A third participant joins the recording in progress.
    let (s, call) = d.admin(
        "POST",
        &format!("/v1/calls/{id}/legs"),
        Some(r#"{"role":"participant","leg_id":"p3"}"#),
    );
    assert_eq!(s, 201, "{call}");
    let tones: Vec<Vec<i16>> = [500.0, 1100.0, 1700.0]
        .iter()
        .map(|&f| recengine::testkit::tone(8000, f, 5000.0, 8000 * 2))
        .collect();
    let socks = [udp(), udp(), udp()];
    let legs: Vec<Leg<'_>> = ["p1", "p2", "p3"]
        .iter()
        .enumerate()
        .map(|(i, l)| Leg {
            port: leg_port(&call, l),
            ssrc: 10 + i as u32,
            signal: &tones[i],
            socket: &socks[i],
            delay_packets: 0,
        })
        .collect();
    stream(&legs, |_| {});
    d.admin("POST", &format!("/v1/calls/{id}/end"), None);
    let events = ev.until("recording.completed", 10 * SECOND);
    let path = PathBuf::from(events.last().unwrap()["data"]["path"].as_str().unwrap());
    let (pcm, channels, _) = read_wav(&path);
    assert_eq!(channels, 1);
    let body = &pcm[4000..12_000];
    for f in [500.0, 1100.0, 1700.0] {
        assert!(
            tone_power(body, 8000, f) > 1e6,
            "{f} Hz missing from the mix"
        );
    }
    // Everyone in the audio is listed, the late joiner included.
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
    let listed: Vec<&str> = sidecar["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["leg_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["p1", "p2", "p3"], "{sidecar}");
    assert!(sidecar["legs"][2]["stats"]["received"].as_u64().unwrap() > 90);
}

#[test]
fn auth_rejects_missing_and_wrong_tokens() {
    let d = Daemon::start("auth", "");
    for token in [None, Some("wrong")] {
        let (s, e) = d.request("GET", "/v1/calls", None, token);
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{token:?}"
        );
    }
    let (s, _) = d.request_raw("GET", "/v1/calls", None, None, &[("X-Auth-Token", ADMIN)]);
    assert_eq!(s, 200);
    assert_eq!(d.request("GET", "/healthz", None, None).0, 200);
}

#[test]
fn a_tenant_cannot_see_or_touch_another_tenants_call() {
    let d = Daemon::start("tenants", "");
    let call = create(
        &d,
        ACME,
        json!({"call_id": "acme-call", "legs": [{"role": "caller"}]}),
    );
    assert_eq!(call["customer_id"], "acme");
    for (method, path) in [
        ("GET", "/v1/calls/acme-call"),
        ("POST", "/v1/calls/acme-call/record/start"),
        ("POST", "/v1/calls/acme-call/end"),
        ("POST", "/v1/calls/acme-call/legs/caller/mute"),
    ] {
        let (s, e) = d.request(method, path, None, Some(GLOBEX));
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (404, Some("call_not_found")),
            "{method} {path}"
        );
    }
    let (_, list) = d.request("GET", "/v1/calls", None, Some(GLOBEX));
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    let (_, list) = d.request("GET", "/v1/calls", None, Some(ACME));
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (_, list) = d.admin("GET", "/v1/calls", None);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        d.request("POST", "/v1/calls/acme-call/record/start", None, Some(ACME))
            .0,
        201
    );
}

#[test]
fn port_exhaustion_is_a_503_not_a_hang() {
    let d = Daemon::start_with("ports", "", 2);
    create(
        &d,
        ADMIN,
        json!({"legs": [{"role": "caller"}, {"role": "callee"}]}),
    );
    let (s, e) = d.admin("POST", "/v1/calls", Some(r#"{"legs":[{"role":"caller"}]}"#));
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (503, Some("ports_exhausted")),
        "{e}"
    );
}

#[test]
fn bad_requests_get_a_4xx_naming_the_problem() {
    let d = Daemon::start("bad-requests", "");
    let cases: &[(&str, &str, u16, &str, &str)] = &[
        ("POST", "{not json", 400, "invalid_json", "malformed"),
        (
            "POST",
            r#"{"legs":[{"role":"caller"}],"colour":1}"#,
            400,
            "invalid_request",
            "colour",
        ),
        (
            "POST",
            r#"{"legs":[{"role":"boss"}]}"#,
            400,
            "invalid_request",
            "legs[0].role",
        ),
        (
            "POST",
            r#"{"legs":"caller"}"#,
            400,
            "invalid_request",
            "legs",
        ),
        (
            "POST",
            r#"{"legs":[{"role":"caller"}],"recording":{"format":"flac"}}"#,
            400,
            "invalid_format",
            "recording.format",
        ),
        (
            "POST",
            r#"{"legs":[{"role":"caller"}],"recording":{"format":"mp3","bitrate":999}}"#,
            400,
            "invalid_format",
            "999",
        ),
        (
            "POST",
            r#"{"call_id":"../etc","legs":[{"role":"caller"}]}"#,
            400,
            "invalid_request",
            "call_id",
        ),
        ("POST", r#"{"legs":[]}"#, 400, "invalid_request", "legs"),
    ];
    for &(method, body, status, code, mention) in cases {
        let (s, e) = d.request(method, "/v1/calls", Some(body), Some(ADMIN));
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {e}"
        );
        assert!(
            e["error"]["message"].as_str().unwrap().contains(mention),
            "{body}: {e}"
        );
    }
    let huge = format!(
        r#"{{"legs":[{{"role":"caller","label":"{}"}}]}}"#,
        "x".repeat(100_000)
    );
    let (s, e) = d.request("POST", "/v1/calls", Some(&huge), Some(ADMIN));
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let (s, _) = d.request("POST", "/v1/calls", Some(&deep), Some(ADMIN));
    assert_eq!(s, 400);
    let (s, e) = d.admin("POST", "/v1/calls/nope/record/start", None);
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (404, Some("call_not_found"))
    );
    let (s, e) = d.admin("GET", "/v1/nothing-here", None);
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, _) = d.request_raw(
        "POST",
        "/v1/calls",
        Some(&[0xff, 0xfe, 0x00]),
        Some(ADMIN),
        &[],
    );
    assert_eq!(s, 400);
}

#[test]
fn media_timeout_ends_a_silent_call_and_max_duration_stops_a_recording() {
    let d = Daemon::start(
        "timeouts",
        "[recording]\nmedia_timeout_s = 1\nmax_duration_s = 1\n",
    );
    let mut ev = d.events(Some(0));
    let call = create(
        &d,
        ADMIN,
        json!({"legs": [{"role": "caller"}], "recording": {"enabled": true}}),
    );
    let events = ev.until("call.ended", 5 * SECOND);
    let stopped = events
        .iter()
        .find(|e| e["event"] == "recording.stopped")
        .unwrap();
    assert!(matches!(
        stopped["data"]["reason"].as_str(),
        Some("max_duration" | "media_timeout")
    ));
    assert_eq!(events.last().unwrap()["data"]["reason"], "media_timeout");
    assert_eq!(events.last().unwrap()["data"]["call_id"], call["call_id"]);

    // Not one packet reached the recording: it fails as no_media and
    // leaves no file of silence behind.
    let mut seen = events.clone();
    if !seen.iter().any(|e| e["event"] == "recording.failed") {
        seen.extend(ev.until("recording.failed", 5 * SECOND));
    }
    let failed = seen
        .iter()
        .find(|e| e["event"] == "recording.failed")
        .unwrap();
    assert_eq!(failed["data"]["reason"], "no_media", "{failed}");
    let id = failed["data"]["recording_id"].as_str().unwrap();
    let (status, rec) = d.admin("GET", &format!("/v1/recordings/{id}"), None);
    assert_eq!(status, 200, "{rec}");
    assert_eq!(
        (rec["status"].as_str(), rec["failure_reason"].as_str()),
        (Some("failed"), Some("no_media")),
        "{rec}"
    );
    let leftovers: Vec<_> = walk(&d.storage())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(id))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A recording at another rate than the call's media rate is resampled
/// from it: 1 kHz in, 1 kHz out, at 48 kHz.
#[test]
fn a_recording_rate_other_than_the_calls_is_resampled() {
    let d = Daemon::start("resampled", "");
    let mut ev = d.events(Some(0));
    let call = create(
        &d,
        ADMIN,
        json!({"call_id": "rs", "legs": [{"role": "caller"}]}),
    );
    assert_eq!(call["sample_rate"], 8000);
    let (s, rec) = d.admin(
        "POST",
        "/v1/calls/rs/record/start",
        Some(r#"{"format":"wav","sample_rate":48000}"#),
    );
    assert_eq!(s, 201, "{rec}");
    let tone = recengine::testkit::tone(8000, 1000.0, 8000.0, 8000 * 2);
    let sock = udp();
    stream(
        &[Leg {
            port: leg_port(&call, "caller"),
            ssrc: 3,
            signal: &tone,
            socket: &sock,
            delay_packets: 0,
        }],
        |_| {},
    );
    d.admin("POST", "/v1/calls/rs/end", None);
    let events = ev.until("recording.completed", 10 * SECOND);
    let path = PathBuf::from(events.last().unwrap()["data"]["path"].as_str().unwrap());
    let (pcm, channels, rate) = read_wav(&path);
    assert_eq!((channels, rate), (1, 48_000));
    let body = &pcm[24_000..72_000];
    assert!(
        tone_power(body, 48_000, 1000.0) > 1e6,
        "1 kHz tone survives resampling"
    );
    assert!(
        tone_power(body, 48_000, 7000.0) < 1e3,
        "no images of the 8 kHz rate"
    );
    let secs = pcm.len() as f64 / 48_000.0;
    assert!((1.8..3.0).contains(&secs), "{secs} s");
}

/// A stop while the call goes on finishes the recording at once, and what
/// the jitter buffer held at that moment (the last playout delay's worth of
/// audio) is in the file; nothing sent after the stop is.
#[test]
fn a_stop_mid_call_keeps_the_audio_held_in_the_jitter_buffer() {
    let d = Daemon::start("stop-mid-call", "");
    let mut ev = d.events(Some(0));
    let call = create(
        &d,
        ADMIN,
        json!({"call_id": "stop-1", "legs": [{"role": "caller"}],
               "recording": {"enabled": true, "format": "wav", "recording_id": "rec-stop-1"}}),
    );
    let tone = recengine::testkit::tone(8000, 1000.0, 8000.0, 8000 * 2);
    let a = udp();
    let legs = [Leg {
        port: leg_port(&call, "caller"),
        ssrc: 7,
        signal: &tone,
        socket: &a,
        delay_packets: 0,
    }];
    stream(&legs, |i| {
        if i == 50 {
            // 50 packets (1 s) sent; the last ~10 are still in the buffer.
            let (s, rec) = d.admin("POST", "/v1/calls/stop-1/record/stop", None);
            assert_eq!((s, rec["status"].as_str()), (200, Some("stopped")), "{rec}");
        }
    });
    let events = ev.until("recording.completed", 10 * SECOND);
    let done = events
        .iter()
        .find(|e| e["event"] == "recording.completed")
        .unwrap();
    let (samples, _, rate) = read_wav(std::path::Path::new(done["data"]["path"].as_str().unwrap()));
    assert_eq!(rate, 8000);
    let toned = samples
        .chunks(160)
        .filter(|b| b.len() == 160 && recengine::testkit::tone_power(b, 8000, 1000.0) > 0.25)
        .count();
    assert!(
        (48..=51).contains(&toned),
        "{toned} tone packets recorded of the 50 sent before the stop"
    );
}

/// RTP over IPv6: legs bound to ::1 are advertised as such and recorded
/// (kernel receive stamps and latching work the same for both families).
#[test]
fn ipv6_legs_are_recorded() {
    let d = Daemon::start("ipv6", "[rtp]\nbind = \"::1\"\n");
    let mut ev = d.events(Some(0));
    let call = create(
        &d,
        ADMIN,
        json!({"call_id": "v6", "legs": [{"role": "caller"}],
               "recording": {"enabled": true, "format": "wav"}}),
    );
    assert_eq!(call["legs"][0]["rtp"]["host"], "::1", "{call}");
    let tone = recengine::testkit::tone(8000, 1000.0, 8000.0, 8000);
    let socket = std::net::UdpSocket::bind("[::1]:0").unwrap();
    let legs = [Leg {
        port: leg_port(&call, "caller"),
        ssrc: 0x66,
        signal: &tone,
        socket: &socket,
        delay_packets: 0,
    }];
    stream_to("::1", &legs, |_| {});
    d.admin("POST", "/v1/calls/v6/end", None);
    let events = ev.until("recording.completed", 10 * SECOND);
    let done = events.last().unwrap();
    let (samples, _, _) = read_wav(std::path::Path::new(done["data"]["path"].as_str().unwrap()));
    let toned = samples
        .chunks(160)
        .filter(|b| b.len() == 160 && recengine::testkit::tone_power(b, 8000, 1000.0) > 0.25)
        .count();
    assert!(toned >= 48, "{toned} of 50 packets recorded");
    let (_, view) = d.admin("GET", "/v1/calls/v6", None);
    assert_eq!(view["legs"][0]["ingest"]["datagrams"], 50, "{view}");
}
