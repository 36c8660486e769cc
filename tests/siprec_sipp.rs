//! Interop with SIPp as the session recording client: the scenario in
//! tests/sipp/siprec-src.xml (INVITE with a multipart SIPREC body → ACK →
//! RTP replayed from a pcap → re-INVITE to inactive and back → BYE) against
//! the running daemon, which must answer every step and record the caller's
//! audio, as sent, on the left channel. Skipped when `sipp` (Debian:
//! sip-tester) is not installed; `.ci/run` installs it.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use recengine::core::decode::{linear_to_ulaw, ulaw_to_linear};
use support::*;

fn sipp() -> bool {
    match Command::new("sipp").arg("-v").output() {
        Ok(_) => true,
        Err(_) => {
            eprintln!(
                "SKIP: sipp is not installed (Debian package sip-tester); the SIPp interop test needs it"
            );
            false
        }
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn sipp_as_a_siprec_client_is_answered_and_recorded() {
    if !sipp() {
        return;
    }
    let d = Daemon::start(
        "siprec-sipp",
        r#"
[siprec]
enabled = true
udp = "127.0.0.1:0"
tcp = ""
sources = [{ network = "127.0.0.1", format = "wav", channels = "dual" }]
"#,
    );
    let sip: SocketAddr = std::fs::read_to_string(d.storage().join("siprec.udp.addr"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // What SIPp replays: 3 s of speech as PCMU, 20 ms packets.
    let speech = recengine::testkit::speech(8000, 8000 * 3);
    let mut w = recengine::capture::writer::PcapWriter::new(
        std::fs::File::create(d.dir.join("caller.pcap")).unwrap(),
    )
    .unwrap();
    let (from, to): (SocketAddr, SocketAddr) = (
        "127.0.0.1:7000".parse().unwrap(),
        "127.0.0.1:7002".parse().unwrap(),
    );
    for (i, f) in recengine::testkit::pcmu_frames(&speech).iter().enumerate() {
        let p = recengine::testkit::rtp_packet(0, i == 0, 500 + i as u16, 160 * i as u32, 4242, f);
        w.write_udp(Duration::from_millis(20 * i as u64), from, to, &p)
            .unwrap();
    }
    drop(w);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/siprec-src.xml"),
        d.dir.join("siprec-src.xml"),
    )
    .unwrap();
    let mut ev = d.events(None);
    std::thread::sleep(Duration::from_millis(100));
    let media = free_udp_port();
    let out = Command::new("sipp")
        .current_dir(&d.dir)
        .args([
            "-sf",
            "siprec-src.xml",
            "-m",
            "1",
            "-l",
            "1",
            "-t",
            "u1",
            "-i",
            "127.0.0.1",
        ])
        .args([
            "-p",
            &free_udp_port().to_string(),
            "-mp",
            &media.to_string(),
        ])
        .args([
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .arg(sip.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sipp failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let events = ev.until("recording.completed", Duration::from_secs(10));
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for e in [
        "call.created",
        "recording.started",
        "recording.paused",
        "recording.resumed",
    ] {
        assert!(names.contains(&e), "{e} missing: {names:?}");
    }
    let created = events
        .iter()
        .find(|e| e["event"] == "call.created")
        .unwrap();
    assert_eq!(created["data"]["from"], "sip:alice@example.com");
    assert_eq!(created["data"]["to"], "sip:bob@example.com");
    let done = &events.last().unwrap()["data"];
    let (samples, channels, _) = read_wav(Path::new(done["path"].as_str().unwrap()));
    assert_eq!(channels, 2);
    let left = channel(&samples, 2, 0);
    let sent: Vec<i16> = speech
        .iter()
        .map(|&s| ulaw_to_linear(linear_to_ulaw(s)))
        .collect();
    // SIPp re-stamps what it replays, so its packets are not placed on
    // the recording's timeline to the sample as our own sender's are (the
    // in-process SIPREC tests check that); what SIPp sent is there, packet
    // by packet: every 20 ms frame's middle 80 samples appear in order.
    let mut at = 0;
    let mut found = 0;
    let frames = sent.len() / 160;
    for f in 0..frames {
        let needle = &sent[f * 160 + 40..f * 160 + 120];
        if needle.iter().all(|&x| x == needle[0]) {
            found += 1;
            continue;
        }
        if let Some(k) = (at..left.len().saturating_sub(80)).find(|&k| left[k..k + 80] == *needle) {
            found += 1;
            at = k;
        }
    }
    assert!(
        found * 100 >= frames * 95,
        "{found} of {frames} frames of the caller's audio found, in order, on the left"
    );
    let right = channel(&samples, 2, 1);
    assert!(right.iter().all(|&x| x == 0), "the callee sent nothing");
}
