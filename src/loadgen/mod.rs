//! `recengine loadgen`: an RTP load generator for benchmarks and for
//! end-to-end fidelity checks. It creates calls through the control API,
//! streams two legs per call from a speech signal in 20 ms packets with
//! batched sends (`sendmmsg` on Linux), shaped by an arrival pattern from
//! [`crate::testkit::netem`] (paced, bursts, uniform delay, a stall, Wi-Fi
//! spikes) and optionally impaired (loss, reordering, duplicates), ends the
//! calls, and reports what it sent and how late it was itself.
//! [`verify`] then downloads every recording and compares it with what was
//! sent. It talks only to loopback addresses and refuses others.

pub mod verify;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::core::decode::{linear_to_alaw, linear_to_ulaw};
use crate::core::opus::{Application, OpusEncoder};
use crate::error::Error;
use crate::testkit::netem::{NetModel, Pattern};
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
    /// How every leg's packets are spaced on their way (paced by default).
    pub pattern: Pattern,
    /// Fractions of packets lost, reordered (each arrives just after the
    /// one sent after it, see [`NetModel`]), and sent twice.
    pub loss: f64,
    pub reorder: f64,
    pub duplicate: f64,
}

impl LoadgenOptions {
    /// Paced, unimpaired PCMU calls recorded as WAV.
    pub fn new(api: SocketAddr, token: impl Into<String>) -> Self {
        Self {
            api,
            token: token.into(),
            calls: 10,
            duration: Duration::from_secs(30),
            codec: LoadCodec::Pcmu,
            recording: json!({"format": "wav"}),
            pattern: Pattern::Paced,
            loss: 0.0,
            reorder: 0.0,
            duplicate: 0.0,
        }
    }
}

/// Reads an arrival pattern: `paced`, `bursts:N`, `uniform:MAX_MS`,
/// `stall:AT_MS:STALL_MS` or `wifi`.
pub fn parse_pattern(s: &str) -> Result<Pattern, String> {
    let mut parts = s.split(':');
    let kind = parts.next().unwrap_or_default();
    let mut num = |what: &str| -> Result<u64, String> {
        parts
            .next()
            .ok_or_else(|| format!("pattern {kind} needs {what} (e.g. {kind}:6)"))?
            .parse()
            .map_err(|_| format!("pattern {kind}: {what} must be a whole number"))
    };
    let pattern = match kind {
        "paced" => Pattern::Paced,
        "bursts" => {
            let n = num("packets per burst")?;
            if !(1..=50).contains(&n) {
                return Err("bursts:N takes N from 1 to 50".into());
            }
            Pattern::Bursts(n as u32)
        }
        "uniform" => Pattern::Uniform {
            max_ms: num("the largest delay in ms")?.min(10_000),
        },
        "stall" => Pattern::StallThenBurst {
            at_ms: num("when the stall starts (ms)")?,
            stall_ms: num("how long it lasts (ms)")?.min(10_000),
        },
        "wifi" => Pattern::WifiSpikes,
        other => {
            return Err(format!(
                "unknown pattern {other:?}: paced, bursts:N, uniform:MAX_MS, stall:AT_MS:STALL_MS or wifi"
            ));
        }
    };
    if parts.next().is_some() {
        return Err(format!("pattern {s:?} has too many fields"));
    }
    Ok(pattern)
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LoadgenReport {
    pub calls: usize,
    pub packets_sent: u64,
    pub send_errors: u64,
    /// How late the generator itself was against its schedule.
    pub max_slip_ms: f64,
    pub mean_slip_ms: f64,
    pub wall_seconds: f64,
    pub packets_per_second: f64,
    pub call_ids: Vec<String>,
    /// What each call's legs carried, for [`verify`].
    #[serde(skip)]
    pub sent: Vec<verify::SentCall>,
}

/// A minimal HTTP/1.1 JSON request to a loopback API.
pub fn http_json(
    api: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), Error> {
    let body = body.map(Value::to_string).unwrap_or_default();
    // Over the API's per-token rate (429): wait and retry, as a client
    // should, for up to ten seconds.
    let mut retries = 0;
    loop {
        let (status, bytes) = http_request(api, method, path, Some(token), body.as_bytes())?;
        if status == 429 && retries < 100 {
            retries += 1;
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        return Ok((status, value));
    }
}

/// One HTTP/1.1 request to a loopback API; the status and the body
/// (`Content-Length`, chunked, or up to the close).
pub fn http_request(
    api: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<(u16, Vec<u8>), Error> {
    let mut s =
        TcpStream::connect(api).map_err(|e| Error::io(format!("connecting to {api}"), e))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\n{auth}Connection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| Error::io("sending a request", e))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| Error::io("reading a response", e))?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::Invalid("malformed HTTP response".into()))?;
    let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Error::Invalid("HTTP response without a status".into()))?;
    let raw = &resp[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(raw)?
    } else {
        raw.to_vec()
    };
    Ok((status, body))
}

/// Joins an HTTP/1.1 chunked body.
pub fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, Error> {
    let bad = || Error::Invalid("malformed chunked HTTP body".into());
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text = std::str::from_utf8(&raw[..eol]).map_err(|_| bad())?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 {
            return Err(bad());
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
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
    /// Where in the speech signal this leg starts, in packets, so that the
    /// two parties of a call say different things.
    phase: usize,
}

/// One datagram due at `at` (from the start of streaming).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Send {
    at_us: u64,
    stream: u32,
    tick: u32,
}

/// Each leg's sends (arrival pattern plus the generator's own
/// impairments), merged in time order, and by how much each leg's packets
/// were delayed on purpose ([`verify::NEVER_SENT`] for those lost).
fn schedule(
    opts: &LoadgenOptions,
    streams: usize,
    ticks: u64,
    rng: &mut Rng,
) -> (Vec<Send>, Vec<Vec<u32>>) {
    let per_mille = |f: f64| (f * 1000.0).round() as u64;
    let mut sends = Vec::with_capacity(streams * ticks as usize);
    let mut delayed = vec![vec![verify::NEVER_SENT; ticks as usize]; streams];
    for (s, delayed) in delayed.iter_mut().enumerate() {
        let mut model = NetModel::new(opts.pattern).seed(0x5eed + s as u64);
        model.loss_per_thousand = per_mille(opts.loss);
        model.reorder_per_thousand = per_mille(opts.reorder);
        for (arrival, tick) in model.schedule(ticks) {
            let delay = arrival.saturating_sub(model.send_time(tick));
            delayed[tick as usize] = delay.as_micros().min(u128::from(u32::MAX - 1)) as u32;
            let send = Send {
                at_us: arrival.as_micros() as u64,
                stream: s as u32,
                tick: tick as u32,
            };
            sends.push(send);
            if rng.chance(per_mille(opts.duplicate)) {
                sends.push(send);
            }
        }
    }
    sends.sort_unstable();
    (sends, delayed)
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
    let mut created = Vec::with_capacity(opts.calls);
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
        created.push(Instant::now());
        let mut sent = verify::SentCall {
            call_id: call_id.clone(),
            legs: Vec::new(),
            lead: Duration::ZERO,
            stopped_after: Duration::ZERO,
        };
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
            // Caller and callee say different parts of the signal, a third
            // of it apart (half would make a mono mix repeat itself with
            // the parties swapped).
            let phase = sent.legs.len() * frames.len() / 3;
            sent.legs.push(verify::SentLeg {
                leg_id: leg["leg_id"].as_str().unwrap_or_default().to_owned(),
                role: leg["role"].as_str().unwrap_or_default().to_owned(),
                phase,
                delay_us: Vec::new(),
            });
            streams.push(Stream {
                dest,
                ssrc: 0x1000_0000 + streams.len() as u32,
                phase,
            });
        }
        report.call_ids.push(call_id);
        report.sent.push(sent);
    }

    let socket =
        UdpSocket::bind("127.0.0.1:0").map_err(|e| Error::io("binding the sender socket", e))?;
    let mut sender = BatchSender::new(&socket);
    let mut rng = Rng::new(0x10ad_9e11);
    let ticks = (opts.duration.as_millis() / 20) as u64;
    let (sends, delays) = schedule(opts, streams.len(), ticks, &mut rng);
    let legs = report.sent.iter_mut().flat_map(|c| c.legs.iter_mut());
    for (leg, delay_us) in legs.zip(delays) {
        leg.delay_us = delay_us;
    }
    let start = Instant::now();
    for (call, created) in report.sent.iter_mut().zip(created) {
        call.lead = start.saturating_duration_since(created);
    }
    let (mut slip_sum, mut slip_max) = (0.0f64, 0.0f64);
    let mut next = 0;
    while next < sends.len() {
        let now_us = start.elapsed().as_micros() as u64;
        // Everything due within half a millisecond goes in this batch.
        while next < sends.len() && sends[next].at_us <= now_us + 500 {
            let send = sends[next];
            let slip = now_us.saturating_sub(send.at_us) as f64 / 1000.0;
            slip_sum += slip;
            slip_max = slip_max.max(slip);
            let s = &streams[send.stream as usize];
            let t = send.tick;
            let frame = &frames[(t as usize + s.phase) % frames.len()];
            let p = rtp_packet(
                opts.codec.payload_type(),
                t == 0,
                t as u16,
                t.wrapping_mul(opts.codec.ts_step()),
                s.ssrc,
                frame,
            );
            sender.push(s.dest, &p);
            next += 1;
        }
        sender.flush();
        if let Some(send) = sends.get(next) {
            let due = start + Duration::from_micros(send.at_us);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    // The stream lasts its whole duration even when the last packets of
    // every leg were lost.
    if let Some(wait) = (start + opts.duration).checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    report.wall_seconds = start.elapsed().as_secs_f64();
    report.packets_sent = sender.sent;
    report.send_errors = sender.errors;
    report.max_slip_ms = slip_max;
    report.mean_slip_ms = if sends.is_empty() {
        0.0
    } else {
        slip_sum / sends.len() as f64
    };
    report.packets_per_second = report.packets_sent as f64 / report.wall_seconds.max(1e-9);
    // Stop each recording while its jitter buffers still hold the last
    // packets (the finalize-latency figure covers a stop mid-call), then
    // end the call.
    for call in &mut report.sent {
        call.stopped_after = start.elapsed();
        let id = &call.call_id;
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
