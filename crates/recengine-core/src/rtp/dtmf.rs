//! RFC 4733 telephone events → DTMF records.
//!
//! A sender repeats each event's packets (updates every 50 ms, the end packet
//! usually three times) and some senders repeat start packets or set the
//! marker on every packet. [`DtmfDetector`] keys events on their RTP
//! timestamp (the event start, RFC 4733 §2.5.1.2) and reports each exactly
//! once: when its first end packet arrives, or, if no end packet ever comes,
//! when the next event starts or the leg finishes.

use crate::time::extend_ts;

/// One DTMF digit (or other telephone event) seen on a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfEvent {
    /// Event code (0–9 digits, 10 `*`, 11 `#`, 12–15 A–D, 16 flash).
    pub event: u8,
    /// Extended RTP timestamp of the event start.
    pub timestamp: u64,
    /// Duration in RTP clock ticks, the largest seen in any of its packets.
    pub duration: u32,
    /// Volume in -dBm0 (0 loudest, 63 quietest).
    pub volume: u8,
    /// False when the event was closed without an end packet.
    pub ended: bool,
    /// The SSRC carrying it.
    pub ssrc: u32,
}

impl DtmfEvent {
    /// The conventional character for the event, `None` for codes outside DTMF.
    pub fn digit(&self) -> Option<char> {
        digit_for(self.event)
    }
}

/// The character for a telephone-event code, `None` outside 0–16.
pub fn digit_for(event: u8) -> Option<char> {
    const DIGITS: &[u8; 17] = b"0123456789*#ABCD!";
    DIGITS.get(usize::from(event)).map(|&b| char::from(b))
}

/// The four-byte event block of an RFC 4733 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

impl EventPayload {
    /// Parses the first event block; `None` when the payload is too short.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let b = payload.get(..4)?;
        Some(Self {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Open {
    event: DtmfEvent,
    reported: bool,
}

/// Turns a leg's telephone-event packets into deduplicated [`DtmfEvent`]s.
#[derive(Debug, Default)]
pub struct DtmfDetector {
    ssrc: Option<u32>,
    last_ts: Option<u64>,
    open: Option<Open>,
    malformed: u64,
}

impl DtmfDetector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one telephone-event packet. Returns at most one finished event;
    /// call [`DtmfDetector::finish`] at the end of the leg for the last one.
    pub fn push(&mut self, ssrc: u32, timestamp: u32, payload: &[u8]) -> Option<DtmfEvent> {
        let Some(ev) = EventPayload::parse(payload) else {
            self.malformed += 1;
            return None;
        };
        if self.ssrc != Some(ssrc) {
            // A new stream: its timestamps are unrelated to the old ones.
            let flushed = self.finish();
            self.ssrc = Some(ssrc);
            self.last_ts = None;
            let reported = self.start(ssrc, timestamp, ev);
            return flushed.or(reported);
        }
        let ts = extend_ts(self.last_ts, timestamp);
        let open_ts = self.open.map(|o| o.event.timestamp);
        match open_ts {
            Some(open) if ts == open => self.update(ev),
            Some(open) if ts < open => None, // a straggler of an older event
            _ => {
                let flushed = self.finish();
                let reported = self.start(ssrc, timestamp, ev);
                flushed.or(reported)
            }
        }
    }

    fn start(&mut self, ssrc: u32, timestamp: u32, ev: EventPayload) -> Option<DtmfEvent> {
        let ts = extend_ts(self.last_ts, timestamp);
        self.last_ts = Some(ts);
        self.open = Some(Open {
            event: DtmfEvent {
                event: ev.event,
                timestamp: ts,
                duration: 0,
                volume: ev.volume,
                ended: false,
                ssrc,
            },
            reported: false,
        });
        self.update(ev)
    }

    fn update(&mut self, ev: EventPayload) -> Option<DtmfEvent> {
        let open = self.open.as_mut()?;
        open.event.duration = open.event.duration.max(u32::from(ev.duration));
        if ev.end && !open.reported {
            open.reported = true;
            open.event.ended = true;
            return Some(open.event);
        }
        None
    }

    /// The event in progress (no end packet yet), if any.
    pub fn open_event(&self) -> Option<DtmfEvent> {
        self.open.filter(|o| !o.reported).map(|o| o.event)
    }

    /// Reports the open event if it never received an end packet.
    pub fn finish(&mut self) -> Option<DtmfEvent> {
        let open = self.open.take()?;
        (!open.reported).then_some(open.event)
    }

    /// Event payloads shorter than four bytes.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [event, if end { 0x80 | 10 } else { 10 }, d[0], d[1]]
    }

    #[test]
    fn redundant_end_packets_yield_one_digit() {
        let mut det = DtmfDetector::new();
        let mut out = Vec::new();
        for (dur, end) in [
            (160, false),
            (320, false),
            (480, true),
            (480, true),
            (480, true),
        ] {
            out.extend(det.push(1, 1000, &payload(1, end, dur)));
        }
        out.extend(det.finish());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].digit(), Some('1'));
        assert_eq!(out[0].duration, 480);
        assert!(out[0].ended);
    }

    #[test]
    fn event_without_end_is_reported_when_next_starts() {
        let mut det = DtmfDetector::new();
        assert_eq!(det.push(1, 1000, &payload(5, false, 160)), None);
        let first = det.push(1, 3000, &payload(11, false, 160)).unwrap();
        assert_eq!((first.digit(), first.ended), (Some('5'), false));
        let last = det.finish().unwrap();
        assert_eq!(last.digit(), Some('#'));
    }

    #[test]
    fn repeated_digit_with_new_timestamp_counts_twice() {
        let mut det = DtmfDetector::new();
        let a = det.push(1, 1000, &payload(5, true, 800)).unwrap();
        assert_eq!(det.push(1, 1000, &payload(5, true, 800)), None);
        let b = det.push(1, 9000, &payload(5, true, 800)).unwrap();
        assert_eq!((a.timestamp + 8000, b.digit()), (b.timestamp, Some('5')));
        // A straggler from the first event is ignored.
        assert_eq!(det.push(1, 1000, &payload(5, true, 800)), None);
        assert_eq!(det.finish(), None);
    }

    #[test]
    fn short_payload_is_counted() {
        let mut det = DtmfDetector::new();
        assert_eq!(det.push(1, 0, &[1, 2]), None);
        assert_eq!(det.malformed(), 1);
    }
}
