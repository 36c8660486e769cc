//! The daemon as a SIPREC server: real offers from ../shared/siprec sent as
//! INVITEs over UDP and TCP by a test client, answered with our ports,
//! streamed to, paused and resumed by re-INVITE, ended by BYE, and recorded
//! with each party on its own channel, sample for sample; and the refusals
//! a client understands (403, 415, 488, 481) and OPTIONS keep-alives.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use recengine::core::decode::{linear_to_ulaw, ulaw_to_linear};
use recengine::siprec::offer::parse_sdp;
use serde_json::Value;
use support::*;

const SECOND: Duration = Duration::from_secs(1);

fn config() -> String {
    r#"
[siprec]
enabled = true
udp = "127.0.0.1:0"
tcp = "127.0.0.1:0"
sources = [{ network = "127.0.0.1", customer_id = "acme", format = "wav", channels = "dual" }]
"#
    .into()
}

fn sip_addr(d: &Daemon, transport: &str) -> SocketAddr {
    let path = d.storage().join(format!("siprec.{transport}.addr"));
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn acme_offer() -> Option<Vec<u8>> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/siprec/acme-siprec-offer.txt");
    match std::fs::read(&p) {
        Ok(b) => Some(b),
        Err(_) => {
            eprintln!("SKIP: {} is absent", p.display());
            None
        }
    }
}

/// A SIP client over UDP or TCP.
enum Link {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream, Vec<u8>),
}

impl Link {
    fn local(&self) -> SocketAddr {
        match self {
            Link::Udp(s, _) => s.local_addr().unwrap(),
            Link::Tcp(s, _) => s.local_addr().unwrap(),
        }
    }

    fn transport(&self) -> &'static str {
        match self {
            Link::Udp(..) => "UDP",
            Link::Tcp(..) => "TCP",
        }
    }

    fn send(&mut self, msg: &[u8]) {
        match self {
            Link::Udp(s, to) => {
                s.send_to(msg, *to).unwrap();
            }
            Link::Tcp(s, _) => s.write_all(msg).unwrap(),
        }
    }

    /// Sends a bodyless in-dialog request (ACK, BYE) for the dialog with
    /// our peer's `tag`.
    fn in_dialog(&mut self, method: &str, call_id: &str, cseq: u32, tag: &str, branch: &str) {
        let msg = request(self, method, call_id, cseq, Some(tag), branch, None, b"");
        self.send(&msg);
    }

    /// The next response.
    fn recv(&mut self) -> rsip::Response {
        match self {
            Link::Udp(s, _) => {
                let mut buf = vec![0u8; 65536];
                s.set_read_timeout(Some(5 * SECOND)).unwrap();
                let (n, _) = s.recv_from(&mut buf).expect("a SIP response");
                rsip::Response::try_from(&buf[..n]).expect("a well-formed response")
            }
            Link::Tcp(s, buf) => {
                s.set_read_timeout(Some(5 * SECOND)).unwrap();
                loop {
                    if let Some(Ok(n)) = recengine::siprec::server::frame(buf) {
                        let msg: Vec<u8> = buf.drain(..n).collect();
                        return rsip::Response::try_from(&msg[..]).expect("a well-formed response");
                    }
                    let mut chunk = [0u8; 8192];
                    let n = s.read(&mut chunk).expect("a SIP response");
                    assert!(n > 0, "connection closed");
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
}

/// A request as a client would send it (the dialog's fields apart).
#[allow(clippy::too_many_arguments)]
fn request(
    link: &Link,
    method: &str,
    call_id: &str,
    cseq: u32,
    to_tag: Option<&str>,
    branch: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Vec<u8> {
    let local = link.local();
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let mut msg = format!(
        "{method} sip:srs@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{} {local};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:src@127.0.0.1>;tag=src-tag\r\n\
         To: <sip:srs@127.0.0.1>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:src@{local}>\r\n",
        link.transport()
    );
    if let Some(ct) = content_type {
        msg.push_str(&format!("Require: siprec\r\nContent-Type: {ct}\r\n"));
    }
    msg.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = msg.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn status(r: &rsip::Response) -> u16 {
    r.status_code.code()
}

fn to_tag(r: &rsip::Response) -> String {
    use rsip::prelude::HeadersExt;
    r.to_header().unwrap().tag().unwrap().unwrap().to_string()
}

fn header(r: &rsip::Response, name: &str) -> Option<String> {
    let text = r.to_string();
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// Ports of the answer's streams.
fn answered_ports(r: &rsip::Response) -> Vec<u16> {
    let sdp = parse_sdp(&String::from_utf8_lossy(&r.body)).unwrap();
    sdp.media_descriptions
        .iter()
        .map(|m| m.media.port)
        .collect()
}

fn with_direction(offer: &[u8], direction: &str) -> Vec<u8> {
    String::from_utf8_lossy(offer)
        .replace("a=sendonly", &format!("a={direction}"))
        .into_bytes()
}

fn through_ulaw(s: &[i16]) -> Vec<i16> {
    s.iter()
        .map(|&x| ulaw_to_linear(linear_to_ulaw(x)))
        .collect()
}

/// Where `expected` starts in `got`, sample for sample.
fn position_of(got: &[i16], expected: &[i16]) -> Option<usize> {
    (0..=got.len().saturating_sub(expected.len()))
        .find(|&k| got[k..k + expected.len()] == *expected)
}

/// A whole recorded session over `link`: INVITE, ACK, media, (over UDP
/// also a re-INVITE to inactive and back), BYE; the recording has the
/// caller left and the callee right.
fn record_session(d: &Daemon, mut link: Link, call_id: &str) {
    let Some(offer) = acme_offer() else { return };
    let ct = "multipart/mixed;boundary=unique-boundary-1";
    let mut ev = d.events(None);
    std::thread::sleep(Duration::from_millis(100));
    let invite = request(&link, "INVITE", call_id, 1, None, "inv1", Some(ct), &offer);
    link.send(&invite);
    let ok = link.recv();
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(header(&ok, "Contact").is_some(), "{ok}");
    let tag = to_tag(&ok);
    let ports = answered_ports(&ok);
    assert_eq!(ports.len(), 2);
    let body = String::from_utf8_lossy(&ok.body).into_owned();
    assert!(
        body.contains("a=label:16777227") && body.contains("a=label:16777228"),
        "{body}"
    );
    assert_eq!(body.matches("a=recvonly").count(), 2, "{body}");
    if matches!(link, Link::Udp(..)) {
        // A retransmitted INVITE gets the same answer, same dialog.
        link.send(&invite);
        let again = link.recv();
        assert_eq!((status(&again), to_tag(&again)), (200, tag.clone()));
    }
    link.in_dialog("ACK", call_id, 1, &tag, "ack1");

    let caller = recengine::testkit::speech(8000, 8000 * 2);
    let callee: Vec<i16> = recengine::testkit::tone(8000, 700.0, 5000.0, 8000 * 2);
    let (a, b) = (udp(), udp());
    let legs = |c: &[i16], e: &[i16]| {
        stream(
            &[
                Leg {
                    port: ports[0],
                    ssrc: 11,
                    signal: c,
                    socket: &a,
                    delay_packets: 0,
                },
                Leg {
                    port: ports[1],
                    ssrc: 22,
                    signal: e,
                    socket: &b,
                    delay_packets: 0,
                },
            ],
            |_| {},
        )
    };
    legs(&caller, &callee);
    let mut cseq = 1;
    let mut seen = Vec::new();
    if matches!(link, Link::Udp(..)) {
        // Hold: the SRC marks the streams inactive; the recording pauses.
        cseq += 1;
        link.send(&request(
            &link,
            "INVITE",
            call_id,
            cseq,
            Some(&tag),
            "re1",
            Some(ct),
            &with_direction(&offer, "inactive"),
        ));
        let held = link.recv();
        assert_eq!(status(&held), 200, "{held}");
        assert_eq!(
            String::from_utf8_lossy(&held.body)
                .matches("a=inactive")
                .count(),
            2
        );
        link.in_dialog("ACK", call_id, cseq, &tag, "ack2");
        seen.extend(ev.until("recording.paused", 5 * SECOND));
        cseq += 1;
        link.send(&request(
            &link,
            "INVITE",
            call_id,
            cseq,
            Some(&tag),
            "re2",
            Some(ct),
            &offer,
        ));
        assert_eq!(status(&link.recv()), 200);
        link.in_dialog("ACK", call_id, cseq, &tag, "ack3");
        seen.extend(ev.until("recording.resumed", 5 * SECOND));
    }
    cseq += 1;
    link.in_dialog("BYE", call_id, cseq, &tag, "bye1");
    let bye = link.recv();
    assert_eq!(status(&bye), 200, "{bye}");
    seen.extend(ev.until("recording.completed", 10 * SECOND));
    let events = seen;
    let created = events
        .iter()
        .find(|e| e["event"] == "call.created")
        .expect("call.created");
    assert_eq!(created["data"]["customer_id"], "acme");
    assert_eq!(created["data"]["siprec"]["sip_call_id"], call_id);
    assert_eq!(created["data"]["from"], "sip:9000@192.168.50.102");
    assert_eq!(created["data"]["to"], "sip:1002@192.168.50.10");
    let done = &events.last().unwrap()["data"];
    let (samples, channels, _) = read_wav(std::path::Path::new(done["path"].as_str().unwrap()));
    assert_eq!(channels, 2);
    let left = channel(&samples, 2, 0);
    let right = channel(&samples, 2, 1);
    assert!(
        position_of(&left, &through_ulaw(&caller)).is_some(),
        "the caller, left, sample for sample"
    );
    assert!(
        position_of(&right, &through_ulaw(&callee)).is_some(),
        "the callee, right, sample for sample"
    );
    // The call and the recording carry the metadata.
    let call = created["data"]["call_id"].as_str().unwrap();
    let (_, view) = d.request("GET", &format!("/v1/calls/{call}"), None, Some(ACME));
    let parts = &view["siprec"]["metadata"]["participants"];
    assert_eq!(parts.as_array().map(Vec::len), Some(2), "{view}");
    assert!(
        view["siprec"]["raw_metadata"]
            .as_str()
            .unwrap()
            .contains("<recording")
    );
    let rec = done["recording_id"].as_str().unwrap();
    let (_, detail) = d.request("GET", &format!("/v1/recordings/{rec}"), None, Some(ACME));
    assert_eq!(
        detail["siprec"]["src"].as_str(),
        Some(link.local().to_string().as_str()),
        "{detail}"
    );
}

#[test]
fn a_siprec_session_over_udp_is_recorded_with_hold_and_resume() {
    let d = Daemon::start("siprec-udp", &config());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    record_session(
        &d,
        Link::Udp(sock, sip_addr(&d, "udp")),
        "udp-call-1@127.0.0.1",
    );
}

#[test]
fn a_siprec_session_over_tcp_is_recorded() {
    let d = Daemon::start("siprec-tcp", &config());
    let s = TcpStream::connect(sip_addr(&d, "tcp")).unwrap();
    record_session(&d, Link::Tcp(s, Vec::new()), "tcp-call-1@127.0.0.1");
}

#[test]
fn refusals_a_recording_client_understands() {
    let d = Daemon::start("siprec-refusals", &config());
    let to = sip_addr(&d, "udp");
    let mut link = Link::Udp(UdpSocket::bind("127.0.0.1:0").unwrap(), to);
    // OPTIONS keep-alive.
    link.send(&request(
        &link, "OPTIONS", "opt@x", 1, None, "o1", None, b"",
    ));
    let ok = link.recv();
    assert_eq!(status(&ok), 200);
    assert!(header(&ok, "Allow").unwrap().contains("INVITE"));
    // A body we cannot use: 415 with what we accept.
    link.send(&request(
        &link,
        "INVITE",
        "t@x",
        1,
        None,
        "i1",
        Some("text/plain"),
        b"hi",
    ));
    let r = link.recv();
    assert_eq!(status(&r), 415, "{r}");
    assert!(header(&r, "Accept").unwrap().contains("application/sdp"));
    link.in_dialog("ACK", "t@x", 1, &to_tag(&r), "i1");
    // No codec we decode: 488.
    let g729 = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\na=sendonly\r\na=label:1\r\n";
    link.send(&request(
        &link,
        "INVITE",
        "g@x",
        1,
        None,
        "i2",
        Some("application/sdp"),
        g729,
    ));
    let r = link.recv();
    assert_eq!(status(&r), 488, "{r}");
    assert!(header(&r, "Warning").unwrap().contains("codec"));
    // In-dialog requests for no dialog: 481.
    link.in_dialog("BYE", "none@x", 2, "nope", "b1");
    assert_eq!(status(&link.recv()), 481);
    // Not a configured source (127.0.0.2 is loopback too): 403.
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    let mut link2 = Link::Udp(stranger, to);
    let Some(offer) = acme_offer() else { return };
    link2.send(&request(
        &link2,
        "INVITE",
        "s@x",
        1,
        None,
        "i3",
        Some("multipart/mixed;boundary=unique-boundary-1"),
        &offer,
    ));
    assert_eq!(status(&link2.recv()), 403);
    // Counted in /metrics.
    let (_, text) = d.request_raw("GET", "/metrics", None, None, &[]);
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("recengine_siprec_sessions_total{outcome=\"refused\"} 2"),
        "{text}"
    );
    assert!(text.contains("recengine_siprec_requests_total "), "{text}");
    // Nothing was created by any of it.
    let (_, calls) = d.admin("GET", "/v1/calls", None);
    assert_eq!(calls["data"].as_array().map(Vec::len), Some(0), "{calls}");
    let _: Value = calls;
}

/// Every real offer in ../shared/siprec, over UDP and over TCP: answered,
/// streamed to, ended, and recorded with the first party left and the
/// second right, sample for sample. The inactive offer is recorded once a
/// re-INVITE makes its streams send.
#[test]
fn every_shared_offer_is_recorded_over_udp_and_tcp() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/siprec");
    if !dir.is_dir() {
        eprintln!("SKIP: {} is absent", dir.display());
        return;
    }
    let d = Daemon::start_with("siprec-all", &config(), 8);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    let caller = recengine::testkit::speech(8000, 8000);
    let callee = recengine::testkit::tone(8000, 700.0, 5000.0, 8000);
    for (n, file) in files.iter().enumerate() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let body = std::fs::read(file).unwrap();
        let text = String::from_utf8_lossy(&body).into_owned();
        let ct = match text.lines().find_map(|l| l.trim().strip_prefix("--")) {
            Some(b) if !text.trim_start().starts_with("v=0") => {
                format!("multipart/mixed;boundary={}", b.trim())
            }
            _ => "application/sdp".to_owned(),
        };
        for transport in ["udp", "tcp"] {
            let to = sip_addr(&d, transport);
            let mut link = match transport {
                "udp" => Link::Udp(UdpSocket::bind("127.0.0.1:0").unwrap(), to),
                _ => Link::Tcp(TcpStream::connect(to).unwrap(), Vec::new()),
            };
            let call_id = format!("{n}-{transport}@127.0.0.1");
            let mut ev = d.events(None);
            std::thread::sleep(Duration::from_millis(100));
            link.send(&request(
                &link,
                "INVITE",
                &call_id,
                1,
                None,
                &format!("a{n}{transport}"),
                Some(&ct),
                &body,
            ));
            let ok = link.recv();
            assert_eq!(status(&ok), 200, "{name} over {transport}: {ok}");
            let tag = to_tag(&ok);
            link.in_dialog("ACK", &call_id, 1, &tag, &format!("b{n}{transport}"));
            let mut cseq = 1;
            if text.contains("a=inactive") {
                cseq += 1;
                let sending = text.replace("a=inactive", "a=sendonly");
                link.send(&request(
                    &link,
                    "INVITE",
                    &call_id,
                    cseq,
                    Some(&tag),
                    &format!("c{n}{transport}"),
                    Some(&ct),
                    sending.as_bytes(),
                ));
                assert_eq!(status(&link.recv()), 200, "{name}");
                link.in_dialog("ACK", &call_id, cseq, &tag, &format!("d{n}{transport}"));
            }
            let ports = answered_ports(&ok);
            let (a, b) = (udp(), udp());
            let mut legs = vec![Leg {
                port: ports[0],
                ssrc: 1,
                signal: &caller,
                socket: &a,
                delay_packets: 0,
            }];
            if ports.len() > 1 && ports[1] != 0 {
                legs.push(Leg {
                    port: ports[1],
                    ssrc: 2,
                    signal: &callee,
                    socket: &b,
                    delay_packets: 0,
                });
            }
            stream_pcmu_or_pcma(&text, &legs);
            cseq += 1;
            link.in_dialog("BYE", &call_id, cseq, &tag, &format!("e{n}{transport}"));
            assert_eq!(status(&link.recv()), 200, "{name}");
            let events = ev.until("recording.completed", 10 * SECOND);
            let done = &events.last().unwrap()["data"];
            let (samples, channels, _) =
                read_wav(std::path::Path::new(done["path"].as_str().unwrap()));
            assert_eq!(channels, 2, "{name}");
            let codec_of_first = first_codec(&text);
            let sent = |s: &[i16]| -> Vec<i16> {
                match codec_of_first {
                    8 => s
                        .iter()
                        .map(|&x| {
                            recengine::core::decode::alaw_to_linear(
                                recengine::core::decode::linear_to_alaw(x),
                            )
                        })
                        .collect(),
                    _ => through_ulaw(s),
                }
            };
            assert!(
                position_of(&channel(&samples, 2, 0), &sent(&caller)).is_some(),
                "{name} over {transport}: the first party, left"
            );
            if legs.len() > 1 {
                assert!(
                    position_of(&channel(&samples, 2, 1), &sent(&callee)).is_some(),
                    "{name} over {transport}: the second party, right"
                );
            }
        }
    }
}

/// The payload type the first stream's first codec has (0 PCMU, 8 PCMA).
fn first_codec(sdp: &str) -> u8 {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|m| m.split_whitespace().nth(2))
        .and_then(|pt| pt.parse().ok())
        .unwrap_or(0)
}

/// Streams each leg in the first codec its offer lists (PCMU or PCMA).
fn stream_pcmu_or_pcma(sdp: &str, legs: &[Leg<'_>]) {
    if first_codec(sdp) != 8 {
        stream(legs, |_| {});
        return;
    }
    let frames: Vec<Vec<Vec<u8>>> = legs
        .iter()
        .map(|l| {
            l.signal
                .chunks(160)
                .map(|c| {
                    c.iter()
                        .map(|&x| recengine::core::decode::linear_to_alaw(x))
                        .collect()
                })
                .collect()
        })
        .collect();
    let start = std::time::Instant::now();
    for i in 0..frames[0].len() {
        for (l, f) in legs.iter().zip(&frames) {
            if let Some(frame) = f.get(i) {
                let p = recengine::testkit::rtp_packet(
                    8,
                    i == 0,
                    100 + i as u16,
                    8000 + i as u32 * 160,
                    l.ssrc,
                    frame,
                );
                l.socket.send_to(&p, ("127.0.0.1", l.port)).unwrap();
            }
        }
        let next = start + Duration::from_millis(20 * (i as u64 + 1));
        if let Some(wait) = next.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// A session that ends on the recorder's side (here the API ends the call;
/// a media timeout or shutdown does the same) is ended toward the client
/// with a BYE, resent over UDP until answered.
#[test]
fn a_call_ended_here_sends_the_client_a_bye() {
    let Some(offer) = acme_offer() else { return };
    let d = Daemon::start("siprec-bye", &config());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut link = Link::Udp(sock.try_clone().unwrap(), sip_addr(&d, "udp"));
    let call_id = "bye-1@127.0.0.1";
    let mut ev = d.events(None);
    std::thread::sleep(Duration::from_millis(100));
    link.send(&request(
        &link,
        "INVITE",
        call_id,
        1,
        None,
        "bi1",
        Some("multipart/mixed;boundary=unique-boundary-1"),
        &offer,
    ));
    let ok = link.recv();
    assert_eq!(status(&ok), 200);
    let tag = to_tag(&ok);
    link.in_dialog("ACK", call_id, 1, &tag, "ba1");
    let created = ev.until("call.created", 5 * SECOND);
    let call = created.last().unwrap()["data"]["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = d.request("POST", &format!("/v1/calls/{call}/end"), None, Some(ACME));
    assert_eq!(s, 200);
    // Our BYE arrives (and again, while unanswered).
    sock.set_read_timeout(Some(5 * SECOND)).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = sock.recv_from(&mut buf).expect("a BYE");
    let bye = rsip::Request::try_from(&buf[..n]).expect("a well-formed request");
    assert_eq!(bye.method, rsip::Method::Bye, "{bye}");
    let text = bye.to_string();
    assert!(text.contains(&format!("Call-ID: {call_id}")), "{text}");
    assert!(
        text.contains(&format!("tag={tag}")) && text.contains("tag=src-tag"),
        "{text}"
    );
    let (n2, _) = sock.recv_from(&mut buf).expect("the BYE again, unanswered");
    assert!(String::from_utf8_lossy(&buf[..n2]).starts_with("BYE "));
    // Answered: no more.
    use rsip::prelude::HeadersExt;
    let via = bye.via_header().unwrap().to_string();
    let cseq = bye.cseq_header().unwrap().to_string();
    let answer = format!(
        "SIP/2.0 200 OK\r\n{via}\r\n{}\r\n{}\r\nCall-ID: {call_id}\r\n{cseq}\r\nContent-Length: 0\r\n\r\n",
        bye.from_header().unwrap(),
        bye.to_header().unwrap()
    );
    sock.send_to(answer.as_bytes(), from).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(2500)))
        .unwrap();
    let mut more = 0;
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).starts_with("BYE ") {
            more += 1;
        }
    }
    assert!(more <= 1, "BYE resent {more} times after its 200 OK");
}

/// `[siprec] caller = "second"` swaps who is the caller of a two-party
/// session (the left channel of a dual recording).
#[test]
fn the_caller_can_be_the_second_party() {
    let Some(offer) = acme_offer() else { return };
    let d = Daemon::start(
        "siprec-second",
        &config().replace("enabled = true", "enabled = true\ncaller = \"second\""),
    );
    let mut link = Link::Udp(UdpSocket::bind("127.0.0.1:0").unwrap(), sip_addr(&d, "udp"));
    let mut ev = d.events(None);
    std::thread::sleep(Duration::from_millis(100));
    link.send(&request(
        &link,
        "INVITE",
        "second@x",
        1,
        None,
        "s1",
        Some("multipart/mixed;boundary=unique-boundary-1"),
        &offer,
    ));
    let ok = link.recv();
    assert_eq!(status(&ok), 200);
    let created = ev.until("call.created", 5 * SECOND);
    let data = &created.last().unwrap()["data"];
    assert_eq!(data["from"], "sip:1002@192.168.50.10", "{data}");
    assert_eq!(data["to"], "sip:9000@192.168.50.102");
    let legs = data["legs"].as_array().unwrap();
    assert_eq!(
        (legs[0]["leg_id"].as_str(), legs[0]["role"].as_str()),
        (Some("stream-16777227"), Some("callee"))
    );
    link.in_dialog("ACK", "second@x", 1, &to_tag(&ok), "s2");
    link.in_dialog("BYE", "second@x", 2, &to_tag(&ok), "s3");
    assert_eq!(status(&link.recv()), 200);
}
