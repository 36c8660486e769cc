//! The OpenAPI document as the running daemon serves it (#13): without a
//! token, every operation it describes is routed and answers with a status
//! the document lists for it, and every error answer's code is one the
//! document lists under that status. Hostile variants of every request
//! (wrong ids, wrong types, broken JSON) never get a 5xx. The longer
//! property-based run generated from the document is `.ci/api-fuzz`
//! (schemathesis), which `.ci/run` runs.

mod support;

use serde_json::{Value, json};
use support::*;

struct Operation {
    method: String,
    path: String,
    spec: Value,
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "head", "post", "delete"] {
            if let Some(spec) = item.get(method) {
                out.push(Operation {
                    method: method.to_uppercase(),
                    path: path.clone(),
                    spec: spec.clone(),
                });
            }
        }
    }
    out
}

/// Whether an answer is one the operation documents: its status is
/// listed, and an error's code is among that status's codes.
fn check(op: &Operation, url: &str, status: u16, body: &[u8]) -> Result<(), String> {
    let what = format!("{} {url}", op.method);
    let Some(response) = op.spec["responses"].get(status.to_string()) else {
        return Err(format!(
            "{what}: status {status} is not documented: {}",
            String::from_utf8_lossy(body)
        ));
    };
    if status >= 500 {
        return Err(format!(
            "{what}: {status} {}",
            String::from_utf8_lossy(body)
        ));
    }
    let codes =
        response.pointer("/content/application~1json/schema/properties/error/properties/code/enum");
    if let Some(codes) = codes
        && op.method != "HEAD"
    {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| format!("{what}: {status} answer is not JSON ({e})"))?;
        let code = &v["error"]["code"];
        if !codes.as_array().unwrap().contains(code) {
            return Err(format!("{what}: {status} {code} is not among {codes}"));
        }
        if !v["error"]["message"].is_string() {
            return Err(format!("{what}: {status} has no message: {v}"));
        }
    }
    Ok(())
}

fn fill(path: &str, call: &str, recording: &str) -> String {
    let id = if path.starts_with("/v1/recordings/") || path.starts_with("/v1/files/") {
        recording
    } else if path.starts_with("/v1/webhooks/") {
        "1"
    } else {
        call
    };
    path.replace("{id}", id).replace("{leg}", "caller")
}

#[test]
fn the_document_is_served_without_a_token() {
    let d = Daemon::start("openapi-served", "");
    let (status, doc) = d.request("GET", "/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let built: Value = serde_json::from_str(recengine::api::openapi::document()).unwrap();
    assert_eq!(doc, built);
    // The rest of /v1 still needs a token.
    let (status, v) = d.request("GET", "/v1/calls", None, None);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
}

#[test]
fn every_documented_operation_answers_as_documented() {
    let d = Daemon::start("openapi-operations", "");
    let doc = d.request("GET", "/v1/openapi.json", None, None).1;
    let body = json!({"call_id": "doc-call", "legs": [{"role": "caller"}, {"role": "callee"}],
                      "recording": {"enabled": true, "recording_id": "doc-rec"}});
    let (status, call) = d.admin("POST", "/v1/calls", Some(&body.to_string()));
    assert_eq!(status, 201, "{call}");
    let mut failures = Vec::new();
    let mut answered = 0;
    for op in operations(&doc) {
        let url = fill(&op.path, "doc-call", "doc-rec");
        // A body for the operations that need one: the smallest valid
        // one where there is one, else an empty object.
        let body = match (op.method.as_str(), op.path.as_str()) {
            ("POST", "/v1/calls") => json!({"legs": [{"role": "caller"}]}).to_string(),
            ("POST", "/v1/calls/{id}/legs") => json!({"role": "participant"}).to_string(),
            ("POST", "/v1/calls/{id}/recordings") => json!({"action": "stop"}).to_string(),
            ("POST", "/v1/calls/{id}/recording-log") => {
                json!({"recording_id": "doc-log"}).to_string()
            }
            ("POST", _) => String::new(),
            _ => String::new(),
        };
        let body = (!body.is_empty()).then_some(body.as_bytes());
        let (status, answer) = d.request_raw(&op.method, &url, body, Some(ADMIN), &[]);
        // Routed: never the answer for a path no route serves.
        if status == 404 && String::from_utf8_lossy(&answer).contains("no such endpoint") {
            failures.push(format!("{} {url} is documented but not routed", op.method));
            continue;
        }
        match check(&op, &url, status, &answer) {
            Ok(()) => answered += 1,
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(answered >= 24, "{answered} operations answered");
}

/// Hostile variants of every operation: ids that are not ids, query
/// values of the wrong type, bodies that are not the documented JSON.
/// None may give a 5xx or an answer the document does not list.
#[test]
fn hostile_variants_of_every_operation_get_documented_4xx_answers() {
    let d = Daemon::start("openapi-hostile", "");
    let doc = d.request("GET", "/v1/openapi.json", None, None).1;
    let body = json!({"call_id": "h-call", "legs": [{"role": "caller"}]});
    assert_eq!(d.admin("POST", "/v1/calls", Some(&body.to_string())).0, 201);
    let ids = [
        "h-call",
        "..",
        "%2e%2e%2fetc",
        "a%00b",
        "%C3%A9t%C3%A9",
        "-leading-dash",
        &"x".repeat(300),
        "0",
    ];
    let queries = [
        "limit=-1",
        "limit=99999999999999999999",
        "offset=x",
        "status=nope",
        "since=yesterday",
        "call_id=..",
        "format=flac",
        "limit=1&limit=2",
        "unknown=1",
        "expires=1&sig=00&customer=%00",
    ];
    let bodies: [&[u8]; 9] = [
        b"null",
        b"[]",
        b"\"text\"",
        b"{",
        b"{\"legs\": 5}",
        b"{\"legs\": [{\"role\": \"caller\", \"payload_types\": {\"x\": 1}}]}",
        b"{\"unknown\": true}",
        b"\xff\xfe",
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    ];
    let mut failures = Vec::new();
    let mut sent = 0;
    for op in operations(&doc) {
        for (i, id) in ids.iter().enumerate() {
            let path = op.path.replace("{id}", id).replace("{leg}", id);
            let query = queries[i % queries.len()];
            let url = format!("{path}?{query}");
            let body = (op.method == "POST").then(|| bodies[i % bodies.len()]);
            for token in [Some(ADMIN), Some(ACME), None] {
                let (status, answer) = d.request_raw(&op.method, &url, body, token, &[]);
                sent += 1;
                if status == 404 && String::from_utf8_lossy(&answer).contains("no such endpoint") {
                    // An id with a slash in it is another path.
                    continue;
                }
                if let Err(e) = check(&op, &url, status, &answer) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(sent > 500, "{sent} requests");
    // And the daemon is still serving.
    assert_eq!(d.request("GET", "/healthz", None, None).0, 200);
}
