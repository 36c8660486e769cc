//! The crash-recovery repairs (WAV, MP3, Ogg) on arbitrary bytes: no panic,
//! the kept length never exceeds the input, patches stay inside it, and a
//! repaired file needs no further repair.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recengine::core::repair::{Repair, mp3_duration_ms, ogg_opus_duration_ms, repair_mp3, repair_ogg, repair_wav, wav_duration_ms};

fn apply(data: &[u8], r: &Repair) -> Vec<u8> {
    assert!(r.keep <= data.len());
    let mut out = data[..r.keep].to_vec();
    for (at, p) in &r.patches {
        assert!(at + p.len() <= out.len(), "patch outside the kept bytes");
        out[*at..*at + p.len()].copy_from_slice(p);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if let Some(r) = repair_wav(data, data.len()) {
        let fixed = apply(data, &r);
        let again = repair_wav(&fixed, fixed.len()).expect("still a WAV");
        assert_eq!(again.keep, fixed.len());
        let _ = wav_duration_ms(&fixed);
    }
    let r = repair_mp3(data);
    let fixed = apply(data, &r);
    assert_eq!(repair_mp3(&fixed).keep, fixed.len());
    let _ = mp3_duration_ms(&fixed);
    let r = repair_ogg(data);
    let fixed = apply(data, &r);
    let again = repair_ogg(&fixed);
    assert_eq!(again.keep, fixed.len());
    assert!(again.patches.is_empty());
    let _ = ogg_opus_duration_ms(&fixed);
});
