//! Startup problems are clear messages, not crashes; SIGHUP reloads tokens.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

fn run_with(config: &str, dir: &std::path::Path) -> (bool, String) {
    let path = dir.join("engine.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_recengine"))
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unusable_storage_socket_and_config_are_named() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("startup-errors");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Storage under a regular file cannot be created.
    std::fs::write(dir.join("file"), b"x").unwrap();
    let (ok, err) = run_with(
        &format!(
            "[storage]\ndir = \"{}/file/recordings\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
            dir.display()
        ),
        &dir,
    );
    assert!(!ok);
    assert!(
        err.contains("storage.dir") && err.contains("cannot be created"),
        "{err}"
    );
    // A bad key is named with its line.
    let (ok, err) = run_with("[rtp]\nport_minn = 30000\n", &dir);
    assert!(!ok);
    assert!(err.contains("line 2: rtp.port_minn: unknown key"), "{err}");
}

#[test]
fn event_socket_in_use_is_refused_and_a_stale_one_replaced() {
    let d = Daemon::start("socket-in-use", "");
    // A second daemon on the same socket path refuses to start.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("socket-in-use-2");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ok, err) = run_with(
        &format!(
            "[storage]\ndir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[events]\nsocket_path = \"{}\"\n[rtp]\nport_min = 41000\nport_max = 41009\n",
            dir.join("storage").display(),
            d.socket.display()
        ),
        &dir,
    );
    assert!(!ok);
    assert!(err.contains("in use by another running process"), "{err}");
    // A stale socket file left by a crash is replaced.
    let mut d = d;
    d.kill9();
    assert!(d.socket.exists(), "a killed daemon leaves its socket file");
    let dir = d.dir.clone();
    drop(d);
    let d = Daemon::launch("socket-in-use", &dir, "", 4);
    let mut ev = d.events(Some(0));
    let _ = ev.next(Duration::from_millis(300));
    assert_eq!(d.request("GET", "/healthz", None, None).0, 200);
}

#[test]
fn sighup_reloads_tokens() {
    let d = Daemon::start("sighup", "");
    assert_eq!(d.request("GET", "/v1/calls", None, Some(ACME)).0, 200);
    // Keep only a new token, then SIGHUP.
    let config = std::fs::read_to_string(d.dir.join("engine.toml")).unwrap();
    let mut table: toml::Table = toml::from_str(&config).unwrap();
    let hash: String = {
        use sha2::{Digest, Sha256};
        Sha256::digest(b"brand-new-token")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    table["api"]["tokens"] = toml::Value::Array(vec![toml::Value::Table(
        [
            ("name".to_owned(), toml::Value::String("new".into())),
            ("sha256".to_owned(), toml::Value::String(hash)),
        ]
        .into_iter()
        .collect(),
    )]);
    std::fs::write(d.dir.join("engine.toml"), toml::to_string(&table).unwrap()).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(d.pid() as i32, libc::SIGHUP);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while d
        .request("GET", "/v1/calls", None, Some("brand-new-token"))
        .0
        != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "new token never accepted:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        d.request("GET", "/v1/calls", None, Some(ACME)).0,
        401,
        "old token revoked"
    );
    assert!(
        d.log_text().contains("SIGHUP: reloaded"),
        "{}",
        d.log_text()
    );
}
