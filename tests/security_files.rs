//! Files at rest (issue #13.14): recordings, sidecars, the catalog, the
//! event log and the directories holding them are not world-readable.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;
use support::*;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn nothing_the_daemon_writes_is_world_readable() {
    let d = Daemon::start("security-files", "");
    let body = json!({"legs": [{"role": "caller"}], "recording": {"enabled": true}});
    let done = record_tone_call(&d, ADMIN, &body, 700.0);
    let file = PathBuf::from(done["path"].as_str().unwrap());
    let storage = d.storage();
    let mut checked = vec![
        file.clone(),
        file.with_extension("json"),
        storage.join("events.log"),
    ];
    if !catalog_on_postgres() {
        checked.push(storage.join("catalog.db"));
    }
    // Every directory from the recording up to (not including) storage.
    let mut dir = file.parent().unwrap().to_path_buf();
    while dir != storage {
        checked.push(dir.clone());
        dir = dir.parent().unwrap().to_path_buf();
    }
    for p in &checked {
        assert_eq!(mode(p) & 0o007, 0, "{} is {:o}", p.display(), mode(p));
    }
    assert_eq!(mode(&file), 0o640, "{}", file.display());
}
