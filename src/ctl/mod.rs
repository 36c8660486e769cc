//! `recengine ctl`: a command-line client for the control API. It finds the
//! daemon and a token the way an operator on the box expects (flags, then
//! `RECENGINE_*` environment, then the configuration: `<storage.dir>/api.addr`
//! or `api.listen`, and `<storage.dir>/admin.token`), prints tables by
//! default and the API's own JSON with `--json`, and downloads recordings
//! to a file with a progress line and a checksum check.
//!
//! Each command is one function in `commands`, building its request from
//! the API's own request types; `target` finds the daemon and token,
//! `client` makes the calls, `download` fetches files, `render` and
//! `table` turn answers into text.

mod client;
mod commands;
mod download;
mod render;
mod table;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;

use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::catalog::outbox::DeliveryStatus;
use crate::config::{Channels, Format, PauseBehavior};
use crate::engine::model::{AnnounceTarget, DtmfPolicy, ParticipantRequest, RecordingRequest};
use crate::http_client::{HttpClient, HttpError};

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
    CreateCall(commands::NewCall),
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
        #[arg(long, value_name = "FORMAT", value_parser = api_word::<Format>)]
        format: Option<Format>,
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
    List(commands::RecordingFilter),
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
    /// The audit trail: who accessed which recording, and every control
    /// action (newest first).
    Audit(commands::AuditFilter),
    /// Call flows: rules that record every call to or from a number.
    Flows {
        #[command(subcommand)]
        command: commands::FlowCommand,
    },
    /// Webhook deliveries (admin token).
    Deliveries {
        /// pending | delivered | failed
        #[arg(long, value_parser = api_word::<DeliveryStatus>)]
        status: Option<DeliveryStatus>,
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
    #[arg(long, value_parser = participant)]
    participant: Option<ParticipantRequest>,
    /// mono | dual
    #[arg(long, value_parser = api_word::<Channels>)]
    channels: Option<Channels>,
    /// kbit/s (MP3, Opus).
    #[arg(long)]
    bitrate: Option<u32>,
    /// Hz.
    #[arg(long)]
    sample_rate: Option<u32>,
    /// silence | skip
    #[arg(long, value_parser = api_word::<PauseBehavior>)]
    pause_behavior: Option<PauseBehavior>,
    /// keep | suppress
    #[arg(long, value_parser = api_word::<DtmfPolicy>)]
    dtmf: Option<DtmfPolicy>,
    /// Recording id (default: generated).
    #[arg(long)]
    recording_id: Option<String>,
    /// Days to keep this recording (0 = forever).
    #[arg(long)]
    retention_days: Option<u32>,
    /// Opaque owner type, stored and returned with the recording.
    #[arg(long)]
    owner_type: Option<String>,
    /// Opaque owner id, stored and returned with the recording.
    #[arg(long)]
    owner_id: Option<String>,
    /// Opaque flow id, stored and returned with the recording.
    #[arg(long)]
    on_end_flow_id: Option<String>,
    /// Play a recording notice: a prompt name (beep, or a file in
    /// notices.prompts_dir) or text for notices.tts_command.
    #[arg(long, value_name = "PROMPT_OR_TEXT")]
    announce: Option<String>,
    /// Where the notice goes: recording, parties, or recording,parties.
    #[arg(long, value_delimiter = ',', value_parser = api_word::<AnnounceTarget>)]
    announce_to: Vec<AnnounceTarget>,
    /// A reminder tone every this many seconds (5-3600).
    #[arg(long, value_name = "SECONDS")]
    reminder_interval: Option<u32>,
}

impl RecordOpts {
    /// The API's recording options, in `format` when given.
    fn request(&self, format: Option<Format>) -> RecordingRequest {
        RecordingRequest {
            enabled: None,
            format,
            participant: self.participant.clone(),
            channels: self.channels,
            bitrate: self.bitrate,
            sample_rate: self.sample_rate,
            pause_behavior: self.pause_behavior,
            dtmf: self.dtmf,
            recording_id: self.recording_id.clone(),
            retention_days: self.retention_days,
            owner_type: self.owner_type.clone(),
            owner_id: self.owner_id.clone(),
            on_end_flow_id: self.on_end_flow_id.clone(),
            announce: None,
            announcement: self.announce.clone(),
            announce_to: (!self.announce_to.is_empty()).then(|| self.announce_to.clone()),
            reminder_interval_s: self.reminder_interval,
        }
    }
}

/// Parses a command-line word the way the API's JSON names it (so the
/// choices are the API's, refused here with the list of them).
fn api_word<T: DeserializeOwned>(word: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(word.to_owned())).map_err(|e| e.to_string())
}

/// `all`, `caller`, `callee`, or leg ids separated by commas.
fn participant(word: &str) -> Result<ParticipantRequest, String> {
    Ok(if word.contains(',') {
        ParticipantRequest::Legs(word.split(',').map(|l| l.trim().to_owned()).collect())
    } else {
        ParticipantRequest::Named(word.to_owned())
    })
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
    let target = target::Target::resolve(&args)?;
    let api = client::Api {
        client: HttpClient::new(),
        base: target.base,
        token: target.token,
    };
    let out = commands::Output { json: args.json };
    match args.command {
        CtlCommand::CreateCall(call) => commands::create_call(&api, &out, call).await,
        CtlCommand::Calls => commands::calls(&api, &out).await,
        CtlCommand::Call { call_id } => commands::call(&api, &out, &call_id).await,
        CtlCommand::End { call_id } => commands::end(&api, &out, &call_id).await,
        CtlCommand::Start {
            call_id,
            format,
            opts,
        } => commands::start(&api, &out, &call_id, opts.request(format)).await,
        CtlCommand::Stop { call_id } => commands::action(&api, &out, &call_id, "stop").await,
        CtlCommand::Pause { call_id } => commands::action(&api, &out, &call_id, "pause").await,
        CtlCommand::Resume { call_id } => commands::action(&api, &out, &call_id, "resume").await,
        CtlCommand::List(filter) => commands::list(&api, &out, filter).await,
        CtlCommand::Get { recording_id } => commands::get(&api, &out, &recording_id).await,
        CtlCommand::Download {
            recording_id,
            output,
            quiet,
        } => commands::download(&api, &out, &recording_id, output, quiet).await,
        CtlCommand::Delete { recording_id } => commands::delete(&api, &out, &recording_id).await,
        CtlCommand::Flows { command } => commands::flows(&api, &out, command).await,
        CtlCommand::Audit(filter) => commands::audit(&api, &out, filter).await,
        CtlCommand::Deliveries {
            status,
            endpoint,
            limit,
        } => commands::deliveries(&api, &out, status, endpoint, limit).await,
    }
}
