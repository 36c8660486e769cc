//! RTP ingest: one UDP socket per leg, drained by the leg's media worker at
//! every tick (from the worker's io_uring, [`crate::io::uring`], or in
//! `recvmmsg` batches), stamped with the kernel's receive time and
//! source-latched; the RTCP neighbour is counted by a
//! small task on the IO runtime. Nothing is decoded and nothing is
//! allocated per packet; what overflows a leg's socket queue is counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::io::clock::MonotonicClock;
use crate::io::receive::LegReader;

/// Per-leg ingest counters, shared with the control plane.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Datagrams that reached the port (including those dropped below).
    pub datagrams: AtomicU64,
    pub bytes: AtomicU64,
    /// Dropped because the leg's socket queue was full (the worker is
    /// behind, or a flood): the kernel's `SO_RXQ_OVFL` count.
    pub queue_drops: AtomicU64,
    /// Dropped because they came from an address other than the latched one.
    pub foreign_source: AtomicU64,
    /// Times the latch moved to a new address (new SSRC from a new source).
    pub relatches: AtomicU64,
    pub rtcp: AtomicU64,
    /// Datagrams larger than the receive buffer (cut by the kernel,
    /// `MSG_TRUNC`): dropped and counted. Buffers hold 64 KiB, the largest
    /// UDP payload, so this stays zero unless something is badly wrong.
    pub truncated: AtomicU64,
    /// Recording-notice RTP packets sent to the leg's source.
    pub notice_packets_sent: AtomicU64,
}

impl IngestStats {
    pub fn snapshot(&self) -> IngestSnapshot {
        IngestSnapshot {
            datagrams: self.datagrams.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            queue_drops: self.queue_drops.load(Ordering::Relaxed),
            foreign_source: self.foreign_source.load(Ordering::Relaxed),
            relatches: self.relatches.load(Ordering::Relaxed),
            rtcp: self.rtcp.load(Ordering::Relaxed),
            truncated: self.truncated.load(Ordering::Relaxed),
            notice_packets_sent: self.notice_packets_sent.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct IngestSnapshot {
    pub datagrams: u64,
    pub bytes: u64,
    pub queue_drops: u64,
    pub foreign_source: u64,
    pub relatches: u64,
    pub rtcp: u64,
    pub truncated: u64,
    /// Recording-notice RTP packets sent to the leg's source.
    pub notice_packets_sent: u64,
}

/// When a leg follows its sender to a new address (`rtp.relatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelatchPolicy {
    /// Never: the first source is the leg's for good (strict source, as
    /// rtpengine's `strict-source`). Anything else is `foreign_source`.
    #[default]
    Never,
    /// A new SSRC from another port of the same host (a restarted
    /// softphone, a re-INVITE on the same box).
    SameHost,
    /// A new SSRC from anywhere. Unsafe: anyone who can reach the port
    /// can take the leg over with one packet.
    Any,
}

/// The source a leg must come from, named by the API (from the SDP the
/// signalling side already has): an address, and optionally its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedSource {
    pub ip: std::net::IpAddr,
    pub port: Option<u16>,
}

impl ExpectedSource {
    /// `203.0.113.5`, `203.0.113.5:4000`, `2001:db8::1` or `[2001:db8::1]:4000`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Self {
                ip: a.ip(),
                port: Some(a.port()),
            });
        }
        s.parse::<std::net::IpAddr>()
            .map(|ip| Self { ip, port: None })
            .map_err(|_| format!("{s:?} is not an IP address or address:port"))
    }

    fn matches(&self, from: SocketAddr) -> bool {
        // An IPv4 sender on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match from.ip() {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        ip == self.ip && self.port.is_none_or(|p| p == from.port())
    }
}

/// Which source a leg records.
#[derive(Debug, Default)]
struct Latch {
    addr: Option<SocketAddr>,
    ssrc: Option<u32>,
    /// The address a relatch moved away from: it cannot take the leg back,
    /// so an old source still sending cannot make the latch flip-flop.
    left: Option<SocketAddr>,
    policy: RelatchPolicy,
    expected: Option<ExpectedSource>,
}

impl Latch {
    /// Whether a datagram from `from` is recorded, updating the latch.
    fn admit(&mut self, from: SocketAddr, datagram: &[u8], stats: &IngestStats) -> bool {
        if self.expected.is_some_and(|e| !e.matches(from)) {
            stats.foreign_source.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let ssrc = datagram
            .get(8..12)
            .filter(|_| datagram[0] >> 6 == 2)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let may_move = |a: SocketAddr| match self.policy {
            RelatchPolicy::Never => false,
            RelatchPolicy::SameHost => a.ip() == from.ip(),
            RelatchPolicy::Any => true,
        };
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
                if may_move(a)
                    && ssrc.is_some()
                    && ssrc != self.ssrc
                    && self.left != Some(from) =>
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

/// A leg's RTP socket, read by the leg's media worker at every tick: all
/// queued datagrams in `recvmmsg` batches, each stamped with the kernel's
/// receive time (`SO_TIMESTAMPNS`), source-latched and handed to the leg.
/// The socket's kernel queue (`SO_RCVBUF`, from `rtp.queue_bytes`) is the
/// buffer between the network and the worker; what overflows it is counted
/// from `SO_RXQ_OVFL` as `queue_drops`.
pub struct LegSocket {
    socket: std::net::UdpSocket,
    latch: Latch,
    stats: Arc<IngestStats>,
    /// The leg's token in its worker's io_uring, when it is read that way.
    #[cfg(target_os = "linux")]
    pub(crate) uring: Option<u32>,
}

/// What the kernel says about a datagram besides its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Control {
    /// The kernel's receive stamp (wall clock, `SO_TIMESTAMPNS`).
    pub stamp: Option<Duration>,
    /// The socket's cumulative overflow count (`SO_RXQ_OVFL`).
    pub overflow: Option<u32>,
}

#[cfg(target_os = "linux")]
pub(crate) use linux::to_socket_addr;

/// The instant a worker drains a call's sockets, on both clocks, to turn
/// kernel receive times (wall clock) into engine (monotonic) times.
///
/// The two clocks cannot be read at once. A thread preempted between the
/// reads would pair them milliseconds apart, and every arrival of that
/// drain would move by as much: on a saturated host that was enough to
/// anchor one leg of a call 2 ms away from the other. So the monotonic
/// read is bracketed by two wall-clock reads and the tightest of a few
/// tries is kept, and a worker takes a fresh pair for each call it drains
/// (a pair taken long before the drain would clamp everything that arrived
/// in between to the pair's instant).
#[derive(Debug, Clone, Copy)]
pub struct DrainTime {
    pub monotonic: Duration,
    pub wall: Duration,
}

/// The oldest a receive stamp is taken to be. A worker that fell behind
/// (a saturated host, a stopped process) drains packets seconds old, and
/// their true arrival times are what keeps them in place: clamped to a
/// second, a three-second backlog looked like one burst, out of step with
/// its timestamps. Only a wall clock step makes a stamp older than this.
pub const MAX_STAMP_AGE: Duration = Duration::from_secs(30);

/// A bracket of two wall-clock reads this tight pairs the clocks well
/// enough (a few clock reads take well under a microsecond each).
const TIGHT_BRACKET: Duration = Duration::from_micros(20);
/// Tries at a tight bracket before the tightest so far is taken.
const BRACKET_TRIES: usize = 4;

impl DrainTime {
    pub fn now(clock: &MonotonicClock) -> Self {
        let wall = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
        };
        Self::paired(|| clock.now(), wall)
    }

    /// Pairs the clocks by reading `wall`, `monotonic`, `wall` until the
    /// wall reads are [`TIGHT_BRACKET`] apart (at most [`BRACKET_TRIES`]
    /// times, keeping the tightest); the wall time is the bracket's middle.
    fn paired(mut monotonic: impl FnMut() -> Duration, mut wall: impl FnMut() -> Duration) -> Self {
        let mut try_once = || {
            let before = wall();
            let mono = monotonic();
            let after = wall();
            let spread = after.saturating_sub(before);
            let pair = Self {
                monotonic: mono,
                wall: before + spread / 2,
            };
            (spread, pair)
        };
        let mut best = try_once();
        for _ in 1..BRACKET_TRIES {
            if best.0 <= TIGHT_BRACKET {
                break;
            }
            let next = try_once();
            if next.0 < best.0 {
                best = next;
            }
        }
        best.1
    }

    /// The monotonic time of a wall-clock receive stamp; never later than
    /// the drain itself (a wall clock step cannot move packets ahead) and
    /// never more than [`MAX_STAMP_AGE`] before it.
    fn arrival(&self, stamp: Option<Duration>) -> Duration {
        let Some(stamp) = stamp else {
            return self.monotonic;
        };
        let age = self.wall.saturating_sub(stamp).min(MAX_STAMP_AGE);
        self.monotonic.saturating_sub(age)
    }
}

impl LegSocket {
    /// Takes a bound socket: makes it non-blocking, asks for receive
    /// stamps and overflow counts, and sizes its queue to `queue_bytes`.
    /// Only `expected` (if named) may send; otherwise the first source
    /// latches and `relatch` says when the leg may follow it elsewhere.
    pub fn new(
        socket: std::net::UdpSocket,
        stats: Arc<IngestStats>,
        relatch: RelatchPolicy,
        expected: Option<ExpectedSource>,
        queue_bytes: usize,
    ) -> std::io::Result<Self> {
        socket.set_nonblocking(true)?;
        #[cfg(target_os = "linux")]
        linux::enable_stamps(&socket, queue_bytes)?;
        #[cfg(not(target_os = "linux"))]
        let _ = queue_bytes;
        Ok(Self {
            socket,
            latch: Latch {
                policy: relatch,
                expected,
                ..Latch::default()
            },
            stats,
            #[cfg(target_os = "linux")]
            uring: None,
        })
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.socket.as_raw_fd()
    }

    /// Sends a datagram from the leg's port to its latched source
    /// (symmetric RTP); false when no source has latched yet or the send
    /// failed (a full socket buffer drops it, as the network would).
    pub fn send_to_source(&self, datagram: &[u8]) -> bool {
        let Some(to) = self.latch.addr else {
            return false;
        };
        let sent = self.socket.send_to(datagram, to).is_ok();
        if sent {
            self.stats
                .notice_packets_sent
                .fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Receives at most `limit` queued datagrams and hands each admitted
    /// one with its arrival time to `deliver`, from the worker's io_uring
    /// when the leg is read that way, else in one `recvmmsg` batch. Never
    /// blocks. Returns whether more may be queued (the batch came back
    /// full): the caller plays out between batches, so that a worker which
    /// fell seconds behind takes its backlog through the jitter buffer in
    /// the order and at the times it arrived, instead of overflowing it.
    pub fn receive_batch(
        &mut self,
        reader: &mut LegReader,
        limit: usize,
        at: DrainTime,
        mut deliver: impl FnMut(&[u8], Duration),
    ) -> bool {
        let limit = limit.max(1);
        #[cfg(target_os = "linux")]
        if let (Some(token), Some(uring)) = (self.uring, reader.uring.as_mut()) {
            let mut overflow = None;
            let mut oversize = false;
            let taken = uring.take(token, limit, |d| {
                overflow = d.control.overflow.or(overflow);
                oversize |= d.truncated;
                self.accept(
                    d.from,
                    d.payload,
                    d.truncated,
                    d.control.stamp,
                    at,
                    &mut deliver,
                );
            });
            self.count_overflow(overflow);
            if oversize {
                // Datagrams outgrow the provided buffers: read this leg
                // with recvmmsg's 64 KiB buffers from now on.
                tracing::warn!(
                    max = crate::io::uring::MAX_PAYLOAD,
                    "a leg's datagrams are larger than the io_uring buffers; it is read with recvmmsg from now on"
                );
                uring.retire(token);
            }
            if taken.more_pending {
                return true;
            }
            if !taken.stopped {
                return false;
            }
            // The leg's receive ended (buffers ran out, or it was retired):
            // what is left in the socket is read directly, and the receive
            // armed again once the socket is empty.
            let room = limit - taken.count;
            if room == 0 {
                return true;
            }
            let more = self.receive_recvmmsg(&mut reader.batch, room, at, deliver);
            if !more && let Err(e) = uring.rearm(token) {
                tracing::warn!(error = %e, "could not re-arm an io_uring receive");
            }
            return more;
        }
        self.receive_recvmmsg(&mut reader.batch, limit, at, deliver)
    }

    /// One `recvmmsg` batch of at most `limit` datagrams.
    fn receive_recvmmsg(
        &mut self,
        batch: &mut RecvBatch,
        limit: usize,
        at: DrainTime,
        mut deliver: impl FnMut(&[u8], Duration),
    ) -> bool {
        let limit = limit.clamp(1, batch.capacity());
        let Ok(n) = batch.recv(&self.socket, limit) else {
            return false;
        };
        for i in 0..n {
            let (from, datagram, stamp) = batch.get(i);
            let truncated = batch.truncated[i];
            self.accept(Some(from), datagram, truncated, stamp, at, &mut deliver);
        }
        self.count_overflow(batch.overflow());
        n == limit
    }

    /// Starts fetching the leg's shared counters into the CPU cache: the
    /// first datagram [`Self::accept`] counts in a tick otherwise stalls
    /// on their line, which the API's readers and the previous tick's
    /// other calls have left cold.
    #[cfg(target_os = "linux")]
    pub(crate) fn prefetch_counters(&self) {
        crate::io::uring::prefetch_line(Arc::as_ptr(&self.stats).cast());
    }

    /// Counts a datagram and passes it on if it is whole and the latch
    /// admits it.
    fn accept(
        &mut self,
        from: Option<SocketAddr>,
        datagram: &[u8],
        truncated: bool,
        stamp: Option<Duration>,
        at: DrainTime,
        deliver: &mut impl FnMut(&[u8], Duration),
    ) {
        self.stats.datagrams.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(datagram.len() as u64, Ordering::Relaxed);
        if truncated {
            // Half a datagram is not the audio that was sent.
            self.stats.truncated.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let from = from.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        if self.latch.admit(from, datagram, &self.stats) {
            deliver(datagram, at.arrival(stamp));
        }
    }

    /// The kernel's count is cumulative; what it dropped arrived at the
    /// port all the same, so it counts as received and dropped.
    fn count_overflow(&self, total: Option<u32>) {
        if let Some(total) = total {
            let before = self.stats.queue_drops.load(Ordering::Relaxed);
            let new = u64::from(total).saturating_sub(before);
            if new > 0 {
                self.stats.queue_drops.fetch_add(new, Ordering::Relaxed);
                self.stats.datagrams.fetch_add(new, Ordering::Relaxed);
            }
        }
    }
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

/// A worker's reusable receive buffers: 32 datagrams of up to 64 KiB (the
/// largest UDP payload: L16 stereo at 48 kHz is 3,840 bytes per 20 ms, and
/// longer packet times are allowed) with their sources and receive stamps.
/// The buffers are zeroed lazily by the allocator, so only the pages that
/// large datagrams actually touch become resident.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    /// The datagram did not fit its buffer (`MSG_TRUNC`).
    truncated: Vec<bool>,
    addrs: Vec<Option<SocketAddr>>,
    stamps: Vec<Option<Duration>>,
    /// The socket's cumulative overflow count, from the last call.
    overflow: Option<u32>,
    #[cfg(target_os = "linux")]
    raw: linux::RawBatch,
}

/// The largest datagram a leg can receive whole.
pub const MAX_DATAGRAM: usize = 65_536;

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new(32, MAX_DATAGRAM)
    }
}

impl RecvBatch {
    pub fn new(count: usize, size: usize) -> Self {
        Self {
            bufs: vec![vec![0u8; size]; count],
            lens: vec![0; count],
            truncated: vec![false; count],
            addrs: vec![None; count],
            stamps: vec![None; count],
            overflow: None,
            #[cfg(target_os = "linux")]
            raw: linux::RawBatch::new(count),
        }
    }

    fn capacity(&self) -> usize {
        self.bufs.len()
    }

    fn get(&self, i: usize) -> (SocketAddr, &[u8], Option<Duration>) {
        let from = self.addrs[i].unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        (from, &self.bufs[i][..self.lens[i]], self.stamps[i])
    }

    fn overflow(&self) -> Option<u32> {
        self.overflow
    }

    /// Receives up to `capacity` datagrams without blocking.
    /// Receives at most `limit` datagrams (and at most the batch's size).
    fn recv(&mut self, socket: &std::net::UdpSocket, limit: usize) -> std::io::Result<usize> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let k = limit.clamp(1, self.capacity());
            let (n, overflow) = self.raw.recv(
                socket.as_raw_fd(),
                &mut self.bufs[..k],
                &mut self.lens[..k],
                &mut self.truncated[..k],
                &mut self.addrs[..k],
                &mut self.stamps[..k],
            )?;
            self.overflow = overflow;
            Ok(n)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = limit;
            let (n, from) = socket.recv_from(&mut self.bufs[0])?;
            self.lens[0] = n;
            self.truncated[0] = false;
            self.addrs[0] = Some(from);
            self.stamps[0] = None;
            Ok(1)
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    //! `recvmmsg(2)`: many datagrams per system call, with their kernel
    //! receive stamps and the socket's overflow count.

    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use super::Control;

    /// Room for an `SCM_TIMESTAMPNS` (timespec) and an `SO_RXQ_OVFL` (u32)
    /// control message, 8-byte aligned.
    const CONTROL_WORDS: usize = 8;

    pub struct RawBatch {
        headers: Vec<libc::mmsghdr>,
        iovecs: Vec<libc::iovec>,
        names: Vec<libc::sockaddr_storage>,
        controls: Vec<[u64; CONTROL_WORDS]>,
    }

    fn set_option(
        socket: &std::net::UdpSocket,
        name: libc::c_int,
        value: libc::c_int,
    ) -> std::io::Result<()> {
        // SAFETY: a plain setsockopt(2) on a socket we own, with a pointer
        // to a live c_int and its size.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Receive stamps, overflow counts and the queue size.
    pub fn enable_stamps(socket: &std::net::UdpSocket, queue_bytes: usize) -> std::io::Result<()> {
        set_option(socket, libc::SO_TIMESTAMPNS, 1)?;
        set_option(socket, libc::SO_RXQ_OVFL, 1)?;
        set_option(
            socket,
            libc::SO_RCVBUF,
            libc::c_int::try_from(queue_bytes).unwrap_or(libc::c_int::MAX),
        )
    }

    // SAFETY: the raw pointers inside point into this struct's own vectors
    // (set up anew before every call); nothing is shared across threads.
    unsafe impl Send for RawBatch {}

    impl RawBatch {
        pub fn new(count: usize) -> Self {
            // SAFETY: mmsghdr is a plain C struct, valid when zeroed.
            let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
            // SAFETY: so is sockaddr_storage.
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
                controls: vec![[0; CONTROL_WORDS]; count],
            }
        }

        pub fn recv(
            &mut self,
            fd: i32,
            bufs: &mut [Vec<u8>],
            lens: &mut [usize],
            truncated: &mut [bool],
            addrs: &mut [Option<SocketAddr>],
            stamps: &mut [Option<Duration>],
        ) -> std::io::Result<(usize, Option<u32>)> {
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
                h.msg_hdr.msg_control = self.controls[i].as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = CONTROL_WORDS * 8;
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
            let mut overflow = None;
            for i in 0..n {
                lens[i] = (self.headers[i].msg_len as usize).min(bufs[i].len());
                truncated[i] = self.headers[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                addrs[i] = to_socket_addr(&self.names[i]);
                let hdr = &self.headers[i].msg_hdr;
                let used = hdr.msg_controllen.min(CONTROL_WORDS * 8);
                // SAFETY: the kernel wrote `msg_controllen` bytes of control
                // messages into our buffer, which is at least that long.
                let control = unsafe {
                    std::slice::from_raw_parts(hdr.msg_control.cast::<u8>().cast_const(), used)
                };
                let control = Control::parse(control);
                stamps[i] = control.stamp;
                overflow = control.overflow.or(overflow);
            }
            Ok((n, overflow))
        }
    }

    impl Control {
        /// Reads the receive stamp and overflow count from a buffer of
        /// control messages as the kernel writes them.
        pub fn parse(bytes: &[u8]) -> Self {
            let mut found = Control::default();
            // Control messages are read in place as `cmsghdr`s, which need
            // 8-byte alignment: the bytes are copied into words first.
            let mut words = [0u64; 16];
            let len = bytes.len().min(std::mem::size_of_val(&words));
            // SAFETY: `len` bytes fit in both `bytes` and `words`.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), words.as_mut_ptr().cast::<u8>(), len)
            };
            // SAFETY: the first `len` bytes of `words` were just written.
            let bytes: &[u8] = unsafe { std::slice::from_raw_parts(words.as_ptr().cast(), len) };
            // SAFETY: msghdr is a plain C struct, valid zeroed; only its
            // control fields are set, to walk `bytes` with the CMSG_*
            // helpers, which stay within `msg_controllen`.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_control = bytes.as_ptr().cast_mut().cast();
            hdr.msg_controllen = bytes.len();
            // SAFETY: the helpers only return headers inside `bytes` (or
            // null); each payload is read unaligned with the type its
            // level and kind document, and only if it fits in `bytes`.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&hdr);
                while !c.is_null() {
                    let (level, kind, len) = ((*c).cmsg_level, (*c).cmsg_type, (*c).cmsg_len);
                    let data = libc::CMSG_DATA(c);
                    let room = bytes.as_ptr().add(bytes.len()) as usize - data as usize;
                    let payload = len.saturating_sub(data as usize - c as usize).min(room);
                    if level == libc::SOL_SOCKET
                        && kind == libc::SCM_TIMESTAMPNS
                        && payload >= std::mem::size_of::<libc::timespec>()
                    {
                        let ts: libc::timespec = std::ptr::read_unaligned(data.cast());
                        found.stamp = Some(Duration::new(
                            u64::try_from(ts.tv_sec).unwrap_or(0),
                            u32::try_from(ts.tv_nsec).unwrap_or(0),
                        ));
                    } else if level == libc::SOL_SOCKET
                        && kind == libc::SO_RXQ_OVFL
                        && payload >= std::mem::size_of::<u32>()
                    {
                        found.overflow = Some(std::ptr::read_unaligned(data.cast::<u32>()));
                    }
                    c = libc::CMSG_NXTHDR(&hdr, c);
                }
            }
            found
        }
    }

    pub fn to_socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
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

    fn pkt(ssrc: u32) -> Vec<u8> {
        let mut v = vec![0x80, 0, 0, 1, 0, 0, 0, 0];
        v.extend_from_slice(&ssrc.to_be_bytes());
        v
    }

    fn latch(policy: RelatchPolicy, expected: Option<&str>) -> Latch {
        Latch {
            policy,
            expected: expected.map(|e| ExpectedSource::parse(e).unwrap()),
            ..Latch::default()
        }
    }

    /// Clocks scripted as a preempted thread sees them: the first try
    /// loses 3 ms between its reads, the second does not.
    #[test]
    fn drain_time_pairs_the_clocks_on_the_tightest_bracket() {
        let ms = Duration::from_millis;
        let walls = [ms(1000), ms(1003), ms(1010), ms(1010)];
        let monos = [ms(50), ms(60)];
        let (mut w, mut m) = (walls.iter(), monos.iter());
        let pair = DrainTime::paired(|| *m.next().unwrap(), || *w.next().unwrap());
        assert_eq!((pair.monotonic, pair.wall), (ms(60), ms(1010)));
        // A receive stamp 2 ms before the wall read is 2 ms before the
        // monotonic one; with the first bracket it would have been 0.5 ms.
        assert_eq!(pair.arrival(Some(ms(1008))), ms(58));

        // A backlog seconds old keeps its arrival times; a stamp from
        // before a wall clock step is held to MAX_STAMP_AGE, and one from
        // after the drain to the drain.
        let late = DrainTime {
            monotonic: ms(100_000),
            wall: ms(500_000),
        };
        assert_eq!(late.arrival(Some(ms(496_000))), ms(96_000));
        assert_eq!(late.arrival(Some(ms(1))), ms(100_000) - MAX_STAMP_AGE);
        assert_eq!(late.arrival(Some(ms(600_000))), ms(100_000));

        // Never tight: the tightest of the tries is kept.
        let walls = [0, 9, 20, 25, 40, 48, 60, 69].map(ms);
        let monos = [1, 21, 41, 61].map(ms);
        let (mut w, mut m) = (walls.iter(), monos.iter());
        let pair = DrainTime::paired(|| *m.next().unwrap(), || *w.next().unwrap());
        assert_eq!(
            (pair.monotonic, pair.wall),
            (ms(21), Duration::from_micros(22_500))
        );
        assert!(w.next().is_none(), "gave up after {BRACKET_TRIES} tries");
    }

    #[test]
    fn first_source_wins_and_relatch_needs_a_new_ssrc() {
        let stats = IngestStats::default();
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut l = latch(RelatchPolicy::Never, None);
        assert!(l.admit(a, &pkt(1), &stats));
        assert!(!l.admit(b, &pkt(1), &stats));
        assert!(!l.admit(b, &pkt(2), &stats), "strict: no relatch");
        let mut l = latch(RelatchPolicy::Any, None);
        assert!(l.admit(a, &pkt(1), &stats));
        assert!(
            !l.admit(b, &pkt(1), &stats),
            "same SSRC from elsewhere: a copy, not a move"
        );
        assert!(
            l.admit(b, &pkt(2), &stats),
            "new SSRC from a new address: relatch"
        );
        assert!(
            !l.admit(a, &pkt(1), &stats),
            "the old source cannot take it back"
        );
        assert_eq!(stats.relatches.load(Ordering::Relaxed), 1);
        assert_eq!(stats.foreign_source.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn same_host_relatch_never_leaves_the_host() {
        let stats = IngestStats::default();
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let moved: SocketAddr = "127.0.0.1:4002".parse().unwrap();
        let stranger: SocketAddr = "127.0.0.2:4000".parse().unwrap();
        let mut l = latch(RelatchPolicy::SameHost, None);
        assert!(l.admit(a, &pkt(1), &stats));
        assert!(!l.admit(stranger, &pkt(9), &stats), "another host");
        assert!(l.admit(moved, &pkt(2), &stats), "same host, new port");
        assert_eq!(stats.relatches.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_named_source_is_the_only_one_from_the_first_packet() {
        let stats = IngestStats::default();
        let real: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let stranger: SocketAddr = "127.0.0.1:4999".parse().unwrap();
        let mut l = latch(RelatchPolicy::Any, Some("127.0.0.1:4000"));
        assert!(!l.admit(stranger, &pkt(9), &stats), "a stranger first");
        assert!(l.admit(real, &pkt(1), &stats));
        assert!(
            !l.admit(stranger, &pkt(7), &stats),
            "not even with relatch any"
        );
        let mut by_host = latch(RelatchPolicy::Never, Some("127.0.0.1"));
        assert!(by_host.admit(real, &pkt(1), &stats));
        let v6: SocketAddr = "[::ffff:127.0.0.1]:4000".parse().unwrap();
        assert!(latch(RelatchPolicy::Never, Some("127.0.0.1")).admit(v6, &pkt(1), &stats));
        assert!(ExpectedSource::parse("[2001:db8::1]:4000").is_ok());
        assert!(ExpectedSource::parse("pbx.example").is_err());
        assert_eq!(stats.foreign_source.load(Ordering::Relaxed), 2);
    }

    /// L16 stereo at 48 kHz carries 3,840 bytes of audio per 20 ms: such a
    /// datagram arrives whole. One larger than a (deliberately small)
    /// buffer is flagged as truncated instead of being passed on cut.
    #[test]
    fn big_datagrams_arrive_whole_and_cut_ones_are_flagged() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let big: Vec<u8> = (0..12 + 3840).map(|i| (i % 251) as u8).collect();
        tx.send_to(&big, rx.local_addr().unwrap()).unwrap();
        let mut batch = RecvBatch::default();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(batch.recv(&rx, usize::MAX).unwrap(), 1);
        let (_, got, _) = batch.get(0);
        assert_eq!(got, &big[..]);
        assert!(!batch.truncated[0]);

        tx.send_to(&big, rx.local_addr().unwrap()).unwrap();
        let mut small = RecvBatch::new(4, 2048);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(small.recv(&rx, usize::MAX).unwrap(), 1);
        assert!(small.truncated[0], "a cut datagram must be flagged");
        assert_eq!(small.get(0).1.len(), 2048);
    }
}
