//! The recordings API against the real daemon and a real SQLite catalog.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

/// Makes a short completed recording on a new call; returns its
/// `recording.completed` event data.
fn record(d: &Daemon, token: &str, call_id: &str, format: &str) -> Value {
    let body = json!({"call_id": call_id, "legs": [{"role": "caller"}], "recording": {"enabled": true, "format": format}});
    record_tone_call(d, token, &body, 700.0)
}

fn get(d: &Daemon, path: &str, token: &str) -> (u16, Value) {
    d.request("GET", path, None, Some(token))
}

#[test]
fn listing_pages_filters_and_refuses_bad_parameters() {
    let d = Daemon::start("list", "");
    let mut ids = Vec::new();
    for (i, format) in ["wav", "mp3", "wav", "opus", "wav"].iter().enumerate() {
        ids.push(
            record(&d, ACME, &format!("c{i}"), format)["recording_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    record(&d, GLOBEX, "g1", "wav");
    let page = |q: &str| get(&d, &format!("/v1/recordings{q}"), ACME).1;
    let all = page("");
    assert_eq!(all["pagination"]["total"], 5);
    // Newest first.
    let listed: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["recording_id"].as_str().unwrap())
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    let p = page("?limit=2&offset=0");
    assert_eq!(
        (
            p["data"].as_array().unwrap().len(),
            p["pagination"]["has_more"].as_bool()
        ),
        (2, Some(true))
    );
    let p = page("?limit=2&offset=4");
    assert_eq!(
        (
            p["data"].as_array().unwrap().len(),
            p["pagination"]["has_more"].as_bool()
        ),
        (1, Some(false))
    );
    let p = page("?offset=50");
    assert_eq!(
        (
            p["data"].as_array().unwrap().len(),
            p["pagination"]["total"].as_u64()
        ),
        (0, Some(5))
    );
    let p = page("?limit=0");
    assert_eq!(
        (
            p["data"].as_array().unwrap().len(),
            p["pagination"]["total"].as_u64()
        ),
        (0, Some(5))
    );
    // Past the most a page holds is refused, naming the parameter.
    let (status, refused) = get(&d, "/v1/recordings?limit=1001", ACME);
    assert_eq!(status, 400);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("limit:"),
        "{refused}"
    );
    assert_eq!(page("?limit=1000")["pagination"]["limit"], 1000);
    assert_eq!(page("?format=wav")["pagination"]["total"], 3);
    assert_eq!(
        page("?status=completed&call_id=c1")["data"][0]["format"],
        "mp3"
    );
    // since/until by RFC 3339 start time.
    let mid = page("")["data"][2]["started_at"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(page(&format!("?since={mid}"))["pagination"]["total"], 3);
    assert_eq!(page(&format!("?until={mid}"))["pagination"]["total"], 2);
    for (q, param) in [
        ("?limit=abc", "limit"),
        ("?since=yesterday", "since"),
        ("?status=weird", "status"),
        ("?format=flac", "format"),
        ("?colour=1", "colour"),
    ] {
        let (s, e) = get(&d, &format!("/v1/recordings{q}"), ACME);
        assert_eq!(s, 400, "{q}");
        assert!(
            e["error"]["message"].as_str().unwrap().starts_with(param),
            "{q}: {e}"
        );
    }
    // The admin sees every tenant.
    assert_eq!(get(&d, "/v1/recordings", ADMIN).1["pagination"]["total"], 6);
}

#[test]
fn downloads_through_signed_urls_with_range_and_head() {
    let d = Daemon::start("download", "");
    let done = record(&d, ACME, "dl", "mp3");
    let id = done["recording_id"].as_str().unwrap();
    let path = PathBuf::from(done["path"].as_str().unwrap());
    let file = std::fs::read(&path).unwrap();
    let (s, _) = d.request_raw(
        "GET",
        &format!("/v1/recordings/{id}/download"),
        None,
        Some(ACME),
        &[],
    );
    assert_eq!(s, 302);
    let (_, call_rec) = get(&d, "/v1/calls/dl/recording", ACME);
    assert_eq!(call_rec["recording_id"], id);
    assert_eq!(call_rec["content_type"], "audio/mpeg");
    assert_eq!(call_rec["recording_status"], "completed");
    assert_eq!(
        call_rec["file_size_bytes"].as_u64(),
        Some(file.len() as u64)
    );
    let url = call_rec["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("http://{}/v1/files/", d.api)),
        "an absolute URL on api.public_url (default: the bound address): {url}"
    );
    // No bearer token: the signature is the authority.
    let (s, body) = d.request_raw("GET", &url, None, None, &[]);
    assert_eq!(s, 200);
    assert_eq!(body, file);
    assert_eq!(
        sha256_file(&path),
        done["checksum"]["value"].as_str().unwrap()
    );
    let (s, body) = d.request_raw("GET", &url, None, None, &[("Range", "bytes=10-99")]);
    assert_eq!((s, body.as_slice()), (206, &file[10..100]));
    let (s, body) = d.request_raw("GET", &url, None, None, &[("Range", "bytes=-16")]);
    assert_eq!((s, body.as_slice()), (206, &file[file.len() - 16..]));
    let (s, _) = d.request_raw(
        "GET",
        &url,
        None,
        None,
        &[("Range", &format!("bytes={}-", file.len()))],
    );
    assert_eq!(s, 416);
    let (s, body) = d.request_raw("HEAD", &url, None, None, &[]);
    assert_eq!((s, body.len()), (200, 0));
    let tampered = url.replace("sig=", "sig=0");
    let (s, e) = d.request("GET", &tampered, None, None);
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (403, Some("invalid_signature"))
    );
    let other = url.replace(id, "rec-someone-else");
    assert_eq!(d.request("GET", &other, None, None).0, 403);
}

#[test]
fn expired_urls_are_refused() {
    let d = Daemon::start("expiry", "[storage]\nurl_lifetime_s = 1\n");
    record(&d, ADMIN, "ex", "wav");
    let url = get(&d, "/v1/calls/ex/recording", ADMIN).1["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(d.request_raw("GET", &url, None, None, &[]).0, 200);
    std::thread::sleep(Duration::from_millis(2100));
    let (s, e) = d.request("GET", &url, None, None);
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("url_expired")));
}

#[test]
fn delete_leaves_a_tombstone_and_refuses_live_recordings() {
    let d = Daemon::start("delete", "");
    let done = record(&d, ACME, "del", "wav");
    let id = done["recording_id"].as_str().unwrap();
    let path = PathBuf::from(done["path"].as_str().unwrap());
    assert!(path.exists() && path.with_extension("json").exists());
    let (s, gone) = d.request("DELETE", &format!("/v1/recordings/{id}"), None, Some(ACME));
    assert_eq!(s, 200, "{gone}");
    assert!(!path.exists() && !path.with_extension("json").exists());
    let (_, tomb) = get(&d, &format!("/v1/recordings/{id}"), ACME);
    assert_eq!(tomb["status"], "deleted");
    assert!(tomb["deleted_at"].is_string());
    let (s, e) = d.request(
        "GET",
        &format!("/v1/recordings/{id}/download"),
        None,
        Some(ACME),
    );
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (410, Some("recording_deleted"))
    );
    // A recording in progress cannot be deleted.
    let (_, call) = d.admin(
        "POST",
        "/v1/calls",
        Some(r#"{"call_id":"live","legs":[{"role":"caller"}],"recording":{"enabled":true}}"#),
    );
    let live = call["recordings"][0]["recording_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, e) = d.admin("DELETE", &format!("/v1/recordings/{live}"), None);
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("recording_in_progress"))
    );
}

#[test]
fn recording_logs_are_idempotent_upserts() {
    let d = Daemon::start("logs", "");
    let done = record(&d, ACME, "lg", "wav");
    let id = done["recording_id"].as_str().unwrap().to_owned();
    let post = |body: &Value, key: Option<&str>| {
        let mut headers = vec![];
        if let Some(k) = key {
            headers.push(("Idempotency-Key", k));
        }
        let (s, raw) = d.request_raw(
            "POST",
            "/v1/calls/lg/recording-log",
            Some(body.to_string().as_bytes()),
            Some(ACME),
            &headers,
        );
        (
            s,
            serde_json::from_slice::<Value>(&raw).unwrap_or(Value::Null),
        )
    };
    let log = json!({"recording_id": id, "recording_url": "https://cdn.example.com/r.wav", "duration_seconds": 0.5,
                     "transcription_id": "tr-1", "transcription_status": "pending",
                     "started_at": "2026-01-01T10:00:00Z", "ended_at": "2026-01-01T10:00:01Z", "metadata": {"agent": "alice"}});
    let (s, first) = post(&log, Some("key-1"));
    assert_eq!(s, 201, "{first}");
    assert_eq!(first["attached_to_engine_recording"], true);
    let (s, again) = post(&log, Some("key-1"));
    assert_eq!(
        (s, &again),
        (201, &first),
        "a replay answers the first response"
    );
    // The same fields in another order and spacing are the same request.
    let mut fields: Vec<(&String, &Value)> = log.as_object().unwrap().iter().collect();
    fields.reverse();
    let reordered = format!(
        "{{\n  {}\n}}",
        fields
            .iter()
            .map(|(k, v)| format!("{}: {v}", Value::from(k.as_str())))
            .collect::<Vec<_>>()
            .join(",\n  ")
    );
    assert_ne!(reordered, log.to_string());
    let (s, raw) = d.request_raw(
        "POST",
        "/v1/calls/lg/recording-log",
        Some(reordered.as_bytes()),
        Some(ACME),
        &[("Idempotency-Key", "key-1")],
    );
    assert_eq!(
        (s, serde_json::from_slice::<Value>(&raw).unwrap()),
        (201, first.clone()),
        "a body equal as JSON is a replay, not a reuse"
    );
    let mut changed = log.clone();
    changed["transcription_status"] = json!("completed");
    let (s, e) = post(&changed, Some("key-1"));
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );
    let (s, _) = post(&changed, Some("key-2"));
    assert_eq!(
        s, 200,
        "an update of the same (call, recording) is not a create"
    );
    let (_, rec) = get(&d, &format!("/v1/recordings/{id}"), ACME);
    assert_eq!(rec["transcription_status"], "completed");
    assert_eq!(rec["metadata"]["agent"], "alice");
    // A later post changes only what it carries.
    let (s, merged) = post(
        &json!({"recording_id": id, "metadata": {"agent": "bob"}}),
        Some("key-3"),
    );
    assert_eq!(s, 200, "{merged}");
    let (_, rec) = get(&d, &format!("/v1/recordings/{id}"), ACME);
    assert_eq!(
        (
            &rec["metadata"]["agent"],
            &rec["transcription_id"],
            &rec["transcription_status"]
        ),
        (&json!("bob"), &json!("tr-1"), &json!("completed")),
        "{rec}"
    );
    assert_eq!(merged["started_at"], "2026-01-01T10:00:00Z", "{merged}");
    // ... and is checked with what is stored: an end before the stored start.
    let (s, e) = post(
        &json!({"recording_id": id, "ended_at": "2026-01-01T09:00:00Z"}),
        None,
    );
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("ended_at"),
        "{e}"
    );
    // Validation.
    for (body, field) in [
        (
            json!({"recording_id": "x", "recording_url": "http://insecure"}),
            "recording_url",
        ),
        (
            json!({"recording_id": "x", "started_at": "2026-01-01T10:00:01Z", "ended_at": "2026-01-01T10:00:00Z"}),
            "ended_at",
        ),
        (
            json!({"recording_id": "x", "transcription_status": "maybe"}),
            "transcription_status",
        ),
        (json!({"recording_id": "../x"}), "recording_id"),
        (json!({"recording_id": "x", "extra": 1}), "extra"),
    ] {
        let (s, e) = post(&body, None);
        assert_eq!(s, 400, "{body}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(field),
            "{body}: {e}"
        );
    }
    // A new log must say where its recording is and how long it lasts.
    for (body, field) in [
        (
            json!({"recording_id": "vendor-76", "duration_seconds": 1.0}),
            "recording_url",
        ),
        (
            json!({"recording_id": "vendor-76", "recording_url": "https://v.example/76.mp3"}),
            "duration_seconds",
        ),
    ] {
        let (s, e) = post(&body, None);
        assert_eq!(s, 400, "{body}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(field),
            "{body}: {e}"
        );
    }
    // A log for a recording the engine never made catalogues it as external.
    let (s, ext) = post(
        &json!({"recording_id": "vendor-77", "recording_url": "https://v.example/77.mp3",
                "duration_seconds": 12.5}),
        None,
    );
    assert_eq!(
        (s, ext["attached_to_engine_recording"].as_bool()),
        (201, Some(false))
    );
    // Its catalog row follows the log's later updates.
    let (s, _) = post(
        &json!({"recording_id": "vendor-77", "duration_seconds": 20.0}),
        None,
    );
    assert_eq!(s, 200);
    let (_, row) = get(&d, "/v1/recordings/vendor-77", ACME);
    assert_eq!(row["duration_ms"], 20_000, "{row}");
    // Its audio is elsewhere: a download says so.
    let (s, e) = get(&d, "/v1/recordings/vendor-77/download", ACME);
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("recording_not_ready")),
        "{e}"
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("made elsewhere"),
        "{e}"
    );
    let (_, listed) = get(&d, "/v1/recordings?call_id=lg", ACME);
    assert_eq!(listed["pagination"]["total"], 2);
    // Another tenant cannot log against this call.
    let (s, _) = d.request(
        "POST",
        "/v1/calls/lg/recording-log",
        Some(&log.to_string()),
        Some(GLOBEX),
    );
    assert_eq!(s, 404);
}

#[test]
fn quota_refuses_new_recordings_without_side_effects() {
    let d = Daemon::start("quota", "[storage]\nmax_bytes = 1000\n");
    record(&d, ADMIN, "q1", "wav");
    let (s, e) = d.admin(
        "POST",
        "/v1/calls",
        Some(r#"{"call_id":"q2","legs":[{"role":"caller"}]}"#),
    );
    assert_eq!(s, 201, "{e}");
    let (s, e) = d.admin("POST", "/v1/calls/q2/record/start", None);
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (429, Some("quota_exceeded")),
        "{e}"
    );
    // Nothing half-made: no event, no catalog row, no file for q2.
    let mut ev = d.events(Some(0));
    let mut seen = Vec::new();
    while let Some(e) = ev.next(Duration::from_millis(300)) {
        seen.push(e);
    }
    assert!(
        seen.iter()
            .any(|e| e["event"] == "call.created" && e["data"]["call_id"] == "q2")
    );
    assert!(
        !seen
            .iter()
            .any(|e| e["event"] == "recording.started" && e["data"]["call_id"] == "q2"),
        "{seen:#?}"
    );
    let (_, list) = d.admin("GET", "/v1/recordings?call_id=q2", None);
    assert_eq!(list["pagination"]["total"], 0);
}

#[test]
fn tenants_only_reach_their_own_recordings() {
    let d = Daemon::start("tenant-recs", "");
    let theirs = record(&d, GLOBEX, "gx", "wav")["recording_id"]
        .as_str()
        .unwrap()
        .to_owned();
    record(&d, ACME, "ac", "wav");
    assert_eq!(get(&d, "/v1/recordings", ACME).1["pagination"]["total"], 1);
    for (method, path) in [
        ("GET", format!("/v1/recordings/{theirs}")),
        ("GET", format!("/v1/recordings/{theirs}/download")),
        ("DELETE", format!("/v1/recordings/{theirs}")),
        ("GET", "/v1/calls/gx/recording".to_owned()),
    ] {
        let (s, e) = d.request(method, &path, None, Some(ACME));
        assert_eq!(s, 404, "{method} {path}: {e}");
    }
    assert_eq!(get(&d, &format!("/v1/recordings/{theirs}"), GLOBEX).0, 200);
}

#[test]
fn the_catalog_survives_a_restart_and_reindex_rebuilds_it() {
    let mut d = Daemon::start("restart", "");
    let a = record(&d, ACME, "r1", "wav");
    let b = record(&d, ADMIN, "r2", "opus");
    assert!(d.terminate().success());
    let dir = d.dir.clone();
    drop(d);
    let d = Daemon::launch("restart", &dir, "", 4);
    let (_, list) = get(&d, "/v1/recordings", ADMIN);
    assert_eq!(list["pagination"]["total"], 2);
    let before: Vec<Value> = list["data"].as_array().unwrap().clone();
    let mut d = d;
    assert!(d.terminate().success());
    drop(d);
    // Lose the catalog; rebuild it from the sidecars.
    let storage = dir.join("storage");
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(storage.join(f));
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_recengine"))
        .args(["reindex", "-c"])
        .arg(dir.join("engine.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 recording(s) indexed"));
    let d = Daemon::launch("restart", &dir, "", 4);
    let (_, list) = get(&d, "/v1/recordings", ADMIN);
    let after = list["data"].as_array().unwrap();
    assert_eq!(after.len(), 2);
    for (x, y) in before.iter().zip(after) {
        for k in [
            "recording_id",
            "call_id",
            "customer_id",
            "format",
            "duration_ms",
            "file_size_bytes",
            "checksum",
            "started_at",
        ] {
            assert_eq!(x[k], y[k], "{k}");
        }
    }
    assert_eq!(
        get(
            &d,
            &format!("/v1/recordings/{}", a["recording_id"].as_str().unwrap()),
            ACME
        )
        .0,
        200
    );
    assert_eq!(
        get(
            &d,
            &format!("/v1/recordings/{}", b["recording_id"].as_str().unwrap()),
            ACME
        )
        .0,
        404
    );
}

#[test]
fn metrics_count_recordings_bytes_and_finalize_latency() {
    let d = Daemon::start("metrics", "");
    let done = record(&d, ADMIN, "m1", "wav");
    let (s, raw) = d.request_raw("GET", "/metrics", None, None, &[]);
    assert_eq!(s, 200);
    let text = String::from_utf8(raw).unwrap();
    assert!(
        text.contains("recengine_recordings{state=\"completed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("recengine_finalize_latency_ms_count 1"),
        "{text}"
    );
    let bytes = done["file_size_bytes"].as_u64().unwrap();
    assert!(
        text.contains(&format!("recengine_bytes_written_total {bytes}")),
        "{text}"
    );
    assert!(text.contains("recengine_rtp_datagrams_total"), "{text}");
    assert!(
        text.contains("recengine_encode_seconds_total{format=\"wav\"}"),
        "{text}"
    );
}

/// The action-style endpoint (#15): no body or `{}` starts with the
/// defaults, `stop` stops, and an action it does not know is
/// `invalid_action`, not a generic `invalid_request`.
#[test]
fn the_action_endpoint_starts_by_default_and_names_a_bad_action() {
    let d = Daemon::start("action-endpoint", "");
    let call = json!({"call_id": "act-1", "legs": [{"role": "caller"}]});
    let (s, v) = d.admin("POST", "/v1/calls", Some(&call.to_string()));
    assert_eq!(s, 201, "{v}");
    let (s, v) = d.request_raw("POST", "/v1/calls/act-1/recordings", None, Some(ADMIN), &[]);
    let v: Value = serde_json::from_slice(&v).unwrap();
    assert_eq!((s, v["status"].as_str()), (201, Some("recording")), "{v}");
    let (s, v) = d.admin(
        "POST",
        "/v1/calls/act-1/recordings",
        Some(r#"{"action": "stop"}"#),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = d.admin("POST", "/v1/calls/act-1/recordings", Some("{}"));
    assert_eq!((s, v["format"].as_str()), (201, Some("wav")), "{v}");
    let (s, v) = d.admin(
        "POST",
        "/v1/calls/act-1/recordings",
        Some(r#"{"action": "pause"}"#),
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_action")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"pause\""),
        "{v}"
    );
    // VoIPbin's name for a conference.
    let conf = json!({"call_id": "act-2", "reference_type": "confbridge",
                      "legs": [{"role": "participant"}]});
    let (s, v) = d.admin("POST", "/v1/calls", Some(&conf.to_string()));
    assert_eq!(
        (s, v["reference_type"].as_str()),
        (201, Some("conference")),
        "{v}"
    );
}

#[test]
fn format_defaults_owner_fields_and_tenant_quotas() {
    let d = Daemon::start(
        "parity-defaults",
        "[[tenants]]\ncustomer_id = \"acme\"\nmax_bytes = 1000\n",
    );
    // MP3 with no rate or bit rate: 64 kbit/s at 16 kHz; opaque owner
    // fields come back as given, in the detail and the sidecar.
    let body = json!({"call_id": "own-1", "legs": [{"role": "caller"}],
                      "recording": {"enabled": true, "format": "mp3", "owner_type": "agent",
                                    "owner_id": "ag-7", "on_end_flow_id": "flow-1"}});
    let done = record_tone_call(&d, ACME, &body, 700.0);
    let id = done["recording_id"].as_str().unwrap().to_owned();
    let (s, rec) = get(&d, &format!("/v1/recordings/{id}"), ACME);
    assert_eq!(s, 200, "{rec}");
    assert_eq!(
        (&rec["sample_rate"], &rec["bitrate_kbps"]),
        (&json!(16000), &json!(64)),
        "{rec}"
    );
    for (field, value) in [
        ("owner_type", "agent"),
        ("owner_id", "ag-7"),
        ("on_end_flow_id", "flow-1"),
    ] {
        assert_eq!(rec[field], value, "{rec}");
    }
    let sidecar = PathBuf::from(done["path"].as_str().unwrap()).with_extension("json");
    let sidecar: Value = serde_json::from_slice(&std::fs::read(sidecar).unwrap()).unwrap();
    assert_eq!(sidecar["owner_id"], "ag-7", "{sidecar}");
    // WAV stays 8 kHz, and a recording without owner fields has none.
    let wav = record(&d, GLOBEX, "own-2", "wav");
    let (_, rec) = get(
        &d,
        &format!("/v1/recordings/{}", wav["recording_id"].as_str().unwrap()),
        GLOBEX,
    );
    assert_eq!(rec["sample_rate"], 8000, "{rec}");
    assert!(rec.get("owner_id").is_none(), "{rec}");
    // MP3 asked for at 8 kHz with no bit rate: 48 kbit/s, the rate's own.
    let narrow = json!({"call_id": "own-5", "legs": [{"role": "caller"}],
                        "recording": {"enabled": true, "format": "mp3", "sample_rate": 8000}});
    let done = record_tone_call(&d, GLOBEX, &narrow, 700.0);
    let (_, rec) = get(
        &d,
        &format!("/v1/recordings/{}", done["recording_id"].as_str().unwrap()),
        GLOBEX,
    );
    assert_eq!(
        (&rec["sample_rate"], &rec["bitrate_kbps"]),
        (&json!(8000), &json!(48)),
        "{rec}"
    );
    // acme is over its own quota; globex (no [[tenants]] entry) is not.
    let over =
        json!({"call_id": "own-3", "legs": [{"role": "caller"}], "recording": {"enabled": true}});
    let (s, e) = d.request("POST", "/v1/calls", Some(&over.to_string()), Some(ACME));
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (429, Some("quota_exceeded")),
        "{e}"
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[[tenants]] max_bytes"),
        "{e}"
    );
    let (s, e) = d.request("POST", "/v1/calls", Some(&over.to_string()), Some(GLOBEX));
    assert_eq!(s, 201, "{e}");
    // An owner field is bounded like any text.
    let long = json!({"call_id": "own-4", "legs": [{"role": "caller"}],
                      "recording": {"enabled": true, "owner_id": "x".repeat(300)}});
    let (s, e) = d.request("POST", "/v1/calls", Some(&long.to_string()), Some(GLOBEX));
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("owner_id"),
        "{e}"
    );
}
