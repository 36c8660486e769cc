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
        status: RecordingStatus::parse(status).unwrap(),
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
        encryption: None,
        recovery_key: None,
        node_id: String::new(),
    }
}

/// Runs one statement as it stands (a test tampering with rows).
fn raw(cat: &Catalog, sql: &str) {
    cat.run(|db| db.execute(sql, &[])).unwrap();
}

#[test]
fn schema_newer_than_the_binary_is_refused_on_postgres_too() {
    if !super::testdb::postgres_up() {
        return;
    }
    let schema = super::testdb::fresh_schema("too-new");
    let cfg = super::testdb::postgres_config(&schema, "node-a");
    let open = || Catalog::open_configured(&cfg, Path::new("."));
    let cat = open().unwrap();
    assert_eq!(cat.schema_version().unwrap(), MIGRATIONS.len() as i64);
    cat.put_recording(&row("r1", "c1", None, 1, "completed"))
        .unwrap();
    drop(cat);
    // Reopening (as a second node starting would) keeps the data.
    assert!(open().unwrap().get(None, "r1").unwrap().is_some());
    raw(&open().unwrap(), "UPDATE schema_version SET version = 99");
    let refused = open();
    super::testdb::drop_schema(&schema);
    match refused {
        Err(CatalogError::TooNew { found: 99, .. }) => {}
        other => panic!("{:?}", other.err()),
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
    for cat in super::testdb::catalogs("list") {
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
            status: Some(RecordingStatus::Completed),
            call_id: Some("c0".into()),
            ..Default::default()
        });
        assert!(
            rows.iter()
                .all(|r| r.status == RecordingStatus::Completed && r.call_id == "c0")
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
}

#[test]
fn retention_follows_the_clock_given_and_tombstones_stay() {
    for cat in super::testdb::catalogs("retention") {
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
}

#[test]
fn recording_logs_upsert_and_idempotency_keys() {
    for cat in super::testdb::catalogs("logs") {
        // `store` puts `body` and records what the merge was shown.
        let store = |customer: Option<&str>, body: &str, now: &str| {
            let mut shown = None;
            let created = cat
                .upsert_log_with(customer, "c", "r", now, |stored| {
                    shown = stored.map(str::to_owned);
                    Ok::<_, CatalogError>(body.to_owned())
                })
                .unwrap();
            (created, shown)
        };
        assert_eq!(store(None, "{}", "t1"), (true, None));
        assert_eq!(store(None, r#"{"a":1}"#, "t2"), (false, Some("{}".into())));
        // Another customer's log of the same ids is its own.
        assert_eq!(store(Some("acme"), "[]", "t3"), (true, None));
        let (body, created, updated) = cat.get_log(None, "c", "r").unwrap().unwrap();
        assert_eq!(
            (body.as_str(), created.as_str(), updated.as_str()),
            (r#"{"a":1}"#, "t1", "t2")
        );
        // Idempotency keys: claimed once, answered, replayed, per scope.
        let claim = |k: &str, scope: &str, hash: &str, now: &str| {
            cat.claim_idempotency(k, scope, hash, now, "t0").unwrap()
        };
        assert_eq!(claim("k", "admin", "h1", "t1"), Claim::Claimed);
        assert_eq!(
            claim("k", "admin", "h1", "t1"),
            Claim::InProgress {
                request_hash: "h1".into()
            }
        );
        cat.finish_idempotency("k", "admin", 201, "{}").unwrap();
        assert_eq!(
            claim("k", "admin", "h2", "t2"),
            Claim::Done {
                request_hash: "h1".into(),
                status: 201,
                response: "{}".into()
            }
        );
        assert_eq!(claim("k", "acme", "h1", "t2"), Claim::Claimed);
        // A released claim (the request failed) is claimed afresh.
        cat.release_idempotency("k", "acme").unwrap();
        assert_eq!(claim("k", "acme", "h1", "t2"), Claim::Claimed);
        // Keys created before the cut-off expire.
        assert_eq!(cat.expire_idempotency("t15").unwrap(), 1);
        assert_eq!(claim("k", "admin", "h3", "t3"), Claim::Claimed);
        assert_eq!(
            cat.claim_idempotency("k", "admin", "h4", "t9", "t5")
                .unwrap(),
            Claim::Claimed,
            "an expired in-progress claim is claimed afresh"
        );
    }
}

#[test]
fn the_audit_chain_finds_edits_deletions_and_survives_retention() {
    use super::audit::{AuditEntry, AuditVerdict};
    for cat in super::testdb::catalogs("audit") {
        let entry = |i: i64| AuditEntry {
            at: format!("2026-01-01T00:00:{i:02}Z"),
            at_ms: i * 1000,
            actor: "pbx-1".into(),
            customer_id: Some("acme".into()),
            peer: "127.0.0.1:5000".into(),
            action: "recording.get".into(),
            call_id: Some("c1".into()),
            recording_id: Some(format!("r{i}")),
            status: 200,
            detail: None,
        };
        for i in 1..=6 {
            let r = cat.append_audit(&entry(i)).unwrap();
            assert_eq!(r.seq, i);
        }
        assert_eq!(
            cat.verify_audit().unwrap(),
            AuditVerdict::Intact { records: 6 }
        );
        // Retention drops the oldest and keeps the chain checkable.
        assert_eq!(cat.expire_audit(3000).unwrap(), 2);
        assert_eq!(
            cat.verify_audit().unwrap(),
            AuditVerdict::Intact { records: 4 }
        );
        assert_eq!(cat.append_audit(&entry(7)).unwrap().seq, 7);
        // An edit is found at its record...
        raw(&cat, "UPDATE audit SET status = 404 WHERE seq = 5");
        assert!(matches!(
            cat.verify_audit().unwrap(),
            AuditVerdict::Broken { seq: 5, .. }
        ));
        raw(&cat, "UPDATE audit SET status = 200 WHERE seq = 5");
        // ... and a deletion at the record after the gap.
        raw(&cat, "DELETE FROM audit WHERE seq = 4");
        assert!(matches!(
            cat.verify_audit().unwrap(),
            AuditVerdict::Broken { seq: 5, .. }
        ));
    }
}

/// Two recorders on one PostgreSQL catalog: a call id is held by one node
/// at a time, each node recovers only its own rows, cursors are per node,
/// and a delivery is leased by one node only.
#[test]
fn two_nodes_share_a_postgres_catalog_without_stepping_on_each_other() {
    if !super::testdb::postgres_up() {
        return;
    }
    let schema = super::testdb::fresh_schema("two-nodes");
    let open = |node: &str| {
        Catalog::open_configured(
            &super::testdb::postgres_config(&schema, node),
            Path::new("."),
        )
        .unwrap()
    };
    let (a, b) = (open("node-a"), open("node-b"));
    let call = |c: &Catalog| c.upsert_call("c1", Some("acme"), "", "", "inbound", "call", "t");
    assert_eq!(call(&a).unwrap(), None);
    assert_eq!(
        call(&b).unwrap().as_deref(),
        Some("node-a"),
        "B cannot take A's open call"
    );
    assert_eq!(call(&a).unwrap(), None, "A may upsert its own");
    assert_eq!(
        b.open_call_node(Some(Some("acme")), "c1")
            .unwrap()
            .as_deref(),
        Some("node-a")
    );
    assert_eq!(b.open_call_node(Some(Some("globex")), "c1").unwrap(), None);
    // A crash-restarted B ends only its own calls.
    assert_eq!(b.end_open_calls("t2").unwrap(), 0);
    a.end_call(Some("acme"), "c1", "t2").unwrap();
    assert_eq!(call(&b).unwrap(), None, "an ended call's id is free again");
    // Recordings: each node recovers and retains its own.
    let mut ra = row("ra", "c1", Some("acme"), 1, "recording");
    ra.node_id = String::new();
    a.put_recording(&ra).unwrap();
    b.put_recording(&row("rb", "c1", Some("acme"), 2, "recording"))
        .unwrap();
    let ids =
        |rows: Vec<RecordingRow>| rows.into_iter().map(|r| r.recording_id).collect::<Vec<_>>();
    assert_eq!(ids(a.unfinished().unwrap()), ["ra"]);
    assert_eq!(ids(b.unfinished().unwrap()), ["rb"]);
    assert_eq!(
        a.get(Some("acme"), "rb").unwrap().unwrap().node_id,
        "node-b"
    );
    // Event-log cursors are per node.
    a.set_cursor("nats_cursor:X", 7).unwrap();
    assert_eq!(b.cursor("nats_cursor:X").unwrap(), 0);
    // A delivery is leased by one node only.
    let d = super::outbox::NewDelivery {
        endpoint: "crm",
        event_seq: 1,
        event: "call.created",
        body: "{}",
    };
    a.enqueue_deliveries(&[d], 1, 0, "t").unwrap();
    let d = super::outbox::NewDelivery {
        endpoint: "crm",
        event_seq: 1,
        event: "call.created",
        body: "{}",
    };
    b.enqueue_deliveries(&[d], 1, 0, "t").unwrap();
    let leased_a = a.lease_due_deliveries(10, 5000, 10).unwrap();
    let leased_b = b.lease_due_deliveries(10, 5000, 10).unwrap();
    assert_eq!(
        leased_a.len() + leased_b.len(),
        2,
        "seq 1 of each node is its own delivery, and each is leased once"
    );
    assert_eq!(leased_a.len(), 2);
    drop((a, b));
    super::testdb::drop_schema(&schema);
}
