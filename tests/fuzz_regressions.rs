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

#[test]
fn recovery_regressions_stay_fixed() {
    use recengine::core::repair::repair_wav;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/recovery");
    for entry in std::fs::read_dir(&dir).expect("regressions dir") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        if let Some(r) = repair_wav(&data, data.len()) {
            let mut fixed = data[..r.keep].to_vec();
            for (at, p) in &r.patches {
                fixed[*at..*at + p.len()].copy_from_slice(p);
            }
            let again = repair_wav(&fixed, fixed.len()).expect("a repaired WAV is still a WAV");
            assert_eq!(again.keep, fixed.len());
        }
    }
}
