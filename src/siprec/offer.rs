//! A SIPREC offer (RFC 7866): the `multipart/mixed` body of a recording
//! INVITE split into its SDP and its metadata, the SDP's audio streams
//! (label, payload types, direction), the codecs we take from each, the
//! role each stream's sender plays in the recording, and the SDP answer.
//!
//! The body is split with `mailparse` (MIME), the SDP read with
//! `ezk-sdp-types`, the metadata with [`super::metadata`]. SRCs bend the
//! rules in small ways (no `t=` line, `Content-Type: application/ +xml`,
//! boundaries followed by spaces); each bend accepted is one named step
//! here, never a hand-written parser.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bytesstr::BytesStr;
use ezk_sdp_types::{Direction, SessionDescription, TaggedAddress};

use super::metadata::{self, Metadata};
use crate::core::rtp::Codec;
use crate::recording::Role;

/// Why an offer cannot be recorded; each maps to a SIP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// 415: not SDP, nor multipart with an SDP part.
    #[error(
        "the body is {0:?}: a recording offer is multipart/mixed with application/sdp (or bare SDP)"
    )]
    UnsupportedBody(String),
    /// 400: the SDP (or the multipart) cannot be read.
    #[error("the SDP cannot be read: {0}")]
    BadSdp(String),
    /// 488: no audio stream we can decode.
    #[error("no offered stream has a codec this recorder decodes (G.711, G.722, L16, Opus)")]
    NoCodec,
    /// 488: more audio streams than a call may have legs.
    #[error("{0} audio streams offered; at most {1} are recorded")]
    TooManyStreams(usize, usize),
}

/// How an offered stream flows, as its SDP says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The SRC sends (sendonly, or sendrecv): record it.
    Sending,
    /// `inactive` or `recvonly`: nothing comes; the recording pauses.
    Idle,
}

/// One `m=audio` stream of the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedStream {
    /// Its `a=label`, if any.
    pub label: Option<String>,
    /// Every payload type offered, in the offer's order.
    pub offered: Vec<u8>,
    /// Those we decode (and telephone-event), with their codec.
    pub accepted: Vec<(u8, Codec, String)>,
    /// `a=fmtp` lines of accepted payload types, passed back as offered.
    pub fmtp: Vec<(u8, String)>,
    pub flow: Flow,
    /// The SRC's media address (`c=`), when given and an IP.
    pub address: Option<IpAddr>,
    /// Who sends it, and what the metadata says about them.
    pub role: Role,
    pub participant: Option<metadata::Participant>,
}

impl OfferedStream {
    /// Whether we can record it (a codec we decode besides DTMF).
    pub fn recordable(&self) -> bool {
        self.accepted
            .iter()
            .any(|(_, c, _)| !matches!(c, Codec::TelephoneEvent { .. }))
    }

    /// Dynamic payload types as the API's `payload_types` map.
    pub fn payload_types(&self) -> BTreeMap<String, String> {
        self.accepted
            .iter()
            .filter(|(pt, _, _)| *pt >= 96)
            .map(|(pt, _, rtpmap)| (pt.to_string(), rtpmap.clone()))
            .collect()
    }
}

/// A parsed recording offer.
#[derive(Debug, Clone)]
pub struct Offer {
    pub streams: Vec<OfferedStream>,
    pub metadata: Option<Metadata>,
    /// The metadata part as sent.
    pub raw_metadata: Option<String>,
    /// What could not be understood (metadata problems, unmapped streams).
    pub notes: Vec<String>,
}

impl Offer {
    /// Whether more than two parties are recorded (a conference).
    pub fn is_conference(&self) -> bool {
        self.streams.len() > 2
            || self
                .metadata
                .as_ref()
                .is_some_and(|m| m.participants.len() > 2)
    }
}

/// The parts of a body: (SDP, metadata XML).
fn split_body(content_type: &str, body: &[u8]) -> Result<(String, Option<String>), OfferError> {
    let ct = content_type.trim().to_ascii_lowercase();
    if ct.starts_with("application/sdp") {
        return Ok((String::from_utf8_lossy(body).into_owned(), None));
    }
    if !ct.starts_with("multipart/") {
        return Err(OfferError::UnsupportedBody(content_type.trim().to_owned()));
    }
    // mailparse reads a MIME entity: the Content-Type header, then the body.
    let mut entity = format!("Content-Type: {}\r\n\r\n", content_type.trim()).into_bytes();
    entity.extend_from_slice(body);
    let parsed = mailparse::parse_mail(&entity).map_err(|e| OfferError::BadSdp(e.to_string()))?;
    let (mut sdp, mut meta) = (None, None);
    for part in &parsed.subparts {
        let mime = part.ctype.mimetype.to_ascii_lowercase();
        let disposition = part
            .headers
            .iter()
            .find(|h| h.get_key().eq_ignore_ascii_case("content-disposition"))
            .map(|h| h.get_value().to_ascii_lowercase())
            .unwrap_or_default();
        let text = part
            .get_body()
            .map_err(|e| OfferError::BadSdp(e.to_string()))?;
        if mime == "application/sdp" && sdp.is_none() {
            sdp = Some(text);
        } else if mime.contains("rs-metadata")
            || disposition.starts_with("recording-session")
            || mime.ends_with("+xml")
        {
            meta.get_or_insert(text);
        }
    }
    match sdp {
        Some(s) => Ok((s, meta)),
        None => Err(OfferError::UnsupportedBody(format!(
            "{} without an application/sdp part",
            content_type.trim()
        ))),
    }
}

/// Parses SDP text, supplying the `t=0 0` line some SRCs leave out.
pub fn parse_sdp(text: &str) -> Result<SessionDescription, OfferError> {
    let mut text = text.trim().replace("\r\n", "\n");
    if !text.lines().any(|l| l.starts_with("t=")) {
        // `t=` follows `s=` (and any `i=`, `u=`, `e=`, `p=`, `c=`, `b=`).
        let at = text
            .lines()
            .take_while(|l| !l.starts_with("m=") && !l.starts_with("a="))
            .map(|l| l.len() + 1)
            .sum::<usize>()
            .min(text.len());
        text.insert_str(at, "t=0 0\n");
    }
    let text = text.replace('\n', "\r\n") + "\r\n";
    SessionDescription::parse(&BytesStr::from(text)).map_err(|e| OfferError::BadSdp(e.to_string()))
}

fn address_of(conn: Option<&ezk_sdp_types::Connection>) -> Option<IpAddr> {
    match &conn?.address {
        TaggedAddress::IP4(a) => Some(IpAddr::V4(*a)),
        TaggedAddress::IP6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// The codec of payload type `pt`: from its `a=rtpmap`, else the static
/// assignment (RFC 3551).
fn codec_of(pt: u8, rtpmap: Option<&ezk_sdp_types::RtpMap>) -> Option<(Codec, String)> {
    let text = match rtpmap {
        Some(m) => match &m.params {
            Some(p) => format!("{}/{}/{}", m.encoding, m.clock_rate, p),
            None => format!("{}/{}", m.encoding, m.clock_rate),
        },
        None => match pt {
            0 => "PCMU/8000".into(),
            8 => "PCMA/8000".into(),
            9 => "G722/8000".into(),
            10 => "L16/44100/2".into(),
            11 => "L16/44100".into(),
            _ => return None,
        },
    };
    Codec::from_rtpmap(&text).ok().map(|c| (c, text))
}

/// Most streams taken from one offer (a call's legs).
pub const MAX_STREAMS: usize = crate::engine::MAX_LEGS;

/// Reads a recording offer from a request body.
pub fn parse_offer(content_type: &str, body: &[u8]) -> Result<Offer, OfferError> {
    let (sdp_text, raw_metadata) = split_body(content_type, body)?;
    let sdp = parse_sdp(&sdp_text)?;
    let mut notes = Vec::new();
    let metadata = raw_metadata
        .as_deref()
        .and_then(|xml| match metadata::parse(xml) {
            Ok(m) => Some(m),
            Err(e) => {
                notes.push(format!("{e}; streams are mapped by their order"));
                None
            }
        });
    if let Some(m) = &metadata {
        notes.extend(m.notes.iter().cloned());
    }
    let session_addr = address_of(sdp.connection.as_ref());
    let audio: Vec<_> = sdp
        .media_descriptions
        .iter()
        .filter(|m| matches!(m.media.media_type, ezk_sdp_types::MediaType::Audio))
        .collect();
    if audio.len() > MAX_STREAMS {
        return Err(OfferError::TooManyStreams(audio.len(), MAX_STREAMS));
    }
    let mut streams = Vec::new();
    for m in audio {
        let label = m
            .attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case("label"))
            .and_then(|a| a.value.as_ref())
            .map(|v| v.trim().to_owned());
        let direction = m.direction;
        let flow = match direction {
            Direction::SendOnly | Direction::SendRecv => Flow::Sending,
            Direction::RecvOnly | Direction::Inactive => Flow::Idle,
        };
        let mut accepted = Vec::new();
        for &pt in &m.media.fmts {
            let map = m.rtpmap.iter().find(|r| r.payload == pt);
            if let Some((codec, text)) = codec_of(pt, map) {
                accepted.push((pt, codec, text));
            }
        }
        let fmtp = m
            .fmtp
            .iter()
            .filter(|f| accepted.iter().any(|(pt, _, _)| *pt == f.format))
            .map(|f| (f.format, f.params.to_string()))
            .collect();
        let participant = match (&metadata, &label) {
            (Some(md), Some(l)) => md.sender_of_label(l).map(|(_, p)| p.clone()),
            _ => None,
        };
        streams.push(OfferedStream {
            label,
            offered: m.media.fmts.clone(),
            accepted,
            fmtp,
            flow,
            address: address_of(m.connection.as_ref()).or(session_addr),
            role: Role::Participant,
            participant,
        });
    }
    assign_roles(&mut streams, metadata.as_ref(), &mut notes);
    Ok(Offer {
        streams,
        metadata,
        raw_metadata,
        notes,
    })
}

/// Caller and callee for a two-party recording: the participant the SRC
/// marks as calling, else the first participant in the metadata, else the
/// first stream; more than two parties are all participants.
fn assign_roles(streams: &mut [OfferedStream], md: Option<&Metadata>, notes: &mut Vec<String>) {
    let parties = md.map_or(0, |m| m.participants.len());
    if streams.len() > 2 || parties > 2 {
        return; // a conference: every stream is a participant
    }
    let index_of = |s: &OfferedStream| -> Option<usize> {
        let p = s.participant.as_ref()?;
        md?.participants
            .iter()
            .position(|q| q.participant_id == p.participant_id)
    };
    let mapped: Vec<Option<usize>> = streams.iter().map(index_of).collect();
    let all_mapped =
        mapped.iter().all(Option::is_some) && mapped.len() == 2 && mapped[0] != mapped[1];
    let caller_stream = if all_mapped {
        let calling = streams
            .iter()
            .position(|s| s.participant.as_ref().and_then(|p| p.calling_party) == Some(true));
        calling.unwrap_or_else(|| {
            // The first participant described is the caller.
            if mapped[0] < mapped[1] { 0 } else { 1 }
        })
    } else {
        if md.is_some() && !streams.is_empty() {
            notes.push(
                "the metadata does not say who sends each stream: the first stream is taken as the caller's"
                    .into(),
            );
        }
        0
    };
    for (i, s) in streams.iter_mut().enumerate() {
        s.role = if i == caller_stream {
            Role::Caller
        } else {
            Role::Callee
        };
    }
}

/// The SDP answer: each stream we record at `ports[i]` on `host`,
/// `recvonly` (or `inactive` when the offer's is), with the payload types
/// we take and its label; a stream we cannot record refused with port 0.
pub fn answer(offer: &Offer, host: IpAddr, ports: &[Option<u16>], session_version: u64) -> String {
    let ip = match host {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let mut s = format!(
        "v=0\r\no=recengine {session_version} {session_version} IN {ip} {host}\r\ns=recengine\r\nc=IN {ip} {host}\r\nt=0 0\r\n"
    );
    for (stream, port) in offer.streams.iter().zip(ports) {
        match port {
            Some(port) if stream.recordable() => {
                let pts: Vec<String> = stream
                    .accepted
                    .iter()
                    .map(|(pt, _, _)| pt.to_string())
                    .collect();
                s.push_str(&format!("m=audio {port} RTP/AVP {}\r\n", pts.join(" ")));
                for (pt, _, rtpmap) in &stream.accepted {
                    s.push_str(&format!("a=rtpmap:{pt} {rtpmap}\r\n"));
                }
                for (pt, params) in &stream.fmtp {
                    s.push_str(&format!("a=fmtp:{pt} {params}\r\n"));
                }
                s.push_str(match stream.flow {
                    Flow::Sending => "a=recvonly\r\n",
                    Flow::Idle => "a=inactive\r\n",
                });
            }
            _ => {
                let pts: Vec<String> = stream.offered.iter().map(u8::to_string).collect();
                s.push_str(&format!("m=audio 0 RTP/AVP {}\r\n", pts.join(" ")));
            }
        }
        if let Some(l) = &stream.label {
            s.push_str(&format!("a=label:{l}\r\n"));
        }
    }
    s
}
