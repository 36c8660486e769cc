//! Packets per second through the media core on one core: RTP parse,
//! jitter buffer, G.711 decode and playout into a sink, with the virtual
//! clock advancing 20 ms per packet as in a real call.
//! Run: cargo bench --bench media

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use recengine::core::decode::linear_to_ulaw;
use recengine::core::leg::{LegConfig, LegReceiver, PcmSink};
use recengine::core::rtp::{PayloadMap, RtpPacket};
use recengine::testkit::{rtp_packet, speech};

const PACKETS: usize = 5_000;

struct Sum(i64);

impl PcmSink for Sum {
    fn samples(&mut self, _start: i64, pcm: &[i16]) {
        self.0 += i64::from(pcm[0]) + pcm.len() as i64;
    }
    fn silence(&mut self, _start: i64, len: i64) {
        self.0 += len;
    }
}

fn packets() -> Vec<Vec<u8>> {
    let signal = speech(8000, PACKETS * 160);
    signal
        .chunks(160)
        .enumerate()
        .map(|(i, c)| {
            let payload: Vec<u8> = c.iter().map(|&s| linear_to_ulaw(s)).collect();
            rtp_packet(
                0,
                i == 0,
                1000u16.wrapping_add(i as u16),
                i as u32 * 160,
                0x1234,
                &payload,
            )
        })
        .collect()
}

fn leg() -> LegReceiver {
    LegReceiver::new(LegConfig {
        payload_map: PayloadMap::default(),
        rate: 8000,
        playout_delay: Duration::from_millis(200),
        jitter_capacity: 64,
        drift_bound: Duration::from_millis(20),
    })
}

fn bench(c: &mut Criterion) {
    let packets = packets();
    let mut group = c.benchmark_group("media");
    group.throughput(Throughput::Elements(PACKETS as u64));

    group.bench_function("parse", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for p in &packets {
                sum = sum.wrapping_add(RtpPacket::parse(black_box(p)).map_or(0, |p| p.timestamp));
            }
            sum
        })
    });

    group.bench_function("parse+jitter+g711+playout", |b| {
        b.iter(|| {
            let mut leg = leg();
            let mut sink = Sum(0);
            for (i, p) in packets.iter().enumerate() {
                let now = Duration::from_millis(i as u64 * 20);
                let _ = leg.push(black_box(p), now);
                leg.pull(now, &mut sink);
            }
            leg.finish(&mut sink);
            sink.0
        })
    });

    // As the daemon ticks: packets pushed as they come, playout every 20 ms
    // for 50 legs in turn (working set of a worker with 25 calls).
    group.bench_function("50 legs interleaved", |b| {
        b.iter(|| {
            let mut legs: Vec<LegReceiver> = (0..50).map(|_| leg()).collect();
            let mut sink = Sum(0);
            for (i, p) in packets.iter().take(PACKETS / 50).enumerate() {
                let now = Duration::from_millis(i as u64 * 20);
                for l in &mut legs {
                    let _ = l.push(black_box(p), now);
                    l.pull(now, &mut sink);
                }
            }
            sink.0
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
