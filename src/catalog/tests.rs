use super::*;

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("recengine-catalog-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("catalog.db")
}

fn row(
    id: &str,
    call: &str,
    customer: Option<&str>,
    started_ms: i64,
    status: &str,
) -> RecordingRow {
    RecordingRow {
        recording_id: id.into(),
        call_id: call.into(),
        customer_id: customer.map(Into::into),
        reference_type: "call".into(),
        status: status.into(),
        format: "wav".into(),
        sample_rate: 8000,
        channels: "mono".into(),
        bitrate_kbps: 128,
        participant: "all".into(),
        path: Some(format!("/x/{id}.wav")),
        duration_ms: 1000,
        file_size_bytes: Some(16_044),
        checksum: Some("ab".into()),
        failure_reason: None,
        started_at: crate::timefmt::rfc3339(std::time::Duration::from_millis(started_ms as u64)),
        started_ms,
        stopped_at: None,
        completed_at: None,
        completed_ms: (status == "completed").then_some(started_ms + 1000),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: "2026-01-01T00:00:00.000Z".into(),
        deleted_at: None,
        retention_days: None,
        recovered: false,
        external: false,
        info_json: None,
    }
}

#[test]
fn schema_newer_than_the_binary_is_refused() {
    let path = temp("too-new");
    drop(Catalog::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    match Catalog::open(&path) {
        Err(CatalogError::TooNew { found: 99, .. }) => {}
        other => panic!("{:?}", other.err()),
    }
    // Reopening a current one is fine and keeps data.
    let path = temp("reopen");
    Catalog::open(&path)
        .unwrap()
        .put_recording(&row("r1", "c1", None, 1, "completed"))
        .unwrap();
    assert!(
        Catalog::open(&path)
            .unwrap()
            .get(None, "r1")
            .unwrap()
            .is_some()
    );
}

#[test]
fn listing_filters_and_pages_newest_first() {
    let cat = Catalog::open(&temp("list")).unwrap();
    for i in 0..25 {
        let customer = if i % 5 == 0 {
            Some("globex")
        } else {
            Some("acme")
        };
        let status = if i % 2 == 0 { "completed" } else { "failed" };
        cat.put_recording(&row(
            &format!("r{i:02}"),
            &format!("c{}", i % 3),
            customer,
            1000 * i,
            status,
        ))
        .unwrap();
    }
    let page = |f: ListFilter| cat.list(&f).unwrap();
    let (rows, total) = page(ListFilter {
        limit: 10,
        ..Default::default()
    });
    assert_eq!((rows.len(), total), (10, 25));
    assert_eq!(rows[0].recording_id, "r24");
    let (rows, _) = page(ListFilter {
        limit: 10,
        offset: 20,
        ..Default::default()
    });
    assert_eq!(rows.len(), 5);
    let (rows, _) = page(ListFilter {
        limit: 10,
        offset: 100,
        ..Default::default()
    });
    assert!(rows.is_empty());
    let (_, total) = page(ListFilter {
        limit: 0,
        customer_id: Some("globex".into()),
        ..Default::default()
    });
    assert_eq!(total, 5);
    let (rows, total) = page(ListFilter {
        limit: 50,
        status: Some("completed".into()),
        call_id: Some("c0".into()),
        ..Default::default()
    });
    assert!(
        rows.iter()
            .all(|r| r.status == "completed" && r.call_id == "c0")
    );
    assert_eq!(total, rows.len() as u64);
    let (rows, _) = page(ListFilter {
        limit: 50,
        since_ms: Some(5000),
        until_ms: Some(8000),
        ..Default::default()
    });
    let ids: Vec<&str> = rows.iter().map(|r| r.recording_id.as_str()).collect();
    assert_eq!(ids, ["r07", "r06", "r05"]);
}

#[test]
fn retention_follows_the_clock_given_and_tombstones_stay() {
    let cat = Catalog::open(&temp("retention")).unwrap();
    let day = 86_400_000;
    cat.put_recording(&row("old", "c", None, 0, "completed"))
        .unwrap();
    let mut keep = row("keep", "c", None, 0, "completed");
    keep.retention_days = Some(0); // keep forever
    cat.put_recording(&keep).unwrap();
    let mut long = row("long", "c", None, 0, "completed");
    long.retention_days = Some(90);
    cat.put_recording(&long).unwrap();
    cat.put_recording(&row("live", "c", None, 0, "recording"))
        .unwrap();
    assert!(cat.expired(29 * day, 30).unwrap().is_empty());
    let due: Vec<String> = cat
        .expired(31 * day, 30)
        .unwrap()
        .into_iter()
        .map(|r| r.recording_id)
        .collect();
    assert_eq!(due, ["old"]);
    cat.mark_deleted(None, "old", "2026-02-01T00:00:00.000Z")
        .unwrap();
    assert!(cat.expired(31 * day, 30).unwrap().is_empty());
    let tomb = cat.get(None, "old").unwrap().unwrap();
    assert_eq!(
        (tomb.status.as_str(), tomb.deleted_at.is_some()),
        ("deleted", true)
    );
    let due: Vec<String> = cat
        .expired(91 * day, 30)
        .unwrap()
        .into_iter()
        .map(|r| r.recording_id)
        .collect();
    assert_eq!(due, ["long"]);
}

#[test]
fn recording_logs_upsert_and_idempotency_keys() {
    let cat = Catalog::open(&temp("logs")).unwrap();
    assert!(cat.upsert_log(None, "c", "r", "{}", "t1").unwrap());
    assert!(!cat.upsert_log(None, "c", "r", r#"{"a":1}"#, "t2").unwrap());
    // Another customer's log of the same ids is its own.
    assert!(cat.upsert_log(Some("acme"), "c", "r", "[]", "t3").unwrap());
    let (body, created, updated) = cat.get_log(None, "c", "r").unwrap().unwrap();
    assert_eq!(
        (body.as_str(), created.as_str(), updated.as_str()),
        (r#"{"a":1}"#, "t1", "t2")
    );
    cat.remember("k", "admin", "h1", 201, "{}", "t").unwrap();
    cat.remember("k", "admin", "h2", 200, "[]", "t").unwrap();
    assert_eq!(
        cat.idempotent("k", "admin").unwrap(),
        Some(("h1".into(), 201, "{}".into()))
    );
    assert_eq!(cat.idempotent("k", "acme").unwrap(), None);
}

/// Two customers (and the admin) may use the same call and recording ids:
/// each lookup answers for its own customer only, and only the admin's
/// cross-customer lookups see them all.
#[test]
fn ids_are_per_customer() {
    let cat = Catalog::open(&temp("scoped")).unwrap();
    for customer in [Some("acme"), Some("globex"), None] {
        cat.upsert_call("shared-1", customer, "", "", "inbound", "call", "t")
            .unwrap();
        let mut r = row("rec-1", "shared-1", customer, 1, "completed");
        r.path = Some(format!("/x/{}/rec-1.wav", customer.unwrap_or("admin")));
        cat.put_recording(&r).unwrap();
    }
    let acme = cat.get(Some("acme"), "rec-1").unwrap().unwrap();
    assert_eq!(acme.customer_id.as_deref(), Some("acme"));
    assert_eq!(acme.path.as_deref(), Some("/x/acme/rec-1.wav"));
    assert_eq!(cat.get(None, "rec-1").unwrap().unwrap().customer_id, None);
    assert!(cat.get(Some("initech"), "rec-1").unwrap().is_none());
    let latest = cat
        .latest_for_call(Some("globex"), "shared-1")
        .unwrap()
        .unwrap();
    assert_eq!(latest.customer_id.as_deref(), Some("globex"));
    assert!(cat.has_call(Some("acme"), "shared-1").unwrap());
    assert!(!cat.has_call(Some("initech"), "shared-1").unwrap());
    assert_eq!(
        cat.calls_with_id("shared-1").unwrap(),
        [None, Some("acme".into()), Some("globex".into())]
    );
    assert_eq!(cat.recordings_with_id("rec-1").unwrap().len(), 3);
    // A change to one customer's recording leaves the others alone.
    cat.mark_deleted(Some("acme"), "rec-1", "t2").unwrap();
    cat.set_status(Some("globex"), "rec-1", "failed", "t2", Some("x"), None)
        .unwrap();
    assert_eq!(cat.get(None, "rec-1").unwrap().unwrap().status, "completed");
    assert_eq!(
        cat.get(Some("acme"), "rec-1").unwrap().unwrap().status,
        "deleted"
    );
    assert_eq!(
        cat.get(Some("globex"), "rec-1").unwrap().unwrap().status,
        "failed"
    );
    cat.end_call(Some("acme"), "shared-1", "t3").unwrap();
    let ended: Vec<Option<String>> = cat
        .conn()
        .prepare("SELECT ended_at FROM calls WHERE call_id = 'shared-1' ORDER BY customer_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ended, [None, Some("t3".into()), None]);
}

/// A catalog written before ids were per customer (schema 2) keeps its
/// rows: the admin's `NULL` customer becomes `''` and reads back as none.
#[test]
fn schema_2_catalogs_are_migrated_with_their_rows() {
    let path = temp("from-v2");
    {
        let conn = Connection::open(&path).unwrap();
        for step in &MIGRATIONS[..2] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(
            "INSERT INTO calls (call_id, customer_id, direction, reference_type, created_at)
               VALUES ('c1', NULL, 'inbound', 'call', 't'), ('c2', 'acme', 'inbound', 'call', 't');
             INSERT INTO recordings (recording_id, call_id, customer_id, status, format, sample_rate,
               channels, bitrate_kbps, participant, started_at, started_ms, created_at, updated_at)
               VALUES ('r1', 'c1', NULL, 'completed', 'wav', 8000, 'mono', 128, 'all', 't', 1, 't', 't'),
                      ('r2', 'c2', 'acme', 'completed', 'wav', 8000, 'mono', 128, 'all', 't', 2, 't', 't');
             INSERT INTO recording_logs (call_id, recording_id, customer_id, body_json, created_at, updated_at)
               VALUES ('c2', 'x', 'acme', '{}', 't', 't');",
        )
        .unwrap();
    }
    let cat = Catalog::open(&path).unwrap();
    assert_eq!(cat.get(None, "r1").unwrap().unwrap().customer_id, None);
    assert_eq!(
        cat.get(Some("acme"), "r2")
            .unwrap()
            .unwrap()
            .customer_id
            .as_deref(),
        Some("acme")
    );
    assert!(cat.has_call(None, "c1").unwrap() && cat.has_call(Some("acme"), "c2").unwrap());
    assert!(cat.get_log(Some("acme"), "c2", "x").unwrap().is_some());
}
