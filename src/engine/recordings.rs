//! Recordings of live calls: start (options resolved against the defaults
//! and the call's legs into a plan for the worker), pause, resume, stop,
//! mute a leg, and the live views.

use std::collections::HashMap;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::catalog::RecordingRow;
use crate::config::{Channels, Format, PauseBehavior};
use crate::core::call::Notice;
use crate::core::call::plan::{PlanLeg, Selection, plan};
use crate::core::encode::EncoderSpec;
use crate::core::mixer::MixInput;
use crate::events::{Event, StopReason};
use crate::ids::random_id;
use crate::io::worker::{RecordingSetup, RecordingShared, WorkerCmd};
use crate::recording::{AnnouncementInfo, Checksum, LegInfo, RecordingInfo, Role};
use crate::timefmt::{rfc3339, unix_now};

use super::access::{Principal, scoped_key};
use super::model::*;
use super::state::{Recording, Registry, Transition, recording_view};
use super::validate::{check_id, check_text};
use super::{Engine, EngineError, lock};

impl Engine {
    /// What a recording's start needs from its call, read under one lock:
    /// refuses an ended call and a call already recording.
    fn call_for_recording(
        &self,
        who: &Principal,
        call_id: &str,
    ) -> Result<CallForRecording, EngineError> {
        let reg = lock(&self.registry);
        let c = reg.call(who, call_id)?;
        if c.ended_at.is_some() {
            return Err(EngineError::CallEnded(call_id.into()));
        }
        if c.recordings
            .iter()
            .filter_map(|r| reg.recordings.get(r))
            .any(|r| r.state.active())
        {
            return Err(EngineError::RecordingInProgress(call_id.into()));
        }
        Ok(CallForRecording {
            key: c.key.clone(),
            id: c.id.clone(),
            num: c.num,
            tenant: c.tenant.clone(),
            rate: c.rate,
            reference: c.reference_type,
            siprec: c.siprec.clone(),
            legs: c
                .legs
                .iter()
                .map(|l| CallLeg {
                    id: l.id.clone(),
                    role: l.role,
                    label: l.label.clone(),
                })
                .collect(),
        })
    }

    /// Resolves recording options against the defaults and the call's
    /// legs (and media rate).
    pub(super) fn recording_options(
        &self,
        r: &RecordingRequest,
        call_legs: &[CallLeg],
        call_rate: u32,
    ) -> Result<RecordingOptions, EngineError> {
        let d = &self.cfg.recording;
        let format = r.format.unwrap_or(d.format);
        // The call's legs produce audio at its media rate; a recording at
        // another rate is resampled from it.
        let sample_rate = r.sample_rate.unwrap_or(d.sample_rate_for(format));
        let channels = r.channels.unwrap_or(d.channels);
        let participant = r
            .participant
            .clone()
            .unwrap_or(ParticipantRequest::Named("all".into()));
        let selection = match &participant {
            ParticipantRequest::Named(n) => match n.as_str() {
                "all" => Selection::All,
                "caller" => Selection::Caller,
                "callee" => Selection::Callee,
                other => {
                    return Err(EngineError::InvalidRequest(format!(
                        "participant: {other:?} is not all, caller, callee or a list of leg ids"
                    )));
                }
            },
            ParticipantRequest::Legs(ids) => Selection::Legs(ids.clone()),
        };
        let legs: Vec<PlanLeg<'_>> = call_legs
            .iter()
            .map(|l| PlanLeg {
                id: &l.id,
                role: l.role,
            })
            .collect();
        let planned = plan(&legs, &selection, channels)
            .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
        let spec = EncoderSpec {
            format,
            sample_rate,
            channels: planned.channel_count,
            bitrate_kbps: r.bitrate.unwrap_or(d.bitrate_for(format)),
            mp3_quality: d.mp3_quality,
            opus_complexity: d.opus_complexity,
        };
        spec.validate()
            .map_err(|e| EngineError::InvalidFormat(e.to_string()))?;
        for (field, value) in [
            ("owner_type", &r.owner_type),
            ("owner_id", &r.owner_id),
            ("on_end_flow_id", &r.on_end_flow_id),
        ] {
            if let Some(v) = value {
                check_text(field, v)?;
            }
        }
        let (notices, announcement) = self.notices(r, call_rate)?;
        Ok(RecordingOptions {
            notices,
            announcement,
            spec,
            inputs: planned.inputs,
            all_legs_mono: selection == Selection::All && channels == Channels::Mono,
            participant,
            pause_behavior: r.pause_behavior.unwrap_or(d.pause_behavior),
            suppress_dtmf: r.dtmf.unwrap_or_default() == DtmfPolicy::Suppress,
            channels,
            retention_days: r.retention_days,
            owner: OwnerFields {
                owner_type: r.owner_type.clone(),
                owner_id: r.owner_id.clone(),
                on_end_flow_id: r.on_end_flow_id.clone(),
            },
        })
    }

    pub fn start_recording(
        &self,
        who: &Principal,
        call_id: &str,
        req: RecordingRequest,
    ) -> Result<RecordingView, EngineError> {
        self.start_recording_for(who, call_id, req, None)
    }

    /// Starts a recording; `call_flow_id` names the rule it is for.
    pub(super) fn start_recording_for(
        &self,
        who: &Principal,
        call_id: &str,
        req: RecordingRequest,
        call_flow_id: Option<String>,
    ) -> Result<RecordingView, EngineError> {
        self.check_accepting()?;
        let _one_start_at_a_time = lock(&self.starts);
        if let Some(id) = &req.recording_id {
            check_id("recording_id", id)?;
        }
        let call = self.call_for_recording(who, call_id)?;
        let options = self.recording_options(&req, &call.legs, call.rate)?;
        let id = req
            .recording_id
            .clone()
            .unwrap_or_else(|| random_id("rec-"));
        // Ids are the customer's own: another customer's recording with
        // this id is no obstacle (and not revealed).
        let key = scoped_key(call.tenant.as_deref(), &id);
        self.check_recording_free(call.tenant.as_deref(), &id)?;
        self.check_quota(call.tenant.as_deref())?;
        let now_wall = unix_now();
        let now = self.clock.now();
        let label = |role: Role| {
            call.legs
                .iter()
                .find(|l| l.role == role)
                .and_then(|l| l.label.clone())
                .unwrap_or_default()
        };
        let path = self.recording_path(
            call.tenant.as_deref(),
            &id,
            &call.id,
            options.spec.format,
            [label(Role::Caller), label(Role::Callee)],
            now_wall,
        )?;
        let sink = match lock(&self.writers).as_ref() {
            Some(w) => w.sink(&key),
            None => return Err(EngineError::ShuttingDown),
        };
        let started_at = rfc3339(now_wall);
        let sealing = self.new_data_key(call.tenant.as_deref())?;
        let mut row = first_row(&call, &options, &id, &path, now_wall);
        let mut info = first_info(&call, &options, &id, &path, &started_at);
        info.call_flow_id = call_flow_id.clone();
        let data_key = sealing.map(|s| {
            row.encryption = Some(s.encryption.clone());
            row.recovery_key = s.recovery_key;
            info.encryption = Some(s.encryption);
            s.key
        });
        self.note("recording", self.catalog.put_recording(&row));
        let shared = Arc::new(RecordingShared::default());
        let setup = RecordingSetup {
            id: key.clone(),
            spec: options.spec,
            inputs: options.inputs.clone(),
            pause_behavior: options.pause_behavior,
            suppress_dtmf: options.suppress_dtmf,
            start: Duration::ZERO,
            sidecar: path.with_extension("json"),
            path,
            flush_interval: Duration::from_millis(u64::from(self.cfg.storage.flush_interval_ms)),
            min_duration: Duration::from_secs(u64::from(self.cfg.recording.min_duration_s)),
            notices: options.notices.clone(),
            sink,
            data_key,
            info: Box::new(info),
            shared: shared.clone(),
        };
        let recording = Recording {
            key: key.clone(),
            id: id.clone(),
            tenant: call.tenant.clone(),
            call_id: call.id.clone(),
            call_num: call.num,
            state: RecordingStatus::Recording,
            format: options.spec.format,
            sample_rate: options.spec.sample_rate,
            channels: options.channels,
            bitrate_kbps: options.spec.effective_bitrate_kbps(),
            participant: options.participant.clone(),
            pause_behavior: options.pause_behavior,
            owner: options.owner.clone(),
            call_flow_id: call_flow_id.clone(),
            started_at: started_at.clone(),
            started_mono: now,
            stopped_at: None,
            shared,
            info: None,
            failure: None,
            all_legs_mono: options.all_legs_mono,
            stopped_mono: None,
        };
        self.register_recording(&call, recording, setup, now)?;
        self.emit(Event::RecordingStarted {
            recording_id: id.clone(),
            call_id: call.id.clone(),
            customer_id: call.tenant.clone(),
            format: options.spec.format,
            sample_rate: options.spec.sample_rate,
            channels: options.channels,
            participant: options.participant,
            started_at: started_at.clone(),
        });
        if let Some(a) = options.announcement {
            self.emit(Event::RecordingAnnounced {
                recording_id: id,
                call_id: call.id,
                customer_id: call.tenant,
                prompt: a.prompt,
                source: a.source,
                to: a.to,
                at: started_at,
                duration_ms: a.duration_ms,
                reminder_interval_s: a.reminder_interval_s,
            });
        }
        self.recording_view_by_key(&key)
    }

    /// Files a new recording with its call and tells the call's worker to
    /// start it, under one lock (the worker's start time is the call's
    /// clock at this moment).
    fn register_recording(
        &self,
        call: &CallForRecording,
        recording: Recording,
        mut setup: RecordingSetup,
        now: Duration,
    ) -> Result<(), EngineError> {
        let mut reg = lock(&self.registry);
        let c = reg
            .calls
            .get_mut(&call.key)
            .ok_or_else(|| EngineError::CallNotFound(call.id.clone()))?;
        c.recordings.push(recording.key.clone());
        setup.start = now.saturating_sub(c.created_mono);
        reg.recordings.insert(recording.key.clone(), recording);
        self.send(
            call.num,
            WorkerCmd::StartRecording {
                call: call.num,
                setup: Box::new(setup),
            },
        );
        Ok(())
    }

    pub(super) fn recording_view_by_key(&self, key: &str) -> Result<RecordingView, EngineError> {
        let reg = lock(&self.registry);
        reg.recordings
            .get(key)
            .map(recording_view)
            .ok_or_else(|| EngineError::RecordingNotFound(key.into()))
    }

    /// Refuses a recording id the customer already has (live or
    /// catalogued). Another customer's recording with this id is no
    /// obstacle, and is not revealed.
    pub(super) fn check_recording_free(
        &self,
        tenant: Option<&str>,
        id: &str,
    ) -> Result<(), EngineError> {
        let taken = lock(&self.registry)
            .recordings
            .contains_key(&scoped_key(tenant, id))
            || self
                .catalog
                .get(tenant, id)
                .map_err(|e| EngineError::Internal(e.to_string()))?
                .is_some();
        if taken {
            return Err(EngineError::InvalidRequest(format!(
                "recording_id: {id:?} already exists"
            )));
        }
        Ok(())
    }

    /// Where the customer's recording `id` goes (`storage.path_pattern`),
    /// refusing a path another recording has: never two live recordings on
    /// one path, whatever their ids (a crafted id could name another's
    /// file). A recording in progress is in the catalog; a `.part` without
    /// one is a leftover and is replaced.
    pub(super) fn recording_path(
        &self,
        tenant: Option<&str>,
        id: &str,
        call_id: &str,
        format: Format,
        [caller_label, callee_label]: [String; 2],
        now_wall: Duration,
    ) -> Result<PathBuf, EngineError> {
        let customer = tenant.unwrap_or(crate::storage_path::ADMIN_CUSTOMER_SEGMENT);
        let values: HashMap<&str, String> = [
            ("recording_id", id.to_owned()),
            ("call_id", call_id.to_owned()),
            ("customer_id", customer.to_owned()),
            ("ext", format.extension().to_owned()),
            ("caller_label", caller_label),
            ("callee_label", callee_label),
        ]
        .into_iter()
        .collect();
        let path = crate::storage_path::render(
            &self.storage,
            &self.cfg.storage.path_pattern,
            now_wall,
            &values,
        );
        if path.exists()
            || self
                .catalog
                .live_recording_at(&path.to_string_lossy())
                .map_err(|e| EngineError::Internal(e.to_string()))?
        {
            return Err(EngineError::PathInUse(
                path.strip_prefix(&self.storage)
                    .unwrap_or(&path)
                    .display()
                    .to_string(),
            ));
        }
        Ok(path)
    }

    /// The key of the call's recording in progress.
    pub(super) fn active_recording(
        &self,
        reg: &Registry,
        who: &Principal,
        call_id: &str,
    ) -> Result<String, EngineError> {
        let c = reg.call(who, call_id)?;
        c.recordings
            .iter()
            .filter_map(|r| reg.recordings.get(r))
            .find(|r| r.state.active())
            .map(|r| r.key.clone())
            .ok_or_else(|| EngineError::RecordingNotStarted(call_id.into()))
    }

    pub fn pause_recording(
        &self,
        who: &Principal,
        call_id: &str,
    ) -> Result<RecordingView, EngineError> {
        self.set_paused(who, call_id, true)
    }

    pub fn resume_recording(
        &self,
        who: &Principal,
        call_id: &str,
    ) -> Result<RecordingView, EngineError> {
        self.set_paused(who, call_id, false)
    }

    pub(super) fn set_paused(
        &self,
        who: &Principal,
        call_id: &str,
        pause: bool,
    ) -> Result<RecordingView, EngineError> {
        let now = self.clock.now();
        let (key, num, id, tenant) = {
            let mut reg = lock(&self.registry);
            let key = self.active_recording(&reg, who, call_id)?;
            let rec = reg
                .recordings
                .get_mut(&key)
                .ok_or_else(|| EngineError::RecordingNotFound(key.clone()))?;
            let (event, refused) = if pause {
                (Transition::Pause, EngineError::AlreadyPaused)
            } else {
                (Transition::Resume, EngineError::NotPaused)
            };
            rec.state = rec.state.after(event).ok_or(refused)?;
            (key, rec.call_num, rec.id.clone(), rec.tenant.clone())
        };
        let at = now;
        self.send(
            num,
            if pause {
                WorkerCmd::Pause {
                    call: num,
                    id: key.clone(),
                    at,
                }
            } else {
                WorkerCmd::Resume {
                    call: num,
                    id: key.clone(),
                    at,
                }
            },
        );
        let status = if pause {
            RecordingStatus::Paused
        } else {
            RecordingStatus::Recording
        };
        self.note(
            "status",
            self.catalog.set_status(
                tenant.as_deref(),
                &id,
                status,
                &rfc3339(unix_now()),
                None,
                None,
            ),
        );
        let (recording_id, call_id, customer_id) = (id.clone(), call_id.to_owned(), tenant.clone());
        self.emit(if pause {
            Event::RecordingPaused {
                recording_id,
                call_id,
                customer_id,
            }
        } else {
            Event::RecordingResumed {
                recording_id,
                call_id,
                customer_id,
            }
        });
        self.recording_view_by_key(&key)
    }

    pub fn stop_recording(
        &self,
        who: &Principal,
        call_id: &str,
    ) -> Result<RecordingView, EngineError> {
        let key = {
            let reg = lock(&self.registry);
            self.active_recording(&reg, who, call_id)?
        };
        let stop = self.mark_stopped(&key, StopReason::Api);
        // The answer shows the recording as stopped: the worker finishes it
        // within a tick once told, and later states come as events.
        let view = self.recording_view_by_key(&key);
        if let Some(cmd) = stop {
            self.send(cmd.0, cmd.1);
        }
        view
    }

    pub(super) fn stop_recording_inner(&self, key: &str, reason: StopReason) {
        if let Some((num, cmd)) = self.mark_stopped(key, reason) {
            self.send(num, cmd);
        }
    }

    /// Moves an active recording to `stopped` (registry, catalog, event)
    /// and returns the command that tells its worker. The command goes out
    /// only after `recording.stopped` is logged, so `recording.completed`
    /// can never precede it.
    pub(super) fn mark_stopped(&self, key: &str, reason: StopReason) -> Option<(u64, WorkerCmd)> {
        let now = self.clock.now();
        let t = rfc3339(unix_now());
        let (num, call_id, id, tenant, duration_ms) = {
            let mut reg = lock(&self.registry);
            let rec = reg.recordings.get_mut(key)?;
            rec.state = rec.state.after(Transition::Stop)?;
            rec.stopped_at = Some(t.clone());
            rec.stopped_mono = Some(now);
            (
                rec.call_num,
                rec.call_id.clone(),
                rec.id.clone(),
                rec.tenant.clone(),
                rec.shared.duration_ms.load(Ordering::Relaxed),
            )
        };
        self.note(
            "status",
            self.catalog.set_status(
                tenant.as_deref(),
                &id,
                RecordingStatus::Stopped,
                &t,
                None,
                Some(&t),
            ),
        );
        self.emit(Event::RecordingStopped {
            recording_id: id.clone(),
            call_id: call_id.clone(),
            customer_id: tenant.clone(),
            reason,
            stopped_at: t,
            duration_seconds: duration_ms as f64 / 1000.0,
        });
        Some((
            num,
            WorkerCmd::Stop {
                call: num,
                id: key.into(),
                at: now,
            },
        ))
    }

    pub fn set_muted(
        &self,
        who: &Principal,
        call_id: &str,
        leg_id: &str,
        muted: bool,
    ) -> Result<CallView, EngineError> {
        let now = self.clock.now();
        let (num, index, key, tenant) = {
            let mut reg = lock(&self.registry);
            let key = reg.call(who, call_id)?.key.clone();
            let c = reg
                .calls
                .get_mut(&key)
                .ok_or_else(|| EngineError::CallNotFound(call_id.into()))?;
            if c.ended_at.is_some() {
                return Err(EngineError::CallEnded(call_id.into()));
            }
            let index = c
                .legs
                .iter()
                .position(|l| l.id == leg_id)
                .ok_or_else(|| EngineError::LegNotFound(leg_id.into()))?;
            c.legs[index].muted = muted;
            (c.num, index, key, c.tenant.clone())
        };
        self.send(
            num,
            WorkerCmd::Mute {
                call: num,
                leg: index,
                muted,
                at: now,
            },
        );
        let (call_id, customer_id, leg_id) =
            (call_id.to_owned(), tenant.clone(), leg_id.to_owned());
        self.emit(if muted {
            Event::LegMuted {
                call_id,
                customer_id,
                leg_id,
            }
        } else {
            Event::LegUnmuted {
                call_id,
                customer_id,
                leg_id,
            }
        });
        self.call_view_by_key(&key)
    }

    pub fn get_recording(&self, who: &Principal, id: &str) -> Result<RecordingView, EngineError> {
        let reg = lock(&self.registry);
        Ok(recording_view(reg.recording(who, id)?))
    }

    /// Live duration of a customer's recording in progress.
    pub fn live_duration_ms(&self, customer: Option<&str>, id: &str) -> Option<u64> {
        let reg = lock(&self.registry);
        reg.recordings
            .get(&scoped_key(customer, id))
            .filter(|r| !r.state.finished())
            .map(|r| r.shared.duration_ms.load(Ordering::Relaxed))
    }

    /// The call's latest recording.
    pub fn latest_recording(
        &self,
        who: &Principal,
        call_id: &str,
    ) -> Result<RecordingRow, EngineError> {
        let customer = self.call_visible(who, call_id)?;
        self.catalog
            .latest_for_call(customer.as_deref(), call_id)
            .map_err(|e| EngineError::Internal(e.to_string()))?
            .ok_or_else(|| EngineError::RecordingNotFound(format!("(none yet for call {call_id})")))
    }
}

/// What a recording's start reads from its call.
struct CallForRecording {
    key: String,
    id: String,
    num: u64,
    tenant: Option<String>,
    /// The call's media rate.
    rate: u32,
    reference: ReferenceType,
    legs: Vec<CallLeg>,
    siprec: Option<Box<crate::siprec::SiprecCall>>,
}

/// One of the call's legs, as a recording names it.
pub(super) struct CallLeg {
    pub(super) id: String,
    pub(super) role: Role,
    pub(super) label: Option<String>,
}

/// A recording request resolved against the defaults and the call's legs.
pub(super) struct RecordingOptions {
    pub(super) spec: EncoderSpec,
    /// The legs mixed and their channels.
    inputs: Vec<MixInput>,
    /// Every leg, mono: legs that join the call later join the recording.
    all_legs_mono: bool,
    participant: ParticipantRequest,
    pause_behavior: PauseBehavior,
    suppress_dtmf: bool,
    channels: Channels,
    retention_days: Option<u32>,
    owner: OwnerFields,
    notices: Vec<Notice>,
    announcement: Option<AnnouncementInfo>,
}

/// The recording's catalog row as it starts.
fn first_row(
    call: &CallForRecording,
    o: &RecordingOptions,
    id: &str,
    path: &Path,
    now_wall: Duration,
) -> RecordingRow {
    let started_at = rfc3339(now_wall);
    RecordingRow {
        recording_id: id.to_owned(),
        call_id: call.id.clone(),
        customer_id: call.tenant.clone(),
        reference_type: call.reference.as_str().into(),
        status: RecordingStatus::Recording,
        format: o.spec.format.extension().into(),
        sample_rate: o.spec.sample_rate,
        channels: o.channels.as_str().into(),
        bitrate_kbps: o.spec.effective_bitrate_kbps(),
        participant: o.participant.name(),
        path: Some(path.to_string_lossy().into_owned()),
        duration_ms: 0,
        file_size_bytes: None,
        checksum: None,
        failure_reason: None,
        started_at: started_at.clone(),
        started_ms: now_wall.as_millis() as i64,
        stopped_at: None,
        completed_at: None,
        completed_ms: None,
        created_at: started_at.clone(),
        updated_at: started_at,
        deleted_at: None,
        retention_days: o.retention_days,
        recovered: false,
        external: false,
        info_json: None,
        encryption: None,
        recovery_key: None,
        node_id: String::new(),
    }
}

/// The recording's sidecar as it starts; the worker fills in the rest.
fn first_info(
    call: &CallForRecording,
    o: &RecordingOptions,
    id: &str,
    path: &Path,
    started_at: &str,
) -> RecordingInfo {
    RecordingInfo {
        recording_id: id.to_owned(),
        call_id: call.id.clone(),
        customer_id: call.tenant.clone(),
        reference_type: call.reference.as_str().into(),
        status: RecordingStatus::Completed,
        format: o.spec.format,
        content_type: o.spec.format.content_type().into(),
        sample_rate: o.spec.sample_rate,
        channels: o.channels,
        channel_count: o.spec.channels,
        bitrate_kbps: o.spec.effective_bitrate_kbps(),
        participant: o.participant.name(),
        pause_behavior: o.pause_behavior,
        started_at: started_at.to_owned(),
        stopped_at: String::new(),
        duration_ms: 0,
        file: path.to_string_lossy().into_owned(),
        file_size_bytes: 0,
        checksum: Checksum::sha256(String::new()),
        pauses: Vec::new(),
        legs: call
            .legs
            .iter()
            .enumerate()
            .map(|(i, l)| LegInfo {
                leg_id: l.id.clone(),
                role: l.role,
                label: l.label.clone(),
                channel: o.inputs.iter().find(|m| m.track == i).map(|m| m.channel),
                codecs: Vec::new(),
                source: None,
                stats: Default::default(),
                dtmf: Vec::new(),
            })
            .collect(),
        recovered: false,
        owner: o.owner.clone(),
        call_flow_id: None,
        announcement: o.announcement.clone(),
        encryption: None,
        siprec: call.siprec.clone(),
    }
}

impl Engine {
    /// The notices a recording request asks for, with their audio at the
    /// call's media rate, and what the sidecar and `recording.announced`
    /// say about them. A prompt that cannot be had refuses the request.
    fn notices(
        &self,
        r: &RecordingRequest,
        rate: u32,
    ) -> Result<(Vec<Notice>, Option<AnnouncementInfo>), EngineError> {
        let reminder = match r.reminder_interval_s.unwrap_or(0) {
            0 => None,
            s if (5..=3600).contains(&s) => Some(s),
            s => {
                return Err(EngineError::InvalidRequest(format!(
                    "reminder_interval_s: {s} is outside 5-3600 (0 = no reminder)"
                )));
            }
        };
        let announce = r.announce.unwrap_or(r.announcement.is_some());
        if !announce && reminder.is_none() {
            if r.announce_to.is_some() {
                return Err(EngineError::InvalidRequest(
                    "announce_to: only with announce, announcement or reminder_interval_s".into(),
                ));
            }
            return Ok((Vec::new(), None));
        }
        let to = r
            .announce_to
            .clone()
            .unwrap_or_else(|| vec![AnnounceTarget::Recording]);
        if to.is_empty() {
            return Err(EngineError::InvalidRequest(
                "announce_to: name recording, parties or both".into(),
            ));
        }
        let into_recording = to.contains(&AnnounceTarget::Recording);
        let to_parties = to.contains(&AnnounceTarget::Parties);
        let mut seed = [0u8; 4];
        crate::ids::fill_random(&mut seed);
        let notice = |audio, delay, every| Notice {
            audio,
            delay,
            every,
            into_recording,
            to_parties,
            ssrc_seed: u32::from_be_bytes(seed),
        };
        let mut notices = Vec::new();
        let mut info = None;
        if announce {
            let name = r
                .announcement
                .clone()
                .unwrap_or_else(|| self.prompts.default_prompt().to_owned());
            if name.trim().is_empty() {
                return Err(EngineError::InvalidRequest(
                    "announcement: empty; name a prompt or give the text".into(),
                ));
            }
            let (kind, audio) = self
                .prompts
                .audio(&name, rate)
                .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
            info = Some(AnnouncementInfo {
                source: kind.as_str().to_owned(),
                prompt: name,
                to: to
                    .iter()
                    .map(|t| match t {
                        AnnounceTarget::Recording => "recording",
                        AnnounceTarget::Parties => "parties",
                    })
                    .map(str::to_owned)
                    .collect(),
                duration_ms: audio.len() as u64 * 1000 / u64::from(rate.max(1)),
                reminder_interval_s: reminder,
            });
            notices.push(notice(audio, Duration::ZERO, None));
        }
        if let Some(every) = reminder {
            // The first reminder comes one interval in: the notice (or
            // nothing) marks the start.
            let every = Duration::from_secs(u64::from(every));
            notices.push(notice(self.prompts.reminder(rate), every, Some(every)));
        }
        Ok((notices, info))
    }
}
