//! The load generator against the real daemon: it creates the calls,
//! streams both legs in real time with impairments, ends the calls, and
//! every recording completes with the audio it sent.

mod support;

use std::time::Duration;

use recengine::loadgen::{LoadCodec, LoadgenOptions, run};
use recengine::testkit::netem::Pattern;
use serde_json::json;
use support::*;

#[test]
fn loadgen_drives_calls_to_completed_recordings() {
    let d = Daemon::start_with("loadgen", "", 8);
    for (codec, format) in [
        (LoadCodec::Pcmu, "wav"),
        (LoadCodec::Opus, "opus"),
        (LoadCodec::G722, "mp3"),
    ] {
        let mut ev = d.events(None);
        std::thread::sleep(Duration::from_millis(100));
        let report = run(&LoadgenOptions {
            api: d.api,
            token: ADMIN.into(),
            calls: 3,
            duration: Duration::from_secs(2),
            codec,
            recording: json!({"format": format}),
            pattern: Pattern::Paced,
            loss: 0.02,
            reorder: 0.02,
            duplicate: 0.02,
        })
        .unwrap();
        assert_eq!(report.send_errors, 0, "{report:?}");
        // 3 calls × 2 legs × 100 packets, give or take the impairments.
        assert!((500..=700).contains(&report.packets_sent), "{report:?}");
        let mut completed = 0;
        while completed < 3 {
            let events = ev.until("recording.completed", Duration::from_secs(10));
            let done = events.last().unwrap();
            assert_eq!(done["data"]["format"], format);
            assert!(
                done["data"]["duration_ms"].as_u64().unwrap() >= 1500,
                "{done}"
            );
            completed += 1;
        }
        for id in &report.call_ids {
            let (_, call) = d.admin("GET", &format!("/v1/calls/{id}"), None);
            let stats = &call["legs"][0]["stats"];
            assert_eq!(stats["decode_errors"], 0, "{codec:?}: {call}");
            assert!(
                stats["duplicates"].as_u64().unwrap() > 0
                    || stats["reordered"].as_u64().unwrap() > 0
                    || stats["lost"].as_u64().unwrap() > 0
            );
        }
        // Let the ended calls' ports out of their 1 s quarantine.
        std::thread::sleep(Duration::from_millis(1200));
    }
}

#[test]
fn loadgen_refuses_targets_off_loopback() {
    let err = run(&LoadgenOptions {
        calls: 1,
        duration: Duration::from_secs(1),
        ..LoadgenOptions::new("192.0.2.1:8080".parse().unwrap(), "x")
    })
    .unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
}
