//! The systemd unit passes `systemd-analyze verify` (with ExecStart pointed
//! at the binary just built), where systemd-analyze exists; and the daemon
//! tells systemd READY=1 once its sockets are bound.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn unit_file_verifies() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIP: systemd-analyze is not installed");
        return;
    };
    if !probe.status.success() {
        eprintln!("SKIP: systemd-analyze does not run here");
        return;
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/recengine.service"
    ))
    .unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("systemd-unit");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("recengine.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/recengine", env!("CARGO_BIN_EXE_recengine")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_daemon_notifies_ready() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sd-notify");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock_path = dir.join("notify.sock");
    let listener = UnixDatagram::bind(&sock_path).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let config = format!(
        "[api]\nlisten = \"127.0.0.1:0\"\n[storage]\ndir = \"{0}/storage\"\n[events]\nsocket_path = \"{0}/events.sock\"\n[rtp]\nport_min = 49000\nport_max = 49009\n",
        dir.display()
    );
    std::fs::write(dir.join("engine.toml"), config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_recengine"))
        .args(["run", "-c"])
        .arg(dir.join("engine.toml"))
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let n = listener.recv(&mut buf).expect("READY=1 within 10 s");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(
        dir.join("storage/api.addr").exists(),
        "ready only after the API is bound"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    // Watchdog pings may come first; STOPPING=1 must follow SIGTERM.
    loop {
        let n = listener.recv(&mut buf).expect("STOPPING=1 after SIGTERM");
        match &buf[..n] {
            b"WATCHDOG=1" => continue,
            other => {
                assert_eq!(other, b"STOPPING=1");
                break;
            }
        }
    }
    assert!(child.wait().unwrap().success());
}
