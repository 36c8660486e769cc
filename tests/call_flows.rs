//! Call flows (auto-record rules) against the real daemon and catalog:
//! precedence, a call's own block winning, tenant scoping, changes and
//! deletion taking effect for new calls, events, and the errors that name
//! the field.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

fn post(d: &Daemon, token: &str, path: &str, body: &Value) -> (u16, Value) {
    d.request("POST", path, Some(&body.to_string()), Some(token))
}

/// Creates a call from `from` to `to` (no recording block unless given)
/// and answers the call view.
fn call(d: &Daemon, token: &str, id: &str, to: &str, recording: Option<Value>) -> Value {
    let mut body = json!({"call_id": id, "from": "+15550001111", "to": to,
                          "legs": [{"role": "caller"}, {"role": "callee"}]});
    if let Some(r) = recording {
        body["recording"] = r;
    }
    let (s, v) = post(d, token, "/v1/calls", &body);
    assert_eq!(s, 201, "{v}");
    v
}

fn recorded_as(v: &Value) -> Option<(String, String)> {
    let r = v["recordings"].as_array()?.first()?;
    Some((
        r["format"].as_str()?.to_owned(),
        r["call_flow_id"].as_str().unwrap_or("").to_owned(),
    ))
}

#[test]
fn rules_record_matching_calls_most_specific_first() {
    let d = Daemon::start_with("call-flows", "", 24);
    let mut ev = d.events(None);
    std::thread::sleep(Duration::from_millis(100));
    let line = json!({"call_flow_id": "support", "name": "Recorded Support Line",
                      "phone_number": "+14155552671",
                      "recording": {"format": "mp3", "channels": "dual", "owner_id": "team-7"}});
    let (s, flow) = post(&d, ACME, "/v1/call-flows", &line);
    assert_eq!(s, 201, "{flow}");
    assert_eq!(
        (&flow["version"], &flow["enabled"], &flow["direction"]),
        (&json!(1), &json!(true), &json!("inbound"))
    );
    let city = json!({"call_flow_id": "city", "name": "SF", "phone_number": "+1415*",
                      "recording": {"format": "wav"}});
    assert_eq!(post(&d, ACME, "/v1/call-flows", &city).0, 201);
    let out = json!({"call_flow_id": "out", "name": "Sales out", "phone_number": "+1555*",
                     "direction": "outbound", "recording": {"format": "opus"}});
    assert_eq!(post(&d, ACME, "/v1/call-flows", &out).0, 201);

    // Exact beats prefix, whatever the URI dressing.
    let c = call(
        &d,
        ACME,
        "c1",
        "sip:+1 (415) 555-2671@sbc.example.com",
        None,
    );
    assert_eq!(c["call_flow_id"], "support", "{c}");
    assert_eq!(recorded_as(&c), Some(("mp3".into(), "support".into())));
    assert_eq!(c["recordings"][0]["owner_id"], "team-7");
    let tone = recengine::testkit::tone(8000, 700.0, 6000.0, 4000);
    let sock = udp();
    stream(
        &[Leg {
            port: leg_port(&c, "caller"),
            ssrc: 5,
            signal: &tone,
            socket: &sock,
            delay_packets: 0,
        }],
        |_| {},
    );
    // Inbound rules compare `to`; this `to` matches only the prefix.
    let c = call(&d, ACME, "c2", "+14155550000", None);
    assert_eq!(recorded_as(&c), Some(("wav".into(), "city".into())));
    // No inbound match: the outbound rule compares `from` (+1555…).
    let c = call(&d, ACME, "c3", "+442075550000", None);
    assert_eq!(recorded_as(&c), Some(("opus".into(), "out".into())));
    // A call's own block wins, even one that says no.
    let c = call(
        &d,
        ACME,
        "c4",
        "+14155552671",
        Some(json!({"enabled": false})),
    );
    assert_eq!(recorded_as(&c), None, "{c}");
    assert!(c.get("call_flow_id").is_none());
    let c = call(
        &d,
        ACME,
        "c5",
        "+14155552671",
        Some(json!({"format": "wav"})),
    );
    assert_eq!(recorded_as(&c), Some(("wav".into(), String::new())));
    // Another tenant's calls never match acme's rules, nor see them.
    let c = call(&d, GLOBEX, "g1", "+14155552671", None);
    assert_eq!(recorded_as(&c), None, "{c}");
    let (s, e) = d.request("GET", "/v1/call-flows/support", None, Some(GLOBEX));
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (404, Some("call_flow_not_found"))
    );
    let (_, page) = d.request("GET", "/v1/call-flows", None, Some(GLOBEX));
    assert_eq!(page["pagination"]["total"], 0, "{page}");
    let (_, page) = d.request("GET", "/v1/call-flows?limit=2", None, Some(ACME));
    assert_eq!(
        (
            &page["pagination"]["total"],
            page["data"].as_array().unwrap().len()
        ),
        (&json!(3), 2)
    );
    assert_eq!(page["data"][0]["call_flow_id"], "support", "oldest first");

    // A change applies to new calls; a disabled rule never matches.
    let (s, flow) = d.request(
        "PATCH",
        "/v1/call-flows/support",
        Some(r#"{"enabled": false}"#),
        Some(ACME),
    );
    assert_eq!(s, 200, "{flow}");
    assert_eq!(
        (&flow["version"], &flow["enabled"]),
        (&json!(2), &json!(false))
    );
    assert_eq!(flow["recording"]["format"], "mp3", "a patch keeps the rest");
    let c = call(&d, ACME, "c6", "+14155552671", None);
    assert_eq!(recorded_as(&c), Some(("wav".into(), "city".into())));
    let (s, _) = d.request("DELETE", "/v1/call-flows/city", None, Some(ACME));
    assert_eq!(s, 200);
    let c = call(&d, ACME, "c7", "+14155550000", None);
    assert_eq!(
        recorded_as(&c),
        Some(("opus".into(), "out".into())),
        "with the prefix gone, only the outbound rule (on `from`) matches"
    );
    let (s, _) = d.request("GET", "/v1/call-flows/city", None, Some(ACME));
    assert_eq!(s, 404);

    // The recording a rule started says so in the catalog and sidecar.
    let (s, _) = d.request("POST", "/v1/calls/c1/end", None, Some(ACME));
    assert_eq!(s, 200);
    let events = ev.until("recording.completed", Duration::from_secs(10));
    let done = events
        .iter()
        .rev()
        .find(|e| e["event"] == "recording.completed")
        .unwrap();
    let id = done["data"]["recording_id"].as_str().unwrap();
    let (_, rec) = d.request("GET", &format!("/v1/recordings/{id}"), None, Some(ACME));
    assert_eq!(rec["call_flow_id"], "support", "{rec}");
    assert_eq!(rec["owner_id"], "team-7", "{rec}");
    let names: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .filter(|n| n.starts_with("call_flow."))
        .collect();
    assert_eq!(
        names,
        [
            "call_flow.created",
            "call_flow.created",
            "call_flow.created",
            "call_flow.updated",
            "call_flow.deleted"
        ]
    );
    let created = events
        .iter()
        .find(|e| e["event"] == "call.created" && e["data"]["call_id"] == "c1")
        .unwrap();
    assert_eq!(created["data"]["call_flow_id"], "support");
}

#[test]
fn bad_rules_are_refused_naming_the_field() {
    let d = Daemon::start("call-flows-bad", "");
    let base = json!({"call_flow_id": "f1", "name": "n", "phone_number": "+14155552671"});
    assert_eq!(post(&d, ADMIN, "/v1/call-flows", &base).0, 201);
    let (s, e) = post(&d, ADMIN, "/v1/call-flows", &base);
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("call_flow_exists"))
    );
    for (change, status, field) in [
        (json!({"phone_number": "+1 415"}), 400, "phone_number"),
        (json!({"phone_number": "*"}), 400, "phone_number"),
        (json!({"name": ""}), 400, "name"),
        (
            json!({"recording": {"recording_id": "r"}}),
            400,
            "recording.recording_id",
        ),
        (
            json!({"recording": {"enabled": true}}),
            400,
            "recording.enabled",
        ),
        (
            json!({"recording": {"participant": "nobody"}}),
            400,
            "recording.participant",
        ),
        (json!({"direction": "sideways"}), 400, "direction"),
        (json!({"colour": "blue"}), 400, "colour"),
    ] {
        let mut body = base.clone();
        body["call_flow_id"] = json!("f2");
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, e) = post(&d, ADMIN, "/v1/call-flows", &body);
        assert_eq!(s, status, "{body}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(field),
            "{body}: {e}"
        );
    }
    let (s, e) = post(
        &d,
        ADMIN,
        "/v1/call-flows",
        &json!({"call_flow_id": "f3", "name": "n", "phone_number": "1001",
                "recording": {"format": "mp3", "sample_rate": 7000}}),
    );
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("invalid_format")),
        "{e}"
    );
    let (s, e) = d.request(
        "PATCH",
        "/v1/call-flows/f1",
        Some(r#"{"phone_number": "abc"}"#),
        Some(ADMIN),
    );
    assert_eq!(s, 400, "{e}");
    let (_, f) = d.request("GET", "/v1/call-flows/f1", None, Some(ADMIN));
    assert_eq!(
        (&f["phone_number"], &f["version"]),
        (&json!("+14155552671"), &json!(1)),
        "a refused patch changes nothing"
    );
    // A rule whose participant the call lacks fails that call's creation,
    // naming the rule.
    let (s, _) = post(
        &d,
        ADMIN,
        "/v1/call-flows",
        &json!({"call_flow_id": "callee-only", "name": "n", "phone_number": "2000",
                "recording": {"participant": "callee"}}),
    );
    assert_eq!(s, 201);
    let (s, e) = post(
        &d,
        ADMIN,
        "/v1/calls",
        &json!({"call_id": "x", "to": "2000", "legs": [{"role": "caller"}]}),
    );
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("call flow callee-only"),
        "{e}"
    );
}
