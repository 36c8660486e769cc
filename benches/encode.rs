//! Realtime factor of the whole recording pipeline on one core: two G.711
//! legs → jitter → decode (→ resample) → mix to mono → encode, per format
//! and sample rate. Criterion's throughput is in audio seconds per second,
//! i.e. the realtime factor. Before measuring it prints the memory one
//! pipeline holds (two legs, two tracks, mixer, encoder), from a counting
//! allocator, and how many allocations decoding one packet makes per codec.
//! Run: cargo bench --bench encode

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use recengine::config::{Format, PauseBehavior};
use recengine::core::decode::decoder_for;
use recengine::core::encode::EncoderSpec;
use recengine::core::leg::{LegConfig, LegReceiver};
use recengine::core::mixer::{DEFAULT_MARGIN, MixInput, Mixer};
use recengine::core::opus::{Application, OpusEncoder};
use recengine::core::recorder::Recorder;
use recengine::core::rtp::Codec;
use recengine::core::rtp::PayloadMap;
use recengine::core::track::Track;
use recengine::testkit::{pcmu_frames, rtp_packet, speech};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc`, passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` above with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` above with layout `l`.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SECS: usize = 20;
const DELAY: Duration = Duration::from_millis(200);

struct Pipeline {
    legs: [LegReceiver; 2],
    tracks: Vec<Track>,
    recorder: Recorder,
}

fn pipeline(format: Format, rate: u32, kbps: u32) -> Pipeline {
    let leg = || {
        LegReceiver::new(LegConfig {
            payload_map: PayloadMap::default(),
            rate,
            playout_delay: DELAY,
            jitter_capacity: 64,
            drift_bound: Duration::from_millis(20),
        })
    };
    let inputs = [
        MixInput {
            track: 0,
            channel: 0,
        },
        MixInput {
            track: 1,
            channel: 0,
        },
    ];
    let mixer = Mixer::new(rate, 1, &inputs, PauseBehavior::Silence, Duration::ZERO);
    let spec = EncoderSpec {
        format,
        sample_rate: rate,
        channels: 1,
        bitrate_kbps: kbps,
        mp3_quality: 5,
        opus_complexity: 5,
    };
    Pipeline {
        legs: [leg(), leg()],
        tracks: vec![Track::new(rate as usize), Track::new(rate as usize)],
        recorder: Recorder::new(mixer, spec).expect("spec"),
    }
}

/// Runs the pipeline over both legs' packets; returns bytes produced.
fn run(p: &mut Pipeline, packets: &[[Vec<u8>; 2]]) -> usize {
    let mut bytes = 0;
    for (i, pair) in packets.iter().enumerate() {
        let now = Duration::from_millis(i as u64 * 20);
        for (k, d) in pair.iter().enumerate() {
            let _ = p.legs[k].push(d, now);
            p.legs[k].pull(now, &mut p.tracks[k].sink(0));
        }
        let upto = p
            .recorder
            .mixer()
            .position_at(now.saturating_sub(DELAY + DEFAULT_MARGIN));
        bytes += p.recorder.mix_to(&p.tracks, upto).map_or(0, <[u8]>::len);
    }
    bytes + p.recorder.finish().map_or(0, <[u8]>::len)
}

fn bench(c: &mut Criterion) {
    let a = pcmu_frames(&speech(8000, SECS * 8000));
    let b = pcmu_frames(&speech(8000, SECS * 8000 + 800)[800..]);
    let packets: Vec<[Vec<u8>; 2]> = a
        .iter()
        .zip(&b)
        .enumerate()
        .map(|(i, (x, y))| {
            [
                rtp_packet(0, i == 0, i as u16, i as u32 * 160, 1, x),
                rtp_packet(0, i == 0, 500 + i as u16, 99 + i as u32 * 160, 2, y),
            ]
        })
        .collect();
    let cases = [
        (Format::Wav, 8000, 0),
        (Format::Wav, 16_000, 0),
        (Format::Wav, 48_000, 0),
        (Format::Mp3, 8000, 64),
        (Format::Mp3, 16_000, 64),
        (Format::Mp3, 48_000, 64),
        (Format::Opus, 8000, 32),
        (Format::Opus, 16_000, 32),
        (Format::Opus, 48_000, 32),
    ];
    for &(format, rate, kbps) in &cases {
        let before = LIVE.load(Ordering::Relaxed);
        let mut p = pipeline(format, rate, kbps);
        // Warm up half the call so buffers reach their steady size.
        run(&mut p, &packets[..packets.len() / 2]);
        let held = LIVE.load(Ordering::Relaxed) - before;
        eprintln!(
            "memory: {format:?} {rate} Hz: {} KiB per pipeline (2 legs + mixer + encoder)",
            held / 1024
        );
        drop(p);
    }
    allocations_per_packet();
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(SECS as u64));
    group.sample_size(10);
    for &(format, rate, kbps) in &cases {
        group.bench_function(
            format!("{format:?} {rate} Hz (audio s/s = realtime factor)"),
            |bench| {
                bench.iter(|| {
                    let mut p = pipeline(format, rate, kbps);
                    black_box(run(&mut p, &packets))
                })
            },
        );
    }
    group.finish();
}

/// Heap allocations per decoded 20 ms packet, per codec (after a warm-up,
/// into a buffer that already has room).
fn allocations_per_packet() {
    let pcm = speech(16_000, 16_000);
    let g711: Vec<Vec<u8>> = pcmu_frames(&speech(8000, 8000));
    let mut g722_encoder = ezk_g722::libg722::encoder::Encoder::new(
        ezk_g722::libg722::Bitrate::Mode1_64000,
        false,
        false,
    );
    let g722: Vec<Vec<u8>> = pcm.chunks(320).map(|f| g722_encoder.encode(f)).collect();
    let mut opus_encoder = OpusEncoder::new(16_000, 1, Application::Voip, 32_000, 5).expect("opus");
    let opus: Vec<Vec<u8>> = pcm
        .chunks(320)
        .map(|f| {
            let mut buf = [0u8; 1500];
            let n = opus_encoder.encode(f, &mut buf).expect("encode");
            buf[..n].to_vec()
        })
        .collect();
    for (name, codec, rate, packets) in [
        ("PCMU", Codec::Pcmu, 8000, &g711),
        ("G.722", Codec::G722, 16_000, &g722),
        ("Opus", Codec::Opus, 16_000, &opus),
    ] {
        let mut decoder = decoder_for(codec, Some(rate)).expect("decoder");
        let mut out = Vec::with_capacity(4096);
        let (warm_up, counted) = packets.split_at(5);
        let mut decode_all = |packets: &[Vec<u8>]| {
            for p in packets {
                out.clear();
                decoder.decode(p, &mut out).expect("decode");
            }
        };
        decode_all(warm_up);
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        decode_all(counted);
        let made = ALLOCATIONS.load(Ordering::Relaxed) - before;
        eprintln!(
            "allocations: {name} decode: {:.1} per packet",
            made as f64 / counted.len() as f64
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
