//! `recengine loadgen`: an RTP load generator for benchmarks. It creates
//! calls through the control API, streams two legs per call from a speech
//! signal at real-time pace in 20 ms packets with batched sends
//! (`sendmmsg` on Linux), optionally impaired (loss, reordering,
//! duplicates), ends the calls, and reports what it sent and how late it
//! was itself. It talks only to loopback addresses and refuses others.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::core::decode::{linear_to_alaw, linear_to_ulaw};
use crate::core::opus::{Application, OpusEncoder};
use crate::error::Error;
use crate::testkit::{Rng, rtp_packet, speech};

/// Codec the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadCodec {
    Pcmu,
    Pcma,
    G722,
    Opus,
}

impl LoadCodec {
    fn payload_type(self) -> u8 {
        match self {
            LoadCodec::Pcmu => 0,
            LoadCodec::Pcma => 8,
            LoadCodec::G722 => 9,
            LoadCodec::Opus => 111,
        }
    }

    /// RTP timestamp step per 20 ms packet.
    fn ts_step(self) -> u32 {
        match self {
            LoadCodec::Opus => 960,
            _ => 160,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadgenOptions {
    pub api: SocketAddr,
    pub token: String,
    pub calls: usize,
    pub duration: Duration,
    pub codec: LoadCodec,
    /// Recording options for every call (`{"format":"mp3","bitrate":64}`).
    pub recording: Value,
    /// Fractions of packets lost, sent one tick late, and sent twice.
    pub loss: f64,
    pub reorder: f64,
    pub duplicate: f64,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LoadgenReport {
    pub calls: usize,
    pub packets_sent: u64,
    pub send_errors: u64,
    /// How late the generator itself was against its 20 ms schedule.
    pub max_slip_ms: f64,
    pub mean_slip_ms: f64,
    pub wall_seconds: f64,
    pub packets_per_second: f64,
    pub call_ids: Vec<String>,
}

/// A minimal HTTP/1.1 JSON request to a loopback API.
pub fn http_json(
    api: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), Error> {
    let mut s =
        TcpStream::connect(api).map_err(|e| Error::io(format!("connecting to {api}"), e))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| Error::io("sending a request", e))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| Error::io("reading a response", e))?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::Invalid("malformed HTTP response".into()))?;
    let head = String::from_utf8_lossy(&resp[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Error::Invalid("HTTP response without a status".into()))?;
    let value = serde_json::from_slice(&resp[split + 4..]).unwrap_or(Value::Null);
    Ok((status, value))
}

/// 20 ms payloads of the speech signal in `codec`.
fn payloads(codec: LoadCodec) -> Result<Vec<Vec<u8>>, Error> {
    Ok(match codec {
        LoadCodec::Pcmu => speech(8000, 8000 * 10)
            .chunks(160)
            .map(|c| c.iter().map(|&s| linear_to_ulaw(s)).collect())
            .collect(),
        LoadCodec::Pcma => speech(8000, 8000 * 10)
            .chunks(160)
            .map(|c| c.iter().map(|&s| linear_to_alaw(s)).collect())
            .collect(),
        LoadCodec::G722 => {
            let mut enc = ezk_g722::libg722::encoder::Encoder::new(
                ezk_g722::libg722::Bitrate::Mode1_64000,
                false,
                false,
            );
            speech(16_000, 16_000 * 10)
                .chunks(320)
                .map(|c| enc.encode(c))
                .collect()
        }
        LoadCodec::Opus => {
            let mut enc = OpusEncoder::new(16_000, 1, Application::Voip, 24_000, 5)
                .map_err(|e| Error::Invalid(e.to_string()))?;
            let mut out = [0u8; 1500];
            let mut v = Vec::new();
            for c in speech(16_000, 16_000 * 10).chunks(320) {
                let n = enc
                    .encode(c, &mut out)
                    .map_err(|e| Error::Invalid(e.to_string()))?;
                v.push(out[..n].to_vec());
            }
            v
        }
    })
}

struct Stream {
    dest: SocketAddr,
    ssrc: u32,
}

/// Runs the load; returns when every call has been ended.
pub fn run(opts: &LoadgenOptions) -> Result<LoadgenReport, Error> {
    if !opts.api.ip().is_loopback() {
        return Err(Error::Invalid(format!(
            "loadgen only targets loopback; {} is not",
            opts.api
        )));
    }
    let frames = payloads(opts.codec)?;
    let mut streams = Vec::new();
    let mut report = LoadgenReport {
        calls: opts.calls,
        ..Default::default()
    };
    let run_id = crate::ids::random_id("");
    for i in 0..opts.calls {
        let call_id = format!("load-{}-{i}", &run_id[..8]);
        let mut rec = opts.recording.clone();
        if let Some(o) = rec.as_object_mut() {
            o.insert("enabled".into(), json!(true));
        }
        let pts = json!({"111": "opus/48000/2"});
        let body = json!({"call_id": call_id, "legs": [
            {"role": "caller", "payload_types": pts}, {"role": "callee", "payload_types": pts}], "recording": rec});
        let (status, call) = http_json(opts.api, "POST", "/v1/calls", &opts.token, Some(&body))?;
        if status != 201 {
            return Err(Error::Invalid(format!(
                "creating call {i}: HTTP {status}: {call}"
            )));
        }
        for leg in call["legs"].as_array().into_iter().flatten() {
            let host = leg["rtp"]["host"].as_str().unwrap_or("");
            let port = leg["rtp"]["port"].as_u64().unwrap_or(0) as u16;
            let dest: SocketAddr = format!("{host}:{port}")
                .parse()
                .map_err(|_| Error::Invalid(format!("bad RTP address {host}:{port}")))?;
            if !dest.ip().is_loopback() {
                return Err(Error::Invalid(format!(
                    "loadgen only targets loopback; the API gave {dest}"
                )));
            }
            streams.push(Stream {
                dest,
                ssrc: 0x1000_0000 + streams.len() as u32,
            });
        }
        report.call_ids.push(call_id);
    }

    let socket =
        UdpSocket::bind("127.0.0.1:0").map_err(|e| Error::io("binding the sender socket", e))?;
    let mut sender = BatchSender::new(&socket);
    let mut rng = Rng::new(0x10ad_9e11);
    let ticks = (opts.duration.as_millis() / 20) as usize;
    let mut late: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    let start = Instant::now();
    let (mut slip_sum, mut slip_max) = (0.0f64, 0.0f64);
    let per_mille = |f: f64| (f * 1000.0).round() as u64;
    for t in 0..ticks {
        let scheduled = start + Duration::from_millis(20 * t as u64);
        let slip = Instant::now()
            .saturating_duration_since(scheduled)
            .as_secs_f64()
            * 1000.0;
        slip_sum += slip;
        slip_max = slip_max.max(slip);
        for (dest, p) in late.drain(..) {
            sender.push(dest, &p);
        }
        let frame = &frames[t % frames.len()];
        for s in &streams {
            if rng.chance(per_mille(opts.loss)) {
                continue;
            }
            let p = rtp_packet(
                opts.codec.payload_type(),
                t == 0,
                t as u16,
                (t as u32).wrapping_mul(opts.codec.ts_step()),
                s.ssrc,
                frame,
            );
            if rng.chance(per_mille(opts.reorder)) {
                late.push((s.dest, p));
                continue;
            }
            sender.push(s.dest, &p);
            if rng.chance(per_mille(opts.duplicate)) {
                sender.push(s.dest, &p);
            }
        }
        sender.flush();
        let next = start + Duration::from_millis(20 * (t as u64 + 1));
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    report.wall_seconds = start.elapsed().as_secs_f64();
    report.packets_sent = sender.sent;
    report.send_errors = sender.errors;
    report.max_slip_ms = slip_max;
    report.mean_slip_ms = if ticks > 0 {
        slip_sum / ticks as f64
    } else {
        0.0
    };
    report.packets_per_second = report.packets_sent as f64 / report.wall_seconds.max(1e-9);
    // Stop each recording while its jitter buffers still hold the last
    // packets (the finalize-latency figure covers a stop mid-call), then
    // end the call.
    for id in &report.call_ids {
        let _ = http_json(
            opts.api,
            "POST",
            &format!("/v1/calls/{id}/record/stop"),
            &opts.token,
            None,
        )?;
        let _ = http_json(
            opts.api,
            "POST",
            &format!("/v1/calls/{id}/end"),
            &opts.token,
            None,
        )?;
    }
    Ok(report)
}

/// Queues datagrams and sends them in batches (`sendmmsg` on Linux).
struct BatchSender<'a> {
    socket: &'a UdpSocket,
    queue: Vec<(SocketAddr, Vec<u8>)>,
    sent: u64,
    errors: u64,
}

impl<'a> BatchSender<'a> {
    const BATCH: usize = 64;

    fn new(socket: &'a UdpSocket) -> Self {
        Self {
            socket,
            queue: Vec::with_capacity(Self::BATCH),
            sent: 0,
            errors: 0,
        }
    }

    fn push(&mut self, dest: SocketAddr, datagram: &[u8]) {
        self.queue.push((dest, datagram.to_vec()));
        if self.queue.len() == Self::BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            let (sent, errors) = linux::sendmmsg(self.socket, &self.queue);
            self.sent += sent;
            self.errors += errors;
        }
        #[cfg(not(target_os = "linux"))]
        for (dest, d) in &self.queue {
            match self.socket.send_to(d, dest) {
                Ok(_) => self.sent += 1,
                Err(_) => self.errors += 1,
            }
        }
        self.queue.clear();
    }
}

#[cfg(target_os = "linux")]
mod linux {
    //! `sendmmsg(2)` for IPv4 destinations.

    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    /// Sends every datagram; returns (sent, failed).
    pub fn sendmmsg(socket: &UdpSocket, batch: &[(SocketAddr, Vec<u8>)]) -> (u64, u64) {
        let mut names: Vec<libc::sockaddr_in> = Vec::with_capacity(batch.len());
        let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(batch.len());
        for (dest, d) in batch {
            let SocketAddr::V4(v4) = dest else {
                // IPv6 loopback: plain sends.
                return batch.iter().fold((0, 0), |(s, f), (dest, d)| {
                    match socket.send_to(d, dest) {
                        Ok(_) => (s + 1, f),
                        Err(_) => (s, f + 1),
                    }
                });
            };
            names.push(libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            });
            iovecs.push(libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            });
        }
        // SAFETY: zeroed mmsghdr is valid; every pointer set below points
        // into `names`/`iovecs`/`batch`, which outlive the call.
        let mut headers: Vec<libc::mmsghdr> = (0..batch.len())
            .map(|_| unsafe { std::mem::zeroed() })
            .collect();
        for (i, h) in headers.iter_mut().enumerate() {
            h.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
        }
        let (mut sent, mut failed) = (0u64, 0u64);
        let mut offset = 0;
        while offset < headers.len() {
            // SAFETY: the headers from `offset` are valid as described above.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    headers[offset..].as_mut_ptr(),
                    (headers.len() - offset) as libc::c_uint,
                    0,
                )
            };
            if n <= 0 {
                // Skip the datagram that failed and carry on.
                failed += 1;
                offset += 1;
            } else {
                sent += n as u64;
                offset += n as usize;
            }
        }
        (sent, failed)
    }
}
