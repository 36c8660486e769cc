//! The RTP port pool: even ports from `[rtp] port_min..=port_max` for RTP,
//! each with the odd port above it for RTCP. A released pair rests for
//! `port_quarantine_s` before it is handed out again, so stragglers of an
//! old call never land in a new one. A port another process holds is
//! skipped (and tried again later); when nothing is free the caller gets
//! [`AllocateError::Exhausted`]. Running out of file descriptors or socket
//! memory is the process's trouble, not the port's: the pair stays free and
//! the caller gets [`AllocateError::Resources`].

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Why no pair was handed out.
#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    #[error("no free RTP port pair in the configured range")]
    Exhausted,
    /// Out of file descriptors (`EMFILE`, `ENFILE`) or socket memory
    /// (`ENOBUFS`, `ENOMEM`): local and passing.
    #[error("cannot open RTP sockets: {0}")]
    Resources(std::io::Error),
}

/// Whether a bind failed for want of descriptors or memory rather than
/// because of the port.
fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// A bound RTP/RTCP socket pair.
#[derive(Debug)]
pub struct PortPair {
    pub port: u16,
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
}

#[derive(Debug)]
pub struct PortPool {
    bind: IpAddr,
    free: VecDeque<u16>,
    /// Released ports and when they may be used again.
    resting: VecDeque<(u16, Duration)>,
    quarantine: Duration,
}

impl PortPool {
    pub fn new(bind: IpAddr, min: u16, max: u16, quarantine: Duration) -> Self {
        let first = min + (min % 2);
        let free = (first..max).step_by(2).collect();
        Self {
            bind,
            free,
            resting: VecDeque::new(),
            quarantine,
        }
    }

    /// Pairs in the range.
    pub fn capacity(&self) -> usize {
        self.free.len() + self.resting.len()
    }

    /// Binds the next free pair at monotonic time `now`.
    pub fn allocate(&mut self, now: Duration) -> Result<PortPair, AllocateError> {
        while let Some(&(port, until)) = self.resting.front() {
            if until > now {
                break;
            }
            self.resting.pop_front();
            self.free.push_back(port);
        }
        for _ in 0..self.free.len() {
            let Some(port) = self.free.pop_front() else {
                break;
            };
            match bind_pair(self.bind, port) {
                Ok(pair) => return Ok(pair),
                Err(e) if out_of_resources(&e) => {
                    self.free.push_front(port);
                    return Err(AllocateError::Resources(e));
                }
                Err(e) => {
                    tracing::warn!(port, error = %e, "RTP port in use by another process; skipping it for now");
                    self.resting
                        .push_back((port, now + self.quarantine.max(Duration::from_secs(1))));
                }
            }
        }
        Err(AllocateError::Exhausted)
    }

    /// Returns a pair to the pool after the quarantine.
    pub fn release(&mut self, port: u16, now: Duration) {
        self.resting.push_back((port, now + self.quarantine));
    }
}

fn bind_pair(ip: IpAddr, port: u16) -> std::io::Result<PortPair> {
    let rtp = UdpSocket::bind(SocketAddr::new(ip, port))?;
    let rtcp = UdpSocket::bind(SocketAddr::new(ip, port + 1))?;
    rtp.set_nonblocking(true)?;
    rtcp.set_nonblocking(true)?;
    set_receive_buffer(&rtp);
    Ok(PortPair { port, rtp, rtcp })
}

/// Asks for a larger kernel receive buffer (bursts of a few hundred
/// packets); the kernel may grant less, which is fine.
fn set_receive_buffer(socket: &UdpSocket) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let size: libc::c_int = 1 << 20;
        // SAFETY: a valid fd and a pointer to a c_int of the stated size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_quarantined_and_exhaustible() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // Find a free range by binding inside a high window.
        let base = 47_000 + (std::process::id() % 500) as u16 * 4;
        let mut pool = PortPool::new(ip, base, base + 4, Duration::from_secs(10));
        let a = pool.allocate(Duration::ZERO).unwrap();
        let b = pool.allocate(Duration::ZERO).unwrap();
        assert_eq!(a.port % 2, 0);
        assert_eq!(b.port, a.port + 2);
        assert!(matches!(
            pool.allocate(Duration::ZERO),
            Err(AllocateError::Exhausted)
        ));
        let port = a.port;
        drop(a);
        pool.release(port, Duration::ZERO);
        assert!(
            pool.allocate(Duration::from_secs(5)).is_err(),
            "still resting"
        );
        assert_eq!(pool.allocate(Duration::from_secs(11)).unwrap().port, port);
    }

    #[test]
    fn a_port_another_process_holds_is_skipped() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let base = 46_000 + (std::process::id() % 500) as u16 * 4;
        // Someone else holds the first pair's RTCP port.
        let _squatter = UdpSocket::bind(SocketAddr::new(ip, base + 1)).unwrap();
        let mut pool = PortPool::new(ip, base, base + 4, Duration::from_secs(10));
        let pair = pool.allocate(Duration::ZERO).unwrap();
        assert_eq!(pair.port, base + 2, "the busy pair is skipped, not fatal");
        assert!(matches!(
            pool.allocate(Duration::ZERO),
            Err(AllocateError::Exhausted)
        ));
    }
}
