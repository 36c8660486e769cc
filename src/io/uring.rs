//! The io_uring receive path (Linux): one ring per media worker, a
//! multishot `recvmsg` armed on each of the worker's leg sockets, and a
//! ring of provided buffers the kernel fills as datagrams arrive.
//!
//! The ring is set up with deferred task work (`IORING_SETUP_DEFER_TASKRUN`),
//! so datagrams wait in their sockets' kernel queues, stamped on arrival,
//! until the worker asks: one `io_uring_enter` per tick receives what every
//! leg of the worker holds, where the `recvmmsg` path makes one system call
//! per leg. The worker then takes each leg's datagrams in order from
//! [`UringReceiver::take`] and hands their buffers back.
//!
//! When the buffers run out (a worker seconds behind), a leg's multishot
//! receive ends; the leg is then read with `recvmmsg` until its socket is
//! empty and re-armed, so nothing is lost and nothing is reordered: only one
//! of the two ever reads a socket at a time. This module owns the ring, the
//! buffers and the per-leg receive state; what a datagram means is
//! [`crate::io::udp`]'s.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, cqueue, opcode, types};

use crate::io::udp::{Control, to_socket_addr};

/// Bytes per provided buffer: the kernel's `io_uring_recvmsg_out` header,
/// the source address, the control messages (receive stamp, overflow
/// count), then the datagram. Datagrams up to [`MAX_PAYLOAD`] arrive whole.
pub const BUFFER_SIZE: usize = 8192;
/// Distance between the starts of two buffers: one cache line more than a
/// buffer. A datagram fills only the first few lines of its buffer, and at
/// a power-of-two stride every buffer's first line would fall in the same
/// few sets of the CPU caches (8 KiB apart: one set of a 32 KiB L1, 8 of a
/// 512 KiB L2), so the headers the kernel writes in one `io_uring_enter`
/// evicted each other before the worker read them. One line of skew per
/// buffer spreads them over every set.
const BUFFER_STRIDE: usize = BUFFER_SIZE + 64;
/// The most buffers a worker's ring can hand out: room for 4,000 legs at
/// a 60 ms tick (see [`room_per_leg`]). Only those actually handed out are
/// ever touched (see [`UringReceiver::provision`]), so this costs address
/// space, not memory.
pub const DEFAULT_BUFFERS: u16 = 16_384;
/// The one buffer group of a worker's ring.
const BUFFER_GROUP: u16 = 0;
/// Room for the source address: a `sockaddr_in6` (IPv4 arrives as a
/// `sockaddr_in`, which is shorter), rounded up to keep the control
/// messages after it 8-byte aligned.
const NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>().next_multiple_of(8);
/// Room for an `SCM_TIMESTAMPNS` and an `SO_RXQ_OVFL` control message.
const CONTROL_LEN: usize = 64;
/// `io_uring_recvmsg_out`: four u32s before the name.
const OUT_HEADER: usize = 16;
/// The largest datagram that arrives whole through a provided buffer.
pub const MAX_PAYLOAD: usize = BUFFER_SIZE - OUT_HEADER - NAME_LEN - CONTROL_LEN;
/// Buffers the ring holds at least, whatever its legs.
const MIN_ROOM: usize = 64;
/// The packet time buffers are provisioned for: 20 ms, the common one.
const PACKET_TIME: std::time::Duration = std::time::Duration::from_millis(20);

/// How much of a datagram's buffer [`UringReceiver::prefetch`] fetches:
/// the headers and a G.711 or G.722 20 ms payload (160 bytes after 12 of
/// RTP header), five cache lines.
const PREFETCH_BYTES: usize = OUT_HEADER + NAME_LEN + CONTROL_LEN + 12 + 160;

/// Asks the CPU to bring the cache line holding `at` into its caches; a
/// hint, with no effect on what the program computes.
#[inline]
pub(crate) fn prefetch_line(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch never faults and reads nothing the program
        // sees, whatever the address; SSE is part of the x86_64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Buffers handed out per attached leg for a worker ticking every `tick`:
/// the datagrams a leg sends in one tick at the common packet time, and
/// one more. The ring is shared by the worker's legs, so one leg's burst
/// borrows from the others' slack; a 20 ms tick keeps two per leg.
pub fn room_per_leg(tick: std::time::Duration) -> usize {
    let per_tick = tick.as_nanos().div_ceil(PACKET_TIME.as_nanos());
    usize::try_from(per_tick)
        .unwrap_or(usize::MAX)
        .max(1)
        .saturating_add(1)
}
/// `user_data` of requests whose completions carry nothing to route.
const CONTROL_REQUEST: u64 = u64::MAX;

/// What a leg's receive is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    /// The slot is unused.
    Free,
    /// A multishot receive is (or is about to be) armed on the socket.
    Armed,
    /// The multishot receive ended (no buffers, or an error): the socket is
    /// read with `recvmmsg` until it is empty, then re-armed.
    Stopped,
    /// Cancelled; the slot is freed when the receive's last completion
    /// comes in.
    Closing,
}

struct LegSlot {
    fd: RawFd,
    state: LegState,
    /// Whether a stopped receive is armed again once the socket is empty
    /// (not for a leg moved to `recvmmsg` for good, see [`UringReceiver::retire`]).
    rearm: bool,
    /// Received datagrams not yet taken: (buffer id, bytes used).
    pending: VecDeque<(u16, u32)>,
}

/// One datagram as the kernel delivered it into a provided buffer.
pub struct Received<'a> {
    pub from: Option<std::net::SocketAddr>,
    pub payload: &'a [u8],
    /// Larger than [`MAX_PAYLOAD`]: cut by the kernel.
    pub truncated: bool,
    pub control: Control,
}

/// What [`UringReceiver::take`] found for a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Datagrams handed over.
    pub count: usize,
    /// Received datagrams are still waiting for the next take.
    pub more_pending: bool,
    /// The leg's multishot receive has ended: its socket may hold more,
    /// to be read with `recvmmsg` before [`UringReceiver::rearm`].
    pub stopped: bool,
}

/// The provided buffers: a ring of descriptors the kernel takes from and
/// the memory they point at, both mapped anonymously (so only the pages
/// datagrams touch become resident).
struct ProvidedBuffers {
    ring: *mut types::BufRingEntry,
    ring_bytes: usize,
    memory: *mut u8,
    memory_bytes: usize,
    count: u16,
    /// Our producer position (published to the kernel's tail).
    tail: u16,
    /// Buffers handed out so far: ids `0..live`. The ring starts with a
    /// few and grows with the legs, so the memory touched follows the
    /// load rather than the ring's size.
    live: u16,
}

// SAFETY: the mappings are owned by this struct alone and only touched by
// the worker thread that owns the receiver.
unsafe impl Send for ProvidedBuffers {}

fn map_anonymous(bytes: usize) -> io::Result<*mut u8> {
    // SAFETY: a fresh private anonymous mapping; no existing memory is
    // affected, and failure is reported as MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p.cast())
    }
}

impl ProvidedBuffers {
    fn new(count: u16) -> io::Result<Self> {
        assert!(
            count.is_power_of_two(),
            "a buffer ring's size is a power of two"
        );
        let ring_bytes = usize::from(count) * std::mem::size_of::<types::BufRingEntry>();
        let memory_bytes = usize::from(count) * BUFFER_STRIDE;
        let ring = map_anonymous(ring_bytes)?;
        let memory = match map_anonymous(memory_bytes) {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: unmapping the mapping made just above.
                unsafe { libc::munmap(ring.cast(), ring_bytes) };
                return Err(e);
            }
        };
        // A datagram touches the first page of its buffer; with huge pages
        // that would make whole 2 MiB runs of buffers resident. Advice
        // only: without it the buffers work the same, bigger.
        // SAFETY: advice on the mapping made just above.
        unsafe { libc::madvise(memory.cast(), memory_bytes, libc::MADV_NOHUGEPAGE) };
        Ok(Self {
            ring: ring.cast(),
            ring_bytes,
            memory,
            memory_bytes,
            count,
            tail: 0,
            live: 0,
        })
    }

    /// Queues buffer `bid` for the kernel (published by [`Self::publish`]).
    fn give(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot` is inside the ring's `count` entries, and the
        // entry at our tail is not one the kernel reads until published.
        let entry = unsafe { &mut *self.ring.add(slot) };
        entry.set_addr(self.start(bid) as u64);
        entry.set_len(BUFFER_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Hands out fresh buffers until `total` are out (or all of them).
    /// Buffers the worker holds count: a worker that falls behind leaves
    /// its backlog in the sockets' queues (and reads it with `recvmmsg`)
    /// rather than growing the ring.
    fn provision(&mut self, total: usize) {
        while self.live < self.count && usize::from(self.live) < total {
            self.give(self.live);
            self.live += 1;
        }
    }

    /// Makes every buffer given so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field overlays the first entry's reserved word,
        // which the kernel reads as the ring's tail; the ring is page
        // aligned and lives as long as `self`.
        let tail = unsafe { &*types::BufRingEntry::tail(self.ring).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// Where buffer `bid` starts. Ids come from `0..count`: handed out by
    /// [`Self::provision`], or from completions, which `complete` filters.
    fn start(&self, bid: u16) -> *mut u8 {
        debug_assert!(bid < self.count, "buffer id {bid} outside the ring");
        // SAFETY: `bid` < count, so the buffer lies inside `memory`.
        unsafe { self.memory.add(usize::from(bid) * BUFFER_STRIDE) }
    }

    /// The bytes the kernel wrote into buffer `bid`.
    fn filled(&self, bid: u16, len: u32) -> &[u8] {
        let len = (len as usize).min(BUFFER_SIZE);
        // SAFETY: the kernel handed `bid` back in a completion, so it is
        // out of the ring and no longer written to until given again, and
        // it lies inside `memory` (see `start`).
        unsafe { std::slice::from_raw_parts(self.start(bid), len) }
    }
}

impl Drop for ProvidedBuffers {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mappings; the ring that used them is
        // gone (see `UringReceiver`'s field order).
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_bytes);
            libc::munmap(self.memory.cast(), self.memory_bytes);
        }
    }
}

/// A worker's io_uring: its ring, buffers and legs. See the module doc.
pub struct UringReceiver {
    // Field order matters: the ring is dropped (and every receive with it)
    // before the buffers it writes into are unmapped.
    ring: IoUring,
    buffers: ProvidedBuffers,
    /// The template every multishot receive reads its name and control
    /// sizes from; boxed so its address stays put.
    msghdr: Box<libc::msghdr>,
    legs: Vec<LegSlot>,
    free: Vec<u32>,
    /// Buffers handed out per attached leg ([`room_per_leg`]).
    room_per_leg: usize,
    /// Times a leg's receive ended for want of buffers.
    pub buffer_exhaustions: u64,
}

// SAFETY: `msghdr` holds only null pointers and lengths; the ring and the
// buffers are used by the one thread that owns the receiver at a time.
unsafe impl Send for UringReceiver {}

impl UringReceiver {
    /// A ring with `buffers` provided buffers (a power of two), of which
    /// `room_per_leg` per attached leg are handed out. Fails where io_uring,
    /// deferred task work or provided-buffer rings are not available (old
    /// kernels, seccomp, `kernel.io_uring_disabled`).
    pub fn new(buffers: u16, room_per_leg: usize) -> io::Result<Self> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize((u32::from(buffers) * 2).max(1024))
            .build(256)?;
        let mut provided = ProvidedBuffers::new(buffers)?;
        // SAFETY: the ring memory is page aligned (mmap), holds `buffers`
        // entries and stays mapped until after the ring is dropped.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                provided.ring as u64,
                buffers,
                BUFFER_GROUP,
                0,
            )?;
        }
        provided.provision(MIN_ROOM);
        provided.publish();
        // SAFETY: msghdr is a plain C struct, valid zeroed.
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msghdr.msg_namelen = NAME_LEN as libc::socklen_t;
        msghdr.msg_controllen = CONTROL_LEN;
        Ok(Self {
            ring,
            buffers: provided,
            msghdr,
            legs: Vec::new(),
            free: Vec::new(),
            room_per_leg,
            buffer_exhaustions: 0,
        })
    }

    /// Starts receiving on `fd`; the token names the leg from then on. The
    /// receive is armed with the next [`Self::reap`].
    pub fn attach(&mut self, fd: RawFd) -> io::Result<u32> {
        let token = match self.free.pop() {
            Some(t) => t,
            None => {
                self.legs.push(LegSlot {
                    fd,
                    state: LegState::Free,
                    rearm: true,
                    pending: VecDeque::new(),
                });
                u32::try_from(self.legs.len() - 1).map_err(io::Error::other)?
            }
        };
        let slot = &mut self.legs[token as usize];
        slot.fd = fd;
        slot.state = LegState::Armed;
        slot.rearm = true;
        slot.pending.clear();
        if let Err(e) = self.arm(token) {
            self.release(token);
            return Err(e);
        }
        self.provision();
        Ok(token)
    }

    fn arm(&mut self, token: u32) -> io::Result<()> {
        let fd = self.legs[token as usize].fd;
        let entry = opcode::RecvMsgMulti::new(types::Fd(fd), &*self.msghdr, BUFFER_GROUP)
            .build()
            .user_data(u64::from(token));
        self.push(&entry)
    }

    fn push(&mut self, entry: &io_uring::squeue::Entry) -> io::Result<()> {
        // SAFETY: the entry's pointers (the msghdr template) live as long
        // as the ring.
        if unsafe { self.ring.submission().push(entry) }.is_err() {
            // Full: hand what is queued to the kernel and try again.
            self.ring.submit()?;
            // SAFETY: as above.
            unsafe { self.ring.submission().push(entry) }
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        Ok(())
    }

    /// Re-arms a stopped leg whose socket `recvmmsg` has emptied.
    pub fn rearm(&mut self, token: u32) -> io::Result<()> {
        let Some(slot) = self.legs.get_mut(token as usize) else {
            return Ok(());
        };
        if slot.state != LegState::Stopped || !slot.rearm {
            return Ok(());
        }
        slot.state = LegState::Armed;
        self.arm(token)
    }

    /// Moves a leg to `recvmmsg` for good (its datagrams outgrow the
    /// provided buffers): its receive is cancelled with the next reap, and
    /// what it received before that is still taken in order.
    pub fn retire(&mut self, token: u32) {
        let Some(slot) = self.legs.get_mut(token as usize) else {
            return;
        };
        if !slot.rearm {
            return;
        }
        slot.rearm = false;
        if slot.state == LegState::Armed {
            let cancel = opcode::AsyncCancel::new(u64::from(token))
                .build()
                .user_data(CONTROL_REQUEST);
            if let Err(e) = self.push(&cancel) {
                tracing::warn!(error = %e, "could not cancel an io_uring receive");
            }
        }
    }

    /// Stops receiving for a leg whose socket is about to close, and waits
    /// for the kernel to let go of it (so its port can be bound again at
    /// once). Datagrams not taken are dropped with the leg.
    pub fn detach(&mut self, token: u32) {
        self.detach_all(&[token]);
    }

    /// [`UringReceiver::detach`] for several legs (a call's, as it ends)
    /// with one system call for all of their cancels.
    pub fn detach_all(&mut self, tokens: &[u32]) {
        let mut cancelled = Vec::with_capacity(tokens.len());
        for &token in tokens {
            let Some(slot) = self.legs.get_mut(token as usize) else {
                continue;
            };
            let was = slot.state;
            slot.state = LegState::Closing;
            for (bid, _) in slot.pending.drain(..) {
                self.buffers.give(bid);
            }
            if was != LegState::Armed {
                self.release(token);
                continue;
            }
            let cancel = opcode::AsyncCancel::new(u64::from(token))
                .build()
                .user_data(CONTROL_REQUEST);
            if self.push(&cancel).is_ok() {
                cancelled.push(token);
            }
        }
        self.buffers.publish();
        if cancelled.is_empty() {
            return;
        }
        // The cancel completes at once for a receive waiting on its
        // socket; a few rounds cover one caught mid-delivery.
        for _ in 0..4 {
            self.enter();
            self.complete();
            cancelled.retain(|&t| self.legs[t as usize].state != LegState::Free);
            if cancelled.is_empty() {
                return;
            }
        }
        for token in cancelled {
            tracing::warn!(
                token,
                "io_uring receive still held after cancel; its slot stays reserved"
            );
        }
    }

    /// Keeps buffers out for the attached legs' next tick, with slack.
    fn provision(&mut self) {
        let legs = self.legs.len() - self.free.len();
        self.buffers
            .provision(MIN_ROOM.saturating_add(self.room_per_leg.saturating_mul(legs)));
        self.buffers.publish();
    }

    fn release(&mut self, token: u32) {
        let slot = &mut self.legs[token as usize];
        slot.state = LegState::Free;
        slot.fd = -1;
        self.free.push(token);
    }

    /// Submits what is queued and runs the deferred receives: every
    /// datagram waiting in the worker's sockets lands in a buffer. One
    /// system call.
    pub fn reap(&mut self) {
        self.enter();
        self.complete();
    }

    fn enter(&mut self) {
        // Ask for more completions than can come, with a zero timeout: the
        // kernel then runs all the deferred receives, not a first few, and
        // returns at once (ETIME).
        let zero = types::Timespec::new();
        let args = types::SubmitArgs::new().timespec(&zero);
        let want = self.ring.params().cq_entries() as usize;
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => tracing::warn!(error = %e, "io_uring_enter failed"),
        }
    }

    /// Routes every completion to its leg.
    fn complete(&mut self) {
        let mut cq = self.ring.completion();
        cq.sync();
        let mut recycle = Vec::new();
        let mut released = Vec::new();
        for cqe in &mut cq {
            let user = cqe.user_data();
            if user == CONTROL_REQUEST {
                continue;
            }
            let flags = cqe.flags();
            let bid = cqueue::buffer_select(flags).filter(|b| *b < self.buffers.count);
            let Some(slot) = self.legs.get_mut(user as usize) else {
                recycle.extend(bid);
                continue;
            };
            match (cqe.result(), bid) {
                (len, Some(bid)) if len >= 0 => {
                    if matches!(slot.state, LegState::Closing | LegState::Free) {
                        recycle.push(bid);
                    } else {
                        slot.pending.push_back((bid, len as u32));
                    }
                }
                (err, _) => {
                    recycle.extend(bid);
                    if err == -libc::ENOBUFS {
                        self.buffer_exhaustions += 1;
                    } else if err < 0 && err != -libc::ECANCELED {
                        tracing::debug!(error = %io::Error::from_raw_os_error(-err), "io_uring receive ended");
                    }
                }
            }
            if !cqueue::more(flags) {
                match slot.state {
                    LegState::Closing => released.push(user as u32),
                    LegState::Armed => slot.state = LegState::Stopped,
                    LegState::Stopped | LegState::Free => {}
                }
            }
        }
        drop(cq);
        for bid in recycle {
            self.buffers.give(bid);
        }
        self.buffers.publish();
        for token in released {
            self.release(token);
        }
    }

    /// Starts fetching into the CPU cache the datagrams waiting for leg
    /// `token` (the bytes [`Self::take`] reads: header, source, control
    /// messages and payload, up to [`PREFETCH_BYTES`] of each). The kernel
    /// wrote them at the tick's `io_uring_enter`; by the time the worker
    /// reaches a leg, the calls before it have evicted them. A worker calls
    /// this for the next call's legs before it plays out the current one,
    /// so the loads overlap that work instead of stalling `take`.
    pub fn prefetch(&self, token: u32) {
        let Some(slot) = self.legs.get(token as usize) else {
            return;
        };
        for &(bid, len) in &slot.pending {
            let bytes = (len as usize).min(PREFETCH_BYTES);
            let start = self.buffers.start(bid);
            for offset in (0..bytes).step_by(64) {
                prefetch_line(start.wrapping_add(offset));
            }
        }
    }

    /// Hands `each` up to `limit` of the leg's received datagrams, oldest
    /// first, and gives their buffers back to the kernel.
    pub fn take(&mut self, token: u32, limit: usize, mut each: impl FnMut(Received<'_>)) -> Taken {
        let Some(slot) = self.legs.get_mut(token as usize) else {
            return Taken {
                count: 0,
                more_pending: false,
                stopped: false,
            };
        };
        let n = limit.min(slot.pending.len());
        for (bid, len) in slot.pending.drain(..n) {
            let buffer = self.buffers.filled(bid, len);
            if let Ok(out) = types::RecvMsgOut::parse(buffer, &self.msghdr) {
                let from = (!out.is_name_data_truncated())
                    .then(|| {
                        // SAFETY: sockaddr_storage is a plain C struct,
                        // valid zeroed; the name bytes are copied into it.
                        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                        let name = out.name_data();
                        let room = std::mem::size_of::<libc::sockaddr_storage>();
                        // SAFETY: at most `room` bytes into the storage.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                name.as_ptr(),
                                (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
                                name.len().min(room),
                            );
                        }
                        to_socket_addr(&storage)
                    })
                    .flatten();
                each(Received {
                    from,
                    payload: out.payload_data(),
                    truncated: out.is_payload_truncated(),
                    control: Control::parse(out.control_data()),
                });
            }
            self.buffers.give(bid);
        }
        if n > 0 {
            self.buffers.publish();
        }
        Taken {
            count: n,
            more_pending: !slot.pending.is_empty(),
            stopped: slot.state == LegState::Stopped,
        }
    }
}

impl Drop for UringReceiver {
    fn drop(&mut self) {
        // Cancel every receive and let the kernel finish them before the
        // buffers go (the ring itself is closed just after).
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(CONTROL_REQUEST);
        if self.push(&cancel).is_ok() {
            self.enter();
            self.complete();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// The ring's memory follows the legs: a worker with few legs touches
    /// few buffers, whatever the ring's size.
    #[test]
    fn buffers_are_handed_out_as_legs_are_added() {
        let per_leg = room_per_leg(PACKET_TIME);
        let Ok(mut ring) = UringReceiver::new(DEFAULT_BUFFERS, per_leg) else {
            eprintln!("skipping: io_uring is not available here");
            return;
        };
        assert_eq!(usize::from(ring.buffers.live), MIN_ROOM);
        let sockets: Vec<_> = (0..10)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let tokens: Vec<u32> = sockets
            .iter()
            .map(|s| ring.attach(s.as_raw_fd()).unwrap())
            .collect();
        ring.reap();
        assert_eq!(usize::from(ring.buffers.live), MIN_ROOM + per_leg * 10);
        // Datagrams the worker holds use up buffers; no more are handed
        // out for them (a backlog stays in the socket queues).
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..30 {
            tx.send_to(&[0x80; 172], sockets[0].local_addr().unwrap())
                .unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(30));
        ring.reap();
        let held = |ring: &UringReceiver| ring.legs.iter().map(|l| l.pending.len()).sum::<usize>();
        assert_eq!(held(&ring), 30);
        assert_eq!(usize::from(ring.buffers.live), MIN_ROOM + per_leg * 10);
        assert_eq!(ring.take(tokens[0], 100, |_| {}).count, 30);
        assert_eq!(held(&ring), 0);
        for t in tokens {
            ring.detach(t);
        }
    }

    /// A longer tick holds more of each leg's datagrams between reads.
    #[test]
    fn room_per_leg_follows_the_tick() {
        let ms = |n| room_per_leg(std::time::Duration::from_millis(n));
        assert_eq!(ms(5), 2);
        assert_eq!(ms(20), 2);
        assert_eq!(ms(21), 3);
        assert_eq!(ms(40), 3);
        assert_eq!(ms(60), 4);
        assert_eq!(ms(100), 6);
    }
}
