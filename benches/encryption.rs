//! What encryption at rest costs a recording's file, on one core: an
//! 8 kHz mono WAV call of 20 s (320 KB) written in 20 ms chunks, flushed
//! every second as the daemon does, finished (segment 0 patched with the
//! final header) and read back once to authenticate it and hash plaintext
//! and ciphertext; against the same file written plain (hashed once at
//! the end, as a WAV is). Criterion's throughput is in bytes of audio.
//! Run: cargo bench --bench encryption

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use recengine::encryption::DataKey;
use recengine::io::sink::RecordingFile;

const SECONDS: usize = 20;
const BYTES_PER_SECOND: usize = 16_000;
const CHUNK: usize = 320; // 20 ms of 8 kHz 16-bit mono

fn write_call(dir: &std::path::Path, key: Option<DataKey>) -> u64 {
    let path = dir.join("call.wav");
    let mut f = RecordingFile::create(&path, Duration::from_secs(1), Duration::ZERO, key).unwrap();
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 7) as u8).collect();
    let header = vec![0x52u8; 44];
    f.write(&header);
    for i in 0..SECONDS * BYTES_PER_SECOND / CHUNK {
        f.write(&chunk);
        let now = Duration::from_millis(20 * (i as u64 + 1));
        f.maybe_flush(now, Some(&header)).unwrap();
    }
    let done = f.finalize(Some(&header)).unwrap();
    std::fs::remove_file(&path).unwrap();
    done.size
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("recengine-bench-enc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut g = c.benchmark_group("recording_file_20s_wav8");
    g.throughput(Throughput::Bytes((SECONDS * BYTES_PER_SECOND) as u64));
    g.bench_function("plain", |b| b.iter(|| black_box(write_call(&dir, None))));
    g.bench_function("encrypted", |b| {
        b.iter(|| black_box(write_call(&dir, Some(DataKey::generate().unwrap()))))
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
