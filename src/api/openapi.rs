//! The OpenAPI 3.1 document of the HTTP API, served at
//! `GET /v1/openapi.json`. Nothing in it is written by hand twice: the
//! schemas are derived from the request and answer types the handlers use
//! (`utoipa::ToSchema`, `IntoParams`), the operations from the
//! `#[utoipa::path]` on each handler, and the error answers of each
//! operation from [`errors_of`], one table naming the codes it can answer
//! with, each under its status (`ErrorCode::status`) and with the error
//! schema narrowed to those codes so a client (or a fuzzer) can check them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Value, json};
use utoipa::OpenApi;

use super::error::{ErrorBody, ErrorCode};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "recengine",
        description = "Real-time call recording: calls and their RTP legs, recording control, \
            catalogued recordings with signed downloads, recording logs and webhook deliveries. \
            Every error answer is `{\"error\":{\"code\":…,\"message\":…}}`; each operation lists \
            the codes it can answer with.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        super::healthz,
        super::metrics,
        openapi_json,
        super::create_call,
        super::list_calls,
        super::get_call,
        super::add_leg,
        super::end_call,
        super::record_start,
        super::record_stop,
        super::record_pause,
        super::record_resume,
        super::recordings_action,
        super::leg_mute,
        super::leg_unmute,
        super::recordings::list,
        super::recordings::get,
        super::recordings::delete,
        super::recordings::download,
        super::recordings::file,
        super::recordings::call_recording,
        super::recordings::recording_log,
        super::flows::create,
        super::flows::list,
        super::flows::get,
        super::flows::update,
        super::flows::delete,
        super::keys::register,
        super::keys::list,
        super::keys::revoke,
        super::audit::list,
        super::webhooks::list,
        super::webhooks::retry,
    ),
    components(schemas(ErrorBody, ErrorCode)),
    tags(
        (name = "calls", description = "Calls and their RTP legs"),
        (name = "recording control", description = "Start, stop, pause and resume a call's recording; mute a leg"),
        (name = "recordings", description = "Catalogued recordings, downloads and recording logs"),
        (name = "call flows", description = "Rules that record every call to or from a number"),
        (name = "encryption", description = "Customer-held keys for recordings encrypted at rest"),
        (name = "audit", description = "The audit trail of recording accesses and control actions"),
        (name = "webhooks", description = "Webhook delivery state (admin tokens)"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
struct ApiDoc;

/// The OpenAPI document
///
/// This document; no token.
#[utoipa::path(get, path = "/v1/openapi.json", operation_id = "openapi", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub(super) async fn openapi_json() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document(),
    )
        .into_response()
}

/// The document, built once.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
        complete(&mut doc);
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    })
}

/// Operations that take no bearer token (see `guard::needs_token`).
fn public(path: &str) -> bool {
    !path.starts_with("/v1/") || path.starts_with("/v1/files/") || path == "/v1/openapi.json"
}

/// The error codes `method` on `path` can answer with, beyond those every
/// operation can (`request_timeout`, `too_many_connections`, `internal`)
/// and those of the token check ([`TOKEN`]).
pub fn errors_of(method: &str, path: &str) -> Vec<ErrorCode> {
    use ErrorCode::*;
    // A JSON body: malformed, too large, or a field that is wrong.
    const BODY: &[ErrorCode] = &[InvalidJson, InvalidRequest, PayloadTooLarge];
    // Anything that resolves a call id.
    const CALL: &[ErrorCode] = &[CallNotFound, AmbiguousId, HeldByOtherNode];
    const RECORDING: &[ErrorCode] = &[RecordingNotFound, AmbiguousId];
    const FLOW: &[ErrorCode] = &[CallFlowNotFound, AmbiguousId];
    // Anything that takes ports, starts work or writes.
    const NEW_WORK: &[ErrorCode] = &[ShuttingDown, PortsExhausted, OutOfResources];
    const START: &[ErrorCode] = &[
        InvalidFormat,
        CallEnded,
        RecordingInProgress,
        RecordingPathInUse,
        QuotaExceeded,
        ShuttingDown,
    ];
    let parts: Vec<&[ErrorCode]> = match (method, path) {
        ("get", "/healthz" | "/metrics" | "/v1/openapi.json") => vec![],
        ("post", "/v1/calls") => vec![
            BODY,
            NEW_WORK,
            &[
                InvalidFormat,
                CallExists,
                HeldByOtherNode,
                RecordingPathInUse,
                QuotaExceeded,
            ],
        ],
        ("post", "/v1/call-flows") => vec![BODY, &[InvalidFormat, CallFlowExists]],
        ("get", "/v1/call-flows/{id}") => vec![FLOW],
        ("patch", "/v1/call-flows/{id}") => vec![BODY, FLOW, &[InvalidFormat, CallFlowChanged]],
        ("delete", "/v1/call-flows/{id}") => vec![FLOW],
        ("post", "/v1/encryption-keys") => vec![BODY, &[InvalidPublicKey, EncryptionDisabled]],
        ("get", "/v1/encryption-keys") => vec![],
        ("delete", "/v1/encryption-keys/{id}") => vec![&[InvalidRequest, EncryptionKeyNotFound]],
        (
            "get",
            "/v1/calls"
            | "/v1/recordings"
            | "/v1/call-flows"
            | "/v1/webhooks/deliveries"
            | "/v1/audit",
        ) => {
            vec![&[InvalidRequest]]
        }
        ("get", "/v1/calls/{id}") => vec![CALL],
        ("post", "/v1/calls/{id}/legs") => vec![BODY, CALL, NEW_WORK, &[CallEnded]],
        ("post", "/v1/calls/{id}/end") => vec![CALL, &[CallEnded]],
        ("post", "/v1/calls/{id}/record/start") => vec![BODY, CALL, START],
        ("post", "/v1/calls/{id}/record/stop") => vec![CALL, &[RecordingNotStarted]],
        ("post", "/v1/calls/{id}/record/pause") => {
            vec![CALL, &[RecordingNotStarted, RecordingAlreadyPaused]]
        }
        ("post", "/v1/calls/{id}/record/resume") => {
            vec![CALL, &[RecordingNotStarted, RecordingNotPaused]]
        }
        ("post", "/v1/calls/{id}/recordings") => {
            vec![BODY, CALL, START, &[RecordingNotStarted, InvalidAction]]
        }
        ("post", "/v1/calls/{id}/legs/{leg}/mute" | "/v1/calls/{id}/legs/{leg}/unmute") => {
            vec![CALL, &[LegNotFound, CallEnded]]
        }
        ("get", "/v1/recordings/{id}") => vec![RECORDING],
        ("delete", "/v1/recordings/{id}") => vec![RECORDING, &[RecordingInProgress]],
        ("get", "/v1/recordings/{id}/download") => {
            vec![
                RECORDING,
                &[RecordingDeleted, RecordingNotReady, HeldByOtherNode],
            ]
        }
        ("get" | "head", "/v1/files/{id}") => vec![&[
            InvalidRequest,
            InvalidSignature,
            UrlExpired,
            RecordingNotFound,
            RecordingDeleted,
            RecordingNotReady,
            FileMissing,
            FileCorrupt,
            RangeNotSatisfiable,
            HeldByOtherNode,
        ]],
        ("get", "/v1/calls/{id}/recording") => vec![CALL, &[RecordingNotFound]],
        ("post", "/v1/calls/{id}/recording-log") => {
            vec![BODY, CALL, &[IdempotencyKeyReused, IdempotencyKeyInUse]]
        }
        ("post", "/v1/webhooks/deliveries/{id}/retry") => {
            vec![&[DeliveryNotFound, DeliveryNotFailed]]
        }
        _ => vec![],
    };
    let mut codes = vec![RequestTimeout, TooManyConnections, Internal];
    if super::audit::action_of(&method_of(method), path).is_some() {
        codes.push(AuditUnavailable);
    }
    if !public(path) {
        codes.extend_from_slice(TOKEN);
    }
    for code in parts.into_iter().flatten() {
        if !codes.contains(code) {
            codes.push(*code);
        }
    }
    codes
}

fn method_of(method: &str) -> axum::http::Method {
    method
        .to_ascii_uppercase()
        .parse()
        .unwrap_or(axum::http::Method::GET)
}

/// What the token check and `X-Customer-Id` can answer.
pub const TOKEN: &[ErrorCode] = &[
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::InvalidRequest,
    ErrorCode::RateLimited,
];

const METHODS: [&str; 5] = ["get", "head", "post", "delete", "patch"];

/// Adds what the derive cannot say: the error answers of each operation,
/// the token and `X-Customer-Id` of the authenticated ones, and distinct
/// ids for the GET and HEAD of one handler.
fn complete(doc: &mut Value) {
    doc["components"]["securitySchemes"] = json!({
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "An API token from api.tokens_file: `Authorization: Bearer <token>`"},
        "x_auth_token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token",
                         "description": "The same token in X-Auth-Token"},
    });
    action_request(doc);
    flatten_all_of(doc);
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            let Some(op) = item.get_mut(method) else {
                continue;
            };
            if method == "head"
                && let Some(id) = op["operationId"].as_str()
            {
                op["operationId"] = json!(id.replacen("get_", "head_", 1));
            }
            if !public(path) {
                op["security"] = json!([{"bearer": []}, {"x_auth_token": []}]);
                let params = op.get_mut("parameters").and_then(Value::as_array_mut);
                let customer = json!({
                    "name": "X-Customer-Id", "in": "header", "required": false,
                    "description": "With an admin token: act within this customer's ids. \
                        A customer token may name only its own customer.",
                    "schema": {"type": "string"}
                });
                match params {
                    Some(list) => list.push(customer),
                    None => op["parameters"] = json!([customer]),
                }
            }
            // An optional body is a body that may be left out, not a
            // body that may be `null`.
            if let Some(body) = op.get_mut("requestBody")
                && let Some(schema) = body.pointer_mut("/content/application~1json/schema")
                && let Some(alternatives) = schema["oneOf"].as_array()
                && alternatives.len() == 2
                && alternatives[0] == json!({"type": "null"})
            {
                *schema = alternatives[1].clone();
                body["required"] = json!(false);
            }
            let params = op.get_mut("parameters").and_then(Value::as_array_mut);
            for param in params.into_iter().flatten() {
                if param["in"] == "header" {
                    param["schema"] = json!({"type": "string"});
                }
                // Call, leg and recording ids in paths are ids.
                if param["in"] == "path" && param["schema"]["type"] == "string" {
                    param["schema"]["pattern"] = json!(crate::ids::ID_PATTERN);
                }
            }
            for (status, links) in links_of(method, path) {
                op["responses"][status]["links"] = links;
            }
            let responses = &mut op["responses"];
            // Audio is bytes, not an array of numbers.
            for response in responses
                .as_object_mut()
                .into_iter()
                .flat_map(|r| r.values_mut())
            {
                let content = response.get_mut("content").and_then(Value::as_object_mut);
                for (media, content) in content.into_iter().flatten() {
                    if media.starts_with("audio/") {
                        content["schema"] = json!({"contentMediaType": media});
                    }
                }
            }
            for (status, codes) in by_status(&errors_of(method, path)) {
                responses[status.to_string()] = error_response(status, &codes);
            }
        }
    }
}

/// The operations an answer leads to (OpenAPI links), so that a client
/// generator, or a fuzzer's stateful phase, can follow a created call to
/// its legs and recordings.
fn links_of(method: &str, path: &str) -> Vec<(&'static str, Value)> {
    let to = |ops: &[&str], parameters: Value| -> Value {
        let mut links = serde_json::Map::new();
        for op in ops {
            links.insert(
                (*op).to_owned(),
                json!({"operationId": op, "parameters": parameters}),
            );
        }
        Value::Object(links)
    };
    let merge = |mut a: Value, b: Value| {
        if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
            a.extend(b);
        }
        a
    };
    const CALL_OPS: [&str; 10] = [
        "get_call",
        "end_call",
        "add_leg",
        "start_recording",
        "stop_recording",
        "pause_recording",
        "resume_recording",
        "recording_action",
        "call_recording",
        "post_recording_log",
    ];
    const RECORDING_OPS: [&str; 3] = ["get_recording", "delete_recording", "download_recording"];
    match (method, path) {
        ("post", "/v1/calls") => {
            let calls = to(&CALL_OPS, json!({"id": "$response.body#/call_id"}));
            let legs = to(
                &["mute_leg", "unmute_leg"],
                json!({"id": "$response.body#/call_id", "leg": "$response.body#/legs/0/leg_id"}),
            );
            vec![("201", merge(calls, legs))]
        }
        ("post", "/v1/calls/{id}/record/start") => {
            let recording = to(
                &RECORDING_OPS,
                json!({"id": "$response.body#/recording_id"}),
            );
            let call = to(
                &["stop_recording", "pause_recording", "resume_recording"],
                json!({"id": "$request.path.id"}),
            );
            vec![("201", merge(recording, call))]
        }
        _ => vec![],
    }
}

/// A type with a `#[serde(flatten)]` field comes out of the derive as
/// `allOf` of the flattened type and its own fields. When the flattened
/// type is also a request body that refuses unknown fields
/// (`additionalProperties: false`, e.g. `RecordingLog` inside
/// `RecordingLogView`) no answer can match both, so each such schema is
/// merged into one object with the properties and required fields of all
/// its parts.
fn flatten_all_of(doc: &mut Value) {
    let Some(schemas) = doc["components"]["schemas"].as_object().cloned() else {
        return;
    };
    for (name, schema) in &schemas {
        let Some(parts) = schema["allOf"].as_array() else {
            continue;
        };
        let mut properties = serde_json::Map::new();
        let mut required: Vec<Value> = Vec::new();
        for part in parts {
            let part = match part["$ref"].as_str() {
                Some(r) => r
                    .rsplit('/')
                    .next()
                    .and_then(|n| schemas.get(n))
                    .cloned()
                    .unwrap_or(Value::Null),
                None => part.clone(),
            };
            if let Some(p) = part["properties"].as_object() {
                properties.extend(p.clone());
            }
            for r in part["required"].as_array().into_iter().flatten() {
                if !required.contains(r) {
                    required.push(r.clone());
                }
            }
        }
        let mut merged = json!({"type": "object", "properties": properties, "required": required});
        if let Some(d) = schema.get("description") {
            merged["description"] = d.clone();
        }
        doc["components"]["schemas"][name] = merged;
    }
}

/// `POST /v1/calls/{id}/recordings`: `action` (`start` or `stop`) with
/// the recording options of a start beside it. The type keeps the options
/// as a map (they are checked as a `RecordingRequest` when the action is
/// `start`), so the schema is the action plus `RecordingRequest`'s fields.
fn action_request(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    let mut options = schemas["RecordingRequest"]["properties"].clone();
    if let Some(o) = options.as_object_mut() {
        o.remove("enabled");
        o.insert(
            "action".into(),
            json!({"type": "string", "enum": ["start", "stop"], "default": "start",
                   "description": "`stop` takes no options"}),
        );
    }
    schemas["ActionRequest"] = json!({
        "type": "object",
        "description": "A recording action; `start` (the default: `{}` or no body starts) \
                        takes the options of record/start.",
        "properties": options,
        "additionalProperties": false,
    });
}

fn by_status(codes: &[ErrorCode]) -> BTreeMap<u16, Vec<ErrorCode>> {
    let mut out: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for code in codes {
        out.entry(code.status().as_u16()).or_default().push(*code);
    }
    out
}

/// An error answer whose code is one of `codes`.
fn error_response(status: u16, codes: &[ErrorCode]) -> Value {
    let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    let description = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = json!({
        "description": description,
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": names},
                    "message": {"type": "string"},
                },
            }},
        }}},
    });
    let header =
        |description: &str| json!({"description": description, "schema": {"type": "string"}});
    match status {
        429 | 503 => {
            response["headers"] = json!({"Retry-After": header("Seconds to wait before retrying")});
        }
        416 => {
            response["headers"] = json!({"Content-Range": header("`bytes */<size>`")});
        }
        _ => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        serde_json::from_str(document()).unwrap()
    }

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = vec![];
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    out.push((method.to_owned(), path.clone(), op.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn the_document_is_openapi_3_1_with_an_id_for_every_operation() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let ops = operations(&doc);
        assert!(ops.len() >= 24, "{} operations", ops.len());
        let mut ids = std::collections::HashSet::new();
        for (method, path, op) in &ops {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "{method} {path}: {id} twice");
            assert!(
                op["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .any(|s| s.starts_with('2') || s.starts_with('3')),
                "{method} {path} has no success answer"
            );
        }
    }

    #[test]
    fn nothing_in_the_document_is_null() {
        fn walk(v: &Value, at: &str) {
            match v {
                Value::Null => panic!("null at {at}"),
                Value::Object(o) => o.iter().for_each(|(k, x)| walk(x, &format!("{at}/{k}"))),
                Value::Array(a) => a.iter().for_each(|x| walk(x, at)),
                _ => {}
            }
        }
        walk(&doc(), "");
    }

    #[test]
    fn every_id_pattern_is_the_one_ids_are_checked_against() {
        fn walk(v: &Value, seen: &mut usize) {
            match v {
                Value::Object(o) => {
                    if let Some(Value::String(p)) = o.get("pattern")
                        && p.starts_with("^[A-Za-z0-9]")
                    {
                        assert_eq!(p, crate::ids::ID_PATTERN);
                        *seen += 1;
                    }
                    o.values().for_each(|x| walk(x, seen));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, seen)),
                _ => {}
            }
        }
        let mut seen = 0;
        walk(&doc(), &mut seen);
        assert!(seen > 20, "{seen} id patterns");
    }

    #[test]
    fn every_reference_resolves() {
        let doc = doc();
        fn walk(v: &Value, doc: &Value) {
            match v {
                Value::Object(o) => {
                    if let Some(Value::String(r)) = o.get("$ref") {
                        let pointer = r.strip_prefix('#').unwrap();
                        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
                    }
                    o.values().for_each(|x| walk(x, doc));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, doc)),
                _ => {}
            }
        }
        walk(&doc, &doc);
    }

    #[test]
    fn the_error_code_schema_lists_every_code_and_each_is_answered_somewhere() {
        let doc = doc();
        let listed = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap()
            .len();
        // The schema comes from the enum itself: `ALL` must be complete.
        assert_eq!(listed, ErrorCode::ALL.len());
        let mut answered = std::collections::HashSet::new();
        for (_, _, op) in operations(&doc) {
            for response in op["responses"].as_object().unwrap().values() {
                let pointer =
                    "/content/application~1json/schema/properties/error/properties/code/enum";
                for code in response
                    .pointer(pointer)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    answered.insert(code.as_str().unwrap().to_owned());
                }
            }
        }
        for code in ErrorCode::ALL {
            // Answers to requests no operation describes.
            if matches!(code, ErrorCode::NotFound | ErrorCode::MethodNotAllowed) {
                continue;
            }
            assert!(
                answered.contains(code.as_str()),
                "no operation answers {code:?}"
            );
        }
    }

    #[test]
    fn each_error_answer_sits_under_its_status_and_names_its_codes() {
        for (method, path, op) in operations(&doc()) {
            for (status, response) in op["responses"].as_object().unwrap() {
                let Some(codes) = response.pointer(
                    "/content/application~1json/schema/properties/error/properties/code/enum",
                ) else {
                    continue;
                };
                for code in codes.as_array().unwrap() {
                    let code = ErrorCode::ALL
                        .into_iter()
                        .find(|c| c.as_str() == code)
                        .unwrap();
                    assert_eq!(code.status().as_str(), status, "{method} {path} {code:?}");
                }
            }
            let needs_token = !public(&path);
            assert_eq!(op.get("security").is_some(), needs_token, "{method} {path}");
            assert_eq!(
                op["responses"].get("401").is_some(),
                needs_token,
                "{method} {path}"
            );
        }
    }
}
