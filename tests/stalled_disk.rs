//! A stalled disk on one recording must not hold up any other call: its
//! writes block one writer thread, the worker keeps ticking, the other
//! recording completes in full, and the stalled one fails with
//! `storage_error` once its backlog passes `max_queued_bytes`.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

#[test]
fn a_stalled_writer_fails_only_its_own_recording() {
    let d = Daemon::start(
        "stalled-disk",
        "[storage]\nwriter_threads = 2\nmax_queued_bytes = 65536\n[recording]\nmedia_timeout_s = 30\n",
    );
    let mut ev = d.events(Some(0));
    // The stalled recording's part file is a FIFO nobody reads: opening it
    // for writing blocks the writer thread, like a hung network disk.
    let now = recengine::timefmt::unix_now();
    let (y, m, day) = recengine::timefmt::civil_from_days((now.as_secs() / 86_400) as i64);
    let dir = d.storage().join(format!("_admin/{y:04}/{m:02}/{day:02}"));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("stalled-rec.wav.part");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);

    let mk = |id: &str| {
        let (s, call) = d.admin(
            "POST",
            "/v1/calls",
            Some(&json!({"call_id": id, "legs": [{"role": "caller"}]}).to_string()),
        );
        assert_eq!(s, 201, "{call}");
        call
    };
    let stalled = mk("stalled-call");
    let healthy = mk("healthy-call");
    let (s, e) = d.admin(
        "POST",
        "/v1/calls/stalled-call/record/start",
        Some(r#"{"recording_id":"stalled-rec"}"#),
    );
    assert_eq!(s, 201, "{e}");
    assert_eq!(
        d.admin(
            "POST",
            "/v1/calls/healthy-call/record/start",
            Some(r#"{"recording_id":"healthy-rec"}"#)
        )
        .0,
        201
    );

    let speech = recengine::testkit::speech(8000, 8000 * 6);
    let (a, b) = (udp(), udp());
    stream(
        &[
            Leg {
                port: leg_port(&stalled, "caller"),
                ssrc: 1,
                signal: &speech,
                socket: &a,
                delay_packets: 0,
            },
            Leg {
                port: leg_port(&healthy, "caller"),
                ssrc: 2,
                signal: &speech,
                socket: &b,
                delay_packets: 0,
            },
        ],
        |_| {},
    );
    assert_eq!(
        d.admin("POST", "/v1/calls/healthy-call/record/stop", None)
            .0,
        200
    );

    let mut failed = None;
    let mut completed = None;
    for e in ev.until("recording.completed", Duration::from_secs(10)) {
        if e["event"] == "recording.failed" {
            failed = Some(e.clone());
        }
        if e["event"] == "recording.completed" {
            completed = Some(e);
        }
    }
    let completed = completed.unwrap();
    assert_eq!(completed["data"]["recording_id"], "healthy-rec");
    let ms = completed["data"]["duration_ms"].as_u64().unwrap();
    assert!(ms >= 5900, "the healthy recording is whole: {ms} ms");
    let path = PathBuf::from(completed["data"]["path"].as_str().unwrap());
    assert_eq!(
        completed["data"]["checksum"]["value"].as_str().unwrap(),
        sha256_file(&path)
    );
    let (_, view) = d.admin("GET", "/v1/calls/healthy-call", None);
    assert_eq!(view["legs"][0]["ingest"]["queue_drops"], 0, "{view}");
    assert_eq!(view["legs"][0]["stats"]["lost"], 0, "{view}");

    // 6 s of 8 kHz WAV is 96 KB, more than the 64 KB backlog allowed.
    let failed: Value = match failed {
        Some(f) => f,
        None => ev
            .until("recording.failed", Duration::from_secs(5))
            .pop()
            .unwrap(),
    };
    assert_eq!(failed["data"]["recording_id"], "stalled-rec");
    assert_eq!(failed["data"]["reason"], "storage_error");
    let (_, rec) = d.admin("GET", "/v1/recordings/stalled-rec", None);
    assert_eq!(rec["status"], "failed");

    // Unblock the stuck writer (a non-blocking open of the read end never
    // waits) so the daemon can exit cleanly.
    use std::os::unix::fs::OpenOptionsExt;
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(d);
    drop(reader);
}

/// A full disk (writes fail with ENOSPC: the part file is /dev/full) fails
/// that recording with `storage_error`; the other call records in full.
#[test]
fn a_full_disk_fails_one_recording_and_spares_the_others() {
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("SKIP: no /dev/full on this system");
        return;
    }
    let d = Daemon::start("full-disk", "");
    let mut ev = d.events(Some(0));
    let now = recengine::timefmt::unix_now();
    let (y, m, day) = recengine::timefmt::civil_from_days((now.as_secs() / 86_400) as i64);
    let dir = d.storage().join(format!("_admin/{y:04}/{m:02}/{day:02}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.join("full-rec.wav.part")).unwrap();
    for (call, rec) in [("full-call", "full-rec"), ("fine-call", "fine-rec")] {
        let body = json!({"call_id": call, "legs": [{"role": "caller"}], "recording": {"enabled": true, "recording_id": rec}});
        assert_eq!(d.admin("POST", "/v1/calls", Some(&body.to_string())).0, 201);
    }
    let (_, full) = d.admin("GET", "/v1/calls/full-call", None);
    let (_, fine) = d.admin("GET", "/v1/calls/fine-call", None);
    let speech = recengine::testkit::speech(8000, 8000 * 2);
    let (a, b) = (udp(), udp());
    stream(
        &[
            Leg {
                port: leg_port(&full, "caller"),
                ssrc: 1,
                signal: &speech,
                socket: &a,
                delay_packets: 0,
            },
            Leg {
                port: leg_port(&fine, "caller"),
                ssrc: 2,
                signal: &speech,
                socket: &b,
                delay_packets: 0,
            },
        ],
        |_| {},
    );
    d.admin("POST", "/v1/calls/fine-call/end", None);
    let events = ev.until("recording.completed", Duration::from_secs(10));
    let failed = events
        .iter()
        .find(|e| e["event"] == "recording.failed")
        .expect("the full disk failed its recording");
    assert_eq!(failed["data"]["recording_id"], "full-rec");
    assert_eq!(failed["data"]["reason"], "storage_error");
    assert!(
        failed["data"]["message"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{failed}"
    );
    let done = events.last().unwrap();
    assert_eq!(done["data"]["recording_id"], "fine-rec");
    assert!(done["data"]["duration_ms"].as_u64().unwrap() >= 1900);
}
