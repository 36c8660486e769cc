//! RTP ingest: one UDP socket per leg (and its RTCP neighbour), read in
//! batches (`recvmmsg` on Linux), source-latched, stamped with the arrival
//! time and pushed whole into the leg's ring. Nothing is decoded and nothing
//! is allocated per packet; a full ring drops the datagram and counts it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::io::clock::MonotonicClock;
use crate::io::ring::RingWriter;

/// Per-leg ingest counters, shared with the control plane.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub datagrams: AtomicU64,
    pub bytes: AtomicU64,
    /// Dropped because the ring was full (the worker is behind).
    pub ring_drops: AtomicU64,
    /// Dropped because they came from an address other than the latched one.
    pub foreign_source: AtomicU64,
    /// Times the latch moved to a new address (new SSRC from a new source).
    pub relatches: AtomicU64,
    pub rtcp: AtomicU64,
}

impl IngestStats {
    pub fn snapshot(&self) -> IngestSnapshot {
        IngestSnapshot {
            datagrams: self.datagrams.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            ring_drops: self.ring_drops.load(Ordering::Relaxed),
            foreign_source: self.foreign_source.load(Ordering::Relaxed),
            relatches: self.relatches.load(Ordering::Relaxed),
            rtcp: self.rtcp.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestSnapshot {
    pub datagrams: u64,
    pub bytes: u64,
    pub ring_drops: u64,
    pub foreign_source: u64,
    pub relatches: u64,
    pub rtcp: u64,
}

/// Which source a leg records.
#[derive(Debug, Default)]
struct Latch {
    addr: Option<SocketAddr>,
    ssrc: Option<u32>,
    /// The address a relatch moved away from: it cannot take the leg back,
    /// so an old source still sending cannot make the latch flip-flop.
    left: Option<SocketAddr>,
}

impl Latch {
    /// Whether a datagram from `from` is recorded, updating the latch.
    fn admit(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        relatch: bool,
        stats: &IngestStats,
    ) -> bool {
        let ssrc = datagram
            .get(8..12)
            .filter(|_| datagram[0] >> 6 == 2)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        match self.addr {
            None => {
                // Only a plausible RTP packet may latch the leg.
                if ssrc.is_some() {
                    self.addr = Some(from);
                    self.ssrc = ssrc;
                }
                true
            }
            Some(a) if a == from => {
                if ssrc.is_some() {
                    self.ssrc = ssrc;
                }
                true
            }
            Some(a)
                if relatch && ssrc.is_some() && ssrc != self.ssrc && self.left != Some(from) =>
            {
                self.left = Some(a);
                self.addr = Some(from);
                self.ssrc = ssrc;
                stats.relatches.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(_) => {
                stats.foreign_source.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// Receives a leg's RTP until `closed` changes.
pub async fn ingest(
    socket: UdpSocket,
    mut ring: RingWriter,
    clock: MonotonicClock,
    stats: Arc<IngestStats>,
    relatch: bool,
    mut closed: watch::Receiver<bool>,
) {
    let mut latch = Latch::default();
    // One registration for the whole life of the leg, not one per wake-up;
    // `biased` skips select!'s random branch order (both showed up in
    // profiles at 100,000 packets/s).
    let closed = closed.changed();
    tokio::pin!(closed);
    loop {
        tokio::select! {
            biased;
            _ = &mut closed => return,
            ready = socket.readable() => {
                if ready.is_err() {
                    return;
                }
            }
        }
        // The receive buffers belong to the IO thread, not the leg: a leg
        // only uses them between two awaits, and a thread serves one leg at
        // a time (64 KiB per thread instead of per leg).
        RECV_BATCH.with(|batch| {
            let mut batch = batch.borrow_mut();
            // Until WouldBlock (drained) or another error (retried at the
            // next readiness).
            while let Ok(n) = socket.try_io(tokio::io::Interest::READABLE, || batch.recv(&socket)) {
                let now = clock.now();
                for i in 0..n {
                    let (from, datagram) = batch.get(i);
                    stats.datagrams.fetch_add(1, Ordering::Relaxed);
                    stats
                        .bytes
                        .fetch_add(datagram.len() as u64, Ordering::Relaxed);
                    if !latch.admit(from, datagram, relatch, &stats) {
                        continue;
                    }
                    if !ring.push(now, datagram) {
                        stats.ring_drops.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if n < batch.capacity() {
                    break;
                }
            }
        });
    }
}

thread_local! {
    /// Each IO thread's receive buffers (32 datagrams of up to 2 KiB).
    static RECV_BATCH: std::cell::RefCell<Batch> = std::cell::RefCell::new(Batch::new(32, 2048));
}

/// Counts RTCP on a leg's odd port until `closed` changes.
pub async fn count_rtcp(
    socket: UdpSocket,
    stats: Arc<IngestStats>,
    mut closed: watch::Receiver<bool>,
) {
    let mut buf = [0u8; 2048];
    loop {
        tokio::select! {
            _ = closed.changed() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(_) => { stats.rtcp.fetch_add(1, Ordering::Relaxed); }
                Err(_) => return,
            },
        }
    }
}

/// A reusable batch of receive buffers.
struct Batch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    addrs: Vec<Option<SocketAddr>>,
    #[cfg(target_os = "linux")]
    raw: linux::RawBatch,
}

impl Batch {
    fn new(count: usize, size: usize) -> Self {
        Self {
            bufs: vec![vec![0u8; size]; count],
            lens: vec![0; count],
            addrs: vec![None; count],
            #[cfg(target_os = "linux")]
            raw: linux::RawBatch::new(count),
        }
    }

    fn capacity(&self) -> usize {
        self.bufs.len()
    }

    fn get(&self, i: usize) -> (SocketAddr, &[u8]) {
        let from = self.addrs[i].unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        (from, &self.bufs[i][..self.lens[i]])
    }

    /// Receives up to `capacity` datagrams without blocking.
    fn recv(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            self.raw.recv(
                socket.as_raw_fd(),
                &mut self.bufs,
                &mut self.lens,
                &mut self.addrs,
            )
        }
        #[cfg(not(target_os = "linux"))]
        {
            let (n, from) = socket.try_recv_from(&mut self.bufs[0])?;
            self.lens[0] = n;
            self.addrs[0] = Some(from);
            Ok(1)
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    //! `recvmmsg(2)`: many datagrams per system call.

    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

    pub struct RawBatch {
        headers: Vec<libc::mmsghdr>,
        iovecs: Vec<libc::iovec>,
        names: Vec<libc::sockaddr_storage>,
    }

    // SAFETY: the raw pointers inside point into this struct's own vectors
    // (set up anew before every call); nothing is shared across threads.
    unsafe impl Send for RawBatch {}

    impl RawBatch {
        pub fn new(count: usize) -> Self {
            // SAFETY: these C structs are valid when zeroed.
            let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
            let zero_name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            Self {
                headers: vec![zero_hdr; count],
                iovecs: vec![
                    libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0
                    };
                    count
                ],
                names: vec![zero_name; count],
            }
        }

        pub fn recv(
            &mut self,
            fd: i32,
            bufs: &mut [Vec<u8>],
            lens: &mut [usize],
            addrs: &mut [Option<SocketAddr>],
        ) -> std::io::Result<usize> {
            let count = bufs.len().min(self.headers.len());
            for (i, buf) in bufs.iter_mut().enumerate().take(count) {
                self.iovecs[i] = libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                };
                let h = &mut self.headers[i];
                h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_iov = &mut self.iovecs[i];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
                h.msg_hdr.msg_flags = 0;
                h.msg_len = 0;
            }
            // SAFETY: every header points at a live buffer of the stated
            // length and at a sockaddr_storage of the stated size, all owned
            // by `self`/`bufs` for the duration of the call; MSG_DONTWAIT
            // keeps the call non-blocking.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    self.headers.as_mut_ptr(),
                    count as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = n as usize;
            for i in 0..n {
                lens[i] = self.headers[i].msg_len as usize;
                addrs[i] = to_socket_addr(&self.names[i]);
            }
            Ok(n)
        }
    }

    fn to_socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match i32::from(s.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says this storage holds a sockaddr_in.
                let a: &libc::sockaddr_in =
                    unsafe { &*(s as *const libc::sockaddr_storage).cast() };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says this storage holds a sockaddr_in6.
                let a: &libc::sockaddr_in6 =
                    unsafe { &*(s as *const libc::sockaddr_storage).cast() };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_source_wins_and_relatch_needs_a_new_ssrc() {
        let stats = IngestStats::default();
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let pkt = |ssrc: u32| {
            let mut v = vec![0x80, 0, 0, 1, 0, 0, 0, 0];
            v.extend_from_slice(&ssrc.to_be_bytes());
            v
        };
        let mut l = Latch::default();
        assert!(l.admit(a, &pkt(1), false, &stats));
        assert!(!l.admit(b, &pkt(1), false, &stats));
        assert!(
            !l.admit(b, &pkt(2), false, &stats),
            "no relatch when disabled"
        );
        let mut l = Latch::default();
        assert!(l.admit(a, &pkt(1), true, &stats));
        assert!(
            !l.admit(b, &pkt(1), true, &stats),
            "same SSRC from elsewhere: a copy, not a move"
        );
        assert!(
            l.admit(b, &pkt(2), true, &stats),
            "new SSRC from a new address: relatch"
        );
        assert!(
            !l.admit(a, &pkt(1), true, &stats),
            "the old source cannot take it back"
        );
        assert_eq!(stats.relatches.load(Ordering::Relaxed), 1);
        assert_eq!(stats.foreign_source.load(Ordering::Relaxed), 4);
    }
}
