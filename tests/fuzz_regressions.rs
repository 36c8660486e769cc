//! Inputs the fuzzers once crashed on (fuzz/regressions/<target>/), replayed
//! on every test run.

use std::path::Path;

#[test]
fn rtp_leg_regressions_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/rtp_leg");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("regressions dir") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        recengine::testkit::drive_leg_ops(&data);
        n += 1;
    }
    assert!(n >= 1);
}
