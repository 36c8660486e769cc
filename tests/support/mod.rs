//! Running the real `recengine` binary for integration tests: a private
//! configuration (loopback only, its own port range, storage and socket in
//! the target dir), a tiny HTTP client, an RTP sender pacing packets in real
//! time, and an event-socket reader.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

pub const ADMIN: &str = "admin-secret-token";
pub const ACME: &str = "acme-secret-token";
pub const GLOBEX: &str = "globex-secret-token";

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A port range no other daemon of this test binary uses. Tests within one
/// binary run in parallel threads (binaries run one after another), so a
/// process-wide counter keeps their ranges apart; large ranges (the soak)
/// get their own area.
fn port_base(pairs: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    if pairs > 8 {
        return 50_000;
    }
    20_000 + NEXT.fetch_add(1, Ordering::Relaxed) % 1_000 * 20
}

pub struct Daemon {
    child: Option<Child>,
    pub dir: PathBuf,
    pub api: SocketAddr,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts the daemon; `extra` is TOML merged in as whole sections the
    /// test overrides (it must not repeat [api], [rtp], [storage], [events]).
    pub fn start(name: &str, extra: &str) -> Self {
        Self::start_with(name, extra, 4)
    }

    pub fn start_with(name: &str, extra: &str, port_pairs: u16) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("daemon-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if catalog_on_postgres() {
            drop_pg_schema(&pg_schema(name));
        }
        Self::launch(name, &dir, extra, port_pairs)
    }

    /// Starts (again) on an existing directory.
    pub fn launch(name: &str, dir: &Path, extra: &str, port_pairs: u16) -> Self {
        let _ = name;
        let base = port_base(port_pairs);
        let storage = dir.join("storage");
        let socket = dir.join("events.sock");
        let config = format!(
            r#"
[log]
level = "info,recengine=debug"

[api]
listen = "127.0.0.1:0"

[[api.tokens]]
name = "admin"
sha256 = "{admin}"

[[api.tokens]]
name = "acme"
sha256 = "{acme}"
customer_id = "acme"

[[api.tokens]]
name = "globex"
sha256 = "{globex}"
customer_id = "globex"

[events]
socket_path = "{socket}"

[rtp]
bind = "127.0.0.1"
port_min = {min}
port_max = {max}
port_quarantine_s = 1

[storage]
dir = "{storage}"
flush_interval_ms = 200
"#,
            admin = sha256_hex(ADMIN),
            acme = sha256_hex(ACME),
            globex = sha256_hex(GLOBEX),
            socket = socket.display(),
            storage = storage.display(),
            min = base,
            max = base + port_pairs * 2 - 1,
        );
        // The test's own settings override the base, section by section.
        let mut table: toml::Table = toml::from_str(&config).unwrap();
        if catalog_on_postgres() {
            let catalog = format!(
                "backend = \"postgres\"\nurl = \"{}\"\nschema = \"{}\"\nnode_id = \"node-a\"\n",
                pg_url(),
                pg_schema(name)
            );
            table.insert(
                "catalog".into(),
                toml::Value::Table(toml::from_str(&catalog).unwrap()),
            );
        }
        let extra: toml::Table = toml::from_str(extra).expect("extra TOML");
        for (section, values) in extra {
            match (table.get_mut(&section), values) {
                (Some(toml::Value::Table(base)), toml::Value::Table(over)) => base.extend(over),
                (_, v) => {
                    table.insert(section, v);
                }
            }
        }
        let config_path = dir.join("engine.toml");
        std::fs::write(&config_path, toml::to_string(&table).unwrap()).unwrap();
        let _ = std::fs::remove_file(storage.join("api.addr"));
        let log = dir.join("daemon.log");
        let child = Command::new(env!("CARGO_BIN_EXE_recengine"))
            .args(["run", "-c"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start recengine");
        let addr_file = storage.join("api.addr");
        let deadline = Instant::now() + Duration::from_secs(15);
        let api = loop {
            if let Ok(s) = std::fs::read_to_string(&addr_file)
                && let Ok(a) = s.trim().parse()
            {
                break a;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            child: Some(child),
            dir: dir.to_path_buf(),
            api,
            socket,
            log,
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }

    /// One HTTP/1.1 request; returns (status, JSON body or Null).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let (status, raw) = self.request_raw(method, path, body.map(str::as_bytes), token, &[]);
        (status, serde_json::from_slice(&raw).unwrap_or(Value::Null))
    }

    pub fn request_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Vec<u8>) {
        let (status, _, body) = self.request_with_head(method, path, body, token, headers);
        (status, body)
    }

    /// As [`Daemon::request_raw`], with the answer's head (status line and
    /// headers, lower-cased names kept as sent).
    pub fn request_with_head(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, String, Vec<u8>) {
        // An absolute URL the API answered with must name this daemon.
        let path = match path.strip_prefix("http://") {
            Some(rest) => rest
                .strip_prefix(&self.api.to_string())
                .unwrap_or_else(|| panic!("{path} is not on this daemon ({})", self.api)),
            None => path,
        };
        let mut s = TcpStream::connect(self.api).expect("connect API");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.api
        );
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let head_end = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("HTTP response head");
        let head = String::from_utf8_lossy(&resp[..head_end]).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut body = resp[head_end + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = recengine::loadgen::dechunk(&body).expect("a well-formed chunked body");
        }
        (status, head, body)
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.request(method, path, body, Some(ADMIN))
    }

    /// Sends SIGTERM and waits (at most 60 s) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the daemon dies without any chance to clean up.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Connects to the event socket (optionally replaying after `since`).
    pub fn events(&self, since: Option<u64>) -> Events {
        let mut s = UnixStream::connect(&self.socket).expect("event socket");
        if let Some(n) = since {
            writeln!(s, "{{\"since_seq\":{n}}}").unwrap();
        }
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Events {
            reader: BufReader::new(s),
            buf: String::new(),
        }
    }
}

/// Whether daemons under test keep their catalog in PostgreSQL
/// (`RECENGINE_TEST_CATALOG=postgres`: the daemon suites run on that
/// backend instead of SQLite).
pub fn catalog_on_postgres() -> bool {
    std::env::var("RECENGINE_TEST_CATALOG").as_deref() == Ok("postgres")
}

/// The PostgreSQL server tests use.
pub fn pg_url() -> String {
    std::env::var("RECENGINE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether that server answers; when not, a message (a failure under
/// `RECENGINE_REQUIRE_SERVICES=1`, as in CI).
pub fn pg_up() -> bool {
    match postgres::Client::connect(&pg_url(), postgres::NoTls) {
        Ok(_) => true,
        Err(e) => {
            assert!(
                std::env::var("RECENGINE_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "RECENGINE_REQUIRE_SERVICES=1 but PostgreSQL at {} does not answer: {e}",
                pg_url()
            );
            eprintln!("SKIP: no PostgreSQL at {} ({e})", pg_url());
            false
        }
    }
}

/// The schema a test daemon's catalog lives in on PostgreSQL.
pub fn pg_schema(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("d_{}", &clean[..clean.len().min(60)])
}

/// Drops a test schema and everything in it.
pub fn drop_pg_schema(schema: &str) {
    if let Ok(mut c) = postgres::Client::connect(&pg_url(), postgres::NoTls) {
        let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct Events {
    reader: BufReader<UnixStream>,
    buf: String,
}

impl Events {
    /// The next event, waiting up to `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.reader.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) if self.buf.ends_with('\n') => {
                    let v = serde_json::from_str(self.buf.trim()).expect("event JSON");
                    self.buf.clear();
                    return Some(v);
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("event socket: {e}"),
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Events until one named `name` arrives (inclusive), within `timeout`.
    pub fn until(&mut self, name: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while Instant::now() < deadline {
            if let Some(e) = self.next(Duration::from_millis(200)) {
                let done = e["event"] == name;
                out.push(e);
                if done {
                    return out;
                }
            }
        }
        panic!("no {name} event within {timeout:?}; got {out:#?}");
    }
}

/// One RTP sender leg: where to, what, and from which socket.
pub struct Leg<'a> {
    pub port: u16,
    pub ssrc: u32,
    pub signal: &'a [i16],
    pub socket: &'a UdpSocket,
    /// Start after this many packets' worth of time.
    pub delay_packets: usize,
}

/// Sends every leg's signal as 20 ms PCMU packets to 127.0.0.1, paced in
/// real time, and calls `at` with each packet index before sending it.
pub fn stream(legs: &[Leg<'_>], at: impl FnMut(usize)) {
    stream_to("127.0.0.1", legs, at);
}

/// [`stream`] to legs on `host` (e.g. "::1").
pub fn stream_to(host: &str, legs: &[Leg<'_>], mut at: impl FnMut(usize)) {
    let frames: Vec<Vec<Vec<u8>>> = legs
        .iter()
        .map(|l| recengine::testkit::pcmu_frames(l.signal))
        .collect();
    let total = legs
        .iter()
        .zip(&frames)
        .map(|(l, f)| l.delay_packets + f.len())
        .max()
        .unwrap_or(0);
    let start = Instant::now();
    for i in 0..total {
        at(i);
        for (l, f) in legs.iter().zip(&frames) {
            if i < l.delay_packets || i - l.delay_packets >= f.len() {
                continue;
            }
            let k = i - l.delay_packets;
            let p = recengine::testkit::rtp_packet(
                0,
                k == 0,
                100 + k as u16,
                8000 + k as u32 * 160,
                l.ssrc,
                &f[k],
            );
            l.socket.send_to(&p, (host, l.port)).unwrap();
        }
        let next = start + Duration::from_millis(20 * (i as u64 + 1));
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

pub fn udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

/// The RTP port of a leg in a call view.
pub fn leg_port(call: &Value, leg: &str) -> u16 {
    call["legs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["leg_id"] == leg)
        .unwrap_or_else(|| panic!("no leg {leg} in {call}"))["rtp"]["port"]
        .as_u64()
        .unwrap() as u16
}

pub fn read_wav(path: &Path) -> (Vec<i16>, u16, u32) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    (
        r.samples::<i16>().map(Result::unwrap).collect(),
        spec.channels,
        spec.sample_rate,
    )
}

#[allow(unused_imports)]
pub use recengine::testkit::tone_power;

pub fn channel(samples: &[i16], channels: u16, c: usize) -> Vec<i16> {
    samples
        .iter()
        .skip(c)
        .step_by(usize::from(channels))
        .copied()
        .collect()
}

pub fn sha256_file(path: &Path) -> String {
    recengine::io::sink::sha256_file(path).unwrap()
}

/// Creates a call from `body` (with a `caller` leg) for `token`, streams
/// half a second of a `hz` tone to it, ends it, and returns the
/// `recording.completed` event's data.
pub fn record_tone_call(d: &Daemon, token: &str, body: &Value, hz: f64) -> Value {
    let mut ev = d.events(None);
    std::thread::sleep(Duration::from_millis(100));
    let (s, call) = d.request("POST", "/v1/calls", Some(&body.to_string()), Some(token));
    assert_eq!(s, 201, "{call}");
    let tone = recengine::testkit::tone(8000, hz, 6000.0, 4000);
    let sock = udp();
    stream(
        &[Leg {
            port: leg_port(&call, "caller"),
            ssrc: 5,
            signal: &tone,
            socket: &sock,
            delay_packets: 0,
        }],
        |_| {},
    );
    let id = call["call_id"].as_str().expect("call_id");
    let (s, _) = d.request("POST", &format!("/v1/calls/{id}/end"), None, Some(token));
    assert_eq!(s, 200);
    let events = ev.until("recording.completed", Duration::from_secs(10));
    events.last().expect("recording.completed")["data"].clone()
}

/// Whether a NATS server answers on 127.0.0.1:4222 (else a message, or
/// a failure under `RECENGINE_REQUIRE_SERVICES=1`).
pub fn nats_up() -> bool {
    let ok = TcpStream::connect_timeout(&"127.0.0.1:4222".parse().unwrap(), Duration::from_secs(1))
        .is_ok();
    if !ok {
        assert!(
            std::env::var("RECENGINE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "RECENGINE_REQUIRE_SERVICES=1 but no NATS server answers on 127.0.0.1:4222"
        );
        eprintln!("SKIP: no NATS server on 127.0.0.1:4222; the JetStream test needs one");
    }
    ok
}

/// Every message now in `stream`: (subject, Nats-Msg-Id, event JSON).
pub async fn read_stream(stream: &str, want: usize) -> Vec<(String, String, Value)> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull};
    use futures_util::StreamExt;
    let client = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
    let js = async_nats::jetstream::new(client);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = js.get_stream(stream).await.unwrap();
        let consumer = s
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .unwrap();
        let mut out = Vec::new();
        while let Some(Ok(m)) = batch.next().await {
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.to_string())
                .unwrap_or_default();
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            out.push((m.subject.to_string(), id, v));
            let _ = m.ack().await;
        }
        if out.len() >= want || tokio::time::Instant::now() > deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
