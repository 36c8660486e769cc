//! The real SIPREC offers in ../shared/siprec (see its README for their
//! provenance): each is read into the right streams, codecs, roles and
//! participants, and answered with an SDP that names our ports and labels.

use std::net::IpAddr;
use std::path::PathBuf;

use recengine::core::rtp::Codec;
use recengine::recording::Role;
use recengine::siprec::offer::{Flow, Offer, OfferError, answer, parse_offer, parse_sdp};

fn shared_siprec() -> Option<PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/siprec");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIP: {} is absent", dir.display());
        None
    }
}

/// The offer in `file`, with the Content-Type its INVITE would carry.
fn offer(file: &str) -> Option<Result<Offer, OfferError>> {
    let body = std::fs::read(shared_siprec()?.join(file)).unwrap();
    let text = String::from_utf8_lossy(&body);
    let boundary = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("--"))
        .map(str::trim)
        .filter(|b| !b.starts_with('-'));
    let content_type = match boundary {
        Some(b) if !text.trim_start().starts_with("v=0") => format!("multipart/mixed;boundary={b}"),
        _ => "application/sdp".to_owned(),
    };
    Some(parse_offer(&content_type, &body))
}

fn labels(o: &Offer) -> Vec<&str> {
    o.streams
        .iter()
        .map(|s| s.label.as_deref().unwrap_or(""))
        .collect()
}

fn roles(o: &Offer) -> Vec<Role> {
    o.streams.iter().map(|s| s.role).collect()
}

fn aors(o: &Offer) -> Vec<Option<&str>> {
    o.streams
        .iter()
        .map(|s| s.participant.as_ref().and_then(|p| p.aor.as_deref()))
        .collect()
}

fn pts(o: &Offer, i: usize) -> Vec<u8> {
    o.streams[i].accepted.iter().map(|(pt, _, _)| *pt).collect()
}

#[test]
fn acme_packet_participants_send_their_streams_and_mark_the_caller() {
    let Some(o) = offer("acme-siprec-offer.txt") else {
        return;
    };
    let o = o.unwrap();
    assert_eq!(labels(&o), ["16777227", "16777228"]);
    assert_eq!(roles(&o), [Role::Caller, Role::Callee]);
    assert_eq!(
        aors(&o),
        [
            Some("sip:9000@192.168.50.102"),
            Some("sip:1002@192.168.50.10")
        ]
    );
    assert_eq!(
        o.streams[0].participant.as_ref().unwrap().calling_party,
        Some(true)
    );
    assert_eq!(pts(&o, 0), [0]);
    assert!(o.streams.iter().all(|s| s.flow == Flow::Sending));
    let m = o.metadata.as_ref().unwrap();
    assert_eq!(m.session_id.as_deref(), Some("AavRXwIIQj1Q39eJulTipQ=="));
    assert_eq!(m.start_time.as_deref(), Some("2019-03-09T16:50:20"));
    assert!(o.notes.is_empty(), "{:?}", o.notes);
}

#[test]
fn broadworks_participantstreamassoc_maps_labels_to_parties() {
    let Some(o) = offer("broadworks-offer-2.txt") else {
        return;
    };
    let o = o.unwrap();
    assert_eq!(labels(&o), ["10", "20"]);
    assert_eq!(roles(&o), [Role::Caller, Role::Callee]);
    assert_eq!(
        aors(&o),
        [
            Some("sip:9878942259@212.188.68.145"),
            Some("sip:ASBCE@asbce.com")
        ]
    );
    // PCMA and its telephone-event (97, dynamic) are taken.
    assert_eq!(pts(&o, 0), [8, 97]);
    assert!(matches!(
        o.streams[0].accepted[1].1,
        Codec::TelephoneEvent { rate: 8000 }
    ));
    assert_eq!(
        o.streams[0].payload_types().get("97").map(String::as_str),
        Some("telephone-event/8000")
    );
    assert_eq!(
        o.metadata.as_ref().unwrap().start_time.as_deref(),
        Some("2019-11-12T15:57:37")
    );
}

#[test]
fn broadworks_garbled_metadata_still_records_the_stream_and_says_why() {
    let Some(o) = offer("broadworks-offer.txt") else {
        return;
    };
    let o = o.unwrap();
    assert_eq!(labels(&o), ["1"]);
    assert_eq!(roles(&o), [Role::Caller]);
    // PCMA, PCMU, G.722 and DTMF; not G.729.
    assert_eq!(pts(&o, 0), [8, 101, 0, 9]);
    assert!(o.metadata.is_none());
    assert!(
        o.notes.iter().any(|n| n.contains("<recording_metadata>")),
        "{:?}",
        o.notes
    );
}

#[test]
fn connectel_without_stream_ownership_goes_by_order_and_notes_it() {
    for file in [
        "connectel-offer.txt",
        "connectel-offer2.txt",
        "connectel-offer3.txt",
    ] {
        let Some(o) = offer(file) else { return };
        let o = o.unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(labels(&o), ["1", "2"], "{file}");
        assert_eq!(roles(&o), [Role::Caller, Role::Callee], "{file}");
        // GSM (3) is not decoded; the rest is.
        assert_eq!(pts(&o, 0), [0, 8, 101], "{file}");
        let m = o.metadata.as_ref().unwrap();
        assert_eq!(m.participants.len(), 2, "{file}");
        assert_eq!(
            m.sip_session_id.as_deref(),
            Some("2d8abbf0769c66e15bb349f509693d60@52.57.92.239")
        );
        assert!(
            o.notes.iter().any(|n| n.contains("does not say who sends")),
            "{file}: {:?}",
            o.notes
        );
    }
}

#[test]
fn procomm_labels_are_words_and_sends_come_from_participantstreamassoc() {
    let Some(o) = offer("procomm-siprec-offer.txt") else {
        return;
    };
    let o = o.unwrap();
    assert_eq!(labels(&o), ["a_leg", "b_leg"]);
    assert_eq!(roles(&o), [Role::Caller, Role::Callee]);
    let names: Vec<_> = o
        .streams
        .iter()
        .map(|s| s.participant.as_ref().and_then(|p| p.name.clone()))
        .collect();
    assert_eq!(
        names,
        [
            Some("016190200".to_owned()),
            Some("Speechpath-Main-Line 016190619".to_owned())
        ]
    );
    assert_eq!(o.streams[0].address, Some("89.185.131.7".parse().unwrap()));
    assert_eq!(
        o.metadata.as_ref().unwrap().start_time.as_deref(),
        Some("2017-12-11T14:44:23Z")
    );
}

#[test]
fn an_inactive_offer_is_recorded_paused() {
    let Some(o) = offer("inactive-sdp-offer.txt") else {
        return;
    };
    let o = o.unwrap();
    assert_eq!(labels(&o), ["1", "2"]);
    assert!(o.streams.iter().all(|s| s.flow == Flow::Idle));
    let host: IpAddr = "127.0.0.1".parse().unwrap();
    let sdp = answer(&o, host, &[Some(30000), Some(30002)], 1);
    assert_eq!(sdp.matches("a=inactive").count(), 2, "{sdp}");
}

#[test]
fn a_plain_sdp_offer_without_metadata_is_still_an_offer() {
    let Some(o) = offer("non-siprec-payload.txt") else {
        return;
    };
    let o = o.unwrap();
    assert_eq!(labels(&o), ["1"]);
    assert!(o.metadata.is_none() && o.raw_metadata.is_none());
    assert_eq!(pts(&o, 0), [0, 101]);
}

#[test]
fn answers_name_our_ports_the_taken_codecs_and_the_labels() {
    let Some(o) = offer("connectel-offer.txt") else {
        return;
    };
    let o = o.unwrap();
    let host: IpAddr = "127.0.0.1".parse().unwrap();
    let sdp = answer(&o, host, &[Some(30000), None], 7);
    // Our answer is itself valid SDP, stream for stream.
    let parsed = parse_sdp(&sdp).unwrap();
    assert_eq!(parsed.media_descriptions.len(), 2);
    assert_eq!(parsed.media_descriptions[0].media.port, 30000);
    assert_eq!(parsed.media_descriptions[0].media.fmts, [0, 8, 101]);
    assert_eq!(
        parsed.media_descriptions[1].media.port, 0,
        "a refused stream"
    );
    assert!(
        sdp.contains("a=recvonly\r\n")
            && sdp.contains("a=label:1\r\n")
            && sdp.contains("a=label:2\r\n")
    );
    assert!(sdp.contains("a=fmtp:101 0-16\r\n"));
    assert!(sdp.contains("o=recengine 7 7 IN IP4 127.0.0.1"));
}

#[test]
fn bodies_we_cannot_use_are_refused_by_kind() {
    assert!(matches!(
        parse_offer("text/plain", b"hello"),
        Err(OfferError::UnsupportedBody(_))
    ));
    assert!(matches!(
        parse_offer("application/sdp", b"v=0\r\nnot sdp at all"),
        Err(OfferError::BadSdp(_))
    ));
    let g729 = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\na=sendonly\r\n";
    let o = parse_offer("application/sdp", g729).unwrap();
    assert!(!o.streams[0].recordable());
}
