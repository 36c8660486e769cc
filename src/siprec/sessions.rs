//! SIPREC sessions on the engine: which tenant a Session Recording Client
//! records for (by its source network), the call an offer becomes (one leg
//! per recordable stream, roles from the metadata, a conference past two
//! parties), its recording (the matching call flow's, else the source's
//! defaults), pause and resume from stream directions, new streams as new
//! legs, and the SDP answer from the legs' ports.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::offer::{Flow, Offer, OfferError, answer};
use super::uas::{CloseReason, Refusal, Sessions, SipContext};
use super::{SiprecCall, metadata::Participant};
use crate::engine::model::{CreateCallRequest, LegRequest, RecordingRequest};
use crate::engine::{Engine, EngineError, Principal};
use crate::recording::Role;

/// An address ("10.0.0.5") or network ("10.0.0.0/24").
pub fn parse_network(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

/// The admitted sources of `[[siprec.sources]]` (already validated).
pub fn sources(cfg: &crate::config::SiprecSection) -> Vec<Source> {
    cfg.sources
        .iter()
        .filter_map(|s| {
            let network = parse_network(&s.network)?;
            let principal = if s.customer_id.is_empty() {
                Principal::Admin
            } else {
                Principal::Tenant(s.customer_id.clone())
            };
            let recording = RecordingRequest {
                format: serde_json::from_value(serde_json::json!(s.format)).ok(),
                channels: serde_json::from_value(serde_json::json!(s.channels)).ok(),
                ..RecordingRequest::default()
            };
            Some(Source {
                network,
                principal,
                recording,
            })
        })
        .collect()
}

/// An SRC network and what its sessions are recorded as.
#[derive(Debug, Clone)]
pub struct Source {
    pub network: ipnet::IpNet,
    pub principal: Principal,
    /// Used when no call flow of the tenant matches the call.
    pub recording: RecordingRequest,
}

struct Session {
    who: Principal,
    call_id: String,
    /// The leg of each offered stream (streams we do not record: none).
    stream_legs: Vec<Option<String>>,
    ports: Vec<Option<u16>>,
    host: IpAddr,
    offer: Offer,
    paused: bool,
}

pub struct EngineSessions {
    engine: Arc<Engine>,
    sources: Vec<Source>,
    /// `[siprec] caller = "second"`: the roles of a two-party session swapped.
    swap_roles: bool,
    /// The host our SDP answers name when the legs' own is not an IP.
    media_host: IpAddr,
    sessions: HashMap<String, Session>,
}

fn refusal(e: EngineError) -> Refusal {
    match e {
        EngineError::PortsExhausted | EngineError::OutOfResources => Refusal {
            status: 503,
            reason: e.to_string(),
            retry_after: Some(5),
        },
        EngineError::ShuttingDown => Refusal {
            status: 503,
            reason: e.to_string(),
            retry_after: Some(30),
        },
        EngineError::QuotaExceeded(m) => Refusal {
            status: 503,
            reason: m,
            retry_after: Some(300),
        },
        EngineError::InvalidRequest(m) | EngineError::InvalidFormat(m) => Refusal::new(488, m),
        other => {
            tracing::error!(error = %other, "a SIPREC session could not be set up");
            Refusal::new(500, "Server Internal Error")
        }
    }
}

/// A leg id from a stream's label (ids allow `A-Za-z0-9._-`).
fn leg_id(label: Option<&str>, index: usize) -> String {
    let clean: String = label
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(60)
        .collect();
    if clean.is_empty() {
        format!("stream-{index}")
    } else {
        format!("stream-{clean}")
    }
}

fn party_label(p: Option<&Participant>) -> Option<String> {
    let p = p?;
    p.name
        .clone()
        .or_else(|| p.aor.clone())
        .map(|s| s.chars().filter(|c| !c.is_control()).take(256).collect())
}

fn text(s: Option<&str>) -> String {
    s.unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(256)
        .collect()
}

impl EngineSessions {
    pub fn new(
        engine: Arc<Engine>,
        sources: Vec<Source>,
        media_host: IpAddr,
        swap_roles: bool,
    ) -> Self {
        Self {
            engine,
            sources,
            swap_roles,
            media_host,
            sessions: HashMap::new(),
        }
    }

    fn source_of(&self, peer: SocketAddr) -> Option<&Source> {
        // The most specific network wins.
        self.sources
            .iter()
            .filter(|s| s.network.contains(&peer.ip()))
            .max_by_key(|s| s.network.prefix_len())
    }

    fn leg_request(offer: &Offer, i: usize, conference: bool) -> LegRequest {
        let s = &offer.streams[i];
        LegRequest {
            leg_id: Some(leg_id(s.label.as_deref(), i)),
            role: if conference {
                Role::Participant
            } else {
                s.role
            },
            label: party_label(s.participant.as_ref()),
            payload_types: s.payload_types(),
            source: None,
        }
    }

    /// Pauses when no recorded stream flows, resumes when one does.
    fn follow_directions(&self, s: &mut Session) {
        let flowing = s
            .offer
            .streams
            .iter()
            .zip(&s.stream_legs)
            .any(|(st, leg)| leg.is_some() && st.flow == Flow::Sending);
        let r = match (flowing, s.paused) {
            (false, false) => self
                .engine
                .pause_recording(&s.who, &s.call_id)
                .map(|_| true),
            (true, true) => self
                .engine
                .resume_recording(&s.who, &s.call_id)
                .map(|_| false),
            _ => return,
        };
        match r {
            Ok(paused) => s.paused = paused,
            // No recording (a call flow disabled it, or it ended): nothing to pause.
            Err(e) => {
                tracing::debug!(call = %s.call_id, error = %e, "SIPREC direction change not applied")
            }
        }
    }

    fn answer_of(s: &Session, version: u64) -> String {
        answer(&s.offer, s.host, &s.ports, version)
    }
}

impl Sessions for EngineSessions {
    fn admits(&self, peer: SocketAddr) -> bool {
        self.source_of(peer).is_some()
    }

    fn open(
        &mut self,
        peer: SocketAddr,
        offer: &Offer,
        sip: &SipContext,
        version: u64,
    ) -> Result<(String, String), Refusal> {
        let Some(source) = self.source_of(peer).cloned() else {
            return Err(Refusal::new(403, "Forbidden: not an allowed SIPREC source"));
        };
        if !offer.streams.iter().any(|s| s.recordable()) {
            return Err(OfferError::NoCodec.into());
        }
        let mut offer = offer.clone();
        if self.swap_roles {
            for s in &mut offer.streams {
                s.role = match s.role {
                    Role::Caller => Role::Callee,
                    Role::Callee => Role::Caller,
                    other => other,
                };
            }
        }
        let offer = &offer;
        let conference = offer.is_conference();
        let mut legs = Vec::new();
        let mut stream_legs = vec![None; offer.streams.len()];
        for (i, s) in offer.streams.iter().enumerate() {
            if s.recordable() {
                let l = Self::leg_request(offer, i, conference);
                stream_legs[i] = l.leg_id.clone();
                legs.push(l);
            }
        }
        let party = |role: Role| {
            offer
                .streams
                .iter()
                .find(|s| s.role == role)
                .and_then(|s| s.participant.as_ref())
                .and_then(|p| p.aor.clone().or_else(|| p.name.clone()))
        };
        let req = CreateCallRequest {
            call_id: None,
            from: text(party(Role::Caller).as_deref()),
            to: text(party(Role::Callee).as_deref()),
            direction: match sip.direction_hint.as_deref().map(str::to_ascii_lowercase) {
                Some(d) if d.starts_with("out") => crate::engine::model::Direction::Outbound,
                _ => crate::engine::model::Direction::Inbound,
            },
            reference_type: if conference {
                crate::engine::model::ReferenceType::Conference
            } else {
                crate::engine::model::ReferenceType::Call
            },
            legs,
            recording: None,
        };
        let siprec = SiprecCall {
            src: peer.to_string(),
            sip_call_id: sip.call_id.clone(),
            metadata: offer.metadata.clone(),
            raw_metadata: offer.raw_metadata.clone(),
            notes: offer.notes.clone(),
        };
        let view = self
            .engine
            .create_siprec_call(&source.principal, req, source.recording.clone(), siprec)
            .map_err(refusal)?;
        let ports: Vec<Option<u16>> = stream_legs
            .iter()
            .map(|leg| {
                let leg = leg.as_ref()?;
                view.legs
                    .iter()
                    .find(|l| &l.leg_id == leg)
                    .map(|l| l.rtp.port)
            })
            .collect();
        let host = view
            .legs
            .first()
            .and_then(|l| l.rtp.host.parse().ok())
            .filter(|ip: &IpAddr| !ip.is_unspecified())
            .unwrap_or(self.media_host);
        let mut session = Session {
            who: source.principal.clone(),
            call_id: view.call_id.clone(),
            stream_legs,
            ports,
            host,
            offer: offer.clone(),
            paused: false,
        };
        self.follow_directions(&mut session);
        tracing::info!(call = %view.call_id, customer = ?session.who, src = %peer,
            sip_call_id = %sip.call_id, streams = offer.streams.len(), "SIPREC session started");
        for note in &offer.notes {
            tracing::info!(call = %view.call_id, note = %note, "SIPREC offer");
        }
        let answer = Self::answer_of(&session, version);
        let handle = view.call_id.clone();
        self.sessions.insert(handle.clone(), session);
        Ok((handle, answer))
    }

    fn update(&mut self, handle: &str, offer: &Offer, version: u64) -> Result<String, Refusal> {
        let Some(mut s) = self.sessions.remove(handle) else {
            return Err(Refusal::new(481, "Call/Transaction Does Not Exist"));
        };
        let known = s.stream_legs.len();
        if offer.streams.len() < known {
            // RFC 3264 8: streams are never removed from an offer.
            self.sessions.insert(handle.to_owned(), s);
            return Err(Refusal::new(
                488,
                "the offer has fewer streams than the session",
            ));
        }
        // New streams join as new legs (a conference's new participant).
        for i in known..offer.streams.len() {
            let (leg, port) = if offer.streams[i].recordable() {
                let req = Self::leg_request(offer, i, true);
                let id = req.leg_id.clone();
                match self.engine.add_leg(&s.who, &s.call_id, req) {
                    Ok(view) => {
                        let port = view
                            .legs
                            .iter()
                            .find(|l| Some(&l.leg_id) == id.as_ref())
                            .map(|l| l.rtp.port);
                        (id, port)
                    }
                    Err(e) => {
                        tracing::warn!(call = %s.call_id, error = %e, "a new SIPREC stream could not be added; refused in the answer");
                        (None, None)
                    }
                }
            } else {
                (None, None)
            };
            s.stream_legs.push(leg);
            s.ports.push(port);
        }
        s.offer = offer.clone();
        if let Some(m) = &offer.metadata {
            self.engine.update_siprec_metadata(
                &s.who,
                &s.call_id,
                m.clone(),
                offer.raw_metadata.clone(),
            );
        }
        self.follow_directions(&mut s);
        let answer = Self::answer_of(&s, version);
        self.sessions.insert(handle.to_owned(), s);
        Ok(answer)
    }

    fn current_answer(&mut self, handle: &str, version: u64) -> Option<String> {
        self.sessions
            .get(handle)
            .map(|s| Self::answer_of(s, version))
    }

    fn close(&mut self, handle: &str, reason: CloseReason) {
        let Some(s) = self.sessions.remove(handle) else {
            return;
        };
        match self.engine.end_call(&s.who, &s.call_id) {
            Ok(_) => tracing::info!(call = %s.call_id, ?reason, "SIPREC session ended"),
            Err(e) => {
                tracing::debug!(call = %s.call_id, error = %e, "SIPREC session's call already ended")
            }
        }
    }

    fn alive(&self, handle: &str) -> bool {
        self.sessions
            .get(handle)
            .is_some_and(|s| self.engine.call_is_active(&s.who, &s.call_id))
    }
}
