//! Tenant isolation (issue #13): what one tenant records, downloads or
//! deletes never touches another tenant's recording.

mod support;

use serde_json::json;
use support::*;

/// Records a one-leg call for `token` with `recording_id`; returns the
/// `recording.completed` data.
fn record(
    d: &Daemon,
    token: &str,
    call_id: &str,
    recording_id: &str,
    hz: f64,
) -> serde_json::Value {
    let body = json!({"call_id": call_id, "legs": [{"role": "caller"}],
        "recording": {"enabled": true, "format": "wav", "recording_id": recording_id}});
    record_tone_call(d, token, &body, hz)
}

/// Downloads a recording through its signed URL; returns the bytes.
fn download(d: &Daemon, token: &str, id: &str) -> Vec<u8> {
    let (s, v) = d.request("GET", &format!("/v1/recordings/{id}"), None, Some(token));
    assert_eq!(s, 200, "{v}");
    let (s, raw) = d.request_raw(
        "GET",
        &format!("/v1/recordings/{id}/download"),
        None,
        Some(token),
        &[],
    );
    assert_eq!(s, 302, "{}", String::from_utf8_lossy(&raw));
    let (_, detail) = d.request("GET", &format!("/v1/recordings/{id}"), None, Some(token));
    let url = detail["url"]
        .as_str()
        .or(detail["download_url"].as_str())
        .map(str::to_owned);
    let url = url.unwrap_or_else(|| {
        let (_, r) = d.request(
            "GET",
            &format!(
                "/v1/calls/{}/recording",
                detail["call_id"].as_str().unwrap()
            ),
            None,
            Some(token),
        );
        r["url"].as_str().unwrap().to_owned()
    });
    let path = &url[url.find("/v1/").unwrap()..];
    let (s, bytes) = d.request_raw("GET", path, None, None, &[]);
    assert_eq!(s, 200);
    bytes
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Issue #13.1: ids equal in their first 64 characters used to map to one
/// file: A's download returned B's audio and A's delete removed B's file.
#[test]
fn recording_ids_alike_in_64_characters_get_their_own_files() {
    let d = Daemon::start("security-paths", "");
    let long = "X".repeat(64);
    let a = record(&d, ACME, "iso-a", &format!("{long}-acme"), 700.0);
    let b = record(&d, GLOBEX, "iso-b", &format!("{long}-globex"), 1300.0);
    let (a_id, b_id) = (
        a["recording_id"].as_str().unwrap(),
        b["recording_id"].as_str().unwrap(),
    );
    assert_ne!(a["path"], b["path"], "{a} {b}");
    let a_bytes = download(&d, ACME, a_id);
    let b_bytes = download(&d, GLOBEX, b_id);
    assert_eq!(
        sha256_hex(&a_bytes),
        a["checksum"]["value"].as_str().unwrap()
    );
    assert_eq!(
        sha256_hex(&b_bytes),
        b["checksum"]["value"].as_str().unwrap()
    );
    assert_ne!(a_bytes, b_bytes);
    // An id crafted to equal A's file name is refused, never given A's
    // file (another customer's recordings live under their own customer).
    let a_path = std::path::PathBuf::from(a["path"].as_str().unwrap());
    let crafted = a_path.file_stem().unwrap().to_string_lossy().into_owned();
    let body = json!({"call_id": "iso-c", "legs": [{"role": "caller"}],
        "recording": {"enabled": true, "format": "wav", "recording_id": crafted}});
    let (s, v) = d.request("POST", "/v1/calls", Some(&body.to_string()), Some(ACME));
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("recording_path_in_use")),
        "{v}"
    );
    let c = record(&d, GLOBEX, "iso-c", &crafted, 1000.0);
    assert_ne!(c["path"], a["path"]);
    assert_eq!(download(&d, ACME, a_id), a_bytes);
    // A's delete leaves B's recording whole.
    let (s, _) = d.request(
        "DELETE",
        &format!("/v1/recordings/{a_id}"),
        None,
        Some(ACME),
    );
    assert_eq!(s, 200);
    assert_eq!(download(&d, GLOBEX, b_id), b_bytes);
}

/// Issue #13.3: one customer's ids are free for every other. Two customers
/// use the same `call_id` and `recording_id`: both are created (no 409, no
/// "already exists" telling one about the other), each sees and downloads
/// only its own, and the admin must say which one it means.
#[test]
fn another_customers_ids_are_free() {
    let d = Daemon::start("security-ids", "");
    let a = record(&d, ACME, "same-call", "same-rec", 700.0);
    let b = record(&d, GLOBEX, "same-call", "same-rec", 1300.0);
    assert_eq!(
        (a["customer_id"].as_str(), b["customer_id"].as_str()),
        (Some("acme"), Some("globex")),
        "{a} {b}"
    );
    assert_ne!(a["path"], b["path"]);
    for (token, customer, sha) in [
        (ACME, "acme", &a["checksum"]["value"]),
        (GLOBEX, "globex", &b["checksum"]["value"]),
    ] {
        let (s, call) = d.request("GET", "/v1/calls/same-call", None, Some(token));
        assert_eq!(
            (s, call["customer_id"].as_str()),
            (200, Some(customer)),
            "{call}"
        );
        let (s, rec) = d.request("GET", "/v1/recordings/same-rec", None, Some(token));
        assert_eq!(
            (s, rec["customer_id"].as_str()),
            (200, Some(customer)),
            "{rec}"
        );
        let (s, latest) = d.request("GET", "/v1/calls/same-call/recording", None, Some(token));
        assert_eq!(s, 200, "{latest}");
        let url = latest["url"].as_str().unwrap();
        let (s, bytes) = d.request_raw("GET", url, None, None, &[]);
        assert_eq!(s, 200);
        assert_eq!(&sha256_hex(&bytes), sha.as_str().unwrap());
        // The list shows the customer's own recording once.
        let (_, list) = d.request("GET", "/v1/recordings", None, Some(token));
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["customer_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [customer]);
    }
    // A signed URL for one customer's recording opens no other's.
    let (_, latest) = d.request("GET", "/v1/calls/same-call/recording", None, Some(ACME));
    let forged = latest["url"]
        .as_str()
        .unwrap()
        .replace("customer=acme", "customer=globex");
    let (s, _) = d.request_raw("GET", &forged, None, None, &[]);
    assert_eq!(s, 403);

    // The admin sees both and must choose.
    let (s, v) = d.admin("GET", "/v1/recordings/same-rec", None);
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("ambiguous_id")),
        "{v}"
    );
    let (s, v) = d.admin("GET", "/v1/calls/same-call/recording", None);
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("ambiguous_id")),
        "{v}"
    );
    let (s, raw) = d.request_raw(
        "GET",
        "/v1/recordings/same-rec",
        None,
        Some(ADMIN),
        &[("X-Customer-Id", "globex")],
    );
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!((s, v["customer_id"].as_str()), (200, Some("globex")), "{v}");
    // A customer token cannot borrow another customer's scope.
    let (s, _) = d.request_raw(
        "GET",
        "/v1/recordings/same-rec",
        None,
        Some(ACME),
        &[("X-Customer-Id", "globex")],
    );
    assert_eq!(s, 403);
    // One customer's delete leaves the other's recording whole.
    let (s, _) = d.request("DELETE", "/v1/recordings/same-rec", None, Some(ACME));
    assert_eq!(s, 200);
    let (s, rec) = d.request("GET", "/v1/recordings/same-rec", None, Some(GLOBEX));
    assert_eq!(
        (s, rec["status"].as_str()),
        (200, Some("completed")),
        "{rec}"
    );
    assert!(std::path::Path::new(b["path"].as_str().unwrap()).exists());
}

/// Issue #13.2: a `call_id` reused by another customer after a restart
/// used to reach the first customer's recording: A's
/// `GET /v1/calls/{id}/recording` returned B's recording, and A's
/// recording log rewrote B's recording's URL and metadata.
#[test]
fn a_call_id_reused_after_a_restart_stays_with_its_customer() {
    let mut d = Daemon::start("security-restart-ids", "");
    let a = record(&d, ACME, "shared-1", "rec-acme", 700.0);
    d.terminate();
    let dir = d.storage().parent().unwrap().to_path_buf();
    let d = Daemon::launch("security-restart-ids", &dir, "", 4);
    let b = record(&d, GLOBEX, "shared-1", "rec-globex", 1300.0);
    let (s, latest) = d.request("GET", "/v1/calls/shared-1/recording", None, Some(ACME));
    assert_eq!(
        (s, latest["recording_id"].as_str()),
        (200, Some("rec-acme")),
        "{latest}"
    );
    let (s, latest) = d.request("GET", "/v1/calls/shared-1/recording", None, Some(GLOBEX));
    assert_eq!(
        (s, latest["recording_id"].as_str()),
        (200, Some("rec-globex")),
        "{latest}"
    );
    // A's recording log naming B's recording id attaches to nothing of B's.
    let log = json!({"recording_id": "rec-globex", "recording_url": "https://acme.example/x.wav",
                     "duration_seconds": 3.0, "metadata": {"by": "acme"}});
    let (s, v) = d.request(
        "POST",
        "/v1/calls/shared-1/recording-log",
        Some(&log.to_string()),
        Some(ACME),
    );
    assert!(s == 200 || s == 201, "{s} {v}");
    assert_eq!(v["attached_to_engine_recording"], false, "{v}");
    let (s, rec) = d.request("GET", "/v1/recordings/rec-globex", None, Some(GLOBEX));
    assert_eq!(s, 200);
    assert!(rec.get("recording_url").is_none(), "{rec}");
    assert!(rec.get("metadata").is_none(), "{rec}");
    assert_eq!(rec["checksum"]["value"], b["checksum"]["value"]);
    // A's log made A an external recording of that id, its own; B's is
    // out of A's reach.
    let (s, mine) = d.request("GET", "/v1/recordings/rec-globex", None, Some(ACME));
    assert_eq!(
        (s, mine["customer_id"].as_str(), &mine["external"]),
        (200, Some("acme"), &json!(true)),
        "{mine}"
    );
    let (s, _) = d.request("GET", "/v1/recordings/rec-acme", None, Some(GLOBEX));
    assert_eq!(s, 404);
    let (s, rec) = d.request("GET", "/v1/recordings/rec-acme", None, Some(ACME));
    assert_eq!(
        (s, &rec["checksum"]["value"]),
        (200, &a["checksum"]["value"])
    );
}
