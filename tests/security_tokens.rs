//! Tokens (issue #13.7): a SIGHUP with every token removed revokes them all
//! (it used to keep every old token working while logging `tokens=0`).

mod support;

use std::time::{Duration, Instant};

use support::*;

#[test]
fn sighup_with_no_tokens_revokes_every_token() {
    let d = Daemon::start("security-tokens", "");
    assert_eq!(d.request("GET", "/v1/calls", None, Some(ADMIN)).0, 200);
    let config = std::fs::read_to_string(d.dir.join("engine.toml")).unwrap();
    let mut table: toml::Table = toml::from_str(&config).unwrap();
    table["api"]
        .as_table_mut()
        .unwrap()
        .remove("tokens")
        .expect("the test config has tokens");
    std::fs::write(d.dir.join("engine.toml"), toml::to_string(&table).unwrap()).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(d.pid() as i32, libc::SIGHUP);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.request("GET", "/v1/calls", None, Some(ADMIN)).0 != 401 {
        assert!(
            Instant::now() < deadline,
            "admin token still accepted:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for token in [ACME, GLOBEX] {
        assert_eq!(d.request("GET", "/v1/calls", None, Some(token)).0, 401);
    }
    assert!(
        d.log_text().contains("every token is revoked"),
        "{}",
        d.log_text()
    );
}
