//! Hostile traffic on a leg's ports: floods past the ring, empty and giant
//! datagrams, garbage and RTCP on the RTP port, garbage on the RTCP port.
//! Everything is counted, nothing crashes, and the call records afterwards.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

#[test]
fn floods_and_garbage_are_counted_and_survived() {
    let d = Daemon::start("hostile", "[rtp]\nqueue_bytes = 2048\n");
    let mut ev = d.events(Some(0));
    let body =
        json!({"call_id": "h1", "legs": [{"role": "caller"}], "recording": {"enabled": true}});
    let (_, call) = d.admin("POST", "/v1/calls", Some(&body.to_string()));
    let port = leg_port(&call, "caller");
    let s = udp();
    // Latch the leg with one valid packet first.
    let good = recengine::testkit::rtp_packet(0, true, 1, 0, 9, &[0xff; 160]);
    s.send_to(&good, ("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // A flood far beyond the 2 KiB socket queue, as fast as it goes.
    for i in 0..5000u16 {
        let p = recengine::testkit::rtp_packet(
            0,
            false,
            2 + i,
            160 * u32::from(i + 1),
            9,
            &[0xff; 160],
        );
        let _ = s.send_to(&p, ("127.0.0.1", port));
    }
    // Let the worker drain the ring, then: empty, giant, garbage,
    // RTCP-on-RTP, and garbage to the RTCP port.
    std::thread::sleep(Duration::from_millis(300));
    let _ = s.send_to(&[], ("127.0.0.1", port));
    let _ = s.send_to(&vec![0x80; 60_000], ("127.0.0.1", port));
    let _ = s.send_to(b"GET / HTTP/1.1\r\n\r\n", ("127.0.0.1", port));
    let _ = s.send_to(
        &[0x80, 200, 0, 6, 0, 0, 0, 9, 1, 2, 3, 4],
        ("127.0.0.1", port),
    );
    let _ = s.send_to(b"not rtcp at all", ("127.0.0.1", port + 1));
    std::thread::sleep(Duration::from_millis(1500));
    let (s1, view) = d.admin("GET", "/v1/calls/h1", None);
    assert_eq!(s1, 200);
    let ingest = &view["legs"][0]["ingest"];
    assert!(ingest["queue_drops"].as_u64().unwrap() > 0, "{view}");
    assert!(ingest["rtcp"].as_u64().unwrap() >= 1, "{view}");
    let stats = &view["legs"][0]["stats"];
    assert!(
        stats["malformed"].as_u64().unwrap() + stats["rtcp"].as_u64().unwrap() >= 1,
        "{view}"
    );
    // The call still records: a normal stream after the storm.
    let speech = recengine::testkit::speech(8000, 8000);
    let s2 = udp();
    stream(
        &[Leg {
            port,
            ssrc: 9,
            signal: &speech,
            socket: &s,
            delay_packets: 0,
        }],
        |_| {},
    );
    drop(s2);
    d.admin("POST", "/v1/calls/h1/end", None);
    let events = ev.until("recording.completed", Duration::from_secs(10));
    assert!(
        events.last().unwrap()["data"]["duration_ms"]
            .as_u64()
            .unwrap()
            > 500
    );
    // Received = accepted + counted drops: nothing vanished uncounted.
    let (_, view) = d.admin("GET", "/v1/calls/h1", None);
    let ingest = &view["legs"][0]["ingest"];
    let stats = &view["legs"][0]["stats"];
    let datagrams = ingest["datagrams"].as_u64().unwrap();
    let accounted = ingest["queue_drops"].as_u64().unwrap()
        + ingest["foreign_source"].as_u64().unwrap()
        + stats["datagrams"].as_u64().unwrap();
    assert_eq!(datagrams, accounted, "{view}");
}
