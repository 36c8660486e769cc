//! Events on NATS JetStream against the NATS server on 127.0.0.1:4222: the
//! events made while NATS could not be reached are published, in order and
//! gap-free, once it can (the event log is the outbox); live events follow;
//! every message carries its seq and node in `Nats-Msg-Id`. Skipped with a
//! message when no NATS server listens there.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

fn nats_config(url: &str, stream: &str, prefix: &str) -> String {
    format!(
        "[events.nats]\nurl = \"{url}\"\nstream = \"{stream}\"\nsubject_prefix = \"{prefix}\"\nnode_id = \"node-a\"\n"
    )
}

fn call_and_end(d: &Daemon) {
    let (s, call) = d.request(
        "POST",
        "/v1/calls",
        Some(&json!({"legs": [{"role": "caller"}]}).to_string()),
        Some(ACME),
    );
    assert_eq!(s, 201, "{call}");
    let id = call["call_id"].as_str().unwrap();
    let (s, _) = d.request("POST", &format!("/v1/calls/{id}/end"), None, Some(ACME));
    assert_eq!(s, 200);
}

#[test]
fn events_made_while_nats_was_away_follow_in_order_then_live_ones() {
    if !nats_up() {
        return;
    }
    let tag = format!(
        "{}{}",
        std::process::id(),
        recengine::ids::random_id("").get(..8).unwrap_or("x")
    );
    let stream = format!("RECENGINE_TEST_{tag}");
    let prefix = format!("rectest{tag}");
    // NATS unreachable (nothing listens on port 1): events wait in the log.
    let mut d = Daemon::start(
        "nats-away",
        &nats_config("nats://127.0.0.1:1", &stream, &prefix),
    );
    call_and_end(&d);
    call_and_end(&d);
    std::thread::sleep(Duration::from_millis(1500));
    let (_, metrics) = d.request_raw("GET", "/metrics", None, None, &[]);
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    assert!(metrics.contains("recengine_nats_connected 0"), "{metrics}");
    assert!(
        !metrics.contains("recengine_nats_publish_failures_total 0\n"),
        "{metrics}"
    );
    assert!(d.terminate().success());
    // NATS reachable: the backlog goes out, then live events.
    let dir = d.dir.clone();
    let d = Daemon::launch(
        "nats-away",
        &dir,
        &nats_config("nats://127.0.0.1:4222", &stream, &prefix),
        4,
    );
    call_and_end(&d);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let msgs = rt.block_on(read_stream(&stream, 6));
    let seqs: Vec<u64> = msgs
        .iter()
        .filter_map(|(_, _, v)| v["seq"].as_u64())
        .collect();
    assert!(seqs.len() >= 6, "{msgs:#?}");
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "in order, gap-free, once each"
    );
    for (subject, id, v) in &msgs {
        assert_eq!(
            subject,
            &format!("{prefix}.{}", v["event"].as_str().unwrap())
        );
        assert_eq!(id, &format!("node-a-{}", v["seq"]));
    }
    let names: Vec<&str> = msgs
        .iter()
        .filter_map(|(_, _, v)| v["event"].as_str())
        .collect();
    assert_eq!(
        names.iter().filter(|n| **n == "call.created").count(),
        3,
        "{names:?}"
    );
    let (_, metrics) = d.request_raw("GET", "/metrics", None, None, &[]);
    assert!(String::from_utf8_lossy(&metrics).contains("recengine_nats_connected 1"));
    rt.block_on(async {
        let client = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
        let _ = async_nats::jetstream::new(client)
            .delete_stream(&stream)
            .await;
    });
}

/// `/healthz` shows the publisher's state; `recengine check --connect`
/// tries the NATS server a configuration names.
#[test]
fn health_and_check_report_the_nats_backend() {
    if !nats_up() {
        return;
    }
    let d = Daemon::start(
        "nats-health",
        &nats_config(
            "nats://127.0.0.1:4222",
            "RECENGINE_TEST_HEALTH",
            "rectesthealth",
        ),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (s, h) = d.request("GET", "/healthz", None, None);
        assert_eq!(s, 200);
        if h["nats"]["connected"] == true {
            assert_eq!(h["status"], "ok");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{h}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let run = |url: &str| {
        let cfg = d.dir.join("check.toml");
        std::fs::write(
            &cfg,
            nats_config(url, "RECENGINE_TEST_HEALTH", "rectesthealth"),
        )
        .unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_recengine"))
            .args(["check", "--connect", "-c"])
            .arg(&cfg)
            .output()
            .unwrap()
    };
    let good = run("nats://127.0.0.1:4222");
    let text = String::from_utf8_lossy(&good.stdout).into_owned();
    assert!(
        good.status.success() && text.contains("nats nats://127.0.0.1:4222: OK: reachable"),
        "{text}"
    );
    let bad = run("nats://127.0.0.1:1");
    let text = String::from_utf8_lossy(&bad.stdout).into_owned();
    assert!(
        !bad.status.success() && text.contains("nats nats://127.0.0.1:1: FAILED: cannot connect"),
        "{text}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
        let _ = async_nats::jetstream::new(client)
            .delete_stream("RECENGINE_TEST_HEALTH")
            .await;
    });
}
