//! The audit trail against the real daemon: every access path and control
//! action leaves a record with its actor, tenant, peer and outcome; tenants
//! see only records about their own objects; `recengine audit verify`
//! finds a record edited in the SQLite file; and an answer whose record
//! cannot be written is withheld (fail closed), audio included.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

fn audit(d: &Daemon, token: &str, query: &str) -> Vec<Value> {
    let (s, v) = d.request("GET", &format!("/v1/audit?{query}"), None, Some(token));
    assert_eq!(s, 200, "{v}");
    v["data"].as_array().unwrap().clone()
}

fn verify(d: &Daemon) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_recengine"))
        .args(["audit", "verify", "-c"])
        .arg(d.dir.join("engine.toml"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn every_access_is_recorded_scoped_and_chained() {
    let d = Daemon::start("audit", "");
    let body =
        json!({"call_id": "au-1", "legs": [{"role": "caller"}], "recording": {"enabled": true}});
    let done = record_tone_call(&d, ACME, &body, 700.0);
    let id = done["recording_id"].as_str().unwrap().to_owned();
    // Detail, the call's link (a signed URL), a ranged fetch and a HEAD
    // through it, a recording log, the admin's look, a delete.
    assert_eq!(
        d.request("GET", &format!("/v1/recordings/{id}"), None, Some(ACME))
            .0,
        200
    );
    let (_, link) = d.request("GET", "/v1/calls/au-1/recording", None, Some(ACME));
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(url.contains("&by=acme&"), "the issuer is in the URL: {url}");
    let (s, bytes) = d.request_raw("GET", &url, None, None, &[("Range", "bytes=0-43")]);
    assert_eq!((s, bytes.len()), (206, 44));
    assert_eq!(d.request_raw("HEAD", &url, None, None, &[]).0, 200);
    let log = json!({"recording_id": id, "recording_url": "https://cdn.example.com/r.wav", "duration_seconds": 0.5});
    assert_eq!(
        d.request(
            "POST",
            "/v1/calls/au-1/recording-log",
            Some(&log.to_string()),
            Some(ACME)
        )
        .0,
        201
    );
    assert_eq!(d.admin("GET", &format!("/v1/recordings/{id}"), None).0, 200);
    assert_eq!(
        d.request("DELETE", &format!("/v1/recordings/{id}"), None, Some(ACME))
            .0,
        200
    );
    let (s, _) = d.request(
        "POST",
        "/v1/call-flows",
        Some(r#"{"call_flow_id": "f", "name": "n", "phone_number": "1001"}"#),
        Some(ACME),
    );
    assert_eq!(s, 201);
    assert_eq!(
        d.request("GET", "/v1/recordings/nope", None, Some(ACME)).0,
        404
    );

    let mine = audit(&d, ACME, "limit=100");
    let actions: Vec<(&str, &str, u64)> = mine
        .iter()
        .rev()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["actor"].as_str().unwrap(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("call.create", "acme", 201),
            ("call.end", "acme", 200),
            ("recording.get", "acme", 200),
            ("recording.link", "acme", 200),
            ("recording.fetch", "signed-url:acme", 206),
            ("recording.fetch_head", "signed-url:acme", 200),
            ("recording_log.write", "acme", 201),
            ("recording.get", "admin", 200),
            ("recording.delete", "acme", 200),
            ("call_flow.create", "acme", 201),
            ("recording.get", "acme", 404),
        ],
        "{mine:#?}"
    );
    let fetch = mine
        .iter()
        .find(|r| r["action"] == "recording.fetch")
        .unwrap();
    assert_eq!(fetch["detail"], "range=bytes=0-43");
    assert_eq!(fetch["recording_id"], id.as_str());
    assert!(
        fetch["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{fetch}"
    );
    let create = &mine.last().unwrap();
    assert_eq!(
        (&create["call_id"], &create["customer_id"]),
        (&json!("au-1"), &json!("acme")),
        "a created call's id comes from the answer"
    );
    // Filters, and the tenant wall.
    let only = audit(&d, ACME, &format!("recording_id={id}&action=recording.get"));
    assert_eq!(only.len(), 2, "{only:#?}");
    let theirs = audit(&d, GLOBEX, "limit=100");
    assert!(
        theirs.iter().all(|r| r["customer_id"] == "globex"),
        "{theirs:#?}"
    );
    assert!(audit(&d, ADMIN, "actor=signed-url:acme").len() == 2);
    let (s, e) = d.request("GET", "/v1/audit?recording_id=%C3%BBw", None, Some(ACME));
    assert_eq!(s, 400, "{e}");
    // A full page of the trail is answered whole (it is not read back).
    for _ in 0..40 {
        audit(&d, ADMIN, "limit=1000");
    }
    assert!(audit(&d, ADMIN, "limit=1000").len() > 40);
    // The chain holds, and ctl shows it.
    let (ok, said) = verify(&d);
    assert!(ok, "{said}");
    let table = Command::new(env!("CARGO_BIN_EXE_recengine"))
        .args(["ctl", "audit", "--action", "recording.fetch"])
        .env("RECENGINE_CONFIG", d.dir.join("engine.toml"))
        .env("RECENGINE_TOKEN", ADMIN)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("signed-url:acme") && table.contains("range=bytes=0-43"),
        "{table}"
    );
}

#[test]
fn tampering_is_found_and_an_unwritable_trail_withholds_answers() {
    if catalog_on_postgres() {
        eprintln!("SKIP: this test works on the SQLite catalog file itself");
        return;
    }
    let mut d = Daemon::start("audit-tamper", "");
    let body =
        json!({"call_id": "at-1", "legs": [{"role": "caller"}], "recording": {"enabled": true}});
    let done = record_tone_call(&d, ADMIN, &body, 700.0);
    let id = done["recording_id"].as_str().unwrap().to_owned();
    let (_, link) = d.admin("GET", "/v1/calls/at-1/recording", None);
    let url = link["url"].as_str().unwrap().to_owned();
    let db = rusqlite::Connection::open(d.storage().join("catalog.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    // Fail closed: with the trail unwritable, no detail and no audio.
    db.execute_batch(
        "CREATE TRIGGER block_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(FAIL, 'disk says no'); END;",
    )
    .unwrap();
    let (s, e) = d.admin("GET", &format!("/v1/recordings/{id}"), None);
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (503, Some("audit_unavailable")),
        "{e}"
    );
    let (s, bytes) = d.request_raw("GET", &url, None, None, &[]);
    assert_eq!(s, 503);
    assert!(!bytes.starts_with(b"RIFF"), "no audio went out unaudited");
    let (s, e) = d.admin(
        "POST",
        "/v1/calls",
        Some(r#"{"call_id": "at-2", "legs": [{"role": "caller"}]}"#),
    );
    assert_eq!(s, 503, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("carried out"),
        "a change that took effect says so: {e}"
    );
    db.execute_batch("DROP TRIGGER block_audit;").unwrap();
    assert_eq!(d.request_raw("GET", &url, None, None, &[]).0, 200);
    assert!(verify(&d).0);
    // An edit in the file, found at its record.
    let seq: i64 = db
        .query_row(
            "SELECT seq FROM audit WHERE action = 'recording.link'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    db.execute(
        "UPDATE audit SET actor = 'someone-else' WHERE seq = ?1",
        [seq],
    )
    .unwrap();
    let (ok, said) = verify(&d);
    assert!(!ok, "{said}");
    assert!(said.contains(&format!("record {seq}")), "{said}");
    db.execute("UPDATE audit SET actor = 'admin' WHERE seq = ?1", [seq])
        .unwrap();
    assert!(verify(&d).0);
    // A deleted record, found at the one after it.
    db.execute("DELETE FROM audit WHERE seq = ?1", [seq])
        .unwrap();
    let (ok, said) = verify(&d);
    assert!(
        !ok && said.contains(&format!("record {}", seq + 1)),
        "{said}"
    );
    d.terminate();
}
