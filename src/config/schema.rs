//! The configuration schema and its defaults. Each field's doc says its unit;
//! `engine.toml` at the top of the repository states every default (a test
//! keeps the two equal).

use serde::{Deserialize, Serialize};

pub use crate::core::format::{
    Channels, Format, PauseBehavior, bitrate_problem, mp3_bitrates, sample_rates,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub log: LogSection,
    pub api: ApiSection,
    pub events: EventsSection,
    pub rtp: RtpSection,
    pub jitter: JitterSection,
    pub workers: WorkersSection,
    pub recording: RecordingSection,
    pub storage: StorageSection,
    pub catalog: CatalogConfig,
    pub notices: NoticesSection,
    pub audit: AuditSection,
    pub siprec: SiprecSection,
    pub webhooks: Vec<WebhookEntry>,
    pub tenants: Vec<TenantEntry>,
}

/// `[siprec]`: the Session Recording Server (RFC 7866).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SiprecSection {
    /// Listen for SIPREC clients.
    pub enabled: bool,
    /// UDP listen address; "" = no UDP.
    pub udp: String,
    /// TCP listen address; "" = no TCP.
    pub tcp: String,
    /// host:port put in our Contact header; "" = the bound address.
    pub advertise: String,
    /// Most TCP connections at once.
    pub max_connections: u32,
    /// Which party of a two-party session is the caller: "first" (the one
    /// the client marks calling, else the first described, else the first
    /// stream's sender) or "second" (the other one).
    pub caller: String,
    /// Which clients are admitted, and for whom they record.
    pub sources: Vec<SiprecSourceEntry>,
}

impl Default for SiprecSection {
    fn default() -> Self {
        Self {
            enabled: false,
            udp: "127.0.0.1:5060".into(),
            tcp: "127.0.0.1:5060".into(),
            advertise: String::new(),
            max_connections: 256,
            caller: "first".into(),
            sources: Vec::new(),
        }
    }
}

/// One admitted SIPREC client network (`[[siprec.sources]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SiprecSourceEntry {
    /// An address or network: "10.0.0.5", "10.0.0.0/24", "::1".
    pub network: String,
    /// The tenant its calls are recorded for; "" = the admin's own.
    pub customer_id: String,
    /// wav | mp3 | opus; "" = [recording] format.
    pub format: String,
    /// mono | dual; "" = [recording] channels.
    pub channels: String,
}

/// Limits of one tenant (`[[tenants]]`), besides the global ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TenantEntry {
    /// The tenant, as its API tokens name it.
    pub customer_id: String,
    /// Most bytes this tenant's stored recordings may take; 0 = only the
    /// global `storage.max_bytes`.
    pub max_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// error | warn | info | debug | trace, or a tracing filter directive.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Human,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Address:port of the HTTP control API.
    pub listen: String,
    /// The API's address as clients reach it (`https://rec.example.com`),
    /// for the absolute URLs answers carry; empty = `http://` and the
    /// address the API is bound to.
    pub public_url: String,
    /// Bearer tokens, stored as SHA-256 hashes. None configured: the daemon
    /// makes a one-time admin token at start and writes it to
    /// `<storage.dir>/admin.token`.
    pub tokens: Vec<TokenEntry>,
    /// Most open API connections; beyond it a connection is answered 503
    /// `too_many_connections` and closed.
    pub max_connections: u32,
    /// Seconds a client has to send a request's headers (also how long an
    /// idle keep-alive connection stays open).
    pub header_timeout_s: u32,
    /// Seconds a request has from its headers to its answer, body included.
    pub request_timeout_s: u32,
    /// Requests per second each token may make (a token bucket refilled at
    /// this rate); beyond it 429 `rate_limited` with `Retry-After`. 0 = no
    /// limit.
    pub rate_limit_per_s: u32,
    /// Requests a token may make at once before the rate applies.
    pub rate_limit_burst: u32,
    /// Seconds an ended call stays in `GET /v1/calls`; the catalog keeps
    /// its recordings.
    pub ended_calls_kept_s: u32,
    /// Seconds an `Idempotency-Key`'s answer is kept for replay.
    pub idempotency_keys_kept_s: u32,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: String::new(),
            tokens: Vec::new(),
            max_connections: 1024,
            header_timeout_s: 10,
            request_timeout_s: 30,
            rate_limit_per_s: 500,
            rate_limit_burst: 1000,
            ended_calls_kept_s: 3600,
            idempotency_keys_kept_s: 86_400,
        }
    }
}

/// One API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TokenEntry {
    /// A name for logs (never the token).
    pub name: String,
    /// Lower-case hex SHA-256 of the token (`printf %s TOKEN | sha256sum`).
    pub sha256: String,
    /// The tenant this token is limited to; empty for an admin token.
    pub customer_id: String,
}

/// One webhook endpoint: every matching event is POSTed to `url`, signed
/// with `secret`, from a persistent outbox with retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookEntry {
    /// The endpoint's name in the deliveries API and logs; empty = the URL.
    pub name: String,
    /// http:// or https:// URL the events are POSTed to.
    pub url: String,
    /// Event names or `prefix.*` patterns; empty = every event.
    pub events: Vec<String>,
    /// HMAC-SHA256 key for `X-Recengine-Signature`.
    pub secret: String,
    /// Deadline for one attempt (connect, send, answer), in ms.
    pub timeout_ms: u32,
    /// Attempts before a delivery is marked failed.
    pub max_attempts: u32,
    /// Delay before the first retry, in ms; doubles each time (with jitter).
    pub retry_initial_ms: u32,
    /// Longest delay between retries, in ms.
    pub retry_max_ms: u32,
}

impl Default for WebhookEntry {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            events: Vec::new(),
            secret: String::new(),
            timeout_ms: 5000,
            max_attempts: 12,
            retry_initial_ms: 1000,
            retry_max_ms: 600_000,
        }
    }
}

impl WebhookEntry {
    /// The name deliveries are filed under.
    pub fn endpoint(&self) -> &str {
        if self.name.is_empty() {
            &self.url
        } else {
            &self.name
        }
    }

    /// Whether `event` passes this endpoint's filter.
    pub fn wants(&self, event: &str) -> bool {
        self.events.is_empty()
            || self.events.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => event.starts_with(prefix),
                None => p == event,
            })
    }
}

/// Every event the engine emits (webhook filters are checked against it).
pub const EVENT_NAMES: &[&str] = &[
    "call.created",
    "call.leg_added",
    "call.ended",
    "leg.muted",
    "leg.unmuted",
    "recording.started",
    "recording.announced",
    "recording.paused",
    "recording.resumed",
    "recording.stopped",
    "recording.completed",
    "recording.uploaded",
    "recording.failed",
    "recording.discarded",
    "recording.deleted",
    "call_flow.created",
    "call_flow.updated",
    "call_flow.deleted",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsSection {
    /// Unix socket streaming events as NDJSON.
    pub socket_path: String,
    /// Permissions of the socket, octal.
    pub socket_mode: String,
    /// Events on NATS JetStream (`[events.nats]`).
    pub nats: NatsSection,
}

impl Default for EventsSection {
    fn default() -> Self {
        Self {
            socket_path: "./recordings/recengine.sock".into(),
            socket_mode: "0660".into(),
            nats: NatsSection::default(),
        }
    }
}

/// `[events.nats]`: every event published to a JetStream stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSection {
    /// "nats://host:4222"; "" = off.
    pub url: String,
    /// Subjects are `<subject_prefix>.<event>`.
    pub subject_prefix: String,
    /// The JetStream stream (created when missing).
    pub stream: String,
    /// This node's name in message ids; "" = the host name.
    pub node_id: String,
}

impl Default for NatsSection {
    fn default() -> Self {
        Self {
            url: String::new(),
            subject_prefix: "recengine".into(),
            stream: "RECENGINE_EVENTS".into(),
            node_id: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtpSection {
    /// Address RTP sockets bind to (IPv4 or IPv6).
    pub bind: String,
    /// Address told to senders in API answers; empty = `bind`.
    pub advertise: String,
    /// First port of the RTP range (even ports carry RTP, odd RTCP).
    pub port_min: u32,
    /// Last port of the RTP range.
    pub port_max: u32,
    /// Seconds a released port rests before it is handed out again.
    pub port_quarantine_s: u32,
    /// When a leg follows its sender to a new address with a new SSRC:
    /// never (strict source, the default), same_host, or any (unsafe).
    pub relatch: Relatch,
    /// Receive queue of each leg's socket (`SO_RCVBUF`), in bytes.
    pub queue_bytes: u32,
}

impl Default for RtpSection {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            advertise: String::new(),
            port_min: 30_000,
            port_max: 39_999,
            port_quarantine_s: 10,
            relatch: Relatch::Never,
            queue_bytes: 131_072,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JitterSection {
    /// How long a packet is waited for after its ideal play time, in ms.
    pub playout_delay_ms: u32,
    /// Most packets held per leg.
    pub capacity_packets: u32,
    /// Measured sender clock drift is corrected (in silence) once it has
    /// moved a leg this many ms; 0 measures drift but never corrects it.
    pub drift_bound_ms: u32,
}

impl Default for JitterSection {
    fn default() -> Self {
        Self {
            playout_delay_ms: 200,
            capacity_packets: 64,
            drift_bound_ms: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersSection {
    /// Mixer/encoder threads; 0 = one per CPU core.
    pub threads: u32,
    /// Tick period in ms: how often each worker reads, plays out and
    /// encodes its calls.
    pub tick_ms: u32,
    /// How workers read RTP sockets: auto | io_uring | recvmmsg.
    pub receive_path: ReceivePathSetting,
}

/// `workers.receive_path`: how media workers read their legs' sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReceivePathSetting {
    /// io_uring if this kernel and its sandbox allow it (tried for real at
    /// start), else `recvmmsg`; the log and `/metrics` say which.
    #[default]
    Auto,
    /// io_uring, or the daemon does not start.
    IoUring,
    /// `recvmmsg` always (one system call per leg per tick).
    Recvmmsg,
}

impl Default for WorkersSection {
    fn default() -> Self {
        Self {
            threads: 0,
            tick_ms: 60,
            receive_path: ReceivePathSetting::Auto,
        }
    }
}

/// `rtp.relatch`: when a leg follows its sender to a new address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Relatch {
    #[default]
    Never,
    SameHost,
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingSection {
    /// wav | mp3 | opus
    pub format: Format,
    /// Hz for every format when not 0; 0 = each format's own
    /// (`wav`/`mp3`/`opus` tables).
    pub sample_rate: u32,
    /// mono | dual
    pub channels: Channels,
    /// kbit/s for recordings in `format` when not 0; 0 = the format's own.
    pub bitrate_kbps: u32,
    /// What a WAV recording gets when neither its request nor the keys
    /// above say.
    pub wav: FormatDefaults,
    /// What an MP3 recording gets (Audian: 64 kbit/s at 16 kHz; 48 at 8 kHz).
    pub mp3: FormatDefaults,
    /// What an Opus recording gets.
    pub opus: FormatDefaults,
    /// silence | skip
    pub pause_behavior: PauseBehavior,
    /// LAME quality 0 (best, slowest) … 9 (fastest).
    pub mp3_quality: u8,
    /// Opus complexity 0 … 10.
    pub opus_complexity: u8,
    /// Seconds after which a recording stops by itself; 0 = no limit.
    pub max_duration_s: u32,
    /// Recordings shorter than this many seconds are discarded.
    pub min_duration_s: u32,
    /// A call with no RTP on any leg for this many seconds ends.
    pub media_timeout_s: u32,
}

/// A format's own sample rate and bit rate (zero, the default: "the
/// built-in one" for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FormatDefaults {
    /// Hz; 0 = the built-in one.
    pub sample_rate: u32,
    /// kbit/s (MP3 and Opus; WAV has none); 0 = the encoder's default
    /// (MP3: by rate and channels, `mp3_default_bitrate`).
    pub bitrate_kbps: u32,
}

impl FormatDefaults {
    /// The shipped defaults: WAV 8 kHz (VoIPbin), MP3 at 16 kHz with the
    /// bitrate by rate (64 kbit/s per channel there, Audian's; 48 at
    /// 8 kHz), Opus 32 kbit/s at 8 kHz.
    pub fn built_in(format: Format) -> Self {
        match format {
            Format::Wav => Self {
                sample_rate: 8000,
                bitrate_kbps: 0,
            },
            Format::Mp3 => Self {
                sample_rate: 16_000,
                bitrate_kbps: 0,
            },
            Format::Opus => Self {
                sample_rate: 8000,
                bitrate_kbps: 32,
            },
        }
    }
}

impl RecordingSection {
    fn own(&self, format: Format) -> FormatDefaults {
        match format {
            Format::Wav => self.wav,
            Format::Mp3 => self.mp3,
            Format::Opus => self.opus,
        }
    }

    /// The sample rate a recording in `format` gets when its request
    /// names none: `sample_rate`, else the format's table, else built in.
    pub fn sample_rate_for(&self, format: Format) -> u32 {
        [
            self.sample_rate,
            self.own(format).sample_rate,
            FormatDefaults::built_in(format).sample_rate,
        ]
        .into_iter()
        .find(|&r| r != 0)
        .unwrap_or(8000)
    }

    /// The bit rate a recording in `format` gets when its request names
    /// none: `bitrate_kbps` (for `format` only), else the format's table;
    /// 0 leaves it to the encoder.
    pub fn bitrate_for(&self, format: Format) -> u32 {
        if format == self.format && self.bitrate_kbps != 0 {
            return self.bitrate_kbps;
        }
        self.own(format).bitrate_kbps
    }
}

impl Default for RecordingSection {
    fn default() -> Self {
        Self {
            format: Format::Wav,
            sample_rate: 0,
            channels: Channels::Mono,
            bitrate_kbps: 0,
            wav: FormatDefaults::built_in(Format::Wav),
            mp3: FormatDefaults::built_in(Format::Mp3),
            opus: FormatDefaults::built_in(Format::Opus),
            pause_behavior: PauseBehavior::Silence,
            mp3_quality: 7,
            opus_complexity: 3,
            max_duration_s: 14_400,
            min_duration_s: 0,
            media_timeout_s: 60,
        }
    }
}

/// `[catalog]`: where calls, recordings, logs, rules, the webhook outbox
/// and the audit trail are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// "sqlite" (`<storage.dir>/catalog.db`) or "postgres" (`url`).
    pub backend: CatalogBackend,
    /// postgres: "postgres://user@host:5432/database".
    pub url: String,
    /// postgres: a file whose first line is the password ("" = none, or
    /// the one in `url`).
    pub password_file: String,
    /// postgres: the schema the tables live in (created when missing).
    pub schema: String,
    /// postgres: most connections this recorder opens.
    pub pool_size: u32,
    /// This recorder's name in the fleet, written on every call, recording
    /// and delivery it makes; required with postgres; "" = the host name.
    pub node_id: String,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            backend: CatalogBackend::Sqlite,
            url: String::new(),
            password_file: String::new(),
            schema: "public".into(),
            pool_size: 8,
            node_id: String::new(),
        }
    }
}

/// Which database holds the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogBackend {
    Sqlite,
    Postgres,
}

/// The audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSection {
    /// Days audit records are kept (apart from recordings'); 0 = forever.
    pub retention_days: u32,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            retention_days: 400,
        }
    }
}

/// Recording notices: where prompts come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoticesSection {
    /// Directory of operator prompts, `<name>.wav`, `.mp3` or `.opus`;
    /// empty = only the built-in `beep`.
    pub prompts_dir: String,
    /// Text to speech: a command line (split on spaces, no shell) given
    /// the text on stdin and writing a WAV file to stdout; empty = text
    /// announcements are refused.
    pub tts_command: String,
    /// Seconds the TTS command may run.
    pub tts_timeout_s: u32,
    /// What `"announce": true` plays when no announcement is named.
    pub default_prompt: String,
    /// Longest prompt, in seconds.
    pub max_prompt_s: u32,
}

impl Default for NoticesSection {
    fn default() -> Self {
        Self {
            prompts_dir: String::new(),
            tts_command: String::new(),
            tts_timeout_s: 10,
            default_prompt: "beep".into(),
            max_prompt_s: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// Directory for recordings and sidecars.
    pub dir: String,
    /// How often live files are flushed to disk, in ms: what a crash can lose.
    pub flush_interval_ms: u32,
    /// Threads doing file writes (a stalled write holds one of them).
    pub writer_threads: u32,
    /// Bytes a recording may have waiting for the disk before it fails
    /// with `storage_error` instead of holding more memory.
    pub max_queued_bytes: u32,
    /// Days a completed recording is kept; 0 = forever. A recording's own
    /// `retention_days` (given at start) wins.
    pub retention_days: u32,
    /// Most bytes all recordings may take; 0 = no limit. Starting a
    /// recording over it is refused with 429 quota_exceeded.
    pub max_bytes: u64,
    /// Starting a recording when less than this is free on the storage
    /// filesystem is refused with 429 quota_exceeded; 0 = no check.
    pub min_free_bytes: u64,
    /// Seconds a signed download URL stays valid.
    pub url_lifetime_s: u32,
    /// Where a recording goes under `dir`. Placeholders: {yyyy} {mm} {dd}
    /// {hh} (UTC start), {recording_id} {call_id} {customer_id} {ext}
    /// {caller_label} {callee_label}. Values are sanitized so none can
    /// leave the directory; {customer_id} and {recording_id} are required
    /// (ids are per customer).
    pub path_pattern: String,
    /// Encryption at rest (`[storage.encryption]`).
    pub encryption: EncryptionSection,
    /// "local" (files stay under `dir`) or "s3" (uploaded at finalize).
    pub backend: StorageBackend,
    /// The object store (`[storage.s3]`), with backend = "s3".
    pub s3: S3Section,
}

/// Where finished recordings are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    Local,
    S3,
}

/// `[storage.s3]`: an S3-compatible object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Section {
    /// "https://host:port"; "" = AWS S3 in `region`.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Put before every object key (e.g. "recordings/").
    pub prefix: String,
    /// Path-style requests (`endpoint/bucket/key`), as MinIO and most
    /// S3-compatible servers want; false = virtual-hosted style.
    pub path_style: bool,
    /// A file of `AWS_ACCESS_KEY_ID=…`, `AWS_SECRET_ACCESS_KEY=…` (and
    /// optionally `AWS_SESSION_TOKEN=…`) lines, mode 0600; "" = those
    /// environment variables.
    pub credentials_file: String,
    /// Files larger than this many MiB go up in parts of this size
    /// (5-512).
    pub part_size_mib: u32,
}

impl Default for S3Section {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".into(),
            bucket: String::new(),
            prefix: String::new(),
            path_style: true,
            credentials_file: String::new(),
            part_size_mib: 8,
        }
    }
}

/// `[storage.encryption]`: recordings sealed with AES-256-GCM under a data
/// key per recording, wrapped by a key-encryption key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionSection {
    /// Encrypt new recordings.
    pub enabled: bool,
    /// The key new recordings' data keys are wrapped with.
    pub key_id: String,
    /// Every key-encryption key (old ones stay until rewrapped away).
    pub keys: Vec<KekEntry>,
}

/// One key-encryption key (`[[storage.encryption.keys]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KekEntry {
    /// Stored with every data key it wraps; never reuse an id for another key.
    pub id: String,
    /// 32 random bytes (or 64 hex digits), mode 0600 or stricter.
    pub file: String,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            dir: "./recordings".into(),
            flush_interval_ms: 1000,
            writer_threads: 4,
            max_queued_bytes: 8 << 20,
            retention_days: 30,
            max_bytes: 0,
            min_free_bytes: 0,
            url_lifetime_s: 86_400,
            path_pattern: "{customer_id}/{yyyy}/{mm}/{dd}/{recording_id}.{ext}".into(),
            encryption: EncryptionSection::default(),
            backend: StorageBackend::Local,
            s3: S3Section::default(),
        }
    }
}

impl Config {
    /// The `[[tenants]]` entry of `customer_id`, if any.
    pub fn tenant(&self, customer_id: &str) -> Option<&TenantEntry> {
        self.tenants.iter().find(|t| t.customer_id == customer_id)
    }

    /// Range and choice checks: (dotted key, message) for each problem.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        let mut bad = |k: &str, m: String| p.push((k.to_owned(), m));
        if !matches!(
            self.log.level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) && self
            .log
            .level
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            bad(
                "log.level",
                format!(
                    "{:?} is not a level (error, warn, info, debug, trace) or filter",
                    self.log.level
                ),
            );
        }
        if self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            bad(
                "api.listen",
                format!("{:?} is not an address:port", self.api.listen),
            );
        }
        for (key, value, range) in [
            ("api.max_connections", self.api.max_connections, 1..=100_000),
            ("api.header_timeout_s", self.api.header_timeout_s, 1..=600),
            (
                "api.request_timeout_s",
                self.api.request_timeout_s,
                1..=3600,
            ),
            (
                "api.rate_limit_per_s",
                self.api.rate_limit_per_s,
                0..=1_000_000,
            ),
            (
                "api.rate_limit_burst",
                self.api.rate_limit_burst,
                1..=1_000_000,
            ),
            (
                "api.ended_calls_kept_s",
                self.api.ended_calls_kept_s,
                0..=604_800,
            ),
        ] {
            if !range.contains(&value) {
                bad(
                    key,
                    format!(
                        "{value} is out of range ({}-{})",
                        range.start(),
                        range.end()
                    ),
                );
            }
        }
        for (i, t) in self.api.tokens.iter().enumerate() {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bad(
                    &format!("api.tokens.{i}.sha256"),
                    "must be 64 hex digits (printf %s TOKEN | sha256sum)".into(),
                );
            }
            if !t.customer_id.is_empty() && !crate::ids::is_valid_id(&t.customer_id) {
                bad(
                    &format!("api.tokens.{i}.customer_id"),
                    format!("{:?} is not a valid id", t.customer_id),
                );
            }
        }
        if !(1..=120).contains(&self.notices.tts_timeout_s) {
            bad(
                "notices.tts_timeout_s",
                format!("{} is outside 1-120", self.notices.tts_timeout_s),
            );
        }
        if !(1..=600).contains(&self.notices.max_prompt_s) {
            bad(
                "notices.max_prompt_s",
                format!("{} is outside 1-600", self.notices.max_prompt_s),
            );
        }
        if self.notices.default_prompt.trim().is_empty() {
            bad(
                "notices.default_prompt",
                "must name a prompt (\"beep\" is built in)".into(),
            );
        }
        for (i, s) in self.siprec.sources.iter().enumerate() {
            let key = |k: &str| format!("siprec.sources.{i}.{k}");
            if crate::siprec::sessions::parse_network(&s.network).is_none() {
                bad(
                    &key("network"),
                    format!(
                        "{:?} is not an address or network (10.0.0.0/8, ::1)",
                        s.network
                    ),
                );
            }
            if !s.customer_id.is_empty() && !crate::ids::is_valid_id(&s.customer_id) {
                bad(
                    &key("customer_id"),
                    format!("{:?} is not a valid id", s.customer_id),
                );
            }
            if !["", "wav", "mp3", "opus"].contains(&s.format.as_str()) {
                bad(
                    &key("format"),
                    format!("{:?}: wav, mp3, opus or \"\"", s.format),
                );
            }
            if !["", "mono", "dual"].contains(&s.channels.as_str()) {
                bad(
                    &key("channels"),
                    format!("{:?}: mono, dual or \"\"", s.channels),
                );
            }
        }
        if self.siprec.enabled && self.siprec.udp.is_empty() && self.siprec.tcp.is_empty() {
            bad(
                "siprec.udp",
                "[siprec] is enabled: set udp, tcp or both".into(),
            );
        }
        for (k, v) in [
            ("siprec.udp", &self.siprec.udp),
            ("siprec.tcp", &self.siprec.tcp),
        ] {
            if !v.is_empty() && v.parse::<std::net::SocketAddr>().is_err() {
                bad(k, format!("{v:?} is not an address:port"));
            }
        }
        if !["first", "second"].contains(&self.siprec.caller.as_str()) {
            bad(
                "siprec.caller",
                format!("{:?}: \"first\" or \"second\"", self.siprec.caller),
            );
        }
        if !(1..=65_536).contains(&self.siprec.max_connections) {
            bad(
                "siprec.max_connections",
                format!("{} is outside 1-65536", self.siprec.max_connections),
            );
        }
        let nats = &self.events.nats;
        if !nats.url.is_empty()
            && !nats.url.starts_with("nats://")
            && !nats.url.starts_with("tls://")
        {
            bad(
                "events.nats.url",
                format!("{:?}: nats://host:port (or tls://)", nats.url),
            );
        }
        let token = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        };
        if !nats.subject_prefix.split('.').all(token) {
            bad(
                "events.nats.subject_prefix",
                format!(
                    "{:?}: dot-separated tokens of A-Z a-z 0-9 _ -",
                    nats.subject_prefix
                ),
            );
        }
        if !token(&nats.stream) {
            bad(
                "events.nats.stream",
                format!("{:?}: A-Z a-z 0-9 _ - only", nats.stream),
            );
        }
        let s3 = &self.storage.s3;
        if self.storage.backend == StorageBackend::S3 {
            if s3.bucket.is_empty() {
                bad(
                    "storage.s3.bucket",
                    "backend = \"s3\" needs the bucket recordings go to".into(),
                );
            }
            if !(s3.endpoint.is_empty()
                || s3.endpoint.starts_with("http://")
                || s3.endpoint.starts_with("https://"))
            {
                bad(
                    "storage.s3.endpoint",
                    format!(
                        "{:?}: an http:// or https:// URL, or \"\" for AWS",
                        s3.endpoint
                    ),
                );
            }
            if !(5..=512).contains(&s3.part_size_mib) {
                bad(
                    "storage.s3.part_size_mib",
                    format!("{} is outside 5-512", s3.part_size_mib),
                );
            }
            if s3.prefix.starts_with('/') || s3.prefix.contains("..") {
                bad(
                    "storage.s3.prefix",
                    format!("{:?}: no leading / and no ..", s3.prefix),
                );
            }
        }
        let cat = &self.catalog;
        if !cat.node_id.is_empty() && !crate::ids::is_valid_id(&cat.node_id) {
            bad(
                "catalog.node_id",
                format!("{:?} is not a valid id", cat.node_id),
            );
        }
        if cat.backend == CatalogBackend::Postgres {
            if !(cat.url.starts_with("postgres://") || cat.url.starts_with("postgresql://")) {
                bad(
                    "catalog.url",
                    "backend = \"postgres\" needs url = \"postgres://user@host:5432/database\""
                        .into(),
                );
            }
            if cat.node_id.is_empty() {
                bad(
                    "catalog.node_id",
                    "backend = \"postgres\" needs a node_id naming this recorder (stable across restarts, unique in the fleet)".into(),
                );
            }
            if !crate::catalog::is_plain_schema_name(&cat.schema) {
                bad(
                    "catalog.schema",
                    format!("{:?}: a letter or _, then letters, digits or _", cat.schema),
                );
            }
            if cat.pool_size == 0 || cat.pool_size > 100 {
                bad(
                    "catalog.pool_size",
                    format!("{} is outside 1-100", cat.pool_size),
                );
            }
        }
        if !nats.node_id.is_empty() && !crate::ids::is_valid_id(&nats.node_id) {
            bad(
                "events.nats.node_id",
                format!("{:?} is not a valid id", nats.node_id),
            );
        }
        let enc = &self.storage.encryption;
        let mut kek_ids = std::collections::HashSet::new();
        for (i, k) in enc.keys.iter().enumerate() {
            if !crate::ids::is_valid_id(&k.id) {
                bad(
                    &format!("storage.encryption.keys.{i}.id"),
                    format!("{:?} is not a valid id", k.id),
                );
            } else if !kek_ids.insert(k.id.as_str()) {
                bad(
                    &format!("storage.encryption.keys.{i}.id"),
                    format!("{:?} names two keys", k.id),
                );
            }
            if k.file.trim().is_empty() {
                bad(
                    &format!("storage.encryption.keys.{i}.file"),
                    "must name the key file".into(),
                );
            }
        }
        if enc.enabled && enc.key_id.is_empty() {
            bad(
                "storage.encryption.key_id",
                "must name the key new recordings are wrapped with (one of [[storage.encryption.keys]])".into(),
            );
        } else if !enc.key_id.is_empty() && !kek_ids.contains(enc.key_id.as_str()) {
            bad(
                "storage.encryption.key_id",
                format!(
                    "{:?} names no [[storage.encryption.keys]] entry",
                    enc.key_id
                ),
            );
        }
        let mut tenants = std::collections::HashSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            if !crate::ids::is_valid_id(&t.customer_id) {
                bad(
                    &format!("tenants.{i}.customer_id"),
                    format!("{:?} is not a valid id", t.customer_id),
                );
            } else if !tenants.insert(t.customer_id.as_str()) {
                bad(
                    &format!("tenants.{i}.customer_id"),
                    format!("{:?} has two [[tenants]] entries", t.customer_id),
                );
            }
        }
        let mut endpoints = std::collections::HashSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let key = |k: &str| format!("webhooks.{i}.{k}");
            let scheme_ok = ["http://", "https://"]
                .iter()
                .any(|s| w.url.len() > s.len() && w.url.starts_with(s));
            if !scheme_ok || w.url.parse::<hyper::Uri>().is_err() {
                bad(
                    &key("url"),
                    format!("{:?} is not an http:// or https:// URL", w.url),
                );
            }
            if !endpoints.insert(w.endpoint().to_owned()) {
                bad(
                    &key("name"),
                    format!("{:?} names two webhooks; give each a name", w.endpoint()),
                );
            }
            if w.secret.len() < 16 {
                bad(
                    &key("secret"),
                    "must be at least 16 characters (receivers verify signatures with it)".into(),
                );
            }
            for pattern in &w.events {
                let known = match pattern.strip_suffix('*') {
                    Some(prefix) => EVENT_NAMES.iter().any(|e| e.starts_with(prefix)),
                    None => EVENT_NAMES.contains(&pattern.as_str()),
                };
                if !known {
                    bad(
                        &key("events"),
                        format!("{pattern:?} matches no event (events: {EVENT_NAMES:?})"),
                    );
                }
            }
            if !(100..=120_000).contains(&w.timeout_ms) {
                bad(
                    &key("timeout_ms"),
                    format!("{} is outside 100-120000", w.timeout_ms),
                );
            }
            if !(1..=100).contains(&w.max_attempts) {
                bad(
                    &key("max_attempts"),
                    format!("{} is outside 1-100", w.max_attempts),
                );
            }
            if w.retry_initial_ms < 10 || w.retry_initial_ms > w.retry_max_ms {
                bad(
                    &key("retry_initial_ms"),
                    format!(
                        "{} must be at least 10 and at most retry_max_ms ({})",
                        w.retry_initial_ms, w.retry_max_ms
                    ),
                );
            }
            if w.retry_max_ms > 86_400_000 {
                bad(
                    &key("retry_max_ms"),
                    format!("{} is more than a day", w.retry_max_ms),
                );
            }
        }
        if self.events.socket_path.trim().is_empty() {
            bad("events.socket_path", "must not be empty".into());
        }
        if u32::from_str_radix(&self.events.socket_mode, 8).map_or(true, |m| m > 0o777) {
            bad(
                "events.socket_mode",
                format!(
                    "{:?} is not an octal mode like \"0660\"",
                    self.events.socket_mode
                ),
            );
        }
        if !self.rtp.advertise.is_empty() && self.rtp.advertise.parse::<std::net::IpAddr>().is_err()
        {
            bad(
                "rtp.advertise",
                format!("{:?} is not an IPv4 or IPv6 address", self.rtp.advertise),
            );
        }
        if !(2048..=1 << 24).contains(&self.rtp.queue_bytes) {
            bad(
                "rtp.queue_bytes",
                format!("{} is outside 2048-16777216", self.rtp.queue_bytes),
            );
        }
        if !(1..=64).contains(&self.storage.writer_threads) {
            bad(
                "storage.writer_threads",
                format!("{} is outside 1-64", self.storage.writer_threads),
            );
        }
        if let Err(why) = crate::storage_path::check_pattern(&self.storage.path_pattern) {
            bad("storage.path_pattern", why);
        }
        let public = &self.api.public_url;
        if !public.is_empty()
            && (!(public.starts_with("http://") || public.starts_with("https://"))
                || public.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            bad(
                "api.public_url",
                format!("{public:?} is not an http:// or https:// URL"),
            );
        }
        if !(1..=31_536_000).contains(&self.storage.url_lifetime_s) {
            bad(
                "storage.url_lifetime_s",
                format!("{} is outside 1-31536000", self.storage.url_lifetime_s),
            );
        }
        if self.storage.max_queued_bytes < 65_536 {
            bad(
                "storage.max_queued_bytes",
                format!("{} is below 65536", self.storage.max_queued_bytes),
            );
        }
        if self.recording.min_duration_s > 0
            && self.recording.max_duration_s > 0
            && self.recording.min_duration_s >= self.recording.max_duration_s
        {
            bad(
                "recording.min_duration_s",
                "must be below max_duration_s".into(),
            );
        }
        if self.recording.media_timeout_s == 0 {
            bad("recording.media_timeout_s", "must be at least 1".into());
        }
        if self.rtp.bind.parse::<std::net::IpAddr>().is_err() {
            bad(
                "rtp.bind",
                format!("{:?} is not an IPv4 or IPv6 address", self.rtp.bind),
            );
        }
        for (key, port) in [
            ("rtp.port_min", self.rtp.port_min),
            ("rtp.port_max", self.rtp.port_max),
        ] {
            if !(1024..=65_534).contains(&port) {
                bad(key, format!("{port} is outside 1024-65534"));
            }
        }
        if !self.rtp.port_min.is_multiple_of(2) {
            bad(
                "rtp.port_min",
                format!(
                    "{} must be even (RTP on even ports, RTCP on the odd one above)",
                    self.rtp.port_min
                ),
            );
        }
        if self.rtp.port_max < self.rtp.port_min + 1 {
            bad(
                "rtp.port_max",
                format!(
                    "{} leaves no room above port_min {} for one RTP/RTCP pair",
                    self.rtp.port_max, self.rtp.port_min
                ),
            );
        }
        if !(20..=2000).contains(&self.jitter.playout_delay_ms) {
            bad(
                "jitter.playout_delay_ms",
                format!("{} ms is outside 20-2000", self.jitter.playout_delay_ms),
            );
        }
        if self.jitter.drift_bound_ms != 0 && !(5..=1000).contains(&self.jitter.drift_bound_ms) {
            bad(
                "jitter.drift_bound_ms",
                format!(
                    "{} ms is outside 5-1000 (or 0 to never correct)",
                    self.jitter.drift_bound_ms
                ),
            );
        }
        if !(4..=1024).contains(&self.jitter.capacity_packets) {
            bad(
                "jitter.capacity_packets",
                format!("{} is outside 4-1024", self.jitter.capacity_packets),
            );
        }
        if self.workers.threads > 256 {
            bad(
                "workers.threads",
                format!("{} is more than 256", self.workers.threads),
            );
        }
        if !(5..=100).contains(&self.workers.tick_ms) {
            bad(
                "workers.tick_ms",
                format!("{} ms is outside 5-100", self.workers.tick_ms),
            );
        }
        let r = &self.recording;
        if r.sample_rate != 0 && !sample_rates(r.format).contains(&r.sample_rate) {
            bad(
                "recording.sample_rate",
                format!(
                    "{} Hz is not supported for {} (supported: {:?}, or 0 for each format's own)",
                    r.sample_rate,
                    r.format.extension(),
                    sample_rates(r.format)
                ),
            );
        }
        if let Some(msg) = bitrate_problem(
            r.format,
            r.sample_rate_for(r.format),
            r.bitrate_for(r.format),
        ) {
            bad("recording.bitrate_kbps", msg);
        }
        for format in [Format::Wav, Format::Mp3, Format::Opus] {
            let own = r.own(format);
            let table = format!("recording.{}", format.extension());
            if own.sample_rate != 0 && !sample_rates(format).contains(&own.sample_rate) {
                bad(
                    &format!("{table}.sample_rate"),
                    format!(
                        "{} Hz is not supported for {} (supported: {:?})",
                        own.sample_rate,
                        format.extension(),
                        sample_rates(format)
                    ),
                );
            }
            if format == Format::Wav && own.bitrate_kbps != 0 {
                bad(
                    &format!("{table}.bitrate_kbps"),
                    "WAV has no bit rate; leave it 0".into(),
                );
            } else if let Some(msg) =
                bitrate_problem(format, r.sample_rate_for(format), own.bitrate_kbps)
            {
                bad(&format!("{table}.bitrate_kbps"), msg);
            }
        }
        if r.mp3_quality > 9 {
            bad(
                "recording.mp3_quality",
                format!("{} is outside 0-9", r.mp3_quality),
            );
        }
        if r.opus_complexity > 10 {
            bad(
                "recording.opus_complexity",
                format!("{} is outside 0-10", r.opus_complexity),
            );
        }
        if self.storage.dir.trim().is_empty() {
            bad("storage.dir", "must not be empty".into());
        }
        if !(100..=60_000).contains(&self.storage.flush_interval_ms) {
            bad(
                "storage.flush_interval_ms",
                format!("{} ms is outside 100-60000", self.storage.flush_interval_ms),
            );
        }
        p
    }
}
