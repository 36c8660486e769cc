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
    // An id crafted to equal A's file name is refused, never given A's file.
    let a_path = std::path::PathBuf::from(a["path"].as_str().unwrap());
    let crafted = a_path.file_stem().unwrap().to_string_lossy().into_owned();
    let body = json!({"call_id": "iso-c", "legs": [{"role": "caller"}],
        "recording": {"enabled": true, "format": "wav", "recording_id": crafted}});
    let (s, v) = d.request("POST", "/v1/calls", Some(&body.to_string()), Some(GLOBEX));
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("recording_path_in_use")),
        "{v}"
    );
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
