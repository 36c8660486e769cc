//! The worker's own driving of a call (batch reads sized to the jitter
//! buffer's room, steps, the writer pool) against `recengine pcap`'s, from
//! the same captured packets and the same plan: the files must be the same
//! bytes. The packets come from a replayed capture instead of a socket, on
//! a virtual clock ticking every 20 ms from the first packet, as `pcap`
//! ticks. And the pool's start: it returns with every worker counted.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::call::*;
use super::*;
use crate::capture::net::udp_in_frame;
use crate::capture::reader::CaptureReader;
use crate::config::{Channels, Format};
use crate::core::rtp::PayloadMap;
use crate::io::writer::{SinkReport, WriterPool};
use crate::offline::record::{Participant, RecordOptions, record};
use crate::recording::{Checksum, RecordingInfo};
use crate::testkit::{speech, tone, two_party_pcmu};

/// A leg's datagrams from a capture: each is there from its capture time.
struct Replay {
    packets: Vec<(Duration, Vec<u8>)>,
    next: usize,
}

impl LegSource for Replay {
    fn receive_batch(
        &mut self,
        _reader: &mut LegReader,
        limit: usize,
        at: DrainTime,
        mut deliver: impl FnMut(&[u8], Duration),
    ) -> bool {
        let mut n = 0;
        while n < limit {
            match self.packets.get(self.next) {
                Some((t, d)) if *t <= at.monotonic => {
                    deliver(d, *t);
                    self.next += 1;
                    n += 1;
                }
                _ => break,
            }
        }
        // As a socket: a full batch says more may be queued.
        n > 0 && n == limit
    }

    fn send_to_source(&self, _datagram: &[u8]) -> bool {
        false // a capture has no one to answer
    }
}

const DELAY: Duration = Duration::from_millis(60);
const FLUSH: Duration = Duration::from_millis(500);

fn options(input: &Path, out: &Path, format: Format) -> RecordOptions {
    RecordOptions {
        input: input.to_owned(),
        output_dir: out.to_owned(),
        rtp_ports: Vec::new(),
        payload_types: Vec::new(),
        playout_delay: DELAY,
        jitter_capacity: 64,
        drift_bound: Duration::from_millis(20),
        format,
        sample_rate: 8000,
        channels: Channels::Dual,
        bitrate_kbps: 0,
        mp3_quality: 7,
        opus_complexity: 5,
        participant: Participant::All,
        pause_behavior: PauseBehavior::Silence,
        pauses: Vec::new(),
        suppress_dtmf: false,
        caller: None,
        callee: None,
        flush_interval: FLUSH,
    }
}

/// Each SSRC's packets with their capture time since the first packet.
fn replayed(input: &Path) -> HashMap<u32, Vec<(Duration, Vec<u8>)>> {
    let file = std::fs::File::open(input).unwrap();
    let mut reader = CaptureReader::new(BufReader::new(file)).unwrap();
    let mut epoch = None;
    let mut out: HashMap<u32, Vec<(Duration, Vec<u8>)>> = HashMap::new();
    while let Some(rec) = reader.next_record().unwrap() {
        let start = *epoch.get_or_insert(rec.time);
        let Some(udp) = udp_in_frame(rec.linktype, rec.data) else {
            continue;
        };
        let ssrc = u32::from_be_bytes(udp.payload[8..12].try_into().unwrap());
        out.entry(ssrc)
            .or_default()
            .push((rec.time - start, udp.payload.to_vec()));
    }
    out
}

/// Records the capture through the worker's driving of a call, with the
/// legs, channels and length `pcap` chose; answers the file.
fn through_the_worker(input: &Path, pcap: &RecordingInfo, end: Duration, out: &Path) -> PathBuf {
    let (reports_tx, _reports_rx) = crossbeam_channel::unbounded();
    let (sink_tx, sink_rx) = crossbeam_channel::unbounded();
    let writers = WriterPool::start(1, 1 << 24, sink_tx);
    let mut packets = replayed(input);
    let mut c: CallState<Replay> = CallState {
        origin: Duration::ZERO,
        media: CallMedia::new(8000, DELAY),
        sockets: Vec::new(),
        legs: Vec::new(),
        recordings: Vec::new(),
        shared: Arc::new(CallShared::default()),
        last_stats: Duration::ZERO,
        delay: DELAY,
        played_to: Duration::ZERO,
    };
    let mut inputs = Vec::new();
    for (i, leg) in pcap.legs.iter().enumerate() {
        let ssrc = u32::from_str_radix(&leg.leg_id, 16).unwrap();
        c.media.add_leg(LegConfig {
            payload_map: PayloadMap::default(),
            rate: 8000,
            playout_delay: DELAY,
            jitter_capacity: 64,
            drift_bound: Duration::from_millis(20),
        });
        c.sockets.push(Replay {
            packets: packets.remove(&ssrc).unwrap(),
            next: 0,
        });
        c.legs.push(leg.clone());
        inputs.push(MixInput {
            track: i,
            channel: leg.channel.unwrap(),
        });
    }
    let path = out.join(format!("worker.{}", pcap.format.extension()));
    let mut info = pcap.clone();
    info.checksum = Checksum::sha256(String::new());
    let spec = EncoderSpec {
        format: pcap.format,
        sample_rate: 8000,
        channels: pcap.channel_count,
        bitrate_kbps: 0,
        mp3_quality: 7,
        opus_complexity: 5,
    };
    let setup = RecordingSetup {
        id: "worker".into(),
        spec,
        inputs,
        pause_behavior: PauseBehavior::Silence,
        suppress_dtmf: false,
        start: Duration::ZERO,
        sidecar: path.with_extension("json"),
        path: path.clone(),
        flush_interval: FLUSH,
        min_duration: Duration::ZERO,
        notices: Vec::new(),
        sink: writers.sink("worker"),
        data_key: None,
        info: Box::new(info),
        shared: Arc::new(RecordingShared::default()),
    };
    start_recording(&mut c, Box::new(setup), &reports_tx);
    let mut reader = LegReader::new(ReceivePath::Recvmmsg, Duration::from_millis(20));
    let step = Duration::from_millis(20);
    let mut t = Duration::ZERO;
    while t < end {
        let at = t;
        advance(
            &mut c,
            at,
            Mix::EveryStep,
            &mut || DrainTime {
                monotonic: at,
                wall: Duration::ZERO,
            },
            &mut reader,
            &reports_tx,
        );
        t += step;
    }
    end_at(
        &mut c,
        end,
        &mut || DrainTime {
            monotonic: end,
            wall: Duration::ZERO,
        },
        &mut reader,
        &reports_tx,
    );
    match sink_rx.recv_timeout(Duration::from_secs(10)).unwrap() {
        SinkReport::Finalized { file, .. } => file.path,
        SinkReport::Failed { error, .. } => panic!("the writer failed: {error}"),
        SinkReport::Discarded { .. } => panic!("the recording was discarded"),
    }
}

#[test]
fn the_worker_and_recengine_pcap_make_the_same_bytes_from_the_same_packets() {
    let dir = std::env::temp_dir().join(format!("recengine-worker-vs-pcap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("call.pcap");
    // Two seconds each; the callee speaks first, so roles, not arrival,
    // must decide the channels.
    two_party_pcmu(
        &input,
        &tone(8000, 440.0, 9000.0, 16_000),
        &speech(8000, 16_000),
        80,
    )
    .unwrap();
    // The call ends where pcap's recordings end, at the last audio: a
    // 16-bit stereo WAV's frame count after its 44-byte header, 125 µs a
    // frame at 8 kHz.
    let mut end = None;
    for format in [Format::Wav, Format::Mp3, Format::Opus] {
        let out = dir.join(format.extension());
        let pcap = record(&options(&input, &out, format)).unwrap();
        assert!(
            pcap.duration_ms >= 2000,
            "{format:?}: {} ms",
            pcap.duration_ms
        );
        let end = *end.get_or_insert_with(|| {
            let frames = (pcap.file_size_bytes - 44) / 4;
            Duration::from_micros(frames * 125)
        });
        let worker = through_the_worker(&input, &pcap, end, &out);
        let made_by_pcap = std::fs::read(out.join(&pcap.file)).unwrap();
        let made_by_worker = std::fs::read(&worker).unwrap();
        assert_eq!(
            (
                made_by_worker.len(),
                crate::crypto::sha256_hex(&made_by_worker)
            ),
            (made_by_pcap.len(), pcap.checksum.value.clone()),
            "{format:?}: the worker's file differs from pcap's"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `WorkerPool::start` returns once every worker has set up its reader, so
/// `/metrics` counts them from the daemon's first request (a test read
/// `recengine_media_workers` 0 on a busy machine while the workers were
/// still setting up).
#[test]
fn a_started_pool_counts_its_workers_at_once() {
    let (reports, _reports_rx) = crossbeam_channel::unbounded();
    let cfg = WorkerConfig {
        tick: Duration::from_millis(20),
        playout_delay: Duration::from_millis(100),
        receive: ReceivePath::Recvmmsg,
    };
    let pool = WorkerPool::start(3, cfg, MonotonicClock::start(), reports);
    let (paths, _) = crate::io::receive::metrics();
    let on_recvmmsg = paths
        .iter()
        .find(|(p, _)| *p == ReceivePath::Recvmmsg)
        .map(|(_, n)| *n);
    // Other tests' readers come and go; this pool's three stay until shutdown.
    assert!(on_recvmmsg.is_some_and(|n| n >= 3), "{paths:?}");
    pool.shutdown();
}
