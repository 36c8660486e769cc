//! Fidelity through the running daemon over real loopback sockets: the
//! load generator sends two-party G.711 calls with each arrival pattern of
//! the network emulator (clean, and with 1 % loss and reordering), the
//! daemon records them to dual WAV, and `loadgen --verify` downloads every
//! recording through the API and compares each channel with what its party
//! sent, sample for sample, and the parties' alignment.

mod support;

use std::time::Duration;

use recengine::io::receive::ReceivePath;
use recengine::loadgen::verify::{VerifyOptions, verify};
use recengine::loadgen::{LoadgenOptions, run};
use recengine::testkit::netem::Pattern;
use serde_json::json;
use support::*;

/// A longer playout delay than the default keeps the test about the
/// patterns rather than about this machine's scheduling: every delay a
/// pattern inside it adds leaves ≥ 100 ms of margin.
const PLAYOUT_MS: u64 = 300;

#[test]
fn every_arrival_pattern_through_the_daemon_keeps_every_sample_in_place() {
    let d = Daemon::start_with(
        "fidelity-daemon",
        &format!("[jitter]\nplayout_delay_ms = {PLAYOUT_MS}\n"),
        64,
    );
    let patterns = [
        Pattern::Paced,
        Pattern::Bursts(2),
        Pattern::Bursts(6),
        Pattern::Bursts(10),
        Pattern::Uniform { max_ms: 150 },
        // Beyond the playout delay: what came too late is not owed.
        Pattern::StallThenBurst {
            at_ms: 2_000,
            stall_ms: 400,
        },
        Pattern::WifiSpikes,
    ];
    let results: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = patterns
            .iter()
            .flat_map(|&p| [(p, false), (p, true)])
            .map(|(pattern, lossy)| {
                let api = d.api;
                scope.spawn(move || {
                    let impair = if lossy { 0.01 } else { 0.0 };
                    let opts = LoadgenOptions {
                        calls: 2,
                        duration: Duration::from_secs(6),
                        recording: json!({"format": "wav", "channels": "dual"}),
                        pattern,
                        loss: impair,
                        reorder: impair,
                        ..LoadgenOptions::new(api, ADMIN)
                    };
                    let report = run(&opts).expect("loadgen");
                    let vopts =
                        VerifyOptions::for_pattern(pattern, Duration::from_millis(PLAYOUT_MS));
                    let checked = verify(&opts, &report, &vopts).expect("verify");
                    (pattern, lossy, report, checked)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for (pattern, lossy, _, checked) in &results {
        eprintln!(
            "{pattern:?} lossy={lossy}: {} passed, {} failed, parties at most {} samples apart",
            checked.passed, checked.failed, checked.max_misalignment_samples
        );
        for f in &checked.failures {
            eprintln!("  {}: {:?}", f.call_id, f.problems);
        }
    }
    for (pattern, lossy, report, checked) in &results {
        let name = format!("{pattern:?} lossy={lossy}");
        assert_eq!(report.send_errors, 0, "{name}: {report:?}");
        assert_eq!(checked.recordings, 2, "{name}: {checked:?}");
        assert_eq!(checked.failed, 0, "{name}: {:#?}", checked.failures);
        // 2 calls × 2 parties × ~5.7 s owed (less the lossy packets).
        assert!(
            checked.compared_samples > 2 * 2 * 250 * 160,
            "{name}: {checked:?}"
        );
    }
    // No correction, no resync: nothing in these patterns is drift.
    for (_, _, report, _) in &results {
        for id in &report.call_ids {
            let (_, call) = d.admin("GET", &format!("/v1/calls/{id}"), None);
            for leg in call["legs"].as_array().unwrap() {
                let s = &leg["stats"];
                assert_eq!(
                    (&s["corrections"], &s["resyncs"]),
                    (&json!(0), &json!(0)),
                    "{id}: {s}"
                );
            }
        }
    }
}

/// A busy host can stop the daemon for a moment; that must not cost audio.
/// The daemon is stopped (SIGSTOP) for 3 s mid-call while the senders go
/// on: the kernel queues 150 packets per leg, more than the jitter buffer
/// (40 here) or a track (about a second) holds, and older than a second.
/// On resuming, the worker takes them a batch at a time at their true
/// arrival times, playing out and mixing in between, and every sample
/// lands in place.
///
/// Both receive paths: io_uring (where this machine allows it; the
/// worker's ring takes the backlog in one go) and recvmmsg.
#[test]
fn a_daemon_stopped_for_seconds_loses_nothing_on_io_uring() {
    match recengine::io::receive::choose(recengine::config::ReceivePathSetting::Auto) {
        Ok((ReceivePath::IoUring, _)) => stopped_for_seconds("io_uring"),
        other => eprintln!("skipping: io_uring is not usable here: {other:?}"),
    }
}

#[test]
fn a_daemon_stopped_for_seconds_loses_nothing_on_recvmmsg() {
    stopped_for_seconds("recvmmsg");
}

fn stopped_for_seconds(receive_path: &str) {
    let d = Daemon::start_with(
        &format!("fidelity-stopped-{receive_path}"),
        &format!(
            "[jitter]\nplayout_delay_ms = {PLAYOUT_MS}\ncapacity_packets = 40\n\
             [workers]\nreceive_path = \"{receive_path}\"\n"
        ),
        8,
    );
    let (_, metrics) = d.request_raw("GET", "/metrics", None, None, &[]);
    let metrics = String::from_utf8_lossy(&metrics);
    let workers_on = |path: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "recengine_media_workers{{receive_path=\"{path}\"}} "
                ))
            })
            .and_then(|n| n.parse::<u64>().ok())
    };
    assert!(workers_on(receive_path).is_some_and(|n| n > 0), "{metrics}");
    let other = if receive_path == "io_uring" {
        "recvmmsg"
    } else {
        "io_uring"
    };
    assert_eq!(workers_on(other), Some(0), "{metrics}");
    let opts = LoadgenOptions {
        calls: 2,
        duration: Duration::from_secs(7),
        recording: json!({"format": "wav", "channels": "dual"}),
        ..LoadgenOptions::new(d.api, ADMIN)
    };
    let pid = d.pid() as i32;
    let report = std::thread::scope(|scope| {
        let load = scope.spawn(|| run(&opts).expect("loadgen"));
        std::thread::sleep(Duration::from_secs(2));
        // SAFETY: kill(2) on the daemon this test started.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_secs(3));
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        load.join().unwrap()
    });
    let vopts = VerifyOptions::for_pattern(Pattern::Paced, Duration::from_millis(PLAYOUT_MS));
    let checked = verify(&opts, &report, &vopts).expect("verify");
    assert_eq!(checked.recordings, 2, "{checked:?}");
    assert_eq!(checked.failed, 0, "{:#?}", checked.failures);
    for id in &report.call_ids {
        let (_, call) = d.admin("GET", &format!("/v1/calls/{id}"), None);
        for leg in call["legs"].as_array().unwrap() {
            let s = &leg["stats"];
            assert_eq!(
                (&s["overflow"], &s["lost"], &s["late"]),
                (&json!(0), &json!(0), &json!(0)),
                "{id}: {s}"
            );
        }
    }
}
