//! Fleet mode (issue #17): recordings uploaded to an S3-compatible object
//! store, and recorders sharing one PostgreSQL catalog.
//!
//! The object store is a real S3 server on loopback, `s3s-fs` (SigV4
//! checked with the test's credentials, SHA-256 checksums verified), run in
//! this process so it can be stopped and started again on the same port.
//! The daemon's client is the production one. The two-recorder test needs
//! the PostgreSQL server on 127.0.0.1:5432 and skips with a message
//! without one (a failure under `RECENGINE_REQUIRE_SERVICES=1`, as in CI).

#[path = "s3/server.rs"]
mod s3_server;
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use s3_server::S3Server;
use serde_json::{Value, json};
use support::*;

const BUCKET: &str = "recordings";

fn s3(name: &str) -> S3Server {
    S3Server::start(
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("s3-{name}")),
        BUCKET,
    )
}

/// GET of an absolute http://127.0.0.1 URL (a pre-signed one): status and
/// body.
fn http_get(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    assert!(host.starts_with("127.0.0.1:"), "{url} is not on loopback");
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&resp[..end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = resp[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = recengine::loadgen::dechunk(&body).unwrap();
    }
    (status, body)
}

fn sha256(bytes: &[u8]) -> String {
    recengine::crypto::sha256_hex(bytes)
}

/// Follows `/v1/recordings/{id}/download` for `token`: the bytes served.
fn download(d: &Daemon, id: &str, token: &str) -> Vec<u8> {
    let (s, head, body) = d.request_with_head(
        "GET",
        &format!("/v1/recordings/{id}/download"),
        None,
        Some(token),
        &[],
    );
    assert_eq!(s, 302, "{head} {}", String::from_utf8_lossy(&body));
    let location = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .expect("a Location");
    let (s, bytes) = if location.contains("X-Amz-Signature") {
        http_get(&location)
    } else {
        d.request_raw("GET", &location, None, None, &[])
    };
    assert_eq!(s, 200, "{location}: {}", String::from_utf8_lossy(&bytes));
    bytes
}

fn health(d: &Daemon) -> Value {
    d.request("GET", "/healthz", None, None).1
}

/// Waits until `/healthz` shows `n` uploads pending (the uploader counts
/// them each round, at least once a second).
fn wait_for_backlog(d: &Daemon, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while health(d)["uploads"]["backlog"] != n {
        assert!(Instant::now() < deadline, "{}", health(d));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn uploads_wait_out_an_object_store_outage_and_nothing_is_lost() {
    let mut s3 = s3("outage");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("daemon-fleet-outage");
    let _ = std::fs::remove_dir_all(&dir);
    if catalog_on_postgres() {
        drop_pg_schema(&pg_schema("fleet-outage"));
    }
    let storage = s3.storage_toml(&dir.join("secrets"), BUCKET);
    let d = Daemon::launch("fleet-outage", &dir, &storage, 4);

    // While the store answers: uploaded, local copy gone, served pre-signed.
    let body = json!({"legs": [{"role": "caller"}], "recording": {"enabled": true}});
    let mut ev = d.events(None);
    let done = record_tone_call(&d, ACME, &body, 700.0);
    let up = ev.until("recording.uploaded", Duration::from_secs(20));
    let up = &up.last().unwrap()["data"];
    let id = done["recording_id"].as_str().unwrap().to_owned();
    assert_eq!(up["recording_id"], done["recording_id"]);
    assert_eq!(up["bucket"], BUCKET);
    let key = up["object_key"].as_str().unwrap();
    assert!(key.starts_with("fleet/acme/"), "{key}");
    let stored = s3.object(BUCKET, key).expect("the object is in the store");
    let checksum = done["checksum"]["value"].as_str().unwrap();
    assert_eq!(sha256(&stored), checksum);
    assert!(
        s3.object(BUCKET, &key.replace(".wav", ".json")).is_some(),
        "the sidecar is beside it"
    );
    let local = PathBuf::from(done["path"].as_str().unwrap());
    assert!(!local.exists(), "the local copy is removed once uploaded");
    assert_eq!(sha256(&download(&d, &id, ACME)), checksum);
    // Another tenant still cannot reach it.
    let (s, _) = d.request(
        "GET",
        &format!("/v1/recordings/{id}/download"),
        None,
        Some(GLOBEX),
    );
    assert_eq!(s, 404);

    // The store goes away for 30 s: recordings finish and queue.
    s3.stop();
    let outage = Instant::now();
    let mut queued = Vec::new();
    for hz in [500.0, 900.0] {
        let done = record_tone_call(&d, ACME, &body, hz);
        assert!(
            Path::new(done["path"].as_str().unwrap()).exists(),
            "kept locally while the store is away"
        );
        queued.push(done);
    }
    wait_for_backlog(&d, 2);
    let (_, metrics) = d.request_raw("GET", "/metrics", None, None, &[]);
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("recengine_upload_backlog 2"), "{metrics}");
    if let Some(rest) = Duration::from_secs(30).checked_sub(outage.elapsed()) {
        std::thread::sleep(rest);
    }
    s3.restart();
    let mut uploaded = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while uploaded.len() < queued.len() {
        assert!(
            Instant::now() < deadline,
            "uploads did not resume: {uploaded:?}"
        );
        if let Some(e) = ev.next(Duration::from_secs(1))
            && e["event"] == "recording.uploaded"
        {
            uploaded.push(e["data"].clone());
        }
    }
    for done in &queued {
        let up = uploaded
            .iter()
            .find(|u| u["recording_id"] == done["recording_id"])
            .expect("every queued recording is uploaded");
        let stored = s3
            .object(BUCKET, up["object_key"].as_str().unwrap())
            .unwrap();
        assert_eq!(sha256(&stored), done["checksum"]["value"].as_str().unwrap());
        assert!(!Path::new(done["path"].as_str().unwrap()).exists());
    }
    wait_for_backlog(&d, 0);
    let h = health(&d);
    assert!(h["uploads"]["failures"].as_u64().unwrap() >= 2, "{h}");

    // Deleting a recording deletes its objects.
    let (s, _) = d.request("DELETE", &format!("/v1/recordings/{id}"), None, Some(ACME));
    assert_eq!(s, 200);
    assert!(
        s3.object(BUCKET, key).is_none(),
        "the object went with the recording"
    );
    assert!(s3.object(BUCKET, &key.replace(".wav", ".json")).is_none());
}

/// Waits for an event named `name` whose data has `field` = `value`.
fn until_with(ev: &mut Events, name: &str, field: &str, value: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "no {name} with {field} = {value}"
        );
        if let Some(e) = ev.next(Duration::from_secs(1))
            && e["event"] == name
            && &e["data"][field] == value
        {
            return e["data"].clone();
        }
    }
}

#[test]
fn two_recorders_share_one_catalog_and_one_bucket() {
    if !pg_up() {
        return;
    }
    let s3 = s3("two");
    let schema = "fleet_two";
    drop_pg_schema(schema);
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let node = |name: &str| {
        let dir = base.join(format!("daemon-fleet-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        let extra = format!(
            "{}\n[catalog]\nbackend = \"postgres\"\nurl = \"{}\"\nschema = \"{schema}\"\nnode_id = \"{name}\"\n",
            s3.storage_toml(&dir.join("secrets"), BUCKET),
            pg_url()
        );
        (dir, extra)
    };
    // With NATS: both recorders publish into one stream.
    let nats = nats_up();
    let nats_stream = format!("FLEET_TWO_{}", std::process::id());
    let events_toml = if nats {
        format!(
            "\n[events.nats]\nurl = \"nats://127.0.0.1:4222\"\nstream = \"{nats_stream}\"\nsubject_prefix = \"fleettwo{}\"\n",
            std::process::id()
        )
    } else {
        String::new()
    };
    let node = |name: &str| {
        let (dir, extra) = node(name);
        (dir, extra + &events_toml)
    };
    let (dir_a, extra_a) = node("node-a");
    let (dir_b, extra_b) = node("node-b");
    let mut a = Daemon::launch("fleet-a", &dir_a, &extra_a, 4);
    let b = Daemon::launch("fleet-b", &dir_b, &extra_b, 4);
    assert_eq!(health(&b)["catalog"]["backend"], "postgres");
    assert_eq!(health(&b)["catalog"]["reachable"], true);
    assert_eq!(health(&a)["catalog"]["node_id"], "node-a");

    // A call on A: B names A for its call control.
    let mut ev_a = a.events(None);
    std::thread::sleep(Duration::from_millis(100));
    let body =
        json!({"call_id": "fleet-1", "legs": [{"role": "caller"}], "recording": {"enabled": true}});
    let (s, call) = a.request("POST", "/v1/calls", Some(&body.to_string()), Some(ACME));
    assert_eq!(s, 201, "{call}");
    for (method, path) in [
        ("GET", "/v1/calls/fleet-1"),
        ("POST", "/v1/calls/fleet-1/record/pause"),
        ("POST", "/v1/calls/fleet-1/end"),
    ] {
        let (s, e) = b.request(method, path, None, Some(ACME));
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (409, Some("held_by_other_node")),
            "{path}: {e}"
        );
        assert!(
            e["error"]["message"].as_str().unwrap().contains("node-a"),
            "{e}"
        );
    }
    // Nor can B open a call with the same id while A holds it.
    let (s, e) = b.request("POST", "/v1/calls", Some(&body.to_string()), Some(ACME));
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("held_by_other_node")),
        "{e}"
    );
    // Another tenant learns nothing from B either.
    let (s, _) = b.request("POST", "/v1/calls/fleet-1/end", None, Some(GLOBEX));
    assert_eq!(s, 404);
    let tone = recengine::testkit::tone(8000, 700.0, 6000.0, 4000);
    let sock = udp();
    stream(
        &[Leg {
            port: leg_port(&call, "caller"),
            ssrc: 5,
            signal: &tone,
            socket: &sock,
            delay_packets: 0,
        }],
        |_| {},
    );
    let (s, _) = a.request("POST", "/v1/calls/fleet-1/end", None, Some(ACME));
    assert_eq!(s, 200);
    let done = until_with(
        &mut ev_a,
        "recording.completed",
        "call_id",
        &json!("fleet-1"),
    );
    let id = done["recording_id"].as_str().unwrap().to_owned();
    let up = until_with(&mut ev_a, "recording.uploaded", "recording_id", &json!(id));

    // B lists it, describes it and serves it (checksum verified).
    let (s, list) = b.request("GET", "/v1/recordings?call_id=fleet-1", None, Some(ACME));
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["data"][0]["recording_id"], json!(id), "{list}");
    let (s, detail) = b.request("GET", &format!("/v1/recordings/{id}"), None, Some(ACME));
    assert_eq!(s, 200, "{detail}");
    assert_eq!(detail["upload"]["state"], "uploaded", "{detail}");
    assert_eq!(detail["upload"]["object_key"], up["object_key"]);
    let checksum = done["checksum"]["value"].as_str().unwrap();
    assert_eq!(sha256(&download(&b, &id, ACME)), checksum);
    // One idempotency key across the fleet.
    let log = json!({"recording_id": "log-1", "recording_url": "https://x.example/r.wav", "duration_seconds": 3});
    let post = |d: &Daemon| {
        d.request_raw(
            "POST",
            "/v1/calls/fleet-1/recording-log",
            Some(log.to_string().as_bytes()),
            Some(ACME),
            &[("Idempotency-Key", "fleet-key-1")],
        )
    };
    let first = post(&a);
    assert_eq!(first.0, 201, "{}", String::from_utf8_lossy(&first.1));
    assert_eq!(post(&b), first, "B replays A's answer");

    // B deletes it: the objects go, A sees the tombstone.
    let (s, _) = b.request("DELETE", &format!("/v1/recordings/{id}"), None, Some(ACME));
    assert_eq!(s, 200);
    assert!(
        s3.object(BUCKET, up["object_key"].as_str().unwrap())
            .is_none()
    );
    let (_, row) = a.request("GET", &format!("/v1/recordings/{id}"), None, Some(ACME));
    assert_eq!(row["status"], "deleted", "{row}");

    // A dies mid-recording; restarted, it recovers and uploads the file,
    // and B serves it.
    let body =
        json!({"call_id": "fleet-2", "legs": [{"role": "caller"}], "recording": {"enabled": true}});
    let (s, call) = a.request("POST", "/v1/calls", Some(&body.to_string()), Some(ACME));
    assert_eq!(s, 201, "{call}");
    stream(
        &[Leg {
            port: leg_port(&call, "caller"),
            ssrc: 6,
            signal: &tone,
            socket: &sock,
            delay_packets: 0,
        }],
        |_| {},
    );
    std::thread::sleep(Duration::from_millis(1500));
    a.kill9();
    // B still answers for A's rows, and names A for the dead call.
    let (s, e) = b.request("POST", "/v1/calls/fleet-2/end", None, Some(ACME));
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("held_by_other_node")),
        "{e}"
    );
    let a = Daemon::launch("fleet-a", &dir_a, &extra_a, 4);
    let mut ev_a = a.events(Some(0));
    let done = until_with(
        &mut ev_a,
        "recording.completed",
        "call_id",
        &json!("fleet-2"),
    );
    assert_eq!(done["recovered"], true, "{done}");
    let id2 = done["recording_id"].as_str().unwrap().to_owned();
    until_with(&mut ev_a, "recording.uploaded", "recording_id", &json!(id2));
    assert_eq!(
        sha256(&download(&b, &id2, ACME)),
        done["checksum"]["value"].as_str().unwrap()
    );
    // The crashed call is ended, so B no longer names A for it.
    let (s, e) = b.request("POST", "/v1/calls/fleet-2/end", None, Some(ACME));
    assert_eq!(s, 404, "{e}");
    // One event stream for the fleet: every message names its node and
    // seq, each node's seqs in order and none twice.
    if nats {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let msgs = rt.block_on(read_stream(&nats_stream, 20));
        for n in ["node-a", "node-b"] {
            let seqs: Vec<u64> = msgs
                .iter()
                .filter_map(|(_, id, _)| id.strip_prefix(&format!("{n}-"))?.parse().ok())
                .collect();
            assert!(!seqs.is_empty(), "nothing from {n} in {msgs:?}");
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{n}: {seqs:?}");
        }
        assert!(
            msgs.iter().any(|(s, id, e)| id.starts_with("node-a-")
                && e["event"] == "recording.uploaded"
                && s.ends_with("recording.uploaded")),
            "A's uploads are in the stream"
        );
    }
    drop(a);
    drop(b);
    drop_pg_schema(schema);
}

/// `recengine check --connect` connects to the PostgreSQL catalog and lists
/// the bucket, and names the one that does not answer.
#[test]
fn check_connect_tries_the_catalog_and_the_object_store() {
    if !pg_up() {
        return;
    }
    let mut s3 = s3("check");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleet-check");
    let _ = std::fs::remove_dir_all(&dir);
    let schema = "fleet_check";
    let config = format!(
        "{}\n[catalog]\nbackend = \"postgres\"\nurl = \"{}\"\nschema = \"{schema}\"\nnode_id = \"checker\"\n",
        s3.storage_toml(&dir, BUCKET),
        pg_url()
    );
    let path = dir.join("engine.toml");
    std::fs::write(&path, &config).unwrap();
    let check = |path: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_recengine"))
            .args(["check", "--connect", "-c"])
            .arg(path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = check(&path);
    assert!(ok, "{text}");
    assert!(
        text.contains("catalog postgres") && text.contains("schema 8"),
        "{text}"
    );
    assert!(
        text.contains(&format!("bucket {BUCKET}")) && text.contains("OK"),
        "{text}"
    );
    s3.stop();
    let (ok, text) = check(&path);
    assert!(!ok, "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("object store") && l.contains("FAILED")),
        "{text}"
    );
    // A wrong database names the catalog, and never prints a password.
    let bad = config.replace(&pg_url(), "postgres://rec:s3cret@127.0.0.1:1/test");
    std::fs::write(&path, bad).unwrap();
    let (ok, text) = check(&path);
    assert!(!ok, "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("catalog postgres") && l.contains("FAILED")),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    drop_pg_schema(schema);
}
