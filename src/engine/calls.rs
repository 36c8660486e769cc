//! Calls and their legs: create, add a leg (its sockets come from the
//! IO side's [`LegOpener`](crate::io::legs::LegOpener)), look up, list and
//! end, and forgetting ended calls after `ended_calls_kept_s`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use crate::core::leg::LegConfig;
use crate::core::rtp::{Codec, PayloadMap};
use crate::events::{Event, StopReason};
use crate::ids::random_id;
use crate::io::legs::{OpenLegError, OpenedLeg};
use crate::io::udp::ExpectedSource;
use crate::io::worker::{CallShared, LegSetup, WorkerCmd};
use crate::recording::{LegInfo, Role};
use crate::timefmt::{rfc3339, unix_now};

use super::access::{Principal, scoped_key};
use super::model::*;
use super::recordings::CallLeg;
use super::state::{Call, Leg, Registry, Transition, recording_view};
use super::validate::{MAX_LEGS, check_id, check_text, default_leg_id, validate_leg};
use super::{Engine, EngineError, lock};

impl Engine {
    pub fn create_call(
        &self,
        who: &Principal,
        req: CreateCallRequest,
    ) -> Result<CallView, EngineError> {
        self.create_call_with(who, req, None)
    }

    /// A call a SIPREC client offered: recorded by the tenant's matching
    /// call flow, else with `default_recording`; `siprec` (the client's
    /// metadata) is kept with the call, its recordings' sidecars and
    /// `call.created`.
    pub fn create_siprec_call(
        &self,
        who: &Principal,
        mut req: CreateCallRequest,
        default_recording: RecordingRequest,
        siprec: crate::siprec::SiprecCall,
    ) -> Result<CallView, EngineError> {
        if req.recording.is_none()
            && self
                .matching_flow(who.scope(), &req.from, &req.to)?
                .is_none()
        {
            req.recording = Some(RecordingRequest {
                enabled: Some(true),
                ..default_recording
            });
        }
        self.create_call_with(who, req, Some(Box::new(siprec)))
    }

    /// Replaces a SIPREC call's metadata (a re-INVITE or UPDATE with new
    /// metadata: participants joining or leaving).
    pub fn update_siprec_metadata(
        &self,
        who: &Principal,
        call_id: &str,
        metadata: crate::siprec::metadata::Metadata,
        raw: Option<String>,
    ) {
        let mut reg = lock(&self.registry);
        if let Ok(key) = reg.call(who, call_id).map(|c| c.key.clone())
            && let Some(c) = reg.calls.get_mut(&key)
            && let Some(s) = c.siprec.as_mut()
        {
            s.metadata = Some(metadata);
            s.raw_metadata = raw;
        }
    }

    fn create_call_with(
        &self,
        who: &Principal,
        mut req: CreateCallRequest,
        siprec: Option<Box<crate::siprec::SiprecCall>>,
    ) -> Result<CallView, EngineError> {
        self.check_accepting()?;
        let call_id = match req.call_id.take() {
            Some(id) => {
                check_id("call_id", &id)?;
                id
            }
            None => random_id("call-"),
        };
        for (field, value) in [("from", &req.from), ("to", &req.to)] {
            check_text(field, value)?;
        }
        if req.legs.is_empty() {
            return Err(EngineError::InvalidRequest(
                "legs: at least one leg is required".into(),
            ));
        }
        if req.legs.len() > MAX_LEGS {
            return Err(EngineError::InvalidRequest(format!(
                "legs: at most {MAX_LEGS} legs per call"
            )));
        }
        if req.reference_type == ReferenceType::Call && req.legs.len() > 2 {
            return Err(EngineError::InvalidRequest(
                "legs: a call has at most a caller and a callee; use reference_type \"conference\""
                    .into(),
            ));
        }
        // A call without its own recording block is recorded by the most
        // specific matching call flow, if any (see `engine::flows`).
        let flow_id = match req.recording {
            Some(_) => None,
            None => self
                .matching_flow(who.scope(), &req.from, &req.to)?
                .map(|flow| {
                    req.recording = Some(RecordingRequest {
                        enabled: Some(true),
                        ..flow.recording
                    });
                    flow.call_flow_id
                }),
        };
        // The call's media rate: its first recording's.
        let defaults = &self.cfg.recording;
        let rate = match &req.recording {
            Some(r) => r
                .sample_rate
                .unwrap_or(defaults.sample_rate_for(r.format.unwrap_or(defaults.format))),
            None => defaults.sample_rate_for(defaults.format),
        };
        let mut leg_ids = Vec::new();
        for (i, l) in req.legs.iter().enumerate() {
            validate_leg(&format!("legs[{i}]"), l, req.reference_type)?;
            let id = l
                .leg_id
                .clone()
                .unwrap_or_else(|| default_leg_id(l.role, i));
            if leg_ids.contains(&id) {
                return Err(EngineError::InvalidRequest(format!(
                    "legs[{i}].leg_id: {id:?} appears twice"
                )));
            }
            leg_ids.push(id);
        }
        for role in [Role::Caller, Role::Callee] {
            if req.legs.iter().filter(|l| l.role == role).count() > 1 {
                return Err(EngineError::InvalidRequest(
                    format!("legs: more than one {role:?}").to_lowercase(),
                ));
            }
        }
        // Creating a call with a recording is all or nothing: everything
        // the recording could be refused for is checked before anything is
        // allocated, announced or catalogued.
        let recording = match &req.recording {
            Some(r) if r.enabled.unwrap_or(true) => Some(r.clone()),
            _ => None,
        };
        let recording = match recording {
            Some(mut r) => {
                let legs: Vec<CallLeg> = req
                    .legs
                    .iter()
                    .zip(&leg_ids)
                    .map(|(l, id)| CallLeg {
                        id: id.clone(),
                        role: l.role,
                        label: l.label.clone(),
                    })
                    .collect();
                let spec = self
                    .recording_options(&r, &legs, rate)
                    .map_err(|e| match (&flow_id, e) {
                        (Some(f), EngineError::InvalidRequest(m)) => EngineError::InvalidRequest(
                            format!("recording (from call flow {f}): {m}"),
                        ),
                        (_, e) => e,
                    })?
                    .spec;
                let id = match &r.recording_id {
                    Some(id) => {
                        check_id("recording_id", id)?;
                        id.clone()
                    }
                    None => random_id("rec-"),
                };
                self.check_recording_free(who.scope(), &id)?;
                self.check_quota(who.scope())?;
                let label = |role: Role| {
                    req.legs
                        .iter()
                        .find(|l| l.role == role)
                        .and_then(|l| l.label.clone())
                        .unwrap_or_default()
                };
                self.recording_path(
                    who.scope(),
                    &id,
                    &call_id,
                    spec.format,
                    [label(Role::Caller), label(Role::Callee)],
                    unix_now(),
                )?;
                r.recording_id = Some(id);
                Some(r)
            }
            None => None,
        };
        let num = self.next_call.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(CallShared::default());
        let now = self.clock.now();
        let key = scoped_key(who.scope(), &call_id);
        {
            let mut reg = lock(&self.registry);
            if reg.calls.contains_key(&key) {
                return Err(EngineError::CallExists(call_id));
            }
            reg.calls.insert(
                key.clone(),
                Call {
                    key: key.clone(),
                    id: call_id.clone(),
                    num,
                    tenant: who.tenant(),
                    from: req.from.clone(),
                    to: req.to.clone(),
                    direction: req.direction,
                    reference_type: req.reference_type,
                    created_at: rfc3339(unix_now()),
                    created_mono: now,
                    ended_at: None,
                    ended_mono: None,
                    rate,
                    call_flow_id: flow_id.clone(),
                    legs: Vec::new(),
                    shared: shared.clone(),
                    recordings: Vec::new(),
                    siprec: siprec.clone(),
                },
            );
        }
        self.send(
            num,
            WorkerCmd::AddCall {
                call: num,
                origin: now,
                rate,
                shared,
            },
        );
        for (l, id) in req.legs.iter().zip(leg_ids) {
            if let Err(e) = self.open_leg(&key, id, l) {
                // Never announced nor catalogued: it leaves no trace, and
                // its id stays free.
                self.discard_call(&key);
                return Err(e);
            }
        }
        match self.catalog.upsert_call(
            &call_id,
            who.tenant().as_deref(),
            &req.from,
            &req.to,
            req.direction.as_str(),
            req.reference_type.as_str(),
            &rfc3339(unix_now()),
        ) {
            Ok(None) => {}
            Ok(Some(node)) => {
                // Another recorder of the fleet has this call open.
                self.discard_call(&key);
                return Err(EngineError::HeldByOtherNode {
                    what: format!("call {call_id}"),
                    node,
                });
            }
            Err(e) => self.note("call", Err(e)),
        }
        self.emit(Event::CallCreated {
            call_id: call_id.clone(),
            customer_id: who.tenant(),
            call_flow_id: flow_id.clone(),
            from: req.from.clone(),
            to: req.to.clone(),
            reference_type: req.reference_type,
            legs: self.leg_summaries(&key),
            siprec,
        });
        if let Some(r) = recording
            && let Err(e) = self.start_recording_for(who, &call_id, r, flow_id)
        {
            // Checked above, so only a race or shutting down gets here:
            // the call ends as announced, and its id is free again.
            self.end_call_inner(&key, StopReason::SetupFailed);
            lock(&self.registry).calls.remove(&key);
            return Err(e);
        }
        self.call_view_by_key(&key)
    }

    /// Takes back a call whose legs could not all be opened: closes what
    /// was opened, rests its ports and forgets it, without an event.
    pub(super) fn discard_call(&self, key: &str) {
        let now = self.clock.now();
        let Some(c) = lock(&self.registry).calls.remove(key) else {
            return;
        };
        for l in &c.legs {
            self.legs.close(&l.ports, now);
        }
        self.send(
            c.num,
            WorkerCmd::EndCall {
                call: c.num,
                at: now,
            },
        );
    }

    pub(super) fn leg_summaries(&self, call_key: &str) -> Vec<Value> {
        let reg = lock(&self.registry);
        reg.calls.get(call_key).map_or_else(Vec::new, |c| {
            c.legs
                .iter()
                .map(|l| json!({"leg_id": l.id, "role": l.role, "label": l.label, "port": l.ports.port}))
                .collect()
        })
    }

    /// Binds a leg's ports, starts its ingest and gives it to the worker.
    pub(super) fn open_leg(
        &self,
        call_key: &str,
        leg_id: String,
        req: &LegRequest,
    ) -> Result<(), EngineError> {
        let mut map = PayloadMap::default();
        for (pt, enc) in &req.payload_types {
            let pt: u32 = pt.parse().map_err(|_| {
                EngineError::InvalidRequest(format!("payload_types: {pt:?} is not a number"))
            })?;
            let codec = Codec::from_rtpmap(enc)
                .map_err(|e| EngineError::InvalidRequest(format!("payload_types.{pt}: {e}")))?;
            map.set(pt, codec)
                .map_err(|e| EngineError::InvalidRequest(format!("payload_types.{pt}: {e}")))?;
        }
        let expected = req
            .source
            .as_deref()
            .map(ExpectedSource::parse)
            .transpose()
            .map_err(EngineError::InvalidRequest)?;
        let rate = {
            let reg = lock(&self.registry);
            reg.calls
                .get(call_key)
                .ok_or_else(|| EngineError::CallNotFound(call_key.into()))?
                .rate
        };
        let now = self.clock.now();
        let OpenedLeg { socket, ports } = self.legs.open(expected, now).map_err(|e| match e {
            OpenLegError::PortsExhausted => EngineError::PortsExhausted,
            OpenLegError::OutOfResources(e) => {
                tracing::error!(error = %e, "cannot open RTP sockets: out of file descriptors or socket memory");
                EngineError::OutOfResources
            }
            OpenLegError::Socket(e) => EngineError::Internal(e.to_string()),
        })?;
        let info = LegInfo {
            leg_id: leg_id.clone(),
            role: req.role,
            label: req.label.clone(),
            channel: None,
            codecs: Vec::new(),
            source: None,
            stats: Default::default(),
            dtmf: Vec::new(),
        };
        let config = LegConfig {
            payload_map: map,
            rate,
            playout_delay: Duration::from_millis(u64::from(self.cfg.jitter.playout_delay_ms)),
            jitter_capacity: self.cfg.jitter.capacity_packets as usize,
            drift_bound: Duration::from_millis(u64::from(self.cfg.jitter.drift_bound_ms)),
        };
        // The leg's index is taken, the leg registered and the worker told
        // under one lock: two legs added at once (requests run in parallel)
        // must not both get the same index, and the worker must get them
        // in index order.
        let mut reg = lock(&self.registry);
        let Some(c) = reg.calls.get_mut(call_key) else {
            self.legs.close(&ports, now);
            return Err(EngineError::CallNotFound(call_key.into()));
        };
        let index = c.legs.len();
        let num = c.num;
        c.legs.push(Leg {
            id: leg_id,
            role: req.role,
            label: req.label.clone(),
            ports,
            muted: false,
        });
        self.send(
            num,
            WorkerCmd::AddLeg {
                call: num,
                leg: Box::new(LegSetup {
                    index,
                    socket,
                    config,
                    info,
                }),
            },
        );
        Ok(())
    }

    pub fn add_leg(
        &self,
        who: &Principal,
        call_id: &str,
        req: LegRequest,
    ) -> Result<CallView, EngineError> {
        self.check_accepting()?;
        let (reference_type, n, num, key, tenant) = {
            let reg = lock(&self.registry);
            let c = reg.call(who, call_id)?;
            if c.ended_at.is_some() {
                return Err(EngineError::CallEnded(call_id.into()));
            }
            if c.reference_type == ReferenceType::Call && c.legs.len() >= 2 {
                return Err(EngineError::InvalidRequest(
                    "this call already has two legs; conferences take more (reference_type \"conference\")".into(),
                ));
            }
            if c.legs
                .iter()
                .any(|l| l.role == req.role && req.role != Role::Participant)
            {
                return Err(EngineError::InvalidRequest(
                    format!("the call already has a {:?}", req.role).to_lowercase(),
                ));
            }
            (
                c.reference_type,
                c.legs.len(),
                c.num,
                c.key.clone(),
                c.tenant.clone(),
            )
        };
        validate_leg("leg", &req, reference_type)?;
        let id = req
            .leg_id
            .clone()
            .unwrap_or_else(|| default_leg_id(req.role, n));
        if lock(&self.registry)
            .calls
            .get(&key)
            .is_some_and(|c| c.legs.iter().any(|l| l.id == id))
        {
            return Err(EngineError::InvalidRequest(format!(
                "leg_id: {id:?} already exists"
            )));
        }
        self.open_leg(&key, id.clone(), &req)?;
        // A conference leg joins the mono recordings of everyone.
        let joins: Vec<String> = {
            let reg = lock(&self.registry);
            reg.calls.get(&key).map_or_else(Vec::new, |c| {
                c.recordings
                    .iter()
                    .filter_map(|r| reg.recordings.get(r))
                    .filter(|r| r.state.active() && r.all_legs_mono)
                    .map(|r| r.key.clone())
                    .collect()
            })
        };
        for rec in joins {
            self.send(
                num,
                WorkerCmd::AddInput {
                    call: num,
                    id: rec,
                    leg: n,
                    channel: 0,
                },
            );
        }
        self.emit(Event::LegAdded {
            call_id: call_id.to_owned(),
            customer_id: tenant.clone(),
            leg_id: id.clone(),
            role: req.role,
            label: req.label.clone(),
        });
        self.call_view_by_key(&key)
    }

    /// Whether `who`'s call `call_id` exists and has not ended: one
    /// registry lookup, for callers that ask often (the SIPREC timers).
    pub fn call_is_active(&self, who: &Principal, call_id: &str) -> bool {
        lock(&self.registry)
            .call(who, call_id)
            .is_ok_and(|c| c.ended_at.is_none())
    }

    pub fn get_call(&self, who: &Principal, call_id: &str) -> Result<CallView, EngineError> {
        let reg = lock(&self.registry);
        let c = reg.call(who, call_id)?;
        Ok(self.call_view(&reg, c))
    }

    pub(super) fn call_view_by_key(&self, key: &str) -> Result<CallView, EngineError> {
        let reg = lock(&self.registry);
        let c = reg
            .calls
            .get(key)
            .ok_or_else(|| EngineError::CallNotFound(key.into()))?;
        Ok(self.call_view(&reg, c))
    }

    /// A page of the calls `who` sees (`ended`: only ended or only active
    /// ones), newest first, and how many there are in all.
    pub fn list_calls(
        &self,
        who: &Principal,
        ended: Option<bool>,
        limit: usize,
        offset: u64,
    ) -> (Vec<CallView>, usize) {
        let reg = lock(&self.registry);
        let mut calls: Vec<&Call> = reg
            .calls
            .values()
            .filter(|c| who.sees(&c.tenant))
            .filter(|c| ended.is_none_or(|e| c.ended_at.is_some() == e))
            .collect();
        let total = calls.len();
        calls.sort_by_key(|c| std::cmp::Reverse(c.num));
        let page = calls
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(limit)
            .map(|c| self.call_view(&reg, c))
            .collect();
        (page, total)
    }

    pub(super) fn call_view(&self, reg: &Registry, c: &Call) -> CallView {
        let stats = lock(&c.shared.legs).clone();
        CallView {
            call_id: c.id.clone(),
            customer_id: c.tenant.clone(),
            from: c.from.clone(),
            to: c.to.clone(),
            direction: c.direction,
            reference_type: c.reference_type,
            status: if c.ended_at.is_some() {
                CallStatus::Ended
            } else {
                CallStatus::Active
            },
            created_at: c.created_at.clone(),
            ended_at: c.ended_at.clone(),
            sample_rate: c.rate,
            call_flow_id: c.call_flow_id.clone(),
            siprec: c.siprec.clone(),
            legs: c
                .legs
                .iter()
                .enumerate()
                .map(|(i, l)| LegView {
                    leg_id: l.id.clone(),
                    role: l.role,
                    label: l.label.clone(),
                    rtp: RtpAddress {
                        host: self.advertise.clone(),
                        port: l.ports.port,
                        rtcp_port: l.ports.port + 1,
                    },
                    muted: l.muted,
                    source: None,
                    ingest: l.ports.stats.snapshot(),
                    stats: stats.get(i).copied(),
                })
                .collect(),
            recordings: c
                .recordings
                .iter()
                .filter_map(|r| reg.recordings.get(r))
                .map(recording_view)
                .collect(),
        }
    }

    pub fn end_call(&self, who: &Principal, call_id: &str) -> Result<CallView, EngineError> {
        let key = {
            let reg = lock(&self.registry);
            let c = reg.call(who, call_id)?;
            if c.ended_at.is_some() {
                return Err(EngineError::CallEnded(call_id.into()));
            }
            c.key.clone()
        };
        self.end_call_inner(&key, StopReason::Api);
        self.call_view_by_key(&key)
    }

    /// Ends a call: stops its recordings (finalized from what arrived),
    /// closes its sockets and rests its ports.
    pub(super) fn end_call_inner(&self, call_key: &str, reason: StopReason) {
        let now = self.clock.now();
        let (num, stopped, call_id, tenant) = {
            let mut reg = lock(&self.registry);
            let Some(c) = reg.calls.get_mut(call_key) else {
                return;
            };
            if c.ended_at.is_some() {
                return;
            }
            c.ended_at = Some(rfc3339(unix_now()));
            c.ended_mono = Some(now);
            for l in &c.legs {
                self.legs.close(&l.ports, now);
            }
            let (num, call_id, tenant) = (c.num, c.id.clone(), c.tenant.clone());
            let rec_keys = c.recordings.clone();
            let mut stopped = Vec::new();
            let stopped_at = rfc3339(unix_now());
            for r in rec_keys {
                if let Some(rec) = reg.recordings.get_mut(&r)
                    && let Some(next) = rec.state.after(Transition::Stop)
                {
                    rec.state = next;
                    rec.stopped_at = Some(stopped_at.clone());
                    rec.stopped_mono = Some(now);
                    stopped.push((
                        rec.id.clone(),
                        stopped_at.clone(),
                        rec.shared.duration_ms.load(Ordering::Relaxed),
                    ));
                }
            }
            (num, stopped, call_id, tenant)
        };
        for (r, stopped_at, duration_ms) in &stopped {
            self.emit(Event::RecordingStopped {
                recording_id: r.clone(),
                call_id: call_id.clone(),
                customer_id: tenant.clone(),
                reason,
                stopped_at: stopped_at.clone(),
                duration_seconds: *duration_ms as f64 / 1000.0,
            });
        }
        self.send(num, WorkerCmd::EndCall { call: num, at: now });
        for (r, stopped_at, _) in &stopped {
            self.note(
                "status",
                self.catalog.set_status(
                    tenant.as_deref(),
                    r,
                    RecordingStatus::Stopped,
                    stopped_at,
                    None,
                    Some(stopped_at),
                ),
            );
        }
        self.note(
            "call end",
            self.catalog
                .end_call(tenant.as_deref(), &call_id, &rfc3339(unix_now())),
        );
        self.emit(Event::CallEnded {
            call_id: call_id.clone(),
            customer_id: tenant.clone(),
            reason,
        });
    }

    /// Forgets calls ended longer than `api.ended_calls_kept_s` ago, with
    /// their finished recordings: the registry holds what is live, the
    /// catalog what is done (`GET /v1/recordings`, and
    /// `GET /v1/calls/{id}/recording`, still find them).
    pub(super) fn forget_ended_calls(&self, now: Duration) {
        let keep = Duration::from_secs(u64::from(self.cfg.api.ended_calls_kept_s));
        let mut reg = lock(&self.registry);
        let Registry { calls, recordings } = &mut *reg;
        calls.retain(|_, c| {
            let forget = c.ended_mono.is_some_and(|t| now.saturating_sub(t) >= keep)
                && c.recordings
                    .iter()
                    .all(|r| recordings.get(r).is_none_or(|r| r.state.finished()));
            if forget {
                for r in &c.recordings {
                    recordings.remove(r);
                }
            }
            !forget
        });
    }
}
