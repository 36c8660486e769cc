//! A media worker that panics fails only its own calls' recordings (reason
//! `internal`), reports those calls lost, and is replaced: the next call on
//! the same worker records normally.

use std::sync::Arc;
use std::time::Duration;

use recengine::config::{Channels, Format, PauseBehavior};
use recengine::core::call::Failure;
use recengine::core::encode::EncoderSpec;
use recengine::core::leg::LegConfig;
use recengine::core::mixer::MixInput;
use recengine::core::rtp::PayloadMap;
use recengine::io::clock::MonotonicClock;
use recengine::io::udp::{IngestStats, LegSocket, RelatchPolicy};
use recengine::io::worker::{
    CallShared, LegSetup, RecordingSetup, RecordingShared, WorkerCmd, WorkerConfig, WorkerPool,
    WorkerReport,
};
use recengine::io::writer::{SinkReport, WriterPool};
use recengine::recording::{Checksum, LegInfo, RecordingInfo, RecordingStatus, Role};

fn start_call(
    pool: &WorkerPool,
    writers: &WriterPool,
    clock: MonotonicClock,
    call: u64,
    id: &str,
    dir: &std::path::Path,
) -> std::net::SocketAddr {
    pool.send(
        call,
        WorkerCmd::AddCall {
            call,
            origin: clock.now(),
            rate: 8000,
            shared: Arc::new(CallShared::default()),
        },
    );
    // A real socket: silent unless the test sends to its address.
    let bound = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = bound.local_addr().unwrap();
    let socket = LegSocket::new(
        bound,
        Arc::new(IngestStats::default()),
        RelatchPolicy::Never,
        None,
        65_536,
    )
    .unwrap();
    let leg = LegInfo {
        leg_id: "caller".into(),
        role: Role::Caller,
        label: None,
        channel: Some(0),
        codecs: vec![],
        source: None,
        stats: Default::default(),
        dtmf: vec![],
    };
    pool.send(
        call,
        WorkerCmd::AddLeg {
            call,
            leg: Box::new(LegSetup {
                index: 0,
                socket,
                config: LegConfig {
                    payload_map: PayloadMap::default(),
                    rate: 8000,
                    playout_delay: Duration::from_millis(60),
                    jitter_capacity: 16,
                    drift_bound: Duration::from_millis(20),
                },
                info: leg.clone(),
            }),
        },
    );
    let spec = EncoderSpec {
        format: Format::Wav,
        sample_rate: 8000,
        channels: 1,
        bitrate_kbps: 0,
        mp3_quality: 5,
        opus_complexity: 5,
    };
    let path = dir.join(format!("{id}.wav"));
    let info = RecordingInfo {
        encryption: None,
        siprec: None,
        recording_id: id.into(),
        call_id: format!("call-{call}"),
        customer_id: None,
        reference_type: "call".into(),
        status: RecordingStatus::Completed,
        format: Format::Wav,
        content_type: "audio/wav".into(),
        sample_rate: 8000,
        channels: Channels::Mono,
        channel_count: 1,
        bitrate_kbps: 128,
        participant: "all".into(),
        pause_behavior: PauseBehavior::Silence,
        started_at: String::new(),
        stopped_at: String::new(),
        duration_ms: 0,
        file: path.to_string_lossy().into_owned(),
        file_size_bytes: 0,
        checksum: Checksum::sha256(String::new()),
        pauses: vec![],
        legs: vec![leg],
        recovered: false,
        owner: Default::default(),
        call_flow_id: None,
        announcement: None,
    };
    pool.send(
        call,
        WorkerCmd::StartRecording {
            call,
            setup: Box::new(RecordingSetup {
                id: id.into(),
                spec,
                inputs: vec![MixInput {
                    track: 0,
                    channel: 0,
                }],
                pause_behavior: PauseBehavior::Silence,
                suppress_dtmf: false,
                start: Duration::ZERO,
                sidecar: path.with_extension("json"),
                path,
                flush_interval: Duration::from_millis(100),
                min_duration: Duration::ZERO,
                notices: Vec::new(),
                data_key: None,
                sink: writers.sink(id),
                info: Box::new(info),
                shared: Arc::new(RecordingShared::default()),
            }),
        },
    );
    addr
}

#[test]
fn a_panicking_worker_fails_only_its_calls_and_is_replaced() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("worker-panic");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let clock = MonotonicClock::start();
    let (wtx, wrx) = crossbeam_channel::unbounded();
    let (stx, srx) = crossbeam_channel::unbounded();
    let pool = WorkerPool::start(
        1,
        WorkerConfig {
            tick: Duration::from_millis(20),
            playout_delay: Duration::from_millis(60),
            receive: recengine::io::receive::ReceivePath::IoUring,
        },
        clock,
        wtx,
    );
    let writers = WriterPool::start(1, 1 << 20, stx);

    start_call(&pool, &writers, clock, 1, "doomed", &dir);
    std::thread::sleep(Duration::from_millis(100));
    pool.send(1, WorkerCmd::Panic);
    let mut failed = None;
    let mut lost = None;
    while failed.is_none() || lost.is_none() {
        match wrx
            .recv_timeout(Duration::from_secs(5))
            .expect("reports after the panic")
        {
            WorkerReport::Failed { id, reason, .. } => failed = Some((id, reason)),
            WorkerReport::CallLost { call } => lost = Some(call),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(failed, Some(("doomed".into(), Failure::Internal)));
    assert_eq!(lost, Some(1));

    // The same worker (the pool has one) takes the next call as usual.
    let leg = start_call(&pool, &writers, clock, 2, "survivor", &dir);
    // Some audio, so the recording has something to keep (one with no
    // packet at all fails as no_media).
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for k in 0..15u16 {
        let p = recengine::testkit::rtp_packet(0, k == 0, k, u32::from(k) * 160, 9, &[0xff; 160]);
        sender.send_to(&p, leg).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    pool.send(
        2,
        WorkerCmd::EndCall {
            call: 2,
            at: clock.now(),
        },
    );
    match wrx.recv_timeout(Duration::from_secs(5)).unwrap() {
        WorkerReport::Processing { id } => assert_eq!(id, "survivor"),
        other => panic!("unexpected {other:?}"),
    }
    match srx.recv_timeout(Duration::from_secs(5)).unwrap() {
        SinkReport::Finalized { id, file, .. } => {
            assert_eq!(id, "survivor");
            assert!(file.path.exists());
        }
        other => panic!("unexpected {other:?}"),
    }
    pool.shutdown();
    writers.shutdown();
}
