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
