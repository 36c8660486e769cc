//! `recengine ctl` against the real daemon: create a call, stream to it,
//! pause/resume/stop, list, get, download (checksum checked), delete, and
//! the errors an operator sees, finding the daemon from its configuration
//! file and the token from the environment.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

struct Ctl<'a> {
    d: &'a Daemon,
}

impl Ctl<'_> {
    /// Runs `recengine ctl ARGS` with only the config file and the token
    /// from the environment, as an operator on the box would.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_recengine"))
            .arg("ctl")
            .args(args)
            .env("RECENGINE_CONFIG", self.d.dir.join("engine.toml"))
            .env("RECENGINE_TOKEN", ADMIN)
            .env_remove("RECENGINE_API")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// (exit success, stderr) of a command expected to fail.
    fn err(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "ctl {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }
}

#[test]
fn an_operator_records_and_fetches_a_call_with_ctl() {
    let d = Daemon::start("ctl", "");
    let ctl = Ctl { d: &d };

    let call = ctl.json(&[
        "create-call",
        "--call-id",
        "ctl-1",
        "--from",
        "+15550100",
        "--to",
        "+15550199",
        "--record",
        "wav",
        "--recording-id",
        "rec-ctl-1",
    ]);
    assert_eq!(call["call_id"], "ctl-1");
    let human = ctl.ok(&["call", "ctl-1"]);
    assert!(
        human.contains("caller") && human.contains("callee"),
        "{human}"
    );
    assert!(
        human.contains(&format!("127.0.0.1:{}", leg_port(&call, "caller"))),
        "{human}"
    );

    let speech = recengine::testkit::speech(8000, 8000);
    let (a, b) = (udp(), udp());
    let legs = [
        Leg {
            port: leg_port(&call, "caller"),
            ssrc: 11,
            signal: &speech,
            socket: &a,
            delay_packets: 0,
        },
        Leg {
            port: leg_port(&call, "callee"),
            ssrc: 12,
            signal: &speech,
            socket: &b,
            delay_packets: 0,
        },
    ];
    stream(&legs, |i| {
        if i == 15 {
            assert_eq!(ctl.ok(&["pause", "ctl-1"]), "recording rec-ctl-1 paused\n");
        }
        if i == 25 {
            assert_eq!(
                ctl.ok(&["resume", "ctl-1"]),
                "recording rec-ctl-1 recording\n"
            );
        }
    });
    let stopped = ctl.ok(&["stop", "ctl-1"]);
    assert!(stopped.starts_with("recording rec-ctl-1 "), "{stopped}");

    // The table shows it once it is completed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let table = loop {
        let t = ctl.ok(&["list", "--call-id", "ctl-1"]);
        if t.contains("completed") {
            break t;
        }
        assert!(Instant::now() < deadline, "never completed:\n{t}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("RECORDING  "), "{table}");
    assert!(lines[1].starts_with("rec-ctl-1  ctl-1"), "{table}");
    assert_eq!(lines.last(), Some(&"1 of 1 recordings"));

    let detail = ctl.json(&["get", "rec-ctl-1"]);
    let sha = detail["checksum"]["value"].as_str().unwrap().to_owned();
    let human = ctl.ok(&["get", "rec-ctl-1"]);
    assert!(human.contains(&format!("sha256       {sha}")), "{human}");
    assert!(human.contains("wav 8000 Hz mono"), "{human}");

    let out = d.dir.join("downloaded.wav");
    let saved = ctl.ok(&["download", "rec-ctl-1", "-o", out.to_str().unwrap()]);
    assert!(saved.contains("sha256 verified"), "{saved}");
    assert_eq!(sha256_file(&out), sha);
    let (samples, channels, rate) = read_wav(&out);
    assert_eq!((channels, rate), (1, 8000));
    assert!(samples.len() > 8000 * 6 / 10, "{} samples", samples.len());

    let calls = ctl.ok(&["calls"]);
    assert!(calls.lines().any(|l| l.starts_with("ctl-1 ")), "{calls}");
    assert!(ctl.ok(&["end", "ctl-1"]).contains("call ctl-1 ended"));
    assert!(
        ctl.json(&["deliveries"])["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        ctl.ok(&["delete", "rec-ctl-1"]),
        "recording rec-ctl-1 deleted\n"
    );
    let err = ctl.err(&["download", "rec-ctl-1", "-o", out.to_str().unwrap()]);
    assert!(err.contains("HTTP 410 recording_deleted"), "{err}");

    // What an operator sees when something is wrong.
    let err = ctl.err(&["get", "no-such-recording"]);
    assert!(err.contains("HTTP 404 recording_not_found"), "{err}");
    // A word the API would refuse is refused before any request, with
    // the API's choices.
    let err = ctl.err(&["create-call", "--record", "flac"]);
    assert!(
        err.contains("flac") && err.contains("`wav`, `mp3`, `opus`"),
        "{err}"
    );
    let err = ctl.err(&["create-call", "--leg", "host"]);
    assert!(err.contains("--leg \"host\""), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_recengine"))
        .args(["ctl", "--api", "127.0.0.1:1", "--token", "x", "calls"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot reach the control API at http://127.0.0.1:1"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_recengine"))
        .args([
            "ctl",
            "--api",
            &d.api.to_string(),
            "--token",
            "wrong",
            "calls",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP 401 unauthorized"), "{err}");
}

#[test]
fn call_flows_are_managed_with_ctl() {
    let d = Daemon::start("ctl-flows", "");
    let ctl = Ctl { d: &d };
    let flow = ctl.json(&[
        "flows",
        "create",
        "--id",
        "support",
        "--name",
        "Support",
        "--number",
        "+14155552671",
        "--format",
        "mp3",
        "--channels",
        "dual",
    ]);
    assert_eq!(
        (&flow["recording"]["format"], &flow["recording"]["channels"]),
        (&Value::from("mp3"), &Value::from("dual")),
        "{flow}"
    );
    let table = ctl.ok(&["flows", "list"]);
    assert!(
        table.contains("support") && table.contains("+14155552671") && table.contains("mp3"),
        "{table}"
    );
    let flow = ctl.json(&["flows", "update", "support", "--disable"]);
    assert_eq!(
        (
            &flow["enabled"],
            &flow["version"],
            &flow["recording"]["format"]
        ),
        (&Value::from(false), &Value::from(2), &Value::from("mp3")),
        "a switch leaves the recording options alone: {flow}"
    );
    let flow = ctl.json(&["flows", "update", "support", "--format", "wav"]);
    assert_eq!(flow["recording"], serde_json::json!({"format": "wav"}));
    ctl.ok(&["flows", "delete", "support"]);
    let err = ctl.err(&["flows", "get", "support"]);
    assert!(err.contains("call_flow_not_found"), "{err}");
    let err = ctl.err(&["flows", "create", "--name", "x", "--number", "abc"]);
    assert!(err.contains("phone_number"), "{err}");
}
