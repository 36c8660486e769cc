//! Engine work runs off the async runtime's threads (issue #18): a
//! catalog write stuck behind a database lock (it waits up to the 5 s busy
//! timeout) must not stall the daemon's other connections. On a two-core
//! box the runtime has one thread, which a write in a handler's poll used
//! to hold for the whole wait.

mod support;

use std::time::{Duration, Instant};

use support::*;

#[test]
fn a_stuck_catalog_write_does_not_stall_other_requests() {
    if catalog_on_postgres() {
        eprintln!("SKIP: this test works on the SQLite catalog file itself");
        return;
    }
    let d = Daemon::start("api-runtime", "");
    let db = rusqlite::Connection::open(d.storage().join("catalog.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    std::thread::scope(|scope| {
        let stuck = scope.spawn(|| {
            let body = r#"{"call_id": "stuck", "legs": [{"role": "caller"}]}"#;
            d.admin("POST", "/v1/calls", Some(body))
        });
        // Let the create reach its catalog write.
        std::thread::sleep(Duration::from_millis(500));
        let started = Instant::now();
        let (status, _) = d.request("GET", "/healthz", None, None);
        let took = started.elapsed();
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_secs(2),
            "/healthz waited {took:?} behind a catalog write"
        );
        assert!(!stuck.is_finished(), "the create did not wait for the lock");
        db.execute_batch("COMMIT").unwrap();
        let (status, v) = stuck.join().unwrap();
        assert_eq!(status, 201, "{v}");
    });
}

/// Requests now run in parallel: legs added to one conference at once
/// each get their own index (two used to get the same one, and the worker
/// panicked on it), and of starts racing on one call exactly one wins.
#[test]
fn parallel_requests_on_one_call_keep_it_consistent() {
    let d = Daemon::start_with("api-parallel", "", 16);
    let body = r#"{"call_id": "conf", "reference_type": "conference",
                   "legs": [{"role": "participant"}],
                   "recording": {"enabled": true, "recording_id": "conf-rec"}}"#;
    let (status, v) = d.admin("POST", "/v1/calls", Some(body));
    assert_eq!(status, 201, "{v}");
    std::thread::scope(|scope| {
        let adds: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    d.admin(
                        "POST",
                        "/v1/calls/conf/legs",
                        Some(r#"{"role": "participant"}"#),
                    )
                })
            })
            .collect();
        for a in adds {
            let (status, v) = a.join().unwrap();
            assert_eq!(status, 201, "{v}");
        }
    });
    let (_, call) = d.admin("GET", "/v1/calls/conf", None);
    assert_eq!(call["legs"].as_array().unwrap().len(), 7, "{call}");
    // Some audio, so the recording has something to keep (one with no
    // packet at all fails as no_media).
    let signal = recengine::testkit::tone(8000, 440.0, 8000.0, 8000 / 5);
    let socket = udp();
    stream(
        &[Leg {
            port: leg_port(&call, "participant-1"),
            ssrc: 7,
            signal: &signal,
            socket: &socket,
            delay_packets: 0,
        }],
        |_| {},
    );
    let mut events = d.events(Some(0));
    assert_eq!(d.admin("POST", "/v1/calls/conf/end", None).0, 200);
    let seen = events.until("recording.completed", Duration::from_secs(10));
    assert!(
        seen.iter().all(|e| e["event"] != "recording.failed"),
        "{seen:#?}"
    );
    assert!(!d.log_text().contains("panicked"), "{}", d.log_text());

    let body = r#"{"call_id": "race", "legs": [{"role": "caller"}]}"#;
    assert_eq!(d.admin("POST", "/v1/calls", Some(body)).0, 201);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let starts: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| d.admin("POST", "/v1/calls/race/record/start", None).0))
            .collect();
        starts.into_iter().map(|s| s.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 201 || s == 409),
        "{statuses:?}"
    );
}
