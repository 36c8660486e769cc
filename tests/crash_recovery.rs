//! kill -9 in the middle of WAV, MP3 and Opus recordings, then restart:
//! every recording is repaired, catalogued as completed with
//! `recovered: true`, announced, decodes, and is at least as long as what
//! was streamed minus what a crash may lose (flush interval + playout delay).

mod common;
mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

#[test]
fn kill_9_mid_recording_loses_at_most_the_flush_interval() {
    let mut d = Daemon::start("crash", "");
    let formats = ["wav", "mp3", "opus"];
    let mut calls = Vec::new();
    for f in formats {
        let body = json!({"call_id": format!("crash-{f}"), "legs": [{"role": "caller"}],
                          "recording": {"enabled": true, "format": f, "recording_id": format!("rec-{f}")}});
        let (s, call) = d.admin("POST", "/v1/calls", Some(&body.to_string()));
        assert_eq!(s, 201, "{call}");
        calls.push(call);
    }
    let speech = recengine::testkit::speech(8000, 8000 * 3);
    let socks = [udp(), udp(), udp()];
    let legs: Vec<Leg<'_>> = calls
        .iter()
        .zip(&socks)
        .enumerate()
        .map(|(i, (c, s))| Leg {
            port: leg_port(c, "caller"),
            ssrc: 40 + i as u32,
            signal: &speech,
            socket: s,
            delay_packets: 0,
        })
        .collect();
    stream(&legs, |_| {});
    d.kill9();
    let dir = d.dir.clone();
    drop(d);
    let part_files: Vec<PathBuf> = formats
        .iter()
        .map(|f| {
            let now = recengine::timefmt::unix_now();
            let (y, m, day) = recengine::timefmt::civil_from_days((now.as_secs() / 86_400) as i64);
            dir.join(format!(
                "storage/_admin/{y:04}/{m:02}/{day:02}/rec-{f}.{f}.part"
            ))
        })
        .collect();
    assert!(
        part_files.iter().all(|p| p.exists()),
        "part files left by the crash"
    );

    let d = Daemon::launch("crash", &dir, "", 4);
    let log = std::fs::read_to_string(d.storage().join("events.log")).unwrap();
    let events: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for f in formats {
        let id = format!("rec-{f}");
        let done = events
            .iter()
            .find(|e| {
                e["event"] == "recording.completed" && e["data"]["recording_id"] == id.as_str()
            })
            .unwrap_or_else(|| panic!("{id} not announced:\n{log}"));
        assert_eq!(done["data"]["recovered"], true);
        // Shaped as every recording.completed, with its customer (null
        // for the admin's own), so consumers can scope it.
        for field in [
            "customer_id",
            "content_type",
            "channels",
            "sample_rate",
            "pauses",
        ] {
            assert!(done["data"].get(field).is_some(), "{field}: {done}");
        }
        let path = PathBuf::from(done["data"]["path"].as_str().unwrap());
        assert!(
            !part_files
                .iter()
                .any(|p| p.exists() && p.to_string_lossy().contains(&id))
        );
        assert_eq!(
            done["data"]["checksum"]["value"].as_str().unwrap(),
            sha256_file(&path),
            "{f}"
        );
        let sidecar: Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
        assert_eq!(sidecar["checksum"], done["data"]["checksum"]);
        assert_eq!(sidecar["recovered"], true);
        // Decodes, and holds what was streamed minus flush interval (200 ms)
        // and the audio still in the jitter buffer (200 ms delay + 60 ms).
        let decoded = match f {
            "opus" => common::decode_ogg_opus(&path),
            _ => common::decode_with_symphonia(&path),
        };
        let secs = decoded.frames() as f64 / f64::from(decoded.rate);
        assert!(secs >= 3.0 - 0.2 - 0.3, "{f}: only {secs:.2} s recovered");
        let (_, rec) = d.admin("GET", &format!("/v1/recordings/{id}"), None);
        assert_eq!(
            (rec["status"].as_str(), rec["recovered"].as_bool()),
            (Some("completed"), Some(true)),
            "{rec}"
        );
        let ms = rec["duration_ms"].as_u64().unwrap() as f64 / 1000.0;
        assert!(
            (ms - secs).abs() < 0.1,
            "{f}: catalog {ms} s vs decoded {secs} s"
        );
    }
    // The calls that were live are marked ended; the daemon runs on.
    assert_eq!(d.admin("GET", "/healthz", None).0, 200);
    let _ = Duration::ZERO;
}
