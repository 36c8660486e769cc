//! One function per `recengine ctl` command: each builds its request from
//! the API's own request types, makes the call and shows the answer (the
//! API's JSON with `--json`, text otherwise).

use std::path::PathBuf;

use serde_json::{Value, json};

use super::client::Api;
use super::render::{
    audit_table, call_tables, calls_table, deliveries_table, enc, flows_table, recording_detail,
    recordings_table, s,
};
use super::{CtlError, RecordOpts, table};
use crate::catalog::outbox::DeliveryStatus;
use crate::config::Format;
use crate::engine::flows::{CallFlowPatch, CallFlowRequest, FlowDirection};
use crate::engine::model::{
    CreateCallRequest, Direction, LegRequest, RecordingRequest, ReferenceType,
};
use crate::recording::{RecordingStatus, Role};

/// How answers are shown.
pub(super) struct Output {
    pub(super) json: bool,
}

impl Output {
    fn show(&self, v: &Value, human: impl FnOnce(&Value) -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            print!("{}", human(v));
        }
    }
}

/// `create-call`'s arguments.
#[derive(clap::Args)]
pub(super) struct NewCall {
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
    #[arg(long, default_value = "inbound", value_parser = super::api_word::<Direction>)]
    direction: Direction,
    /// A conference: legs are participants.
    #[arg(long)]
    conference: bool,
    /// A leg as ROLE or ROLE:LABEL (caller, callee, participant);
    /// repeatable. Default: one caller and one callee leg.
    #[arg(long = "leg", value_name = "ROLE[:LABEL]")]
    legs: Vec<String>,
    /// Start recording at once in this format (wav | mp3 | opus).
    #[arg(long, value_name = "FORMAT", value_parser = super::api_word::<Format>)]
    record: Option<Format>,
    #[command(flatten)]
    opts: RecordOpts,
}

/// A leg as `ROLE` or `ROLE:LABEL`.
fn leg_request(word: &str) -> Result<LegRequest, CtlError> {
    let (role, label) = match word.split_once(':') {
        Some((role, label)) => (role, Some(label.to_owned())),
        None => (word, None),
    };
    let role: Role =
        super::api_word(role).map_err(|e| CtlError::Usage(format!("--leg {word:?}: {e}")))?;
    Ok(LegRequest {
        leg_id: None,
        role,
        label,
        payload_types: Default::default(),
        source: None,
    })
}

/// A request body as the API reads it.
fn body(request: &impl serde::Serialize) -> Value {
    serde_json::to_value(request).unwrap_or(Value::Null)
}

pub(super) async fn create_call(api: &Api, out: &Output, call: NewCall) -> Result<(), CtlError> {
    let words = if call.legs.is_empty() {
        vec!["caller".to_owned(), "callee".to_owned()]
    } else {
        call.legs
    };
    let legs = words
        .iter()
        .map(|w| leg_request(w))
        .collect::<Result<Vec<_>, _>>()?;
    // Options without `--record` still make a recording block, which the
    // API starts (its `enabled` defaults to true).
    let recording = RecordingRequest {
        enabled: call.record.is_some().then_some(true),
        ..call.opts.request(call.record)
    };
    let recording = Some(recording).filter(|r| body(r) != json!({}));
    let request = CreateCallRequest {
        call_id: call.call_id,
        from: call.from,
        to: call.to,
        direction: call.direction,
        reference_type: if call.conference {
            ReferenceType::Conference
        } else {
            ReferenceType::Call
        },
        legs,
        recording,
    };
    let v = api.call("POST", "/v1/calls", Some(body(&request))).await?;
    out.show(&v, |v| {
        format!("call {} created\n{}", s(&v["call_id"]), call_tables(v))
    });
    Ok(())
}

pub(super) async fn calls(api: &Api, out: &Output) -> Result<(), CtlError> {
    let v = api.call("GET", "/v1/calls", None).await?;
    out.show(&v, calls_table);
    Ok(())
}

pub(super) async fn call(api: &Api, out: &Output, call_id: &str) -> Result<(), CtlError> {
    let v = api
        .call("GET", &format!("/v1/calls/{}", enc(call_id)), None)
        .await?;
    out.show(&v, |v| {
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
    Ok(())
}

pub(super) async fn end(api: &Api, out: &Output, call_id: &str) -> Result<(), CtlError> {
    let v = api
        .call(
            "POST",
            &format!("/v1/calls/{}/end", enc(call_id)),
            Some(json!({})),
        )
        .await?;
    out.show(&v, |v| format!("call {} ended\n", s(&v["call_id"])));
    Ok(())
}

pub(super) async fn start(
    api: &Api,
    out: &Output,
    call_id: &str,
    request: RecordingRequest,
) -> Result<(), CtlError> {
    let v = api
        .call(
            "POST",
            &format!("/v1/calls/{}/record/start", enc(call_id)),
            Some(body(&request)),
        )
        .await?;
    out.show(&v, |v| {
        format!(
            "recording {} started: {} {} Hz {}\n",
            s(&v["recording_id"]),
            s(&v["format"]),
            s(&v["sample_rate"]),
            s(&v["channels"])
        )
    });
    Ok(())
}

/// `stop`, `pause` or `resume` of a call's recording.
pub(super) async fn action(
    api: &Api,
    out: &Output,
    call_id: &str,
    verb: &str,
) -> Result<(), CtlError> {
    let v = api
        .call(
            "POST",
            &format!("/v1/calls/{}/record/{verb}", enc(call_id)),
            Some(json!({})),
        )
        .await?;
    out.show(&v, |v| {
        format!("recording {} {}\n", s(&v["recording_id"]), s(&v["status"]))
    });
    Ok(())
}

/// `list`'s filters and page.
#[derive(clap::Args)]
pub(super) struct RecordingFilter {
    /// Only this call's recordings.
    #[arg(long)]
    call_id: Option<String>,
    /// recording | paused | stopped | processing | completed | failed |
    /// discarded | deleted
    #[arg(long, value_parser = super::api_word::<RecordingStatus>)]
    status: Option<RecordingStatus>,
    /// wav | mp3 | opus
    #[arg(long, value_parser = super::api_word::<Format>)]
    format: Option<Format>,
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
}

pub(super) async fn list(api: &Api, out: &Output, f: RecordingFilter) -> Result<(), CtlError> {
    let mut query = vec![format!("limit={}", f.limit), format!("offset={}", f.offset)];
    for (k, v) in [
        ("call_id", f.call_id),
        ("status", f.status.map(|s| s.as_str().to_owned())),
        ("format", f.format.map(|f| f.extension().to_owned())),
        ("since", f.since),
        ("until", f.until),
    ] {
        if let Some(v) = v {
            query.push(format!("{k}={}", enc(&v)));
        }
    }
    let v = api
        .call("GET", &format!("/v1/recordings?{}", query.join("&")), None)
        .await?;
    out.show(&v, recordings_table);
    Ok(())
}

pub(super) async fn get(api: &Api, out: &Output, recording_id: &str) -> Result<(), CtlError> {
    let v = api
        .call(
            "GET",
            &format!("/v1/recordings/{}", enc(recording_id)),
            None,
        )
        .await?;
    out.show(&v, recording_detail);
    Ok(())
}

pub(super) async fn download(
    api: &Api,
    out: &Output,
    recording_id: &str,
    output: Option<PathBuf>,
    quiet: bool,
) -> Result<(), CtlError> {
    let (path, size, checksum) =
        super::download::download(api, recording_id, output, quiet).await?;
    if out.json {
        println!(
            "{}",
            json!({"recording_id": recording_id, "path": path, "bytes": size,
                   "checksum": {"algorithm": "sha256", "value": checksum}})
        );
    } else if path != "-" {
        println!("saved {path} ({}, sha256 verified)", table::bytes(size));
    }
    Ok(())
}

pub(super) async fn delete(api: &Api, out: &Output, recording_id: &str) -> Result<(), CtlError> {
    let v = api
        .call(
            "DELETE",
            &format!("/v1/recordings/{}", enc(recording_id)),
            None,
        )
        .await?;
    out.show(&v, |v| {
        format!("recording {} deleted\n", s(&v["recording_id"]))
    });
    Ok(())
}

pub(super) async fn deliveries(
    api: &Api,
    out: &Output,
    status: Option<DeliveryStatus>,
    endpoint: Option<String>,
    limit: u32,
) -> Result<(), CtlError> {
    let mut query = vec![format!("limit={limit}")];
    if let Some(st) = status {
        query.push(format!("status={}", st.as_str()));
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
    out.show(&v, deliveries_table);
    Ok(())
}

/// `flows` subcommands.
#[derive(clap::Subcommand)]
pub(super) enum FlowCommand {
    /// List call flows (oldest first).
    List {
        /// Most rows (up to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one call flow.
    Get {
        /// The call flow's id.
        call_flow_id: String,
    },
    /// Create a call flow.
    Create {
        /// A name for people.
        #[arg(long)]
        name: String,
        /// A number (+14155552671, 1001) or a prefix ending in * (+1415*).
        #[arg(long)]
        number: String,
        /// inbound (compares a call's to) | outbound (its from) | both.
        #[arg(long, default_value = "inbound", value_parser = super::api_word::<FlowDirection>)]
        direction: FlowDirection,
        /// Call flow id (default: generated).
        #[arg(long)]
        id: Option<String>,
        /// Create it switched off.
        #[arg(long)]
        disabled: bool,
        /// wav | mp3 | opus (default: [recording] format).
        #[arg(long, value_name = "FORMAT", value_parser = super::api_word::<Format>)]
        format: Option<Format>,
        #[command(flatten)]
        opts: RecordOpts,
    },
    /// Change a call flow: the options given replace the stored ones
    /// (recording options, when any is given, as a whole).
    Update {
        /// The call flow's id.
        call_flow_id: String,
        #[arg(long)]
        name: Option<String>,
        /// A number or a prefix ending in *.
        #[arg(long)]
        number: Option<String>,
        /// inbound | outbound | both
        #[arg(long, value_parser = super::api_word::<FlowDirection>)]
        direction: Option<FlowDirection>,
        /// Switch it on.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Switch it off.
        #[arg(long)]
        disable: bool,
        /// wav | mp3 | opus
        #[arg(long, value_name = "FORMAT", value_parser = super::api_word::<Format>)]
        format: Option<Format>,
        #[command(flatten)]
        opts: RecordOpts,
    },
    /// Delete a call flow.
    Delete {
        /// The call flow's id.
        call_flow_id: String,
    },
}

pub(super) async fn flows(api: &Api, out: &Output, command: FlowCommand) -> Result<(), CtlError> {
    let one = |v: &Value| flows_table(&json!({"data": [v]}));
    let v = match command {
        FlowCommand::List { limit } => {
            let v = api
                .call("GET", &format!("/v1/call-flows?limit={limit}"), None)
                .await?;
            out.show(&v, flows_table);
            return Ok(());
        }
        FlowCommand::Get { call_flow_id } => {
            api.call(
                "GET",
                &format!("/v1/call-flows/{}", enc(&call_flow_id)),
                None,
            )
            .await?
        }
        FlowCommand::Create {
            name,
            number,
            direction,
            id,
            disabled,
            format,
            opts,
        } => {
            let req = CallFlowRequest {
                call_flow_id: id,
                name,
                phone_number: number,
                direction,
                enabled: Some(!disabled),
                recording: opts.request(format),
            };
            api.call("POST", "/v1/call-flows", Some(body(&req))).await?
        }
        FlowCommand::Update {
            call_flow_id,
            name,
            number,
            direction,
            enable,
            disable,
            format,
            opts,
        } => {
            let recording = opts.request(format);
            let patch = CallFlowPatch {
                name,
                phone_number: number,
                direction,
                enabled: (enable || disable).then_some(enable),
                recording: (serde_json::to_value(&recording).ok() != Some(json!({})))
                    .then_some(recording),
            };
            api.call(
                "PATCH",
                &format!("/v1/call-flows/{}", enc(&call_flow_id)),
                Some(body(&patch)),
            )
            .await?
        }
        FlowCommand::Delete { call_flow_id } => {
            api.call(
                "DELETE",
                &format!("/v1/call-flows/{}", enc(&call_flow_id)),
                None,
            )
            .await?
        }
    };
    out.show(&v, one);
    Ok(())
}

/// `audit`'s filters.
#[derive(clap::Args)]
pub(super) struct AuditFilter {
    /// Records about this recording.
    #[arg(long)]
    recording_id: Option<String>,
    /// Records about this call.
    #[arg(long)]
    call_id: Option<String>,
    /// A token's name, or signed-url:<issuer>.
    #[arg(long)]
    actor: Option<String>,
    /// e.g. recording.fetch, call.create
    #[arg(long)]
    action: Option<String>,
    /// At or after (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Most rows (up to 1000).
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

pub(super) async fn audit(api: &Api, out: &Output, f: AuditFilter) -> Result<(), CtlError> {
    let mut query = vec![format!("limit={}", f.limit)];
    for (name, value) in [
        ("recording_id", &f.recording_id),
        ("call_id", &f.call_id),
        ("actor", &f.actor),
        ("action", &f.action),
        ("since", &f.since),
    ] {
        if let Some(v) = value {
            query.push(format!("{name}={}", enc(v)));
        }
    }
    let v = api
        .call("GET", &format!("/v1/audit?{}", query.join("&")), None)
        .await?;
    out.show(&v, audit_table);
    Ok(())
}
