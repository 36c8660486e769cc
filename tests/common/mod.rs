//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use recengine::offline::{self, PcapOptions, StreamReport};

/// `../shared/captures` from the project root, or `None` (with a message)
/// when this checkout has no shared folder beside it.
pub fn shared_captures() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: {} is absent; real-capture tests need it",
            dir.display()
        );
        None
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A fresh, empty scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

pub fn run_pcap(input: &Path, out: &Path, by_flow: bool) -> Vec<StreamReport> {
    offline::run(&PcapOptions {
        input: input.to_path_buf(),
        output_dir: out.to_path_buf(),
        rtp_ports: Vec::new(),
        payload_types: Vec::new(),
        playout_delay: Duration::from_millis(200),
        jitter_capacity: 64,
        by_flow,
    })
    .expect("pcap run")
}

pub fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rate = r.spec().sample_rate;
    let s = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    (s, rate)
}

/// Normalised cross-correlation of two equally long signals.
pub fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let n = a.len().min(b.len());
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for i in 0..n {
        let (x, y) = (f64::from(a[i]), f64::from(b[i]));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}
