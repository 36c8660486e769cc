//! The SIPREC listeners (`[siprec]`): one UDP socket and one TCP listener,
//! each on its own thread, feeding the [`Uas`] and sending what it answers.
//! UDP datagrams are one message each; a TCP stream is cut into messages
//! by their `Content-Length` (RFC 3261 18.3), with CRLF keep-alives
//! skipped (RFC 5626 3.5.1). Limits: 64 KiB per message, `max_connections`
//! TCP connections, each closed after 5 minutes without a message.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::sessions::{EngineSessions, Source};
use super::uas::{Outgoing, Transport, Uas, UasStats};
use crate::config::SiprecSection;
use crate::engine::Engine;

/// Largest SIP message taken.
pub const MAX_MESSAGE: usize = 64 * 1024;
const TCP_IDLE: Duration = Duration::from_secs(300);
const TICK: Duration = Duration::from_millis(100);

type SharedUas = Arc<Mutex<Uas<EngineSessions>>>;

/// Open TCP connections by peer, for requests of ours (a BYE) that go to
/// a client connected over TCP.
type Conns = Arc<Mutex<HashMap<SocketAddr, TcpStream>>>;

/// Sends what the UAS produced: datagrams from `udp`, TCP messages on the
/// peer's open connection (none open: dropped, as the client left).
fn deliver(out: Vec<Outgoing>, udp: Option<&UdpSocket>, conns: &Conns) {
    for o in out {
        let sent = match (o.transport, udp) {
            (Transport::Udp, Some(s)) => s.send_to(&o.bytes, o.to).map(|_| ()),
            (Transport::Tcp, _) => match conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&o.to)
            {
                Some(c) => c.write_all(&o.bytes),
                None => Err(std::io::Error::other("no open connection")),
            },
            (Transport::Udp, None) => Err(std::io::Error::other("no UDP socket")),
        };
        if let Err(e) = sent {
            tracing::debug!(to = %o.to, error = %e, "SIP send failed");
        }
    }
}

/// The running listeners.
pub struct SiprecServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    uas: SharedUas,
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
}

fn lock(u: &SharedUas) -> std::sync::MutexGuard<'_, Uas<EngineSessions>> {
    u.lock().unwrap_or_else(|e| e.into_inner())
}

impl SiprecServer {
    /// Binds and starts the listeners (`None` when `[siprec]` is off).
    pub fn start(
        cfg: &SiprecSection,
        sources: Vec<Source>,
        engine: Arc<Engine>,
    ) -> std::io::Result<Option<Self>> {
        if !cfg.enabled {
            return Ok(None);
        }
        let udp = match cfg.udp.as_str() {
            "" => None,
            a => Some(UdpSocket::bind(a)?),
        };
        let tcp = match cfg.tcp.as_str() {
            "" => None,
            a => Some(TcpListener::bind(a)?),
        };
        let udp_addr = udp.as_ref().map(UdpSocket::local_addr).transpose()?;
        let tcp_addr = tcp.as_ref().map(TcpListener::local_addr).transpose()?;
        let bound = udp_addr.or(tcp_addr).ok_or_else(|| {
            std::io::Error::other("[siprec] is enabled with neither udp nor tcp set")
        })?;
        let contact = if cfg.advertise.is_empty() {
            bound.to_string()
        } else {
            cfg.advertise.clone()
        };
        let media_host: IpAddr = engine
            .config()
            .rtp
            .advertise
            .parse()
            .or_else(|_| engine.config().rtp.bind.parse())
            .unwrap_or(bound.ip());
        if sources.is_empty() {
            tracing::warn!("[siprec] has no sources: every SIPREC client is refused with 403");
        }
        let uas: SharedUas = Arc::new(Mutex::new(Uas::new(
            EngineSessions::new(engine, sources, media_host, cfg.caller == "second"),
            contact,
        )));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let conns: Conns = Arc::default();
        let mut threads = Vec::new();
        let has_udp = udp.is_some();
        if let Some(sock) = udp {
            sock.set_read_timeout(Some(TICK))?;
            let (uas, stop, conns) = (uas.clone(), stop.clone(), conns.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("recengine-sip-udp".into())
                    .spawn(move || udp_loop(&sock, &uas, &stop, started, &conns))?,
            );
        }
        if let Some(listener) = tcp {
            listener.set_nonblocking(true)?;
            let (uas, stop, conns) = (uas.clone(), stop.clone(), conns.clone());
            let max = cfg.max_connections as usize;
            threads.push(
                std::thread::Builder::new()
                    .name("recengine-sip-tcp".into())
                    .spawn(move || accept_loop(&listener, &uas, &stop, started, max, &conns))?,
            );
        }
        if !has_udp {
            // The timers run on the UDP thread when there is one.
            let (uas, stop, conns) = (uas.clone(), stop.clone(), conns.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("recengine-sip-timers".into())
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(TICK);
                            let out = lock(&uas).tick(started.elapsed());
                            deliver(out, None, &conns);
                        }
                    })?,
            );
        }
        tracing::info!(udp = ?udp_addr, tcp = ?tcp_addr, "SIPREC server listening");
        Ok(Some(Self {
            stop,
            threads,
            uas,
            udp: udp_addr,
            tcp: tcp_addr,
        }))
    }

    pub fn stats(&self) -> Arc<UasStats> {
        lock(&self.uas).stats()
    }

    /// Active SIPREC dialogs.
    pub fn dialogs(&self) -> usize {
        lock(&self.uas).dialogs()
    }

    /// Stops listening; open sessions' calls are ended by the engine's own
    /// shutdown.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn udp_loop(sock: &UdpSocket, uas: &SharedUas, stop: &AtomicBool, started: Instant, conns: &Conns) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut last_tick = Duration::ZERO;
    let send = |out: Vec<Outgoing>| deliver(out, Some(sock), conns);
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let out = lock(uas).receive(&buf[..n], peer, Transport::Udp, started.elapsed());
            send(out);
        }
        let now = started.elapsed();
        if now.saturating_sub(last_tick) >= TICK {
            last_tick = now;
            let out = lock(uas).tick(now);
            send(out);
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    uas: &SharedUas,
    stop: &Arc<AtomicBool>,
    started: Instant,
    max: usize,
    conns: &Conns,
) {
    let open = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if open.load(Ordering::Relaxed) >= max {
                    tracing::warn!(%peer, max, "SIP TCP connection refused: too many open");
                    continue;
                }
                open.fetch_add(1, Ordering::Relaxed);
                let (uas, stop, open, conns) =
                    (uas.clone(), stop.clone(), open.clone(), conns.clone());
                let spawned = std::thread::Builder::new()
                    .name("recengine-sip-conn".into())
                    .spawn(move || {
                        if let Ok(w) = stream.try_clone() {
                            lock_conns(&conns).insert(peer, w);
                        }
                        connection(stream, peer, &uas, &stop, started);
                        lock_conns(&conns).remove(&peer);
                        open.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    tracing::error!(%peer, "no thread for a SIP TCP connection");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(TICK),
            Err(e) => {
                tracing::warn!(error = %e, "SIP TCP accept failed");
                std::thread::sleep(TICK);
            }
        }
    }
}

fn lock_conns(c: &Conns) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, TcpStream>> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the first message in `buf` ends: `Some(Ok(n))`, `None` when more
/// bytes are needed, `Some(Err)` when the stream cannot be framed.
pub fn frame(buf: &[u8]) -> Option<Result<usize, &'static str>> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut length = None;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            length = value.trim().parse::<usize>().ok();
            if length.is_none() {
                return Some(Err("a Content-Length that is not a number"));
            }
        }
    }
    // Over a stream, Content-Length is required (RFC 3261 18.3).
    let Some(length) = length else {
        return Some(Err("a message without Content-Length on a stream"));
    };
    let total = head_end + 4 + length;
    if total > MAX_MESSAGE {
        return Some(Err("a message larger than 64 KiB"));
    }
    (buf.len() >= total).then_some(Ok(total))
}

fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    uas: &SharedUas,
    stop: &AtomicBool,
    started: Instant,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(TICK * 5));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) && last.elapsed() < TCP_IDLE {
        // Keep-alive CRLFs between messages.
        while buf.starts_with(b"\r\n") {
            buf.drain(..2);
        }
        match frame(&buf) {
            Some(Ok(n)) => {
                let msg: Vec<u8> = buf.drain(..n).collect();
                last = Instant::now();
                let out = lock(uas).receive(&msg, peer, Transport::Tcp, started.elapsed());
                for o in out {
                    if stream.write_all(&o.bytes).is_err() {
                        return;
                    }
                }
                continue;
            }
            Some(Err(why)) => {
                tracing::info!(%peer, why, "closing a SIP TCP connection that cannot be framed");
                return;
            }
            None if buf.len() >= MAX_MESSAGE => {
                tracing::info!(%peer, "closing a SIP TCP connection: a message head larger than 64 KiB");
                return;
            }
            None => {}
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_framing_by_content_length() {
        let msg = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 3\r\n\r\nabcOPTIONS";
        assert_eq!(frame(msg), Some(Ok(msg.len() - 7)));
        assert_eq!(frame(&msg[..20]), None);
        assert_eq!(frame(b"BYE sip:x SIP/2.0\r\nl: 0\r\n\r\n"), Some(Ok(27)));
        assert!(matches!(frame(b"BYE sip:x SIP/2.0\r\n\r\n"), Some(Err(_))));
        assert!(matches!(
            frame(b"BYE sip:x SIP/2.0\r\nContent-Length: 999999\r\n\r\n"),
            Some(Err(_))
        ));
    }
}
