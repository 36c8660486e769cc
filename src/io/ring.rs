//! The per-leg lock-free SPSC ring between a socket (producer, on the IO
//! runtime) and a worker (consumer, on a media thread): variable-length
//! records `[len: u16][arrival ns: u64][datagram]` in a fixed-size byte
//! ring (`rtrb`). A record is written whole or not at all, so the consumer
//! never sees half a datagram; a full ring refuses the record and the
//! producer counts the drop, it never waits.

use std::time::Duration;

use rtrb::{Consumer, Producer, RingBuffer};

const HEADER: usize = 10;

/// Creates a ring of `bytes` capacity.
pub fn datagram_ring(bytes: usize) -> (RingWriter, RingReader) {
    let (p, c) = RingBuffer::<u8>::new(bytes.max(HEADER + 1));
    (RingWriter { inner: p }, RingReader { inner: c })
}

/// The socket side.
pub struct RingWriter {
    inner: Producer<u8>,
}

impl RingWriter {
    /// Appends a datagram that arrived at `arrival`; false when the ring is
    /// full (or the datagram is larger than 65535 bytes).
    pub fn push(&mut self, arrival: Duration, datagram: &[u8]) -> bool {
        let Ok(len) = u16::try_from(datagram.len()) else {
            return false;
        };
        let total = HEADER + datagram.len();
        let Ok(mut chunk) = self.inner.write_chunk(total) else {
            return false;
        };
        let mut header = [0u8; HEADER];
        header[..2].copy_from_slice(&len.to_le_bytes());
        header[2..].copy_from_slice(&(arrival.as_nanos() as u64).to_le_bytes());
        let (a, b) = chunk.as_mut_slices();
        let mut at = 0;
        for part in [&header[..], datagram] {
            copy_into_split(part, a, b, at);
            at += part.len();
        }
        chunk.commit_all();
        true
    }

    /// True once the reader is gone (the call ended).
    pub fn is_abandoned(&self) -> bool {
        self.inner.is_abandoned()
    }
}

/// Copies `src` into the ring's two slices `a` then `b` starting at byte
/// `at` of their concatenation (the caller reserved enough room).
fn copy_into_split(src: &[u8], a: &mut [u8], b: &mut [u8], at: usize) {
    if at >= a.len() {
        let start = at - a.len();
        b[start..start + src.len()].copy_from_slice(src);
        return;
    }
    let first = src.len().min(a.len() - at);
    a[at..at + first].copy_from_slice(&src[..first]);
    b[..src.len() - first].copy_from_slice(&src[first..]);
}

/// `out.len()` bytes from byte `at` of the concatenation of `a` and `b`.
fn copy_from_split(a: &[u8], b: &[u8], at: usize, out: &mut [u8]) {
    if at >= a.len() {
        let start = at - a.len();
        out.copy_from_slice(&b[start..start + out.len()]);
        return;
    }
    let first = out.len().min(a.len() - at);
    out[..first].copy_from_slice(&a[at..at + first]);
    let rest = out.len() - first;
    out[first..].copy_from_slice(&b[..rest]);
}

/// The worker side.
pub struct RingReader {
    inner: Consumer<u8>,
}

impl RingReader {
    /// Takes the next datagram into `buf` (cleared first) and returns its
    /// arrival time, or `None` when the ring is empty.
    pub fn pop(&mut self, buf: &mut Vec<u8>) -> Option<Duration> {
        let (len, arrival) = {
            let chunk = self.inner.read_chunk(HEADER).ok()?;
            let (a, b) = chunk.as_slices();
            let mut h = [0u8; HEADER];
            copy_from_split(a, b, 0, &mut h);
            (
                usize::from(u16::from_le_bytes([h[0], h[1]])),
                u64::from_le_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
            )
            // dropped without commit: only peeked
        };
        let chunk = self.inner.read_chunk(HEADER + len).ok()?;
        let (a, b) = chunk.as_slices();
        buf.clear();
        buf.resize(len, 0);
        copy_from_split(a, b, HEADER, buf);
        chunk.commit_all();
        Some(Duration::from_nanos(arrival))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_across_the_wrap_and_full_ring_refuses() {
        let (mut w, mut r) = datagram_ring(64);
        let mut buf = Vec::new();
        for round in 0..20u8 {
            let d = vec![round; 20 + usize::from(round % 7)];
            assert!(w.push(Duration::from_nanos(u64::from(round)), &d));
            assert_eq!(
                r.pop(&mut buf),
                Some(Duration::from_nanos(u64::from(round)))
            );
            assert_eq!(buf, d);
        }
        assert_eq!(r.pop(&mut buf), None);
        assert!(w.push(Duration::ZERO, &[1; 40]));
        assert!(
            !w.push(Duration::ZERO, &[2; 40]),
            "no room for a second record"
        );
        assert!(r.pop(&mut buf).is_some());
        assert!(r.pop(&mut buf).is_none());
    }

    #[test]
    fn concurrent_producer_and_consumer_see_every_record_in_order() {
        let (mut w, mut r) = datagram_ring(4096);
        let producer = std::thread::spawn(move || {
            let mut sent = 0u32;
            let mut i = 0u32;
            while i < 50_000 {
                let d = i.to_le_bytes().repeat(1 + (i % 40) as usize);
                if w.push(Duration::from_nanos(u64::from(i)), &d) {
                    sent += 1;
                    i += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            sent
        });
        let mut buf = Vec::new();
        let mut next = 0u32;
        while next < 50_000 {
            if let Some(t) = r.pop(&mut buf) {
                assert_eq!(t, Duration::from_nanos(u64::from(next)));
                assert_eq!(buf, next.to_le_bytes().repeat(1 + (next % 40) as usize));
                next += 1;
            } else {
                std::thread::yield_now();
            }
        }
        assert_eq!(producer.join().unwrap(), 50_000);
    }
}
