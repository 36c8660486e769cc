//! Catalog throughput: the operations one recording costs the catalog
//! (call row, recording row, status change, detail read, a list page, an
//! audit record, an idempotency claim), run by `CATALOG_THREADS` threads
//! per node (default 4) for `CATALOG_SECS` seconds (default 5).
//!
//!   - SQLite, one node (the single-box catalog);
//!   - PostgreSQL at 127.0.0.1:5432 (database `test`, `RECENGINE_TEST_POSTGRES`
//!     names another), one node, then two nodes (two pools) on one schema.
//!
//! Prints catalog operations per second. Run: cargo bench --bench catalog

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use recengine::catalog::audit::AuditEntry;
use recengine::catalog::{Catalog, ListFilter, RecordingRow};
use recengine::config::{CatalogBackend, CatalogConfig};
use recengine::recording::RecordingStatus;

/// One recording's worth of catalog work: 7 operations.
const OPS_PER_ROUND: u64 = 7;

fn row(id: &str, call: &str, now_ms: i64) -> RecordingRow {
    RecordingRow {
        recording_id: id.into(),
        call_id: call.into(),
        customer_id: Some("acme".into()),
        reference_type: "call".into(),
        status: RecordingStatus::Recording,
        format: "wav".into(),
        sample_rate: 8000,
        channels: "mono".into(),
        bitrate_kbps: 128,
        participant: "all".into(),
        path: Some(format!("/r/{id}.wav")),
        duration_ms: 0,
        file_size_bytes: None,
        checksum: None,
        failure_reason: None,
        started_at: "2026-11-30T00:00:00.000Z".into(),
        started_ms: now_ms,
        stopped_at: None,
        completed_at: None,
        completed_ms: None,
        created_at: "2026-11-30T00:00:00.000Z".into(),
        updated_at: "2026-11-30T00:00:00.000Z".into(),
        deleted_at: None,
        retention_days: None,
        recovered: false,
        external: false,
        info_json: None,
        encryption: None,
        recovery_key: None,
        node_id: String::new(),
    }
}

fn round(c: &Catalog, tag: &str, i: u64) {
    let call = format!("call-{tag}-{i}");
    let id = format!("rec-{tag}-{i}");
    assert!(
        c.upsert_call(&call, Some("acme"), "+1", "+2", "inbound", "call", "t")
            .unwrap()
            .is_none()
    );
    c.put_recording(&row(&id, &call, i as i64)).unwrap();
    c.set_status(
        Some("acme"),
        &id,
        RecordingStatus::Completed,
        "t",
        None,
        Some("t"),
    )
    .unwrap();
    assert!(c.get(Some("acme"), &id).unwrap().is_some());
    c.list(&ListFilter {
        customer_id: Some("acme".into()),
        limit: 20,
        ..ListFilter::default()
    })
    .unwrap();
    c.append_audit(&AuditEntry {
        at: "2026-11-30T00:00:00Z".into(),
        actor: "bench".into(),
        customer_id: Some("acme".into()),
        peer: "127.0.0.1:1".into(),
        action: "recording.get".into(),
        recording_id: Some(id.clone()),
        status: 200,
        ..AuditEntry::default()
    })
    .unwrap();
    c.claim_idempotency(&id, "acme", "h", "t", "t0").unwrap();
}

/// Runs `threads` threads on each catalog for `secs`; answers ops/s.
fn run(catalogs: &[Arc<Catalog>], threads: usize, secs: u64, tag: &str) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = catalogs
        .iter()
        .enumerate()
        .flat_map(|(n, c)| (0..threads).map(move |t| (n, t, c.clone())))
        .map(|(n, t, c)| {
            let (stop, done, tag) = (stop.clone(), done.clone(), format!("{tag}{n}x{t}"));
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    round(&c, &tag, i);
                    i += 1;
                    done.fetch_add(OPS_PER_ROUND, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let threads: usize = std::env::var("CATALOG_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let secs: u64 = std::env::var("CATALOG_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("catalog-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = Arc::new(Catalog::open(&dir.join("catalog.db")).unwrap());
    println!(
        "sqlite, 1 node x {threads} threads: {:.0} catalog ops/s",
        run(&[sqlite], threads, secs, "s")
    );
    let url = std::env::var("RECENGINE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = "bench_catalog";
    let Ok(mut admin) = postgres::Client::connect(&url, postgres::NoTls) else {
        println!("postgres: no server at {url}; skipped");
        return;
    };
    let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    let node = |id: &str| {
        Arc::new(
            Catalog::open_configured(
                &CatalogConfig {
                    backend: CatalogBackend::Postgres,
                    url: url.clone(),
                    schema: schema.into(),
                    node_id: id.into(),
                    pool_size: threads as u32,
                    ..CatalogConfig::default()
                },
                &dir,
            )
            .unwrap(),
        )
    };
    let a = node("node-a");
    println!(
        "postgres, 1 node x {threads} threads: {:.0} catalog ops/s",
        run(std::slice::from_ref(&a), threads, secs, "p")
    );
    let b = node("node-b");
    println!(
        "postgres, 2 nodes x {threads} threads: {:.0} catalog ops/s",
        run(&[a, b], threads, secs, "q")
    );
    let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
}
