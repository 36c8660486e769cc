//! The engine parses RTP with its own zero-copy view (the `rtp` crate
//! allocates per packet: a Vec for CSRCs and extensions, and a copied
//! payload when given a slice). The `rtp` crate is the oracle here: on
//! thousands of generated packets, wherever it accepts one, the engine's
//! view must read the same header fields and payload.

use recengine::core::rtp::RtpPacket;
use webrtc_util::marshal::Unmarshal;

use recengine::testkit::Rng;

fn packet(rng: &mut Rng) -> Vec<u8> {
    let cc = (rng.next_u64() % 4) as u8;
    let ext = rng.next_u64().is_multiple_of(3);
    let pad = rng.next_u64().is_multiple_of(4);
    let pt = (rng.next_u64() % 128) as u8;
    let mut v = vec![
        0x80 | (u8::from(pad) << 5) | (u8::from(ext) << 4) | cc,
        (rng.byte() & 0x80) | pt,
    ];
    for _ in 0..10 {
        v.push(rng.byte());
    }
    for _ in 0..cc * 4 {
        v.push(rng.byte());
    }
    if ext {
        // One-byte header extension (RFC 8285) with one element, padded.
        let words = 1 + (rng.next_u64() % 3) as usize;
        v.extend_from_slice(&[0xbe, 0xde, 0, words as u8]);
        let mut body = vec![0u8; words * 4];
        body[0] = 0x10; // id 1, length 1
        body[1] = rng.byte();
        v.extend_from_slice(&body);
    }
    let payload = (rng.next_u64() % 200) as usize;
    for _ in 0..payload {
        v.push(rng.byte());
    }
    if pad {
        let n = 1 + (rng.next_u64() % 4) as usize;
        v.extend(std::iter::repeat_n(0, n - 1));
        v.push(n as u8);
    }
    // Sometimes damage it.
    if rng.next_u64().is_multiple_of(5) && !v.is_empty() {
        let cut = (rng.next_u64() as usize) % v.len();
        v.truncate(cut);
    }
    v
}

#[test]
fn engine_parser_agrees_with_the_rtp_crate() {
    let mut rng = Rng::new(0x1234_5678_9abc_def1);
    let (mut agreed, mut both_refused) = (0, 0);
    for _ in 0..20_000 {
        let data = packet(&mut rng);
        let mut buf: &[u8] = &data;
        let theirs = rtp::packet::Packet::unmarshal(&mut buf);
        let ours = RtpPacket::parse(&data);
        match (theirs, ours) {
            (Ok(t), Ok(o)) => {
                assert_eq!(o.marker, t.header.marker);
                assert_eq!(o.payload_type, t.header.payload_type);
                assert_eq!(o.sequence, t.header.sequence_number);
                assert_eq!(o.timestamp, t.header.timestamp);
                assert_eq!(o.ssrc, t.header.ssrc);
                assert_eq!(o.csrcs().collect::<Vec<_>>(), t.header.csrc);
                assert_eq!(o.payload, &t.payload[..], "{data:02x?}");
                agreed += 1;
            }
            (Ok(t), Err(e)) => {
                // The one deliberate difference: RTCP packet types on an RTP
                // port are told apart (RFC 5761), not read as RTP.
                assert!(
                    (72..=79).contains(&t.header.payload_type) && t.header.marker,
                    "{e:?} for {data:02x?}"
                );
            }
            (Err(_), Ok(o)) => {
                // The crate refuses some packets the engine reads: a header
                // extension whose elements it cannot parse, or padding it
                // counts differently. The engine's view must still be sane.
                assert!(o.payload.len() <= data.len());
            }
            (Err(_), Err(_)) => both_refused += 1,
        }
    }
    assert!(agreed > 10_000, "only {agreed} packets compared");
    assert!(both_refused > 100);
}
