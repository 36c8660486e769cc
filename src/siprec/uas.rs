//! The SIP user agent server of a Session Recording Server, sans IO:
//! messages in (bytes, peer, transport, time), messages out, and calls
//! into [`Sessions`] to start, change and end recordings. Parsing and
//! building SIP messages is `rsip`'s; this module owns what RFC 3261 asks
//! of a UAS:
//!
//! - server transactions: a retransmitted request gets the same answer
//!   again (kept 32 s, 64·T1); an error answer to an INVITE is kept until
//!   its ACK;
//! - INVITE: answered at once (no 100 Trying is needed within 200 ms);
//!   a 2xx is retransmitted over UDP from T1 (500 ms) doubling to T2 (4 s)
//!   until its ACK, and a dialog whose 2xx is never acknowledged in 32 s
//!   is ended;
//! - dialogs by Call-ID and tags: re-INVITE and UPDATE change the session
//!   (`inactive` pauses, `sendonly` resumes, new metadata is applied), BYE
//!   ends it, an in-dialog request for an unknown dialog is 481, a request
//!   with a lower CSeq than the last is 500 (RFC 3261 12.2.2);
//! - CANCEL (481 without its INVITE; after the answer it changes nothing),
//!   OPTIONS (200 with Allow and Accept), anything else 405.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rsip::prelude::{HeadersExt, ToTypedHeader, UntypedHeader};
use rsip::{Header, Method, SipMessage, StatusCode};

use super::offer::{Offer, OfferError, parse_offer};

/// T1, T2 and the transaction lifetime (RFC 3261 17.1.1.1).
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TXN_LIFETIME: Duration = Duration::from_secs(32);

/// Methods this server answers.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE";
/// Bodies it takes.
pub const ACCEPT: &str = "application/sdp, multipart/mixed, application/rs-metadata+xml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: SocketAddr,
    pub transport: Transport,
    pub bytes: Vec<u8>,
}

/// A refusal, as a SIP final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
    /// Seconds, for 503.
    pub retry_after: Option<u32>,
}

impl Refusal {
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            retry_after: None,
        }
    }
}

impl From<OfferError> for Refusal {
    fn from(e: OfferError) -> Self {
        let status = match e {
            OfferError::UnsupportedBody(_) => 415,
            OfferError::BadSdp(_) => 400,
            OfferError::NoCodec | OfferError::TooManyStreams(..) => 488,
        };
        Refusal::new(status, e.to_string())
    }
}

/// What the SIP side knows of a new session.
#[derive(Debug, Clone)]
pub struct SipContext {
    pub call_id: String,
    pub from: String,
    pub to: String,
    /// `X-Call-Direction` or similar hints some SRCs send, as sent.
    pub direction_hint: Option<String>,
}

/// Where recordings are made: the engine, or a test double.
pub trait Sessions {
    /// Whether `peer` may send requests at all.
    fn admits(&self, peer: SocketAddr) -> bool;
    /// Starts recording an offer; the handle and the SDP answer.
    fn open(
        &mut self,
        peer: SocketAddr,
        offer: &Offer,
        sip: &SipContext,
        session_version: u64,
    ) -> Result<(String, String), Refusal>;
    /// Applies a changed offer (re-INVITE, UPDATE); the new answer.
    fn update(
        &mut self,
        handle: &str,
        offer: &Offer,
        session_version: u64,
    ) -> Result<String, Refusal>;
    /// The answer to an offerless re-INVITE: the session as it stands.
    fn current_answer(&mut self, handle: &str, session_version: u64) -> Option<String>;
    /// Ends a session (BYE, or its 2xx never acknowledged).
    fn close(&mut self, handle: &str, reason: CloseReason);
    /// Whether a session is still going (it may end on its own: media
    /// timeout, an API call, shutdown).
    fn alive(&self, handle: &str) -> bool;
}

/// Why a session ended on the SIP side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Bye,
    NoAck,
}

/// A message of ours resent over UDP from T1, doubling to T2, until it is
/// answered or given up after 32 s (RFC 3261 13.3.1.4 for a 2xx awaiting
/// its ACK, 17.1.2.2 for a BYE awaiting its answer).
struct Resend {
    bytes: Vec<u8>,
    next: Duration,
    interval: Duration,
    give_up: Duration,
}

impl Resend {
    fn new(bytes: &[u8], now: Duration) -> Self {
        Self {
            bytes: bytes.to_vec(),
            next: now + T1,
            interval: T1,
            give_up: now + TXN_LIFETIME,
        }
    }

    fn expired(&self, now: Duration) -> bool {
        now >= self.give_up
    }

    /// The bytes to send again, if it is time (the timer moves on).
    fn due(&mut self, now: Duration) -> Option<Vec<u8>> {
        if now < self.next {
            return None;
        }
        self.interval = (self.interval * 2).min(T2);
        self.next = now + self.interval;
        Some(self.bytes.clone())
    }
}

/// A 2xx to an INVITE waiting for its ACK.
struct Unacked {
    cseq: u32,
    resend: Resend,
}

struct Dialog {
    handle: String,
    peer: SocketAddr,
    transport: Transport,
    remote_cseq: u32,
    session_version: u64,
    unacked: Option<Unacked>,
    /// For a BYE of ours: where it goes (the client's Contact), and the
    /// dialog's From (ours: the INVITE's To with our tag) and To (theirs).
    remote_target: String,
    local_party: rsip::headers::To,
    remote_party: rsip::headers::From,
}

/// A BYE of ours over UDP waiting for its answer (over TCP it is sent
/// once).
struct OurBye {
    call_id: String,
    to: SocketAddr,
    resend: Resend,
}

/// An answered request, kept for its retransmissions.
struct Answered {
    bytes: Vec<u8>,
    expires: Duration,
}

/// Counters (`recengine_siprec_*` in /metrics).
#[derive(Debug, Default)]
pub struct UasStats {
    pub requests: AtomicU64,
    pub malformed: AtomicU64,
    pub retransmissions: AtomicU64,
    pub sessions_started: AtomicU64,
    pub sessions_refused: AtomicU64,
    pub sessions_ended: AtomicU64,
    pub dialogs: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub struct Uas<S> {
    pub sessions: S,
    /// By (Call-ID, our tag).
    dialogs: HashMap<(String, String), Dialog>,
    /// By (branch, method).
    answered: HashMap<(String, String), Answered>,
    /// The address put in Contact.
    contact_host: String,
    next_tag: u64,
    stats: Arc<UasStats>,
    byes: Vec<OurBye>,
}

/// The parts of a request every answer needs.
struct Parts {
    call_id: String,
    branch: String,
    cseq: u32,
    method: Method,
    to_tag: Option<String>,
}

fn parts(req: &rsip::Request) -> Option<Parts> {
    let call_id = req.call_id_header().ok()?.value().to_owned();
    let via = req.via_header().ok()?.typed().ok()?;
    let branch = via.branch().map(|b| b.to_string()).unwrap_or_default();
    let cseq = req.cseq_header().ok()?.typed().ok()?;
    let to_tag = req
        .to_header()
        .ok()?
        .tag()
        .ok()
        .flatten()
        .map(|t| t.to_string());
    Some(Parts {
        call_id,
        branch,
        cseq: cseq.seq,
        method: req.method,
        to_tag,
    })
}

impl<S: Sessions> Uas<S> {
    /// A server putting `contact_host` (host:port) in its Contact header.
    pub fn new(sessions: S, contact_host: String) -> Self {
        Self {
            sessions,
            dialogs: HashMap::new(),
            answered: HashMap::new(),
            contact_host,
            next_tag: 1,
            stats: Arc::default(),
            byes: Vec::new(),
        }
    }

    /// The counters, shared (for /metrics).
    pub fn stats(&self) -> Arc<UasStats> {
        self.stats.clone()
    }

    /// Sessions with a dialog.
    pub fn dialogs(&self) -> usize {
        self.dialogs.len()
    }

    fn new_tag(&mut self) -> String {
        let mut r = [0u8; 6];
        crate::ids::fill_random(&mut r);
        self.next_tag += 1;
        format!("rec{}{}", crate::crypto::hex(&r), self.next_tag)
    }

    /// One message from `peer`.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        peer: SocketAddr,
        transport: Transport,
        now: Duration,
    ) -> Vec<Outgoing> {
        let Ok(msg) = SipMessage::try_from(bytes) else {
            bump(&self.stats.malformed);
            return Vec::new();
        };
        let req = match msg {
            SipMessage::Request(req) => req,
            SipMessage::Response(resp) => {
                // The answer to a BYE of ours ends its retransmissions.
                if let Ok(call_id) = resp.call_id_header().map(|c| c.value().to_owned())
                    && resp.status_code.code() >= 200
                {
                    self.byes.retain(|b| b.call_id != call_id);
                }
                return Vec::new();
            }
        };
        bump(&self.stats.requests);
        let Some(p) = parts(&req) else {
            bump(&self.stats.malformed);
            return Vec::new();
        };
        let out = |bytes: Vec<u8>| {
            vec![Outgoing {
                to: peer,
                transport,
                bytes,
            }]
        };
        // ACK has no answer; it ends a 2xx's retransmissions or an error's.
        if p.method == Method::Ack {
            self.ack(&p);
            return Vec::new();
        }
        let key = (p.branch.clone(), p.method.to_string());
        if !p.branch.is_empty()
            && let Some(a) = self.answered.get(&key)
        {
            bump(&self.stats.retransmissions);
            return out(a.bytes.clone());
        }
        if !self.sessions.admits(peer) {
            let bytes = self.respond(&req, &Refusal::new(403, "Forbidden"), None, None, transport);
            return self.remember(key, bytes, now, out);
        }
        let bytes = match p.method {
            Method::Invite if p.to_tag.is_none() => self.invite(&req, &p, peer, transport, now),
            Method::Invite | Method::Update => self.reinvite(&req, &p, transport, now),
            Method::Bye => self.bye(&req, &p, transport),
            Method::Cancel => {
                let invite = (p.branch.clone(), Method::Invite.to_string());
                let status = if self.answered.contains_key(&invite) {
                    Refusal::new(200, "OK")
                } else {
                    Refusal::new(481, "Call/Transaction Does Not Exist")
                };
                self.respond(&req, &status, None, None, transport)
            }
            Method::Options => self.respond(&req, &Refusal::new(200, "OK"), None, None, transport),
            _ => self.respond(
                &req,
                &Refusal::new(405, "Method Not Allowed"),
                None,
                None,
                transport,
            ),
        };
        self.remember(key, bytes, now, out)
    }

    fn remember(
        &mut self,
        key: (String, String),
        bytes: Vec<u8>,
        now: Duration,
        out: impl Fn(Vec<u8>) -> Vec<Outgoing>,
    ) -> Vec<Outgoing> {
        if !key.0.is_empty() {
            self.answered.insert(
                key,
                Answered {
                    bytes: bytes.clone(),
                    expires: now + TXN_LIFETIME,
                },
            );
        }
        out(bytes)
    }

    fn ack(&mut self, p: &Parts) {
        let Some(tag) = &p.to_tag else { return };
        if let Some(d) = self.dialogs.get_mut(&(p.call_id.clone(), tag.clone()))
            && d.unacked.as_ref().is_some_and(|u| u.cseq == p.cseq)
        {
            d.unacked = None;
        }
    }

    fn invite(
        &mut self,
        req: &rsip::Request,
        p: &Parts,
        peer: SocketAddr,
        transport: Transport,
        now: Duration,
    ) -> Vec<u8> {
        let content_type = req
            .headers
            .iter()
            .find_map(|h| match h {
                Header::ContentType(c) => Some(c.value().to_owned()),
                _ => None,
            })
            .unwrap_or_default();
        let offer = match parse_offer(&content_type, &req.body) {
            Ok(o) => o,
            Err(e) => {
                bump(&self.stats.sessions_refused);
                let tag = self.new_tag();
                return self.respond(req, &Refusal::from(e), Some(&tag), None, transport);
            }
        };
        let header = |name: &str| {
            req.headers.iter().find_map(|h| match h {
                Header::Other(k, v) if k.eq_ignore_ascii_case(name) => Some(v.clone()),
                _ => None,
            })
        };
        let sip = SipContext {
            call_id: p.call_id.clone(),
            from: req
                .from_header()
                .map(|f| f.value().to_owned())
                .unwrap_or_default(),
            to: req
                .to_header()
                .map(|t| t.value().to_owned())
                .unwrap_or_default(),
            direction_hint: header("X-Call-Direction").or_else(|| header("X-Direction")),
        };
        let version = 1;
        match self.sessions.open(peer, &offer, &sip, version) {
            Ok((handle, answer)) => {
                bump(&self.stats.sessions_started);
                let tag = self.new_tag();
                let bytes = self.respond(
                    req,
                    &Refusal::new(200, "OK"),
                    Some(&tag),
                    Some(&answer),
                    transport,
                );
                let remote_target = req
                    .headers
                    .iter()
                    .find_map(|h| match h {
                        Header::Contact(c) => c.typed().ok().map(|c| c.uri.to_string()),
                        _ => None,
                    })
                    .unwrap_or_else(|| format!("sip:{peer}"));
                let local_party = req
                    .to_header()
                    .ok()
                    .and_then(|t| t.clone().with_tag(rsip::param::Tag::new(tag.clone())).ok())
                    .unwrap_or_else(|| {
                        rsip::headers::To::new(format!(
                            "<sip:recengine@{}>;tag={tag}",
                            self.contact_host
                        ))
                    });
                let remote_party = req
                    .from_header()
                    .ok()
                    .cloned()
                    .unwrap_or_else(|| rsip::headers::From::new(format!("<sip:{peer}>")));
                self.dialogs.insert(
                    (p.call_id.clone(), tag),
                    Dialog {
                        remote_target,
                        local_party,
                        remote_party,
                        handle,
                        peer,
                        transport,
                        remote_cseq: p.cseq,
                        session_version: version,
                        unacked: Some(Unacked {
                            cseq: p.cseq,
                            resend: Resend::new(&bytes, now),
                        }),
                    },
                );
                bytes
            }
            Err(refusal) => {
                bump(&self.stats.sessions_refused);
                let tag = self.new_tag();
                self.respond(req, &refusal, Some(&tag), None, transport)
            }
        }
    }

    fn reinvite(
        &mut self,
        req: &rsip::Request,
        p: &Parts,
        transport: Transport,
        now: Duration,
    ) -> Vec<u8> {
        let no_dialog = Refusal::new(481, "Call/Transaction Does Not Exist");
        let Some(tag) = p.to_tag.clone() else {
            return self.respond(req, &no_dialog, None, None, transport);
        };
        let key = (p.call_id.clone(), tag.clone());
        let Some((handle, last, version)) = self
            .dialogs
            .get(&key)
            .map(|d| (d.handle.clone(), d.remote_cseq, d.session_version + 1))
        else {
            return self.respond(req, &no_dialog, None, None, transport);
        };
        if p.cseq <= last {
            return self.respond(
                req,
                &Refusal::new(500, "Server Internal Error: CSeq out of order"),
                None,
                None,
                transport,
            );
        }
        let content_type = req.headers.iter().find_map(|h| match h {
            Header::ContentType(c) => Some(c.value().to_owned()),
            _ => None,
        });
        let answer = match content_type {
            Some(ct) if !req.body.is_empty() => parse_offer(&ct, &req.body)
                .map_err(Refusal::from)
                .and_then(|offer| self.sessions.update(&handle, &offer, version)),
            _ => self
                .sessions
                .current_answer(&handle, version)
                .ok_or_else(|| no_dialog.clone()),
        };
        match answer {
            Ok(answer) => {
                let bytes = self.respond(
                    req,
                    &Refusal::new(200, "OK"),
                    None,
                    Some(&answer),
                    transport,
                );
                if let Some(d) = self.dialogs.get_mut(&key) {
                    d.remote_cseq = p.cseq;
                    d.session_version = version;
                    if p.method == Method::Invite {
                        d.unacked = Some(Unacked {
                            cseq: p.cseq,
                            resend: Resend::new(&bytes, now),
                        });
                    }
                }
                bytes
            }
            // A refused change leaves the session as it was (RFC 3261 14.2).
            Err(refusal) => self.respond(req, &refusal, None, None, transport),
        }
    }

    fn bye(&mut self, req: &rsip::Request, p: &Parts, transport: Transport) -> Vec<u8> {
        let dialog = p
            .to_tag
            .as_ref()
            .and_then(|t| self.dialogs.remove(&(p.call_id.clone(), t.clone())));
        match dialog {
            Some(d) => {
                self.sessions.close(&d.handle, CloseReason::Bye);
                bump(&self.stats.sessions_ended);
                self.respond(req, &Refusal::new(200, "OK"), None, None, transport)
            }
            None => self.respond(
                req,
                &Refusal::new(481, "Call/Transaction Does Not Exist"),
                None,
                None,
                transport,
            ),
        }
    }

    /// Timers: 2xx retransmissions over UDP, dialogs never acknowledged or
    /// whose session ended on its own, expired transactions.
    pub fn tick(&mut self, now: Duration) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let mut ended = Vec::new();
        for (key, d) in self.dialogs.iter_mut() {
            if let Some(u) = d.unacked.as_mut() {
                if u.resend.expired(now) {
                    ended.push((key.clone(), CloseReason::NoAck));
                    continue;
                }
                if d.transport == Transport::Udp
                    && let Some(bytes) = u.resend.due(now)
                {
                    out.push(Outgoing {
                        to: d.peer,
                        transport: d.transport,
                        bytes,
                    });
                }
            }
            if !self.sessions.alive(&d.handle) {
                ended.push((key.clone(), CloseReason::Bye));
            }
        }
        for (key, why) in ended {
            if let Some(d) = self.dialogs.remove(&key) {
                if why == CloseReason::NoAck {
                    tracing::warn!(call_id = %key.0, "the SRC never acknowledged our 200 OK: ending its recording");
                }
                self.sessions.close(&d.handle, why);
                bump(&self.stats.sessions_ended);
                // The session ended here (no media, an API call, shutdown,
                // no ACK): the client hears it by our BYE.
                let bye = self.bye_request(&key.0, &d);
                if d.transport == Transport::Udp {
                    self.byes.push(OurBye {
                        call_id: key.0.clone(),
                        to: d.peer,
                        resend: Resend::new(&bye, now),
                    });
                }
                out.push(Outgoing {
                    to: d.peer,
                    transport: d.transport,
                    bytes: bye,
                });
            }
        }
        self.byes.retain(|b| !b.resend.expired(now));
        for b in &mut self.byes {
            if let Some(bytes) = b.resend.due(now) {
                out.push(Outgoing {
                    to: b.to,
                    transport: Transport::Udp,
                    bytes,
                });
            }
        }
        self.answered.retain(|_, a| a.expires > now);
        self.stats
            .dialogs
            .store(self.dialogs.len() as u64, Ordering::Relaxed);
        out
    }

    /// A BYE for dialog `d` (RFC 3261 15.1.1: From is our side of the
    /// dialog, To theirs, the Request-URI their Contact).
    fn bye_request(&mut self, call_id: &str, d: &Dialog) -> Vec<u8> {
        let mut branch = [0u8; 8];
        crate::ids::fill_random(&mut branch);
        let from = d.local_party.value().to_owned();
        let to = d.remote_party.value().to_owned();
        let msg = format!(
            "BYE {} SIP/2.0\r\nVia: SIP/2.0/{} {};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
            d.remote_target,
            d.transport.via_name(),
            self.contact_host,
            crate::crypto::hex(&branch)
        );
        // Built from the dialog's own parsed parts, and parsed back before
        // it leaves, so nothing malformed is sent.
        match SipMessage::try_from(msg.as_bytes()) {
            Ok(m) => m.to_string().into_bytes(),
            Err(e) => {
                tracing::error!(error = %e, "could not build a BYE");
                Vec::new()
            }
        }
    }

    /// Ends every session (shutdown).
    pub fn close_all(&mut self) {
        for (_, d) in self.dialogs.drain() {
            self.sessions.close(&d.handle, CloseReason::Bye);
        }
    }

    /// A response to `req`: its Via, From, To (with `tag` if it has none),
    /// Call-ID and CSeq, and our headers.
    fn respond(
        &self,
        req: &rsip::Request,
        r: &Refusal,
        tag: Option<&str>,
        sdp: Option<&str>,
        transport: Transport,
    ) -> Vec<u8> {
        let mut headers = rsip::Headers::default();
        for h in req.headers.iter() {
            match h {
                Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                    headers.push(h.clone());
                }
                Header::To(to) => {
                    let to = match (tag, to.tag().ok().flatten()) {
                        (Some(t), None) => to
                            .clone()
                            .with_tag(rsip::param::Tag::new(t))
                            .unwrap_or_else(|_| to.clone()),
                        _ => to.clone(),
                    };
                    headers.push(Header::To(to));
                }
                _ => {}
            }
        }
        if r.status == 200 && matches!(req.method, Method::Invite | Method::Update) {
            headers.push(Header::Contact(rsip::headers::Contact::new(format!(
                "<sip:recengine@{};transport={}>",
                self.contact_host,
                transport.via_name().to_ascii_lowercase()
            ))));
        }
        if matches!(r.status, 200 | 405 | 415) {
            headers.push(Header::Allow(rsip::headers::Allow::new(ALLOW)));
        }
        if r.status == 415 || req.method == Method::Options {
            headers.push(Header::Accept(rsip::headers::Accept::new(ACCEPT)));
        }
        if let Some(s) = r.retry_after {
            headers.push(Header::RetryAfter(rsip::headers::RetryAfter::new(
                s.to_string(),
            )));
        }
        if r.status >= 300 {
            // Why, for the SRC's logs (RFC 3261 20.43: the reason is text).
            headers.push(Header::Warning(rsip::headers::Warning::new(format!(
                "399 recengine \"{}\"",
                r.reason.replace(['"', '\r', '\n'], "'")
            ))));
        }
        headers.push(Header::Server(rsip::headers::Server::new(concat!(
            "recengine/",
            env!("CARGO_PKG_VERSION")
        ))));
        let body = sdp.map(|s| s.as_bytes().to_vec()).unwrap_or_default();
        if sdp.is_some() {
            headers.push(Header::ContentType(rsip::headers::ContentType::new(
                "application/sdp",
            )));
        }
        headers.push(Header::ContentLength(rsip::headers::ContentLength::from(
            body.len() as u32,
        )));
        let resp = rsip::Response {
            status_code: StatusCode::from(r.status),
            version: rsip::Version::V2,
            headers,
            body,
        };
        SipMessage::Response(resp).to_string().into_bytes()
    }
}
