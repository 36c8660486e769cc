//! `recengine ctl`: a command-line client for the control API. It finds the
//! daemon and a token the way an operator on the box expects (flags, then
//! `RECENGINE_*` environment, then the configuration: `<storage.dir>/api.addr`
//! or `api.listen`, and `<storage.dir>/admin.token`), prints tables by
//! default and the API's own JSON with `--json`, and downloads recordings
//! to a file with a progress line and a checksum check.

mod table;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::config::Config;
use crate::http_client::{HttpClient, HttpError};

/// Deadline for an API call (downloads have none while data flows).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum CtlError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Config(String),
    #[error("cannot reach the control API at {url}: {source}")]
    Http { url: String, source: HttpError },
    #[error("HTTP {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Verify(String),
}

#[derive(clap::Args)]
pub struct CtlArgs {
    /// Control API: host:port or http(s)://host:port [env: RECENGINE_API]
    /// (default: the running daemon's <storage.dir>/api.addr, else
    /// api.listen from the configuration).
    #[arg(long, global = true, value_name = "ADDR")]
    api: Option<String>,
    /// API token [env: RECENGINE_TOKEN] (default: <storage.dir>/admin.token).
    #[arg(long, global = true, hide_env_values = true)]
    token: Option<String>,
    /// File holding the API token [env: RECENGINE_TOKEN_FILE].
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The daemon's configuration [env: RECENGINE_CONFIG] (built-in
    /// defaults otherwise).
    #[arg(short, long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(clap::Subcommand)]
enum CtlCommand {
    /// Register a call and print the RTP address of each leg.
    CreateCall {
        /// Call id (default: generated).
        #[arg(long)]
        call_id: Option<String>,
        /// Caller number or URI.
        #[arg(long, default_value = "")]
        from: String,
        /// Callee number or URI.
        #[arg(long, default_value = "")]
        to: String,
        /// inbound | outbound
        #[arg(long, default_value = "inbound")]
        direction: String,
        /// A conference: legs are participants.
        #[arg(long)]
        conference: bool,
        /// A leg as ROLE or ROLE:LABEL (caller, callee, participant);
        /// repeatable. Default: one caller and one callee leg.
        #[arg(long = "leg", value_name = "ROLE[:LABEL]")]
        legs: Vec<String>,
        /// Start recording at once in this format (wav | mp3 | opus).
        #[arg(long, value_name = "FORMAT")]
        record: Option<String>,
        #[command(flatten)]
        opts: RecordOpts,
    },
    /// List calls the daemon knows.
    Calls,
    /// Show one call: legs with their RTP addresses and counters, recordings.
    Call {
        /// The call's id.
        call_id: String,
    },
    /// End a call; its recordings are finalized.
    End {
        /// The call's id.
        call_id: String,
    },
    /// Start recording a call.
    Start {
        /// The call's id.
        call_id: String,
        /// wav | mp3 | opus (default: [recording] format).
        #[arg(long, value_name = "FORMAT")]
        format: Option<String>,
        #[command(flatten)]
        opts: RecordOpts,
    },
    /// Stop a call's recording; it is finalized and announced.
    Stop {
        /// The call's id.
        call_id: String,
    },
    /// Pause a call's recording.
    Pause {
        /// The call's id.
        call_id: String,
    },
    /// Resume a paused recording.
    Resume {
        /// The call's id.
        call_id: String,
    },
    /// List recordings (newest first).
    List {
        /// Only this call's recordings.
        #[arg(long)]
        call_id: Option<String>,
        /// recording | paused | stopped | processing | completed | failed |
        /// discarded | deleted
        #[arg(long)]
        status: Option<String>,
        /// wav | mp3 | opus
        #[arg(long)]
        format: Option<String>,
        /// Started at or after (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Started before (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Most rows (up to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Rows to skip (paging).
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// Show one recording.
    Get {
        /// The recording's id.
        recording_id: String,
    },
    /// Download a completed recording; its sha256 is checked.
    Download {
        /// The recording's id.
        recording_id: String,
        /// Output file (default: <recording_id>.<ext> here; "-" for stdout).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// No progress line even on a terminal.
        #[arg(long)]
        quiet: bool,
    },
    /// Delete a recording's file and sidecar (the catalog keeps a tombstone).
    Delete {
        /// The recording's id.
        recording_id: String,
    },
    /// Webhook deliveries (admin token).
    Deliveries {
        /// pending | delivered | failed
        #[arg(long)]
        status: Option<String>,
        /// Only this [[webhooks]] endpoint.
        #[arg(long)]
        endpoint: Option<String>,
        /// Most rows (up to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// Recording options shared by `create-call --record` and `start`.
#[derive(clap::Args)]
struct RecordOpts {
    /// all | caller | callee, or leg ids separated by commas.
    #[arg(long)]
    participant: Option<String>,
    /// mono | dual
    #[arg(long)]
    channels: Option<String>,
    /// kbit/s (MP3, Opus).
    #[arg(long)]
    bitrate: Option<u32>,
    /// Hz.
    #[arg(long)]
    sample_rate: Option<u32>,
    /// silence | skip
    #[arg(long)]
    pause_behavior: Option<String>,
    /// keep | suppress
    #[arg(long)]
    dtmf: Option<String>,
    /// Recording id (default: generated).
    #[arg(long)]
    recording_id: Option<String>,
    /// Days to keep this recording (0 = forever).
    #[arg(long)]
    retention_days: Option<u32>,
}

impl RecordOpts {
    fn to_json(&self, format: Option<&str>) -> serde_json::Map<String, Value> {
        let mut o = serde_json::Map::new();
        let mut put = |k: &str, v: Value| {
            o.insert(k.to_owned(), v);
        };
        if let Some(f) = format {
            put("format", json!(f));
        }
        if let Some(p) = &self.participant {
            if p.contains(',') {
                put(
                    "participant",
                    json!(p.split(',').map(str::trim).collect::<Vec<_>>()),
                );
            } else {
                put("participant", json!(p));
            }
        }
        for (k, v) in [
            ("channels", &self.channels),
            ("pause_behavior", &self.pause_behavior),
            ("dtmf", &self.dtmf),
            ("recording_id", &self.recording_id),
        ] {
            if let Some(v) = v {
                put(k, json!(v));
            }
        }
        for (k, v) in [
            ("bitrate", self.bitrate),
            ("sample_rate", self.sample_rate),
            ("retention_days", self.retention_days),
        ] {
            if let Some(v) = v {
                put(k, json!(v));
            }
        }
        o
    }
}

/// Runs `recengine ctl`; prints errors itself.
pub fn run(args: CtlArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("recengine ctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_async(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("recengine ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_async(args: CtlArgs) -> Result<(), CtlError> {
    let target = Target::resolve(&args)?;
    let api = Api {
        client: HttpClient::new(),
        base: target.base,
        token: target.token,
    };
    let json_out = args.json;
    let print = |v: &Value, human: &dyn Fn(&Value) -> String| {
        if json_out {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            print!("{}", human(v));
        }
    };
    match args.command {
        CtlCommand::CreateCall {
            call_id,
            from,
            to,
            direction,
            conference,
            legs,
            record,
            opts,
        } => {
            let legs = if legs.is_empty() {
                vec!["caller".to_owned(), "callee".to_owned()]
            } else {
                legs
            };
            let legs: Vec<Value> = legs
                .iter()
                .map(|l| match l.split_once(':') {
                    Some((role, label)) => json!({"role": role, "label": label}),
                    None => json!({"role": l}),
                })
                .collect();
            let mut body = json!({"from": from, "to": to, "direction": direction, "legs": legs,
                                  "reference_type": if conference { "conference" } else { "call" }});
            if let Some(id) = call_id {
                body["call_id"] = json!(id);
            }
            let mut recording = opts.to_json(record.as_deref());
            if record.is_some() {
                recording.insert("enabled".into(), json!(true));
            }
            if !recording.is_empty() {
                body["recording"] = Value::Object(recording);
            }
            let v = api.call("POST", "/v1/calls", Some(body)).await?;
            print(&v, &|v| {
                format!("call {} created\n{}", s(&v["call_id"]), call_tables(v))
            });
        }
        CtlCommand::Calls => {
            let v = api.call("GET", "/v1/calls", None).await?;
            print(&v, &|v| {
                let rows: Vec<Vec<String>> = list(&v["data"])
                    .iter()
                    .map(|c| {
                        vec![
                            s(&c["call_id"]),
                            s(&c["status"]),
                            s(&c["from"]),
                            s(&c["to"]),
                            list(&c["legs"]).len().to_string(),
                            list(&c["recordings"]).len().to_string(),
                            s(&c["created_at"]),
                        ]
                    })
                    .collect();
                table::render(
                    &[
                        "call",
                        "status",
                        "from",
                        "to",
                        "legs",
                        "recordings",
                        "created",
                    ],
                    &rows,
                )
            });
        }
        CtlCommand::Call { call_id } => {
            let v = api
                .call("GET", &format!("/v1/calls/{}", enc(&call_id)), None)
                .await?;
            print(&v, &|v| {
                format!(
                    "call {}  {}  {} → {}  created {}\n{}",
                    s(&v["call_id"]),
                    s(&v["status"]),
                    s(&v["from"]),
                    s(&v["to"]),
                    s(&v["created_at"]),
                    call_tables(v)
                )
            });
        }
        CtlCommand::End { call_id } => {
            let v = api
                .call(
                    "POST",
                    &format!("/v1/calls/{}/end", enc(&call_id)),
                    Some(json!({})),
                )
                .await?;
            print(&v, &|v| format!("call {} ended\n", s(&v["call_id"])));
        }
        CtlCommand::Start {
            call_id,
            format,
            opts,
        } => {
            let body = Value::Object(opts.to_json(format.as_deref()));
            let v = api
                .call(
                    "POST",
                    &format!("/v1/calls/{}/record/start", enc(&call_id)),
                    Some(body),
                )
                .await?;
            print(&v, &|v| {
                format!(
                    "recording {} started: {} {} Hz {}\n",
                    s(&v["recording_id"]),
                    s(&v["format"]),
                    s(&v["sample_rate"]),
                    s(&v["channels"])
                )
            });
        }
        CtlCommand::Stop { call_id } => action(&api, &call_id, "stop", &print).await?,
        CtlCommand::Pause { call_id } => action(&api, &call_id, "pause", &print).await?,
        CtlCommand::Resume { call_id } => action(&api, &call_id, "resume", &print).await?,
        CtlCommand::List {
            call_id,
            status,
            format,
            since,
            until,
            limit,
            offset,
        } => {
            let mut query = vec![format!("limit={limit}"), format!("offset={offset}")];
            for (k, v) in [
                ("call_id", call_id),
                ("status", status),
                ("format", format),
                ("since", since),
                ("until", until),
            ] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", enc(&v)));
                }
            }
            let v = api
                .call("GET", &format!("/v1/recordings?{}", query.join("&")), None)
                .await?;
            print(&v, &|v| {
                let rows: Vec<Vec<String>> = list(&v["data"])
                    .iter()
                    .map(|r| {
                        vec![
                            s(&r["recording_id"]),
                            s(&r["call_id"]),
                            s(&r["status"]),
                            s(&r["format"]),
                            table::duration(r["duration_seconds"].as_f64().unwrap_or(0.0)),
                            r["file_size_bytes"]
                                .as_u64()
                                .map(table::bytes)
                                .unwrap_or_default(),
                            s(&r["started_at"]),
                        ]
                    })
                    .collect();
                let p = &v["pagination"];
                format!(
                    "{}{} of {} recordings\n",
                    table::render(
                        &[
                            "recording",
                            "call",
                            "status",
                            "format",
                            "duration",
                            "size",
                            "started"
                        ],
                        &rows
                    ),
                    rows.len(),
                    s(&p["total"])
                )
            });
        }
        CtlCommand::Get { recording_id } => {
            let v = api
                .call(
                    "GET",
                    &format!("/v1/recordings/{}", enc(&recording_id)),
                    None,
                )
                .await?;
            print(&v, &|v| recording_detail(v));
        }
        CtlCommand::Download {
            recording_id,
            output,
            quiet,
        } => {
            let (path, size, checksum) = download(&api, &recording_id, output, quiet).await?;
            if json_out {
                println!(
                    "{}",
                    json!({"recording_id": recording_id, "path": path, "bytes": size,
                           "checksum": {"algorithm": "sha256", "value": checksum}})
                );
            } else if path != "-" {
                println!("saved {path} ({}, sha256 verified)", table::bytes(size));
            }
        }
        CtlCommand::Delete { recording_id } => {
            let v = api
                .call(
                    "DELETE",
                    &format!("/v1/recordings/{}", enc(&recording_id)),
                    None,
                )
                .await?;
            print(&v, &|v| {
                format!("recording {} deleted\n", s(&v["recording_id"]))
            });
        }
        CtlCommand::Deliveries {
            status,
            endpoint,
            limit,
        } => {
            let mut query = vec![format!("limit={limit}")];
            if let Some(st) = status {
                query.push(format!("status={}", enc(&st)));
            }
            if let Some(e) = endpoint {
                query.push(format!("endpoint={}", enc(&e)));
            }
            let v = api
                .call(
                    "GET",
                    &format!("/v1/webhooks/deliveries?{}", query.join("&")),
                    None,
                )
                .await?;
            print(&v, &|v| {
                let rows: Vec<Vec<String>> = list(&v["data"])
                    .iter()
                    .map(|d| {
                        vec![
                            s(&d["delivery_id"]),
                            s(&d["endpoint"]),
                            s(&d["event"]),
                            s(&d["event_id"]),
                            s(&d["status"]),
                            s(&d["attempts"]),
                            s(&d["last_error"]).chars().take(60).collect(),
                        ]
                    })
                    .collect();
                table::render(
                    &[
                        "delivery",
                        "endpoint",
                        "event",
                        "event_id",
                        "status",
                        "attempts",
                        "last_error",
                    ],
                    &rows,
                )
            });
        }
    }
    Ok(())
}

async fn action(
    api: &Api,
    call_id: &str,
    verb: &str,
    print: &impl Fn(&Value, &dyn Fn(&Value) -> String),
) -> Result<(), CtlError> {
    let v = api
        .call(
            "POST",
            &format!("/v1/calls/{}/record/{verb}", enc(call_id)),
            Some(json!({})),
        )
        .await?;
    print(&v, &|v| {
        format!("recording {} {}\n", s(&v["recording_id"]), s(&v["status"]))
    });
    Ok(())
}

/// Where the API is and which token to use.
struct Target {
    base: String,
    token: String,
}

impl Target {
    fn resolve(args: &CtlArgs) -> Result<Self, CtlError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let config_path = args
            .config
            .clone()
            .or_else(|| env("RECENGINE_CONFIG").map(PathBuf::from));
        let cfg = match &config_path {
            Some(p) => Config::load(p).map_err(|e| CtlError::Config(e.to_string()))?,
            None => Config::default(),
        };
        let storage = Path::new(&cfg.storage.dir);
        let api = args
            .api
            .clone()
            .or_else(|| env("RECENGINE_API"))
            .unwrap_or_else(|| {
                // The running daemon writes its real address (port 0 resolved).
                std::fs::read_to_string(storage.join("api.addr"))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|_| cfg.api.listen.clone())
            });
        let base = if api.contains("://") {
            api.trim_end_matches('/').to_owned()
        } else {
            let addr = api
                .replace("0.0.0.0:", "127.0.0.1:")
                .replace("[::]:", "[::1]:");
            format!("http://{addr}")
        };
        let token_file = args
            .token_file
            .clone()
            .or_else(|| env("RECENGINE_TOKEN_FILE").map(PathBuf::from));
        let token = match (
            args.token.clone().or_else(|| env("RECENGINE_TOKEN")),
            token_file,
        ) {
            (Some(t), _) => t,
            (None, Some(f)) => std::fs::read_to_string(&f)
                .map_err(|e| CtlError::Io {
                    what: format!("reading the token file {}", f.display()),
                    source: e,
                })?
                .trim()
                .to_owned(),
            (None, None) => std::fs::read_to_string(storage.join("admin.token"))
                .map(|t| t.trim().to_owned())
                .map_err(|_| {
                    CtlError::Usage(format!(
                        "no API token: give --token, RECENGINE_TOKEN, --token-file or -c CONFIG \
                         (a daemon without [[api.tokens]] writes one to {})",
                        storage.join("admin.token").display()
                    ))
                })?,
        };
        Ok(Self { base, token })
    }
}

struct Api {
    client: HttpClient,
    base: String,
    token: String,
}

impl Api {
    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("authorization", format!("Bearer {}", self.token)),
            ("content-type", "application/json".to_owned()),
        ]
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// One API call; a non-2xx answer becomes [`CtlError::Api`].
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, CtlError> {
        let method: hyper::Method = method.parse().map_err(|_| CtlError::Usage(method.into()))?;
        let url = self.url(path);
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let answer = self
            .client
            .call(method, &url, &self.headers(), body, CALL_TIMEOUT)
            .await
            .map_err(|source| CtlError::Http {
                url: url.clone(),
                source,
            })?;
        let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if (200..300).contains(&answer.status) {
            Ok(v)
        } else {
            Err(api_error(answer.status, &v))
        }
    }
}

fn api_error(status: u16, v: &Value) -> CtlError {
    CtlError::Api {
        status,
        code: v["error"]["code"].as_str().unwrap_or("error").to_owned(),
        message: v["error"]["message"]
            .as_str()
            .unwrap_or("no error message")
            .to_owned(),
    }
}

/// Downloads a recording to `output` (or `<id>.<ext>`), writing `.part`
/// first and renaming once its sha256 matches the catalog's. Returns
/// (path, bytes, sha256).
async fn download(
    api: &Api,
    id: &str,
    output: Option<PathBuf>,
    quiet: bool,
) -> Result<(String, u64, String), CtlError> {
    let detail = api
        .call("GET", &format!("/v1/recordings/{}", enc(id)), None)
        .await?;
    let expected = detail["checksum"]["value"].as_str().map(str::to_owned);
    let ext = match detail["format"].as_str() {
        Some("mp3") => "mp3",
        Some("opus") => "opus",
        _ => "wav",
    };
    // The download endpoint answers with a redirect to a signed URL.
    let url = api.url(&format!("/v1/recordings/{}/download", enc(id)));
    let redirect = api
        .client
        .call(
            hyper::Method::GET,
            &url,
            &api.headers(),
            Bytes::new(),
            CALL_TIMEOUT,
        )
        .await
        .map_err(|source| CtlError::Http {
            url: url.clone(),
            source,
        })?;
    if !(300..400).contains(&redirect.status) {
        let v: Value = serde_json::from_slice(&redirect.body).unwrap_or(Value::Null);
        return Err(api_error(redirect.status, &v));
    }
    let location = redirect
        .headers
        .get("location")
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| CtlError::Verify("the download answer has no Location".into()))?;
    let file_url = if location.contains("://") {
        location.to_owned()
    } else {
        api.url(location)
    };
    let resp = api
        .client
        .send(
            hyper::Method::GET,
            &file_url,
            &[],
            Bytes::new(),
            CALL_TIMEOUT,
        )
        .await
        .map_err(|source| CtlError::Http {
            url: file_url.clone(),
            source,
        })?;
    if resp.status().as_u16() != 200 {
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(api_error(
            status,
            &serde_json::from_slice(&body).unwrap_or(Value::Null),
        ));
    }
    let total: Option<u64> = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let to_stdout = output.as_deref() == Some(Path::new("-"));
    let path = output.unwrap_or_else(|| PathBuf::from(format!("{id}.{ext}")));
    let part = PathBuf::from(format!("{}.part", path.display()));
    let io_err = |what: String| move |source| CtlError::Io { what, source };
    let mut sink: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(&part).map_err(io_err(format!("creating {}", part.display())))?,
        ))
    };
    let mut progress = Progress::new(
        total,
        !quiet && !to_stdout && std::io::stderr().is_terminal(),
    );
    let mut hash = Sha256::new();
    let mut written = 0u64;
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CtlError::Http {
            url: file_url.clone(),
            source: HttpError::Body(e.to_string()),
        })?;
        if let Ok(data) = frame.into_data() {
            sink.write_all(&data)
                .map_err(io_err(format!("writing {}", part.display())))?;
            hash.update(&data);
            written += data.len() as u64;
            progress.update(written);
        }
    }
    sink.flush()
        .map_err(io_err(format!("writing {}", part.display())))?;
    drop(sink);
    progress.finish();
    let got = crate::crypto::hex(&hash.finalize());
    if let Some(total) = total
        && total != written
    {
        let _ = std::fs::remove_file(&part);
        return Err(CtlError::Verify(format!(
            "the download stopped at {written} of {total} bytes"
        )));
    }
    if let Some(expected) = &expected
        && *expected != got
    {
        let _ = std::fs::remove_file(&part);
        return Err(CtlError::Verify(format!(
            "sha256 mismatch: catalog {expected}, downloaded {got}; nothing was saved"
        )));
    }
    if to_stdout {
        return Ok(("-".into(), written, got));
    }
    std::fs::rename(&part, &path).map_err(io_err(format!("renaming to {}", path.display())))?;
    Ok((path.display().to_string(), written, got))
}

/// A one-line progress display on stderr (only on a terminal).
struct Progress {
    total: Option<u64>,
    enabled: bool,
    started: Instant,
    last_draw: Option<Instant>,
}

impl Progress {
    fn new(total: Option<u64>, enabled: bool) -> Self {
        Self {
            total,
            enabled,
            started: Instant::now(),
            last_draw: None,
        }
    }

    fn update(&mut self, done: u64) {
        if !self.enabled
            || self
                .last_draw
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let line = match self.total {
            Some(t) if t > 0 => {
                let pct = done as f64 * 100.0 / t as f64;
                let width = 30;
                let filled = ((pct / 100.0) * width as f64) as usize;
                format!(
                    "[{}{}] {:>5.1}%  {} / {}  {}/s",
                    "#".repeat(filled.min(width)),
                    " ".repeat(width - filled.min(width)),
                    pct,
                    table::bytes(done),
                    table::bytes(t),
                    table::bytes(rate as u64)
                )
            }
            _ => format!("{}  {}/s", table::bytes(done), table::bytes(rate as u64)),
        };
        eprint!("\r{line}\x1b[K");
    }

    fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            eprintln!();
        }
    }
}

/// A JSON value as table text (strings without quotes, null as empty).
fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// Percent-encodes a path segment or query value.
fn enc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn call_tables(v: &Value) -> String {
    let legs: Vec<Vec<String>> = list(&v["legs"])
        .iter()
        .map(|l| {
            vec![
                s(&l["leg_id"]),
                s(&l["role"]),
                s(&l["label"]),
                format!("{}:{}", s(&l["rtp"]["host"]), s(&l["rtp"]["port"])),
                s(&l["ingest"]["datagrams"]),
            ]
        })
        .collect();
    let mut out = table::render(&["leg", "role", "label", "rtp", "datagrams"], &legs);
    let recs: Vec<Vec<String>> = list(&v["recordings"])
        .iter()
        .map(|r| {
            vec![
                s(&r["recording_id"]),
                s(&r["status"]),
                s(&r["format"]),
                table::duration(r["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0),
            ]
        })
        .collect();
    if !recs.is_empty() {
        out.push('\n');
        out.push_str(&table::render(
            &["recording", "status", "format", "duration"],
            &recs,
        ));
    }
    out
}

fn recording_detail(v: &Value) -> String {
    let mut rows = vec![
        ("recording", s(&v["recording_id"])),
        ("call", s(&v["call_id"])),
        ("status", s(&v["status"])),
        (
            "format",
            format!(
                "{} {} Hz {} {}",
                s(&v["format"]),
                s(&v["sample_rate"]),
                s(&v["channels"]),
                match v["bitrate_kbps"].as_u64() {
                    Some(b) if b > 0 => format!("{b} kbit/s"),
                    _ => String::new(),
                }
            )
            .trim_end()
            .to_owned(),
        ),
        ("participant", s(&v["participant"])),
        (
            "duration",
            table::duration(v["duration_seconds"].as_f64().unwrap_or(0.0)),
        ),
        (
            "size",
            v["file_size_bytes"]
                .as_u64()
                .map(table::bytes)
                .unwrap_or_default(),
        ),
        ("sha256", s(&v["checksum"]["value"])),
        ("started", s(&v["started_at"])),
        ("stopped", s(&v["stopped_at"])),
        ("completed", s(&v["completed_at"])),
    ];
    if let Some(r) = v["failure_reason"].as_str() {
        rows.push(("failure", r.to_owned()));
    }
    if v["recovered"] == true {
        rows.push(("recovered", "yes (repaired after a crash)".into()));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .filter(|(_, val)| !val.is_empty())
        .map(|(k, val)| format!("{k:<width$}  {val}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_values_are_percent_encoded() {
        assert_eq!(enc("call-1.a_b~"), "call-1.a_b~");
        assert_eq!(enc("a/b c"), "a%2Fb%20c");
        assert_eq!(
            enc("2026-01-01T00:00:00+01:00"),
            "2026-01-01T00%3A00%3A00%2B01%3A00"
        );
    }
}
