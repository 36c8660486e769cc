//! Opening and closing legs' sockets, for the engine: a leg gets an RTP/RTCP
//! port pair from the pool, its RTP socket (which the call's worker reads)
//! with the configured source policy, and an RTCP counter on the IO runtime.
//! The engine decides *whether* a leg opens and keeps its registry; this
//! module is how, so the engine binds no socket and spawns no task itself.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Relatch, RtpSection};
use crate::io::ports::{AllocateError, PortPool};
use crate::io::udp::{ExpectedSource, IngestStats, LegSocket, RelatchPolicy, count_rtcp};

/// Why a leg could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenLegError {
    #[error("no free RTP port pair in the configured range")]
    PortsExhausted,
    /// Out of descriptors or socket memory: logged where it happens.
    #[error("cannot open RTP sockets: {0}")]
    OutOfResources(std::io::Error),
    #[error("setting up the leg's sockets: {0}")]
    Socket(std::io::Error),
}

/// A leg's open sockets: the RTP socket goes to the call's worker, the
/// rest stays with the engine until [`LegOpener::close`].
pub struct OpenedLeg {
    pub socket: LegSocket,
    pub ports: LegPorts,
}

/// What the engine keeps of an open leg: its port, its ingest counters,
/// and the switch that stops its RTCP counter.
pub struct LegPorts {
    pub port: u16,
    pub stats: Arc<IngestStats>,
    closer: watch::Sender<bool>,
}

/// See the module documentation.
pub struct LegOpener {
    ports: Mutex<PortPool>,
    runtime: tokio::runtime::Handle,
    relatch: RelatchPolicy,
    queue_bytes: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LegOpener {
    /// Legs on `[rtp]`'s address and port range; RTCP is counted on
    /// `runtime`.
    pub fn new(rtp: &RtpSection, runtime: tokio::runtime::Handle) -> Result<Self, String> {
        let bind: IpAddr = rtp
            .bind
            .parse()
            .map_err(|_| format!("rtp.bind {:?} is not an address", rtp.bind))?;
        let ports = PortPool::new(
            bind,
            rtp.port_min as u16,
            rtp.port_max as u16,
            Duration::from_secs(u64::from(rtp.port_quarantine_s)),
        );
        let relatch = match rtp.relatch {
            Relatch::Never => RelatchPolicy::Never,
            Relatch::SameHost => RelatchPolicy::SameHost,
            Relatch::Any => RelatchPolicy::Any,
        };
        Ok(Self {
            ports: Mutex::new(ports),
            runtime,
            relatch,
            queue_bytes: rtp.queue_bytes as usize,
        })
    }

    /// Binds a port pair and starts counting its RTCP. `expected`, when
    /// given, is the only source the leg accepts.
    pub fn open(
        &self,
        expected: Option<ExpectedSource>,
        now: Duration,
    ) -> Result<OpenedLeg, OpenLegError> {
        let pair = lock(&self.ports).allocate(now).map_err(|e| match e {
            AllocateError::Exhausted => OpenLegError::PortsExhausted,
            AllocateError::Resources(e) => OpenLegError::OutOfResources(e),
        })?;
        let port = pair.port;
        let stats = Arc::new(IngestStats::default());
        let (closer, closed) = watch::channel(false);
        let opened = LegSocket::new(
            pair.rtp,
            stats.clone(),
            self.relatch,
            expected,
            self.queue_bytes,
        )
        .and_then(|socket| {
            let _guard = self.runtime.enter();
            let rtcp = tokio::net::UdpSocket::from_std(pair.rtcp)?;
            // RTP is read by the call's worker at every tick; RTCP is
            // only counted, by a task on the IO runtime.
            self.runtime.spawn(count_rtcp(rtcp, stats.clone(), closed));
            Ok(socket)
        });
        match opened {
            Ok(socket) => Ok(OpenedLeg {
                socket,
                ports: LegPorts {
                    port,
                    stats,
                    closer,
                },
            }),
            Err(e) => {
                lock(&self.ports).release(port, now);
                Err(OpenLegError::Socket(e))
            }
        }
    }

    /// Stops a leg's RTCP counter and rests its port pair (its RTP socket
    /// is closed by the worker, which owns it).
    pub fn close(&self, leg: &LegPorts, now: Duration) {
        let _ = leg.closer.send(true);
        lock(&self.ports).release(leg.port, now);
    }
}
