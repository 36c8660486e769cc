//! The event socket under hostile clients (issue #13.11): replay loaded the
//! whole `events.log` per client and the first line was read at any length
//! (a 10 MB line was read); 300 clients that never read took the daemon
//! from 43 to 138 MB.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

fn connect(d: &Daemon) -> UnixStream {
    let s = UnixStream::connect(d.storage().parent().unwrap().join("events.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn first_line(s: &UnixStream) -> Value {
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or(Value::Null)
}

#[test]
fn a_huge_first_line_is_cut_and_refused() {
    let d = Daemon::start("security-events-hello", "");
    let mut s = connect(&d);
    // 10 MB without a newline: only the first KiB is read.
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..10 {
        if s.write_all(&chunk).is_err() {
            break; // the daemon stopped reading and closed
        }
    }
    let answer = first_line(&s);
    assert_eq!(answer["error"]["code"], "invalid_json", "{answer}");
    assert_eq!(d.request("GET", "/healthz", None, None).0, 200);
}

#[test]
fn replay_pages_from_any_seq_and_clients_are_capped() {
    let d = Daemon::start("security-events-replay", "");
    // 601 events: a call, then its caller muted and unmuted 300 times.
    let body = json!({"call_id": "ev-1", "legs": [{"role": "caller"}]});
    assert_eq!(d.admin("POST", "/v1/calls", Some(&body.to_string())).0, 201);
    for _ in 0..300 {
        for action in ["mute", "unmute"] {
            let path = format!("/v1/calls/ev-1/legs/caller/{action}");
            assert_eq!(d.admin("POST", &path, None).0, 200);
        }
    }
    // From the middle of the log: the events after it, in order.
    let mut ev = d.events(Some(450));
    for want in 451..=601u64 {
        let e = ev.next(Duration::from_secs(5)).expect("replayed event");
        assert_eq!(e["seq"], want);
    }
    // Clients that never read are bounded in number.
    let idle: Vec<UnixStream> = (0..256).map(|_| connect(&d)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let extra = connect(&d);
    let answer = first_line(&extra);
    assert_eq!(answer["error"]["code"], "too_many_clients", "{answer}");
    drop(idle);
}
