//! Parser + jitter buffer + decoders: the input is a sequence of operations
//! on one leg. Each record is `[op, dt, len_hi, len_lo, bytes…]`: op bit 0
//! pushes the datagram (the next `len` bytes) after advancing the clock by
//! `dt` ms, bit 1 pulls playout, bit 2 rewrites the datagram's first byte to
//! version 2 so the fuzzer reaches the deeper layers faster. Invariants: no
//! panic, and the output handed to the sink is contiguous.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use recengine::core::leg::{LegConfig, LegReceiver, PcmSink};
use recengine::core::rtp::{Codec, PayloadMap};

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
        assert!(len >= 0);
        if let Some(n) = self.next {
            assert_eq!(start, n, "sink output not contiguous");
        }
        self.next = Some(start + len);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut map = PayloadMap::default();
    let _ = map.set(96, Codec::Opus);
    let _ = map.set(97, Codec::L16 { rate: 16_000, channels: 2 });
    let _ = map.set(101, Codec::TelephoneEvent { rate: 8000 });
    let mut leg = LegReceiver::new(LegConfig {
        payload_map: map,
        rate: 8000,
        playout_delay: Duration::from_millis(60),
        jitter_capacity: 16,
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
});
