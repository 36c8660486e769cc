//! The retention sweeper with a clock the test controls: expired files and
//! sidecars go, the catalog keeps a tombstone, `recording.deleted` is
//! logged; unexpired and keep-forever recordings stay.

use std::sync::Arc;
use std::time::Duration;

use recengine::catalog::{Catalog, RecordingRow};
use recengine::config::Config;
use recengine::engine::Engine;
use recengine::events::EventBus;
use recengine::io::clock::MonotonicClock;
use recengine::io::legs::LegOpener;
use recengine::io::worker::{WorkerConfig, WorkerPool};
use recengine::io::writer::WriterPool;
use recengine::recording::RecordingStatus;

fn row(
    id: &str,
    path: &std::path::Path,
    completed_ms: i64,
    retention: Option<u32>,
) -> RecordingRow {
    RecordingRow {
        recording_id: id.into(),
        call_id: "c".into(),
        customer_id: None,
        reference_type: "call".into(),
        status: RecordingStatus::Completed,
        format: "wav".into(),
        sample_rate: 8000,
        channels: "mono".into(),
        bitrate_kbps: 128,
        participant: "all".into(),
        path: Some(path.to_string_lossy().into_owned()),
        duration_ms: 1000,
        file_size_bytes: Some(4),
        checksum: None,
        failure_reason: None,
        started_at: "2026-01-01T00:00:00.000Z".into(),
        started_ms: completed_ms - 1000,
        stopped_at: None,
        completed_at: Some("2026-01-01T00:00:01.000Z".into()),
        completed_ms: Some(completed_ms),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: "2026-01-01T00:00:00.000Z".into(),
        deleted_at: None,
        retention_days: retention,
        recovered: false,
        external: false,
        info_json: None,
        encryption: None,
        recovery_key: None,
        node_id: String::new(),
    }
}

#[test]
fn sweeper_deletes_only_what_has_expired() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("retention");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = Config::default();
    cfg.storage.dir = dir.to_string_lossy().into_owned();
    cfg.storage.retention_days = 30;
    let catalog = Arc::new(Catalog::open(&dir.join("catalog.db")).unwrap());
    let events = Arc::new(EventBus::open(&dir.join("events.log")).unwrap());
    let day: i64 = 86_400_000;
    let t0 = 1_767_225_600_000i64; // 2026-01-01
    for (id, retention) in [("old", None), ("forever", Some(0)), ("long", Some(90))] {
        let path = dir.join(format!("{id}.wav"));
        std::fs::write(&path, b"RIFF").unwrap();
        std::fs::write(path.with_extension("json"), b"{}").unwrap();
        catalog
            .put_recording(&row(id, &path, t0, retention))
            .unwrap();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let clock = MonotonicClock::start();
    let (wtx, _wrx) = crossbeam_channel::unbounded();
    let (stx, _srx) = crossbeam_channel::unbounded();
    let workers = WorkerPool::start(
        1,
        WorkerConfig {
            tick: Duration::from_millis(20),
            playout_delay: Duration::from_millis(100),
            receive: recengine::io::receive::ReceivePath::IoUring,
        },
        clock,
        wtx,
    );
    let writers = WriterPool::start(1, 1 << 20, stx);
    let legs = LegOpener::new(&cfg.rtp, runtime.handle().clone()).unwrap();
    let engine = Engine::new(
        Arc::new(cfg),
        clock,
        legs,
        workers,
        writers,
        events.clone(),
        catalog.clone(),
        Arc::new(recengine::encryption::Keyring::empty()),
    );

    assert_eq!(engine.sweep_retention(t0 + 29 * day), 0);
    assert_eq!(engine.sweep_retention(t0 + 31 * day), 1);
    assert!(!dir.join("old.wav").exists() && !dir.join("old.json").exists());
    assert!(dir.join("forever.wav").exists() && dir.join("long.wav").exists());
    let tomb = catalog.get(None, "old").unwrap().unwrap();
    assert_eq!(
        (tomb.status.as_str(), tomb.deleted_at.is_some()),
        ("deleted", true)
    );
    assert_eq!(engine.sweep_retention(t0 + 91 * day), 1);
    assert!(!dir.join("long.wav").exists());
    assert!(dir.join("forever.wav").exists());
    // Events are replayed once synced (the group commit), so sync now.
    events.flush().unwrap();
    let log: Vec<serde_json::Value> = events
        .replay(0)
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(&e.json).unwrap())
        .collect();
    let deleted: Vec<&str> = log
        .iter()
        .filter(|e| e["event"] == "recording.deleted")
        .map(|e| e["data"]["recording_id"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, ["old", "long"]);
    engine.finish_shutdown();
}
