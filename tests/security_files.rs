//! Files at rest (issue #13.14): recordings, sidecars, the catalog, the
//! event log and the directories holding them are not world-readable.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use support::*;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn nothing_the_daemon_writes_is_world_readable() {
    let d = Daemon::start("security-files", "");
    let mut ev = d.events(None);
    std::thread::sleep(Duration::from_millis(100));
    let body = json!({"legs": [{"role": "caller"}], "recording": {"enabled": true}});
    let (s, call) = d.admin("POST", "/v1/calls", Some(&body.to_string()));
    assert_eq!(s, 201, "{call}");
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
    let id = call["call_id"].as_str().unwrap();
    d.admin("POST", &format!("/v1/calls/{id}/end"), None);
    let done = ev.until("recording.completed", Duration::from_secs(10));
    let file = PathBuf::from(done.last().unwrap()["data"]["path"].as_str().unwrap());
    let storage = d.storage();
    let mut checked = vec![
        file.clone(),
        file.with_extension("json"),
        storage.join("catalog.db"),
        storage.join("events.log"),
    ];
    // Every directory from the recording up to (not including) storage.
    let mut dir = file.parent().unwrap().to_path_buf();
    while dir != storage {
        checked.push(dir.clone());
        dir = dir.parent().unwrap().to_path_buf();
    }
    for p in &checked {
        assert_eq!(mode(p) & 0o007, 0, "{} is {:o}", p.display(), mode(p));
    }
    assert_eq!(mode(&file), 0o640, "{}", file.display());
}
