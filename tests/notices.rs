//! Recording notices against the real daemon: the built-in beep laid over
//! the recording's start and sent to the party as RTP from its leg's port,
//! reminder tones, operator prompt files, text through the operator's TTS
//! command (a real espeak-ng when installed), and the 400 a prompt that
//! cannot be had gets before anything is created.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use recengine::core::decode::ulaw_to_linear;
use recengine::core::rtp::RtpPacket;
use recengine::io::clock::MonotonicClock;
use recengine::io::receive::{LegReader, ReceivePath};
use recengine::io::udp::{DrainTime, ExpectedSource, IngestStats, LegSocket, RelatchPolicy};
use recengine::testkit::{tone, tone_power};
use serde_json::{Value, json};
use support::*;

fn write_wav(path: &Path, rate: u32, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// A daemon whose prompts directory holds `welcome.wav` (a 600 Hz tone,
/// 0.5 s at 16 kHz) and whose "TTS" answers `spoken.wav` (a 300 Hz tone).
fn daemon(name: &str, tts: Option<&str>) -> (Daemon, PathBuf) {
    let prompts = std::env::temp_dir().join(format!("recengine-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&prompts).unwrap();
    write_wav(
        &prompts.join("welcome.wav"),
        16_000,
        &tone(16_000, 600.0, 8000.0, 8000),
    );
    let spoken = prompts.join("spoken.wav");
    write_wav(&spoken, 8000, &tone(8000, 300.0, 8000.0, 4000));
    let tts = tts.map_or_else(|| format!("cat {}", spoken.display()), str::to_owned);
    let d = Daemon::start(
        name,
        &format!(
            "[notices]\nprompts_dir = \"{}\"\ntts_command = \"{tts}\"\n",
            prompts.display()
        ),
    );
    (d, prompts)
}

/// Creates a call with one caller leg and `recording`, streams `ms` of a
/// 440 Hz tone from a socket, collects what the daemon sends back to that
/// socket, ends the call; answers (recording.completed data, the
/// datagrams received, every event).
fn record(d: &Daemon, recording: Value, ms: usize) -> (Value, Vec<Vec<u8>>, Vec<Value>) {
    let (done, got, events) = record_timed(d, recording, ms);
    (done, got.into_iter().map(|(p, _)| p).collect(), events)
}

/// What the daemon sent back: each datagram with its kernel receive stamp.
type Received = Vec<(Vec<u8>, Duration)>;

/// As [`record`], each datagram with the kernel's receive stamp (read with
/// the daemon's own socket reader, so the test thread's scheduling does not
/// bunch them up).
fn record_timed(d: &Daemon, recording: Value, ms: usize) -> (Value, Received, Vec<Value>) {
    let mut ev = d.events(None);
    std::thread::sleep(Duration::from_millis(100));
    let body = json!({"legs": [{"role": "caller"}], "recording": recording});
    let (s, call) = d.admin("POST", "/v1/calls", Some(&body.to_string()));
    assert_eq!(s, 201, "{call}");
    // Stamps map onto this clock, so it starts before anything arrives.
    let clock = MonotonicClock::start();
    let sock = udp();
    // Receive stamps on before anything arrives. Only the leg's port may
    // send (anything else is counted foreign).
    let leg = ExpectedSource::parse(&format!("127.0.0.1:{}", leg_port(&call, "caller"))).unwrap();
    let stats = Arc::new(IngestStats::default());
    let mut back = LegSocket::new(
        sock.try_clone().unwrap(),
        stats.clone(),
        RelatchPolicy::Never,
        Some(leg),
        1 << 20,
    )
    .unwrap();
    let mut reader = LegReader::new(ReceivePath::Recvmmsg, Duration::from_millis(20));
    let signal = tone(8000, 440.0, 6000.0, ms * 8);
    stream(
        &[Leg {
            port: leg_port(&call, "caller"),
            ssrc: 9,
            signal: &signal,
            socket: &sock,
            delay_packets: 0,
        }],
        |_| {},
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut got = Vec::new();
    while back.receive_batch(&mut reader, 64, DrainTime::now(&clock), |p, at| {
        got.push((p.to_vec(), at));
    }) {}
    assert_eq!(stats.snapshot().foreign_source, 0, "from the leg's port");
    let id = call["call_id"].as_str().unwrap();
    let (s, _) = d.admin("POST", &format!("/v1/calls/{id}/end"), None);
    assert_eq!(s, 200);
    let events = ev.until("recording.completed", Duration::from_secs(10));
    let done = events.last().unwrap()["data"].clone();
    (done, got, events)
}

#[test]
fn the_beep_opens_the_recording_and_reaches_the_party() {
    let (d, prompts) = daemon("notice-beep", None);
    let (done, timed, events) = record_timed(
        &d,
        json!({"announce": true, "announce_to": ["recording", "parties"],
               "reminder_interval_s": 5}),
        1500,
    );
    // Paced 20 ms apart, not in bursts of a worker tick (60 ms: three at
    // once would make 13 of the 19 gaps zero and the median gap zero; a
    // saturated host delays a few, not most).
    let mut gaps: Vec<Duration> = timed
        .windows(2)
        .map(|w| w[1].1.saturating_sub(w[0].1))
        .collect();
    gaps.sort_unstable();
    let median = gaps.get(gaps.len() / 2).copied().unwrap_or_default();
    assert!(
        median >= Duration::from_millis(15),
        "notice packets not paced: gaps {gaps:?}"
    );
    let got: Vec<Vec<u8>> = timed.into_iter().map(|(p, _)| p).collect();
    // The recording: 0.4 s of 1 kHz over the caller's 440 Hz, then the
    // caller alone.
    let (samples, _, rate) = read_wav(Path::new(done["path"].as_str().unwrap()));
    assert_eq!(rate, 8000);
    let first = &samples[400..2800];
    let later = &samples[4800..7200];
    assert!(
        tone_power(first, 8000, 1000.0) > 10.0 * tone_power(later, 8000, 1000.0).max(1.0),
        "the beep is at the start"
    );
    assert!(tone_power(later, 8000, 440.0) > 1000.0 * tone_power(later, 8000, 1000.0).max(1.0));
    // The party: the beep as 20 PCMU packets (the codec it sends).
    let packets: Vec<RtpPacket<'_>> = got.iter().map(|p| RtpPacket::parse(p).unwrap()).collect();
    assert_eq!(packets.len(), 20, "0.4 s in 20 ms packets");
    assert!(
        packets
            .iter()
            .all(|p| p.payload_type == 0 && p.payload.len() == 160)
    );
    assert!(packets[0].marker);
    let heard: Vec<i16> = packets
        .iter()
        .flat_map(|p| p.payload.iter().map(|&c| ulaw_to_linear(c)))
        .collect();
    assert!(tone_power(&heard, 8000, 1000.0) > 100.0 * tone_power(&heard, 8000, 440.0).max(1.0));
    // Announced, and in the sidecar.
    let announced = events
        .iter()
        .find(|e| e["event"] == "recording.announced")
        .expect("recording.announced");
    assert_eq!(
        (
            &announced["data"]["prompt"],
            &announced["data"]["source"],
            &announced["data"]["to"],
            &announced["data"]["duration_ms"],
            &announced["data"]["reminder_interval_s"]
        ),
        (
            &json!("beep"),
            &json!("builtin"),
            &json!(["recording", "parties"]),
            &json!(400),
            &json!(5)
        ),
        "{announced}"
    );
    let sidecar: Value = serde_json::from_slice(
        &std::fs::read(PathBuf::from(done["path"].as_str().unwrap()).with_extension("json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(sidecar["announcement"]["prompt"], "beep", "{sidecar}");
    let (_, detail) = d.admin(
        "GET",
        &format!("/v1/recordings/{}", done["recording_id"].as_str().unwrap()),
        None,
    );
    assert_eq!(
        detail["announcement"]["to"],
        json!(["recording", "parties"]),
        "{detail}"
    );
    let (_, call) = d.admin(
        "GET",
        &format!("/v1/calls/{}", done["call_id"].as_str().unwrap()),
        None,
    );
    assert_eq!(
        call["legs"][0]["ingest"]["notice_packets_sent"], 20,
        "{call}"
    );
    std::fs::remove_dir_all(prompts).unwrap();
}

#[test]
fn prompt_files_and_text_are_announced_and_missing_ones_refused() {
    let (d, prompts) = daemon("notice-prompts", None);
    let (done, got, events) = record(&d, json!({"announcement": "welcome"}), 700);
    assert!(got.is_empty(), "into the recording only, by default");
    let (samples, _, _) = read_wav(Path::new(done["path"].as_str().unwrap()));
    assert!(
        tone_power(&samples[400..3600], 8000, 600.0) > 1e6,
        "the file's 600 Hz"
    );
    let a = events
        .iter()
        .find(|e| e["event"] == "recording.announced")
        .unwrap();
    assert_eq!(
        (&a["data"]["source"], &a["data"]["duration_ms"]),
        (&json!("file"), &json!(500))
    );
    let (done, _, events) = record(&d, json!({"announcement": "This call is recorded"}), 700);
    let (samples, _, _) = read_wav(Path::new(done["path"].as_str().unwrap()));
    assert!(
        tone_power(&samples[400..3600], 8000, 300.0) > 1e6,
        "what the TTS said"
    );
    let a = events
        .iter()
        .find(|e| e["event"] == "recording.announced")
        .unwrap();
    assert_eq!(a["data"]["source"], "text");
    // No such prompt, and no TTS to say it: 400 naming the field, and no
    // call left behind.
    let (plain, _) = daemon("notice-plain", Some(""));
    for body in [
        json!({"call_id": "n1", "legs": [{"role": "caller"}], "recording": {"announcement": "goodbye"}}),
        json!({"call_id": "n1", "legs": [{"role": "caller"}], "recording": {"reminder_interval_s": 2}}),
        json!({"call_id": "n1", "legs": [{"role": "caller"}], "recording": {"announce_to": ["parties"]}}),
    ] {
        let (s, e) = plain.admin("POST", "/v1/calls", Some(&body.to_string()));
        assert_eq!(s, 400, "{body}: {e}");
        let m = e["error"]["message"].as_str().unwrap();
        assert!(
            m.starts_with("announcement")
                || m.starts_with("reminder_interval_s")
                || m.starts_with("announce_to"),
            "{m}"
        );
        let (s, _) = plain.admin("GET", "/v1/calls/n1", None);
        assert_eq!(s, 404, "nothing was created");
    }
    let (failing, _) = daemon("notice-failing-tts", Some("false"));
    let body = json!({"legs": [{"role": "caller"}], "recording": {"announcement": "Hello there"}});
    let (s, e) = failing.admin("POST", "/v1/calls", Some(&body.to_string()));
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("text-to-speech"),
        "{e}"
    );
    std::fs::remove_dir_all(prompts).unwrap();
}

#[test]
fn espeak_ng_speaks_a_text_announcement() {
    let Ok(out) = std::process::Command::new("espeak-ng")
        .arg("--version")
        .output()
    else {
        eprintln!("skipped: espeak-ng is not installed (apt install espeak-ng)");
        return;
    };
    assert!(out.status.success());
    let (d, prompts) = daemon("notice-espeak", Some("espeak-ng --stdout --stdin"));
    let (done, _, events) = record(&d, json!({"announcement": "This call is recorded."}), 2500);
    let a = events
        .iter()
        .find(|e| e["event"] == "recording.announced")
        .unwrap();
    let ms = a["data"]["duration_ms"].as_u64().unwrap();
    assert!((500..4000).contains(&ms), "speech of a few words: {ms} ms");
    let (samples, _, _) = read_wav(Path::new(done["path"].as_str().unwrap()));
    // Speech over the start: the recording is the caller's steady tone
    // plus the words, so the start carries far more energy than the same
    // length after it.
    let energy = |s: &[i16]| s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
    let n = (ms as usize * 8).min(samples.len() / 2);
    let (start, after) = (energy(&samples[..n]), energy(&samples[n..2 * n]));
    assert!(start > 1.3 * after, "{start} vs {after}");
    std::fs::remove_dir_all(prompts).unwrap();
}
