//! A panic on bad input is our bug (str0m's policy). Every kind of broken
//! datagram is counted and dropped, and the good packets around it still
//! come out intact.

use std::time::Duration;

use recengine::core::decode::{linear_to_ulaw, ulaw_to_linear};
use recengine::core::leg::{Dropped, LegConfig, LegReceiver, PcmSink};
use recengine::core::rtp::{Codec, PayloadMap, RtpError};
use recengine::testkit::{rtp_packet, speech};

#[derive(Default)]
struct Collect {
    pcm: Vec<i16>,
}

impl PcmSink for Collect {
    fn samples(&mut self, _start: i64, pcm: &[i16]) {
        self.pcm.extend_from_slice(pcm);
    }
    fn silence(&mut self, _start: i64, len: i64) {
        self.pcm.extend(std::iter::repeat_n(0, len as usize));
    }
}

fn leg() -> LegReceiver {
    let mut map = PayloadMap::default();
    map.set(96, Codec::Opus).unwrap();
    map.set(
        97,
        Codec::L16 {
            rate: 8000,
            channels: 2,
        },
    )
    .unwrap();
    LegReceiver::new(LegConfig {
        payload_map: map,
        rate: 8000,
        playout_delay: Duration::from_millis(100),
        jitter_capacity: 32,
        drift_bound: Duration::from_millis(20),
    })
}

fn malformed() -> Vec<(&'static str, Vec<u8>, Option<Dropped>)> {
    let good = rtp_packet(0, false, 1, 0, 7, &[0xff; 160]);
    let with = |first: u8, tail: &[u8]| {
        let mut v = good[..12].to_vec();
        v[0] = first;
        v.extend_from_slice(tail);
        v
    };
    vec![
        (
            "empty",
            vec![],
            Some(Dropped::Malformed(RtpError::TooShort(0))),
        ),
        (
            "truncated header",
            good[..7].to_vec(),
            Some(Dropped::Malformed(RtpError::TooShort(7))),
        ),
        (
            "version 0",
            with(0x00, &[1, 2, 3]),
            Some(Dropped::Malformed(RtpError::BadVersion(0))),
        ),
        (
            "version 3",
            with(0xc0, &[1, 2, 3]),
            Some(Dropped::Malformed(RtpError::BadVersion(3))),
        ),
        (
            "padding longer than payload",
            with(0xa0, &[1, 2, 200]),
            Some(Dropped::Malformed(RtpError::BadPadding {
                padding: 200,
                available: 3,
            })),
        ),
        (
            "csrc count past end",
            with(0x8f, &[0; 10]),
            Some(Dropped::Malformed(RtpError::CsrcPastEnd {
                count: 15,
                len: 22,
            })),
        ),
        (
            "extension past end",
            with(0x90, &[0xbe, 0xde, 0x10, 0x00, 1]),
            Some(Dropped::Malformed(RtpError::ExtensionPastEnd)),
        ),
        (
            "rtcp on rtp port",
            {
                let mut v = with(0x81, &[0; 16]);
                v[1] = 200;
                v
            },
            Some(Dropped::Rtcp),
        ),
        (
            "unknown payload type",
            rtp_packet(77, false, 500, 0, 7, &[1; 20]),
            Some(Dropped::UnknownPayloadType(77)),
        ),
        // Decodable PT, undecodable payloads: accepted, then concealed.
        (
            "empty g711 payload",
            rtp_packet(0, false, 900, 0, 7, &[]),
            None,
        ),
        (
            "garbage opus",
            rtp_packet(96, false, 901, 0, 7, &[0xff, 0xff, 0xff]),
            None,
        ),
        (
            "odd-length stereo L16",
            rtp_packet(97, false, 902, 0, 7, &[1, 2, 3]),
            None,
        ),
        (
            "giant",
            rtp_packet(0, false, 903, 0, 7, &vec![0x55; 65_000]),
            None,
        ),
    ]
}

#[test]
fn every_malformed_datagram_is_a_typed_drop() {
    for (name, datagram, want) in malformed() {
        let mut l = leg();
        let got = l.push(&datagram, Duration::ZERO).err();
        if let Some(want) = want {
            assert_eq!(got, Some(want), "{name}");
        }
        let mut sink = Collect::default();
        l.pull(Duration::from_secs(1), &mut sink);
        l.finish(&mut sink);
    }
}

#[test]
fn good_audio_survives_a_storm_of_garbage() {
    let source = speech(8000, 16_000);
    let mut l = leg();
    let mut sink = Collect::default();
    let bad: Vec<Vec<u8>> = malformed()
        .into_iter()
        .filter(|(_, _, d)| d.is_some())
        .map(|(_, b, _)| b)
        .collect();
    for (i, chunk) in source.chunks(160).enumerate() {
        let now = Duration::from_millis(i as u64 * 20);
        let payload: Vec<u8> = chunk.iter().map(|&s| linear_to_ulaw(s)).collect();
        for b in &bad {
            let _ = l.push(b, now);
        }
        l.push(
            &rtp_packet(0, false, 100 + i as u16, i as u32 * 160, 0xabc, &payload),
            now,
        )
        .unwrap();
        l.pull(now, &mut sink);
    }
    l.finish(&mut sink);
    let want: Vec<i16> = source
        .iter()
        .map(|&s| ulaw_to_linear(linear_to_ulaw(s)))
        .collect();
    assert!(sink.pcm == want, "audio damaged by garbage");
    let s = l.stats();
    assert_eq!(s.malformed, 7 * 100);
    assert_eq!(s.rtcp, 100);
    assert_eq!(s.unknown_payload_type, 100);
}

/// Random bytes, and random mutations of valid packets, never panic.
#[test]
fn random_bytes_never_panic() {
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut l = leg();
    let mut sink = Collect::default();
    let base = rtp_packet(0, false, 1, 0, 7, &[0xff; 160]);
    for i in 0..20_000u64 {
        let mut d = if i % 2 == 0 {
            let len = (next() % 300) as usize;
            (0..len).map(|_| next() as u8).collect::<Vec<u8>>()
        } else {
            base.clone()
        };
        for _ in 0..(next() % 6) {
            if !d.is_empty() {
                let at = (next() as usize) % d.len();
                d[at] = next() as u8;
            }
        }
        if !d.is_empty() {
            d[0] = (d[0] & 0x3f) | 0x80; // mostly version 2 so parsing goes deep
        }
        let _ = l.push(&d, Duration::from_millis(i));
        l.pull(Duration::from_millis(i), &mut sink);
    }
    l.finish(&mut sink);
}
