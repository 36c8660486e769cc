//! Media legs (issue #13.4): no stranger takes over a leg. By default the
//! first source is the leg's for good (strict source); the API can name
//! the only source a leg accepts, from its first packet.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use support::*;

/// Streams the real caller (1 kHz) and a stranger (2.5 kHz, its own SSRC)
/// to one leg; the stranger starts `stranger_first` packets earlier or
/// (negative) later. Returns the recorded caller channel and the leg view.
fn real_and_stranger(
    d: &Daemon,
    source: Option<&str>,
    real: &std::net::UdpSocket,
    stranger_delay: usize,
    real_delay: usize,
) -> (Vec<i16>, serde_json::Value) {
    let mut ev = d.events(None);
    std::thread::sleep(Duration::from_millis(100));
    let mut leg = json!({"role": "caller"});
    if let Some(s) = source {
        leg["source"] = json!(s);
    }
    let body = json!({"legs": [leg], "recording": {"enabled": true}});
    let (s, call) = d.admin("POST", "/v1/calls", Some(&body.to_string()));
    assert_eq!(s, 201, "{call}");
    let id = call["call_id"].as_str().unwrap();
    let port = leg_port(&call, "caller");
    let tone = recengine::testkit::tone(8000, 1000.0, 8000.0, 8000 * 2);
    let intruder = recengine::testkit::tone(8000, 2500.0, 8000.0, 8000 * 2);
    let other = udp();
    stream(
        &[
            Leg {
                port,
                ssrc: 1,
                signal: &tone,
                socket: real,
                delay_packets: real_delay,
            },
            Leg {
                port,
                ssrc: 2,
                signal: &intruder,
                socket: &other,
                delay_packets: stranger_delay,
            },
        ],
        |_| {},
    );
    let (_, view) = d.admin("GET", &format!("/v1/calls/{id}"), None);
    d.admin("POST", &format!("/v1/calls/{id}/end"), None);
    let events = ev.until("recording.completed", Duration::from_secs(10));
    let path = PathBuf::from(events.last().unwrap()["data"]["path"].as_str().unwrap());
    let (pcm, _, _) = read_wav(&path);
    (pcm, view["legs"][0].clone())
}

/// The reproduction: a datagram with a new SSRC from another
/// address used to move the latch (relatch on by default) and an injected
/// tone replaced the caller. Strict source is the default now.
#[test]
fn a_stranger_with_a_new_ssrc_cannot_take_over_a_leg_by_default() {
    let d = Daemon::start("security-latch", "");
    let real = udp();
    let (pcm, leg) = real_and_stranger(&d, None, &real, 5, 0);
    assert!(
        leg["ingest"]["foreign_source"].as_u64().unwrap() >= 90,
        "{leg}"
    );
    assert_eq!(leg["ingest"]["relatches"], 0, "{leg}");
    let body = &pcm[4000..12_000];
    assert!(tone_power(body, 8000, 1000.0) > 1e6);
    assert!(tone_power(body, 8000, 2500.0) < 1e3, "stranger recorded");
}

/// A leg whose source the API named takes nothing from anyone else, even
/// a stranger who sends first; a malformed source is a 400 naming the field.
#[test]
fn a_named_source_is_the_only_one_a_leg_records() {
    let d = Daemon::start("security-source", "");
    let real = udp();
    let source = real.local_addr().unwrap().to_string();
    let (pcm, leg) = real_and_stranger(&d, Some(&source), &real, 0, 5);
    assert!(
        leg["ingest"]["foreign_source"].as_u64().unwrap() >= 95,
        "{leg}"
    );
    let body = &pcm[4000..12_000];
    assert!(tone_power(body, 8000, 1000.0) > 1e6);
    assert!(tone_power(body, 8000, 2500.0) < 1e3, "stranger recorded");
    let body = json!({"legs": [{"role": "caller", "source": "pbx.example:5060"}]});
    let (s, v) = d.admin("POST", "/v1/calls", Some(&body.to_string()));
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("legs[0].source"),
        "{v}"
    );
}
