//! Deterministic test material: a speech-like signal, RTP packetizing, and
//! the generated captures in `fixtures/` (see `fixtures/README.md`).
//!
//! Used by the tests, the benchmarks and `cargo run --example make_fixtures`,
//! which rewrites the fixture files; a test checks that the committed files
//! are exactly what this code produces, so the documentation here is the
//! specification of each fixture.

pub mod netem;

pub use crate::core::testkit::{
    Rng, correlation, correlation_of, event_payload, pcmu_frames, rtp_packet, speech, tone,
    tone_power,
};

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::capture::writer::PcapWriter;
use crate::core::opus::{Application, OpusEncoder};

const SENDER: &str = "192.0.2.10:40000";
const RECEIVER: &str = "192.0.2.20:30000";

fn endpoints() -> (SocketAddr, SocketAddr) {
    (
        SENDER
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([192, 0, 2, 10], 40_000))),
        RECEIVER
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([192, 0, 2, 20], 30_000))),
    )
}

/// Capture time base of every fixture: 2026-01-01T00:00:00Z.
const EPOCH: Duration = Duration::from_secs(1_767_225_600);

/// A packet of a fixture: arrival (ms after the fixture start, may be
/// fractional via `extra_us`) and datagram.
struct Sent {
    at_us: u64,
    datagram: Vec<u8>,
}

fn write(path: &Path, sdp: Option<&str>, packets: Vec<Sent>) -> io::Result<()> {
    let (src, dst) = endpoints();
    write_flows(
        path,
        sdp,
        packets.into_iter().map(|p| (src, dst, p)).collect(),
    )
}

fn write_flows(
    path: &Path,
    sdp: Option<&str>,
    mut packets: Vec<(SocketAddr, SocketAddr, Sent)>,
) -> io::Result<()> {
    packets.sort_by_key(|p| p.2.at_us);
    let (src, dst) = endpoints();
    let file = std::fs::File::create(path)?;
    let mut w = PcapWriter::new(io::BufWriter::new(file))?;
    if let Some(body) = sdp {
        // A SIP 200 OK from the receiver carrying the SDP answer.
        let msg = format!(
            "SIP/2.0 200 OK\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let sip_src = SocketAddr::new(dst.ip(), 5060);
        let sip_dst = SocketAddr::new(src.ip(), 5060);
        w.write_udp(EPOCH, sip_src, sip_dst, msg.as_bytes())?;
    }
    for (from, to, p) in packets {
        w.write_udp(
            EPOCH + Duration::from_micros(p.at_us + 1000),
            from,
            to,
            &p.datagram,
        )?;
    }
    io::Write::flush(&mut w.into_inner())
}

/// A deterministic ±`amp` ms jitter pattern.
fn jitter_us(i: usize, amp_ms: u64) -> u64 {
    let x = (i as u64).wrapping_mul(2_654_435_761) % 1000;
    x * amp_ms * 1000 / 1000
}

/// `impaired-pcmu.pcap`: 10 s of [`speech`] as PCMU, 20 ms packets, SSRC
/// 0x1a2b3c4d. Sequence numbers start at 65 400 (wrap after packet 135),
/// timestamps at 2^32 − 20 000 (wrap after packet 125). Packets 50, 51, 200
/// and 333 are lost; 100/101 and 250/252 arrive swapped; 150 is duplicated
/// at once and 300 again 500 ms later; every packet has 0–15 ms of jitter.
pub const IMPAIRED_LOST: [usize; 4] = [50, 51, 200, 333];
pub const IMPAIRED_SSRC: u32 = 0x1a2b_3c4d;
pub fn impaired_pcmu(path: &Path) -> io::Result<()> {
    let frames = pcmu_frames(&speech(8000, 80_000));
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if IMPAIRED_LOST.contains(&i) {
            continue;
        }
        let seq = 65_400u16.wrapping_add(i as u16);
        let ts = (u32::MAX - 19_999).wrapping_add(i as u32 * 160);
        let mut at = i as u64 * 20_000 + jitter_us(i, 15);
        match i {
            100 | 250 => at += 45_000,
            _ => {}
        }
        let d = rtp_packet(0, i == 0, seq, ts, IMPAIRED_SSRC, f);
        if i == 150 {
            out.push(Sent {
                at_us: at + 100,
                datagram: d.clone(),
            });
        }
        if i == 300 {
            out.push(Sent {
                at_us: at + 500_000,
                datagram: d.clone(),
            });
        }
        out.push(Sent {
            at_us: at,
            datagram: d,
        });
    }
    write(path, None, out)
}

/// `ssrc-change.pcap`: 6 s of [`speech`] as PCMU on one 5-tuple. The first
/// 3 s are SSRC 0x11111111 (seq from 1000, ts from 0), the last 3 s SSRC
/// 0x22222222 (seq from 7, ts from 3 000 000) with no pause between, as when
/// a B2BUA re-INVITEs mid-call.
pub fn ssrc_change(path: &Path) -> io::Result<()> {
    let frames = pcmu_frames(&speech(8000, 48_000));
    let out = frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (ssrc, seq, ts) = if i < 150 {
                (0x1111_1111, 1000 + i as u16, i as u32 * 160)
            } else {
                (
                    0x2222_2222,
                    7 + (i - 150) as u16,
                    3_000_000 + (i - 150) as u32 * 160,
                )
            };
            Sent {
                at_us: i as u64 * 20_000 + jitter_us(i, 5),
                datagram: rtp_packet(0, i == 0 || i == 150, seq, ts, ssrc, f),
            }
        })
        .collect();
    write(path, None, out)
}

/// `dtmf-cn.pcap`: 6 s PCMU call, SSRC 0x0d7f0d7f, telephone-event on PT
/// 101 (SDP in a SIP 200 OK). Digit `1` replaces the audio from 2.0 s to
/// 2.5 s, `#` from 3.0 s to 3.3 s, each with updates every 20 ms and three
/// end packets. From 4.0 s to 5.0 s the sender is silent and sends RFC 3389
/// comfort noise (PT 13) every 200 ms instead of audio.
pub fn dtmf_cn(path: &Path) -> io::Result<()> {
    let frames = pcmu_frames(&speech(8000, 48_000));
    let ssrc = 0x0d7f_0d7f;
    let mut out = Vec::new();
    let mut seq: u16 = 5000;
    let digit_at = |i: usize| match i {
        100..125 => Some((1u8, 100usize, 25usize)),
        150..165 => Some((11u8, 150, 15)),
        _ => None,
    };
    for (i, f) in frames.iter().enumerate() {
        let at = i as u64 * 20_000;
        let ts = 80_000 + i as u32 * 160;
        if let Some((event, start, len)) = digit_at(i) {
            let start_ts = 80_000 + start as u32 * 160;
            let dur = ((i - start + 1) * 160) as u16;
            let last = i == start + len - 1;
            let copies = if last { 3 } else { 1 };
            for c in 0..copies {
                out.push(Sent {
                    at_us: at + c * 5_000,
                    datagram: rtp_packet(
                        101,
                        i == start,
                        seq,
                        start_ts,
                        ssrc,
                        &event_payload(event, last, 10, dur),
                    ),
                });
                seq = seq.wrapping_add(1);
            }
            continue;
        }
        if (200..250).contains(&i) {
            if (i - 200) % 10 == 0 {
                out.push(Sent {
                    at_us: at,
                    datagram: rtp_packet(13, false, seq, ts, ssrc, &[60]),
                });
                seq = seq.wrapping_add(1);
            }
            continue;
        }
        let marker = i == 0 || i == 125 || i == 165 || i == 250;
        out.push(Sent {
            at_us: at,
            datagram: rtp_packet(0, marker, seq, ts, ssrc, f),
        });
        seq = seq.wrapping_add(1);
    }
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 101 13\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=rtpmap:13 CN/8000\r\n";
    write(path, Some(sdp), out)
}

/// `opus-fec.pcap`: 5 s of [`speech`] at 16 kHz as Opus (PT 111, SDP
/// `opus/48000/2`), 20 ms frames at 24 kbit/s with in-band FEC tuned for
/// 20 % loss. Packets in [`OPUS_FEC_LOST`] are lost, each followed by a packet
/// whose FEC data recovers it.
pub const OPUS_FEC_LOST: [usize; 4] = [40, 90, 140, 190];
pub fn opus_fec(path: &Path) -> io::Result<()> {
    let signal = speech(16_000, 80_000);
    let mut enc =
        OpusEncoder::new(16_000, 1, Application::Voip, 24_000, 5).map_err(io::Error::other)?;
    enc.set_fec(true, 20).map_err(io::Error::other)?;
    let mut buf = [0u8; 1500];
    let mut out = Vec::new();
    for (i, frame) in signal.chunks(320).enumerate() {
        let n = enc.encode(frame, &mut buf).map_err(io::Error::other)?;
        if OPUS_FEC_LOST.contains(&i) {
            continue;
        }
        out.push(Sent {
            at_us: i as u64 * 20_000,
            datagram: rtp_packet(
                111,
                i == 0,
                300 + i as u16,
                960 * i as u32,
                0x0b05_fec0,
                &buf[..n],
            ),
        });
    }
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 30000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n";
    write(path, Some(sdp), out)
}

/// SSRCs of [`two_party_pcmu`].
pub const CALLER_SSRC: u32 = 0x00ca_11e4;
pub const CALLEE_SSRC: u32 = 0x00ca_11ee;

/// A two-party PCMU call for tests: the caller (192.0.2.10:40000, SSRC
/// [`CALLER_SSRC`]) sends `caller`, the callee (192.0.2.20:30002, SSRC
/// [`CALLEE_SSRC`]) sends `callee`, both 8 kHz in 20 ms packets. The
/// callee's first packet goes out `callee_first_ms` before the caller's, so
/// tests can check that channels follow roles, not arrival order.
pub fn two_party_pcmu(
    path: &Path,
    caller: &[i16],
    callee: &[i16],
    callee_first_ms: u64,
) -> io::Result<()> {
    let (a, b) = endpoints();
    let b2 = SocketAddr::new(b.ip(), b.port() + 2);
    let a2 = SocketAddr::new(a.ip(), a.port() + 2);
    let mut out = Vec::new();
    for (signal, from, to, ssrc, lead) in [
        (caller, a, b, CALLER_SSRC, callee_first_ms),
        (callee, b2, a2, CALLEE_SSRC, 0),
    ] {
        for (i, f) in pcmu_frames(signal).iter().enumerate() {
            let at = (lead + i as u64 * 20) * 1000 + jitter_us(i + ssrc as usize, 3);
            let d = rtp_packet(0, i == 0, 7000 + i as u16, 1234 + i as u32 * 160, ssrc, f);
            out.push((
                from,
                to,
                Sent {
                    at_us: at,
                    datagram: d,
                },
            ));
        }
    }
    write_flows(path, None, out)
}

/// Every fixture: (file name, generator).
pub type Generator = fn(&Path) -> io::Result<()>;
pub const FIXTURES: [(&str, Generator); 4] = [
    ("impaired-pcmu.pcap", impaired_pcmu),
    ("ssrc-change.pcap", ssrc_change),
    ("dtmf-cn.pcap", dtmf_cn),
    ("opus-fec.pcap", opus_fec),
];

/// Writes every fixture into `dir`.
pub fn generate_fixtures(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, generate) in FIXTURES {
        generate(&dir.join(name))?;
    }
    Ok(())
}

/// The operation-sequence driver behind the `rtp_leg` fuzz target (and its
/// regression tests): each record is `[op, dt, len_hi, len_lo, bytes…]`;
/// op bit 0 pushes the datagram (the next `len` bytes) after advancing the
/// clock by `dt` ms, bit 1 pulls playout, bit 2 forces version 2 in the
/// first byte. Panics if the leg's output is not contiguous.
pub fn drive_leg_ops(data: &[u8]) {
    use crate::core::leg::{LegConfig, LegReceiver, PcmSink};
    use crate::core::rtp::{Codec, PayloadMap};

    struct Check {
        next: Option<i64>,
    }
    impl PcmSink for Check {
        fn samples(&mut self, start: i64, pcm: &[i16]) {
            self.advance(start, pcm.len() as i64);
        }
        fn silence(&mut self, start: i64, len: i64) {
            self.advance(start, len);
        }
    }
    impl Check {
        fn advance(&mut self, start: i64, len: i64) {
            assert!(len >= 0, "negative length");
            if let Some(n) = self.next {
                assert_eq!(start, n, "sink output not contiguous");
            }
            self.next = Some(start + len);
        }
    }

    let mut map = PayloadMap::default();
    let _ = map.set(96, Codec::Opus);
    let _ = map.set(
        97,
        Codec::L16 {
            rate: 16_000,
            channels: 2,
        },
    );
    let _ = map.set(101, Codec::TelephoneEvent { rate: 8000 });
    let mut leg = LegReceiver::new(LegConfig {
        payload_map: map,
        rate: 8000,
        playout_delay: Duration::from_millis(60),
        jitter_capacity: 16,
        drift_bound: Duration::from_millis(20),
    });
    let mut sink = Check { next: None };
    let mut now = Duration::ZERO;
    let mut rest = data;
    let mut buf = Vec::new();
    while rest.len() >= 4 {
        let (op, dt) = (rest[0], rest[1]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        buf.clear();
        buf.extend_from_slice(&rest[4..4 + len]);
        rest = &rest[4 + len..];
        now += Duration::from_millis(u64::from(dt));
        if op & 4 != 0 && !buf.is_empty() {
            buf[0] = (buf[0] & 0x3f) | 0x80;
        }
        if op & 1 != 0 {
            let _ = leg.push(&buf, now);
        }
        if op & 2 != 0 {
            leg.pull(now, &mut sink);
        }
    }
    leg.finish(&mut sink);
}
