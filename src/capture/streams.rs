//! Finding RTP streams among a capture's UDP datagrams, the way Wireshark's
//! heuristic RTP dissector does: any UDP port, version 2, not RTCP, and a
//! sequence of packets per (source, destination, SSRC) whose sequence
//! numbers mostly advance by small steps. Ports named with `--rtp-port` are
//! taken as RTP without the consistency test. SDP bodies seen in the capture
//! (in SIP over UDP) supply dynamic payload-type mappings per address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::core::rtp::{Codec, PayloadMap, RtpPacket, dtmf::EventPayload, is_rtcp};

/// Identity of an RTP stream in a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub ssrc: u32,
}

/// What the first pass learns about one candidate stream.
#[derive(Debug, Clone)]
pub struct StreamSummary {
    pub key: StreamKey,
    /// Order of first appearance in the capture.
    pub index: usize,
    pub packets: u64,
    pub first_seen: Duration,
    pub last_seen: Duration,
    /// Packets per payload type.
    pub payload_types: HashMap<u8, u64>,
    /// Consecutive packets whose sequence step is 0..=100.
    consistent_steps: u64,
    last_seq: Option<u16>,
    /// Dynamic payload types whose every payload looks like a telephone event.
    event_like: HashMap<u8, bool>,
}

impl StreamSummary {
    /// Whether the packets look like one RTP stream rather than noise.
    pub fn is_plausible(&self) -> bool {
        self.packets >= 2 && self.consistent_steps * 2 >= self.packets - 1
    }

    /// The payload type carrying most packets, among those mapped to audio.
    pub fn main_audio_codec(&self, map: &PayloadMap) -> Option<(u8, Codec)> {
        let mut pts: Vec<_> = self.payload_types.iter().collect();
        pts.sort_by_key(|(pt, n)| (std::cmp::Reverse(**n), **pt));
        pts.into_iter()
            .filter_map(|(&pt, _)| map.get(pt).map(|c| (pt, c)))
            .find(|(_, c)| c.kind() == crate::core::rtp::MediaKind::Audio)
    }
}

/// Payload-type mappings an SDP body gave for an address, and when.
type SdpMedia = (Duration, Vec<(u8, Codec)>);

/// Collects candidate streams and SDP from a capture, pass one.
#[derive(Debug, Default)]
pub struct StreamFinder {
    streams: HashMap<StreamKey, StreamSummary>,
    forced_ports: Vec<u16>,
    /// Group by (source, destination) only, as one daemon leg would see
    /// it, keyed by the first SSRC of the flow.
    by_flow: bool,
    flow_ssrc: HashMap<(SocketAddr, SocketAddr), u32>,
    /// SDP media descriptions per address, in capture order.
    sdp: HashMap<SocketAddr, Vec<SdpMedia>>,
}

impl StreamFinder {
    pub fn new(forced_ports: Vec<u16>, by_flow: bool) -> Self {
        Self {
            forced_ports,
            by_flow,
            ..Self::default()
        }
    }

    /// The stream a packet belongs to.
    pub fn key_for(&mut self, src: SocketAddr, dst: SocketAddr, ssrc: u32) -> StreamKey {
        let ssrc = if self.by_flow {
            *self.flow_ssrc.entry((src, dst)).or_insert(ssrc)
        } else {
            ssrc
        };
        StreamKey { src, dst, ssrc }
    }

    fn forced(&self, src: &SocketAddr, dst: &SocketAddr) -> bool {
        self.forced_ports.contains(&src.port()) || self.forced_ports.contains(&dst.port())
    }

    /// Feeds one UDP datagram.
    pub fn observe(&mut self, time: Duration, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        if payload.first().is_some_and(|b| b.is_ascii_alphabetic()) {
            self.observe_sip(time, payload);
            return;
        }
        if is_rtcp(payload) {
            return;
        }
        let Ok(p) = RtpPacket::parse(payload) else {
            return;
        };
        let key = self.key_for(src, dst, p.ssrc);
        let index = self.streams.len();
        let s = self.streams.entry(key).or_insert_with(|| StreamSummary {
            key,
            index,
            packets: 0,
            first_seen: time,
            last_seen: time,
            payload_types: HashMap::new(),
            consistent_steps: 0,
            last_seq: None,
            event_like: HashMap::new(),
        });
        s.packets += 1;
        s.last_seen = time;
        *s.payload_types.entry(p.payload_type).or_default() += 1;
        if let Some(last) = s.last_seq
            && p.sequence.wrapping_sub(last) <= 100
        {
            s.consistent_steps += 1;
        }
        s.last_seq = Some(p.sequence);
        if p.payload_type >= 96 {
            let looks = p.payload.len() % 4 == 0
                && EventPayload::parse(p.payload).is_some_and(|e| e.event <= 16);
            let entry = s.event_like.entry(p.payload_type).or_insert(true);
            *entry &= looks;
        }
    }

    /// Reads `c=`, `m=audio` and `a=rtpmap` lines of an SDP body.
    fn observe_sip(&mut self, time: Duration, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let Some(body_at) = text.find("\r\n\r\n").or_else(|| text.find("\n\n")) else {
            return;
        };
        let body = &text[body_at..];
        if !body.contains("m=audio") {
            return;
        }
        let mut addr: Option<std::net::IpAddr> = None;
        let mut port: Option<u16> = None;
        let mut maps = Vec::new();
        for line in body.lines().map(str::trim) {
            if let Some(c) = line
                .strip_prefix("c=IN IP4 ")
                .or_else(|| line.strip_prefix("c=IN IP6 "))
            {
                addr = c
                    .split('/')
                    .next()
                    .and_then(|a| a.trim().parse().ok())
                    .or(addr);
            } else if let Some(m) = line.strip_prefix("m=audio ") {
                port = m.split_whitespace().next().and_then(|p| p.parse().ok());
            } else if let Some(r) = line.strip_prefix("a=rtpmap:") {
                let mut parts = r.splitn(2, ' ');
                if let (Some(pt), Some(enc)) = (parts.next(), parts.next())
                    && let (Ok(pt), Ok(codec)) = (pt.parse::<u8>(), Codec::from_rtpmap(enc.trim()))
                {
                    maps.push((pt, codec));
                }
            }
        }
        if let (Some(a), Some(p)) = (addr, port) {
            self.sdp
                .entry(SocketAddr::new(a, p))
                .or_default()
                .push((time, maps));
        }
    }

    /// The streams judged to be RTP, in order of first appearance.
    pub fn streams(&self) -> Vec<StreamSummary> {
        let mut v: Vec<_> = self
            .streams
            .values()
            .filter(|s| s.is_plausible() || (s.packets > 0 && self.forced(&s.key.src, &s.key.dst)))
            .cloned()
            .collect();
        v.sort_by_key(|s| s.index);
        v
    }

    /// The payload map for a stream: static types, then what SDP said for
    /// its destination (or source) address, then `overrides`, then a guess
    /// of telephone-event for dynamic types that only ever carried events.
    pub fn payload_map(&self, s: &StreamSummary, overrides: &[(u8, Codec)]) -> PayloadMap {
        let mut map = PayloadMap::default();
        for addr in [s.key.dst, s.key.src] {
            // The latest description before the stream started (SIP
            // precedes media), else the first one after.
            let described = self.sdp.get(&addr).and_then(|list| {
                list.iter()
                    .rev()
                    .find(|(t, _)| *t <= s.first_seen)
                    .or_else(|| list.first())
            });
            if let Some((_, maps)) = described {
                for &(pt, codec) in maps {
                    let _ = map.set(u32::from(pt), codec);
                }
                break;
            }
        }
        for &(pt, codec) in overrides {
            let _ = map.set(u32::from(pt), codec);
        }
        for (&pt, &event_like) in &s.event_like {
            if event_like && map.get(pt).is_none() {
                let _ = map.set(u32::from(pt), Codec::TelephoneEvent { rate: 8000 });
            }
        }
        map
    }
}
