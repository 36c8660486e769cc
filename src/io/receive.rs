//! How media workers read their legs' sockets: the receive path chosen at
//! start (io_uring where the kernel allows it, `recvmmsg` otherwise, or as
//! configured by `workers.receive_path`), each worker's [`LegReader`], and
//! the counts `/metrics` reports about them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::ReceivePathSetting;
use crate::io::udp::{LegSocket, RecvBatch};

/// A way of reading leg sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceivePath {
    /// One io_uring per worker: multishot `recvmsg` on every leg into
    /// provided buffers, one system call per tick for all of them.
    IoUring,
    /// One `recvmmsg` per leg per tick.
    Recvmmsg,
}

impl ReceivePath {
    pub fn name(self) -> &'static str {
        match self {
            ReceivePath::IoUring => "io_uring",
            ReceivePath::Recvmmsg => "recvmmsg",
        }
    }
}

/// Media workers on each path (index: io_uring, recvmmsg).
static WORKERS_ON: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
/// Times a leg's io_uring receive ran out of buffers and the leg was read
/// with `recvmmsg` until its socket was empty.
static BUFFER_EXHAUSTIONS: AtomicU64 = AtomicU64::new(0);

fn index(path: ReceivePath) -> usize {
    match path {
        ReceivePath::IoUring => 0,
        ReceivePath::Recvmmsg => 1,
    }
}

/// What `/metrics` reports: workers per path, and buffer exhaustions.
pub fn metrics() -> ([(ReceivePath, u64); 2], u64) {
    (
        [ReceivePath::IoUring, ReceivePath::Recvmmsg]
            .map(|p| (p, WORKERS_ON[index(p)].load(Ordering::Relaxed))),
        BUFFER_EXHAUSTIONS.load(Ordering::Relaxed),
    )
}

/// Picks the receive path for this run. `Auto` tries io_uring for real (a
/// ring with provided buffers receiving a datagram on loopback) and falls
/// back to `recvmmsg`, saying why; `IoUring` fails instead.
pub fn choose(setting: ReceivePathSetting) -> Result<(ReceivePath, Option<String>), String> {
    match setting {
        ReceivePathSetting::Recvmmsg => Ok((ReceivePath::Recvmmsg, None)),
        ReceivePathSetting::Auto => match probe() {
            Ok(()) => Ok((ReceivePath::IoUring, None)),
            Err(why) => Ok((ReceivePath::Recvmmsg, Some(why))),
        },
        ReceivePathSetting::IoUring => probe()
            .map(|()| (ReceivePath::IoUring, None))
            .map_err(|why| format!("workers.receive_path = \"io_uring\", but {why}")),
    }
}

#[cfg(target_os = "linux")]
fn probe() -> Result<(), String> {
    use std::time::Instant;
    // Eight buffers for the one test leg; room per leg cannot exceed them.
    let mut ring = crate::io::uring::UringReceiver::new(8, 2)
        .map_err(|e| format!("io_uring is not available here ({e})"))?;
    let fail = |what: &str, e: std::io::Error| format!("the io_uring self-test {what}: {e}");
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| fail("could not bind", e))?;
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| fail("could not bind", e))?;
    use std::os::fd::AsRawFd;
    let token = ring
        .attach(rx.as_raw_fd())
        .map_err(|e| fail("could not arm a receive", e))?;
    ring.reap();
    let to = rx.local_addr().map_err(|e| fail("has no address", e))?;
    tx.send_to(b"recengine io_uring probe", to)
        .map_err(|e| fail("could not send on loopback", e))?;
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut got = None;
    while got.is_none() && Instant::now() < deadline {
        ring.reap();
        ring.take(token, 1, |d| got = Some(d.payload.to_vec()));
        if got.is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    ring.detach(token);
    match got {
        Some(p) if p == b"recengine io_uring probe" => Ok(()),
        Some(_) => Err("the io_uring self-test received the wrong bytes".into()),
        None => Err("the io_uring self-test received nothing in 500 ms".into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn probe() -> Result<(), String> {
    Err("io_uring is Linux only".into())
}

/// A worker's means of reading its legs: `recvmmsg` buffers always (the
/// fallback for every leg), and its io_uring when on that path.
pub struct LegReader {
    pub(crate) batch: RecvBatch,
    #[cfg(target_os = "linux")]
    pub(crate) uring: Option<crate::io::uring::UringReceiver>,
    path: ReceivePath,
    /// Buffer exhaustions already added to the shared count.
    exhaustions_reported: u64,
}

impl LegReader {
    /// A receiver on `path` for a worker ticking every `tick` (the ring
    /// keeps a tick's datagrams per leg). A worker that cannot set up its
    /// ring (the probe passed, so this is rare: a memory limit) reads with
    /// `recvmmsg` and says so.
    pub fn new(path: ReceivePath, tick: Duration) -> Self {
        // The ring's size exists only where the ring does.
        #[cfg(target_os = "linux")]
        let buffers = crate::io::uring::DEFAULT_BUFFERS;
        #[cfg(not(target_os = "linux"))]
        let buffers = 0;
        Self::with_buffers(path, buffers, tick)
    }

    /// As [`Self::new`], with `buffers` provided buffers (a power of two).
    pub fn with_buffers(path: ReceivePath, buffers: u16, tick: Duration) -> Self {
        #[cfg(target_os = "linux")]
        let uring = match path {
            ReceivePath::IoUring => match crate::io::uring::UringReceiver::new(
                buffers,
                crate::io::uring::room_per_leg(tick),
            ) {
                Ok(u) => Some(u),
                Err(e) => {
                    tracing::warn!(error = %e, "a media worker could not set up io_uring; it reads with recvmmsg");
                    None
                }
            },
            ReceivePath::Recvmmsg => None,
        };
        #[cfg(target_os = "linux")]
        let path = if uring.is_some() {
            ReceivePath::IoUring
        } else {
            ReceivePath::Recvmmsg
        };
        #[cfg(not(target_os = "linux"))]
        let (path, _, _) = (ReceivePath::Recvmmsg, buffers, tick);
        WORKERS_ON[index(path)].fetch_add(1, Ordering::Relaxed);
        Self {
            batch: RecvBatch::default(),
            #[cfg(target_os = "linux")]
            uring,
            path,
            exhaustions_reported: 0,
        }
    }

    pub fn path(&self) -> ReceivePath {
        self.path
    }

    /// Starts reading `socket` on this receiver's path.
    pub fn attach(&mut self, socket: &mut LegSocket) {
        #[cfg(target_os = "linux")]
        if let Some(uring) = self.uring.as_mut() {
            match uring.attach(socket.raw_fd()) {
                Ok(token) => socket.uring = Some(token),
                Err(e) => {
                    tracing::warn!(error = %e, "could not arm an io_uring receive; the leg is read with recvmmsg");
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = socket;
    }

    /// Stops reading `sockets` (before they close): a call's, as it ends,
    /// with one system call for all of them.
    pub fn detach_all(&mut self, sockets: &mut [LegSocket]) {
        #[cfg(target_os = "linux")]
        if let Some(uring) = self.uring.as_mut() {
            let tokens: Vec<u32> = sockets.iter_mut().filter_map(|s| s.uring.take()).collect();
            uring.detach_all(&tokens);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = sockets;
    }

    /// Starts fetching `socket`'s waiting datagrams and its counters into
    /// the CPU cache (io_uring; see
    /// [`crate::io::uring::UringReceiver::prefetch`]). Nothing on
    /// `recvmmsg`, which copies each datagram as it reads it.
    pub fn prefetch(&self, socket: &LegSocket) {
        #[cfg(target_os = "linux")]
        if let (Some(uring), Some(token)) = (self.uring.as_ref(), socket.uring) {
            uring.prefetch(token);
            socket.prefetch_counters();
        }
        #[cfg(not(target_os = "linux"))]
        let _ = socket;
    }

    /// Receives what every attached leg holds, once per tick (and before
    /// a stop or an end is played out). Nothing to do on `recvmmsg`, where
    /// each leg is read as it is played out.
    pub fn reap(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(uring) = self.uring.as_mut() {
            uring.reap();
            let new = uring.buffer_exhaustions - self.exhaustions_reported;
            if new > 0 {
                BUFFER_EXHAUSTIONS.fetch_add(new, Ordering::Relaxed);
                self.exhaustions_reported = uring.buffer_exhaustions;
            }
        }
    }
}

impl Drop for LegReader {
    fn drop(&mut self) {
        WORKERS_ON[index(self.path)].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::io::clock::MonotonicClock;
    use crate::io::udp::{DrainTime, IngestStats, RelatchPolicy};
    use std::net::{SocketAddr, UdpSocket};
    use std::sync::Arc;

    /// The default tick: two buffers per leg.
    const TICK: Duration = Duration::from_millis(20);

    /// io_uring where this machine allows it; `None` (and a message) where not.
    fn uring_reader(buffers: u16) -> Option<LegReader> {
        if let Err(why) = probe() {
            eprintln!("skipping: {why}");
            return None;
        }
        let reader = LegReader::with_buffers(ReceivePath::IoUring, buffers, TICK);
        assert_eq!(reader.path(), ReceivePath::IoUring);
        Some(reader)
    }

    fn leg(reader: &mut LegReader) -> (LegSocket, SocketAddr, Arc<IngestStats>) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let stats = Arc::new(IngestStats::default());
        let mut leg =
            LegSocket::new(socket, stats.clone(), RelatchPolicy::Never, None, 1 << 20).unwrap();
        reader.attach(&mut leg);
        (leg, addr, stats)
    }

    fn rtp(seq: u16, len: usize) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend((0..len).map(|i| (i as u16 ^ seq) as u8));
        p
    }

    /// Every datagram the leg's reader hands over, in order, taken in
    /// batches of `limit` as a worker does.
    fn drain(
        reader: &mut LegReader,
        leg: &mut LegSocket,
        limit: usize,
    ) -> Vec<(Vec<u8>, Duration)> {
        let clock = MonotonicClock::start();
        let mut got = Vec::new();
        reader.reap();
        loop {
            // Arrivals are monotonic times since the clock started; an
            // hour's offset keeps those before it from being clamped to 0.
            let now = DrainTime::now(&clock);
            let at = DrainTime {
                monotonic: now.monotonic + Duration::from_secs(3600),
                wall: now.wall,
            };
            let more = leg.receive_batch(reader, limit, at, |d, t| got.push((d.to_vec(), t)));
            if !more {
                return got;
            }
        }
    }

    fn settle() {
        std::thread::sleep(Duration::from_millis(30));
    }

    /// Sends `packets` from `tx` to the leg and returns the datagrams the
    /// reader then hands over.
    fn round_trip(
        reader: &mut LegReader,
        leg: &mut LegSocket,
        (tx, to): (&UdpSocket, SocketAddr),
        packets: &[Vec<u8>],
        limit: usize,
    ) -> Vec<Vec<u8>> {
        for p in packets {
            tx.send_to(p, to).unwrap();
        }
        settle();
        drain(reader, leg, limit)
            .into_iter()
            .map(|(d, _)| d)
            .collect()
    }

    #[test]
    fn io_uring_hands_over_what_was_sent_in_order_with_receive_stamps() {
        let Some(mut uring) = uring_reader(64) else {
            return;
        };
        let mut plain = LegReader::new(ReceivePath::Recvmmsg, TICK);
        let (mut a, a_addr, a_stats) = leg(&mut uring);
        let (mut b, b_addr, _) = leg(&mut uring);
        let (mut c, c_addr, _) = leg(&mut plain);
        uring.reap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent: Vec<Vec<u8>> = (0..20).map(|i| rtp(i, 160)).collect();
        for p in &sent {
            tx.send_to(p, a_addr).unwrap();
            tx.send_to(p, b_addr).unwrap();
            tx.send_to(p, c_addr).unwrap();
        }
        settle();
        let via_uring = drain(&mut uring, &mut a, 7);
        let other_leg = drain(&mut uring, &mut b, 32);
        let via_recvmmsg = drain(&mut plain, &mut c, 7);
        let bytes =
            |v: &[(Vec<u8>, Duration)]| v.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>();
        assert_eq!(bytes(&via_uring), sent);
        assert_eq!(bytes(&other_leg), sent);
        assert_eq!(bytes(&via_recvmmsg), sent);
        // Arrival times are the kernel's stamps: in sending order, and
        // before the drain rather than all equal to it.
        assert!(via_uring.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(via_uring[0].1 < via_uring[19].1, "stamped, not drain time");
        assert_eq!(a_stats.datagrams.load(Ordering::Relaxed), 20);
        assert_eq!(
            uring.uring.as_ref().unwrap().buffer_exhaustions,
            0,
            "64 buffers hold 40 datagrams"
        );
    }

    /// A worker seconds behind: more datagrams queued than the ring has
    /// buffers. The leg's receive ends, the rest is read with recvmmsg, and
    /// the receive is armed again; nothing is lost or reordered.
    #[test]
    fn running_out_of_buffers_loses_nothing_and_keeps_the_order() {
        let Some(mut reader) = uring_reader(8) else {
            return;
        };
        let (mut leg, addr, stats) = leg(&mut reader);
        reader.reap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let first: Vec<Vec<u8>> = (0..50).map(|i| rtp(i, 160)).collect();
        assert_eq!(
            round_trip(&mut reader, &mut leg, (&tx, addr), &first, 5),
            first
        );
        let exhausted = reader.uring.as_ref().unwrap().buffer_exhaustions;
        assert!(exhausted >= 1, "8 buffers cannot take 50 datagrams");

        // Armed again: the next datagrams come through the ring.
        let second: Vec<Vec<u8>> = (50..54).map(|i| rtp(i, 160)).collect();
        assert_eq!(
            round_trip(&mut reader, &mut leg, (&tx, addr), &second, 32),
            second
        );
        assert_eq!(reader.uring.as_ref().unwrap().buffer_exhaustions, exhausted);
        assert_eq!(stats.datagrams.load(Ordering::Relaxed), 54);
    }

    /// A leg's port is free again as soon as the leg is detached and its
    /// socket closed (the ring held a reference to it while receiving).
    #[test]
    fn a_detached_legs_port_can_be_bound_again_at_once() {
        let Some(mut reader) = uring_reader(16) else {
            return;
        };
        let (mut leg, addr, _) = leg(&mut reader);
        reader.reap();
        reader.detach_all(std::slice::from_mut(&mut leg));
        drop(leg);
        UdpSocket::bind(addr).expect("the port is free once the leg is detached");
    }

    /// A call's legs detached together (one system call for their
    /// cancels): every port is free again at once, and a leg that stays is
    /// still read.
    #[test]
    fn legs_detached_together_free_their_ports_at_once() {
        let Some(mut reader) = uring_reader(16) else {
            return;
        };
        let (a, addr_a, _) = leg(&mut reader);
        let (b, addr_b, _) = leg(&mut reader);
        let (mut stays, addr_stays, _) = leg(&mut reader);
        reader.reap();
        let mut call = vec![a, b];
        reader.detach_all(&mut call);
        assert!(call.iter().all(|s| s.uring.is_none()));
        drop(call);
        UdpSocket::bind(addr_a).expect("the first leg's port is free");
        UdpSocket::bind(addr_b).expect("the second leg's port is free");
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let packets = vec![rtp(7, 160)];
        assert_eq!(
            round_trip(&mut reader, &mut stays, (&tx, addr_stays), &packets, 1),
            packets
        );
    }

    /// Datagrams larger than a provided buffer are counted as truncated
    /// (as recvmmsg counts ones over 64 KiB), and the leg is read with
    /// recvmmsg from then on, where they arrive whole.
    #[test]
    fn oversize_datagrams_move_the_leg_to_recvmmsg() {
        let Some(mut reader) = uring_reader(16) else {
            return;
        };
        let (mut leg, addr, stats) = leg(&mut reader);
        reader.reap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let big = rtp(1, crate::io::uring::MAX_PAYLOAD + 100);
        let small = rtp(2, 160);
        let got = round_trip(
            &mut reader,
            &mut leg,
            (&tx, addr),
            &[big, small.clone()],
            32,
        );
        assert_eq!(
            got,
            vec![small.clone()],
            "the cut one is dropped, the next kept"
        );
        assert_eq!(stats.truncated.load(Ordering::Relaxed), 1);
        reader.reap(); // the ring lets go of the leg
        let bigger = rtp(3, crate::io::uring::MAX_PAYLOAD + 100);
        let both = [bigger, small];
        assert_eq!(
            round_trip(&mut reader, &mut leg, (&tx, addr), &both, 32),
            both
        );
        assert_eq!(stats.truncated.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_setting_picks_the_path() {
        assert_eq!(
            choose(ReceivePathSetting::Recvmmsg).unwrap(),
            (ReceivePath::Recvmmsg, None)
        );
        match probe() {
            Ok(()) => {
                assert_eq!(
                    choose(ReceivePathSetting::Auto).unwrap().0,
                    ReceivePath::IoUring
                );
                assert_eq!(
                    choose(ReceivePathSetting::IoUring).unwrap().0,
                    ReceivePath::IoUring
                );
            }
            Err(why) => {
                let (path, reason) = choose(ReceivePathSetting::Auto).unwrap();
                assert_eq!((path, reason), (ReceivePath::Recvmmsg, Some(why)));
                assert!(choose(ReceivePathSetting::IoUring).is_err());
            }
        }
    }
}
