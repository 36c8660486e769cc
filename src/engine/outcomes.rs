//! What comes back from the media workers and the file writers: a
//! recording finished, discarded or failed, and its file finalized (or
//! not); each ends the recording's state machine, the catalog row and its
//! events.

use std::sync::atomic::Ordering;

use crate::core::call::Failure;
use crate::events::{Completed, DiscardReason, Event, StopReason};
use crate::io::worker::{WorkerCmd, WorkerReport};
use crate::io::writer::SinkReport;
use crate::recording::{Checksum, RecordingInfo, RecordingStatus};
use crate::timefmt::{rfc3339, unix_now};

use super::access::scoped_key;
use super::state::Transition;
use super::{Engine, lock};

impl Engine {
    pub fn on_worker_report(&self, report: WorkerReport) {
        match report {
            WorkerReport::Processing { id: key } => {
                let mut reg = lock(&self.registry);
                if let Some(r) = reg.recordings.get_mut(&key)
                    && let Some(processing) = r.state.after(Transition::WorkerDone)
                {
                    r.state = processing;
                    self.note(
                        "status",
                        self.catalog.set_status(
                            r.tenant.as_deref(),
                            &r.id,
                            RecordingStatus::Processing,
                            &rfc3339(unix_now()),
                            None,
                            None,
                        ),
                    );
                }
            }
            WorkerReport::CallLost { call } => {
                let key = lock(&self.registry)
                    .calls
                    .values()
                    .find(|c| c.num == call && c.ended_at.is_none())
                    .map(|c| c.key.clone());
                if let Some(key) = key {
                    self.end_call_inner(&key, StopReason::InternalError);
                }
            }
            WorkerReport::Failed {
                id,
                reason,
                message,
            } => self.fail_recording(&id, reason, &message),
            WorkerReport::Discarded {
                id: key,
                duration_ms,
            } => {
                let (call_id, id, tenant) = {
                    let mut reg = lock(&self.registry);
                    let Some(r) = reg.recordings.get_mut(&key) else {
                        return;
                    };
                    r.state = r.state.after(Transition::TooShort).unwrap_or(r.state);
                    (r.call_id.clone(), r.id.clone(), r.tenant.clone())
                };
                self.note(
                    "status",
                    self.catalog.set_status(
                        tenant.as_deref(),
                        &id,
                        RecordingStatus::Discarded,
                        &rfc3339(unix_now()),
                        Some("min_duration"),
                        None,
                    ),
                );
                self.emit(Event::RecordingDiscarded {
                    recording_id: id.clone(),
                    call_id: call_id.clone(),
                    customer_id: tenant.clone(),
                    reason: DiscardReason::MinDuration,
                    duration_ms,
                    min_duration_s: self.cfg.recording.min_duration_s,
                });
            }
        }
    }

    pub(super) fn fail_recording(&self, key: &str, failure: Failure, message: &str) {
        let reason = failure.reason();
        let (call_id, num, was_active, id, tenant) = {
            let mut reg = lock(&self.registry);
            let Some(r) = reg.recordings.get_mut(key) else {
                return;
            };
            let Some(failed) = r.state.after(Transition::Fail) else {
                return;
            };
            let was_active = r.state.active();
            r.state = failed;
            r.failure = Some(failure);
            (
                r.call_id.clone(),
                r.call_num,
                was_active,
                r.id.clone(),
                r.tenant.clone(),
            )
        };
        if was_active {
            self.send(
                num,
                WorkerCmd::Abort {
                    call: num,
                    id: key.into(),
                },
            );
        }
        self.note(
            "status",
            self.catalog.set_status(
                tenant.as_deref(),
                &id,
                RecordingStatus::Failed,
                &rfc3339(unix_now()),
                Some(reason),
                None,
            ),
        );
        if failure == Failure::NoMedia {
            tracing::warn!(recording = key, reason, message, "recording failed");
        } else {
            tracing::error!(recording = key, reason, message, "recording failed");
        }
        self.emit(Event::RecordingFailed {
            recording_id: id.clone(),
            call_id: call_id.clone(),
            customer_id: tenant.clone(),
            reason: failure,
            message: message.to_owned(),
        });
    }

    pub fn on_sink_report(&self, report: SinkReport) {
        match report {
            SinkReport::Finalized {
                id: key,
                file,
                info,
            } => {
                let (call_id, id, tenant) = {
                    let mut reg = lock(&self.registry);
                    let Some(r) = reg.recordings.get_mut(&key) else {
                        return;
                    };
                    r.state = r.state.after(Transition::FileFinal).unwrap_or(r.state);
                    r.shared
                        .duration_ms
                        .store(info.duration_ms, Ordering::Relaxed);
                    if let Some(stopped) = r.stopped_mono {
                        let ms = self.clock.now().saturating_sub(stopped).as_secs_f64() * 1000.0;
                        lock(&self.finalize_ms).observe(ms);
                    }
                    self.bytes_finalized.fetch_add(file.size, Ordering::Relaxed);
                    r.info = Some(info.clone());
                    (r.call_id.clone(), r.id.clone(), r.tenant.clone())
                };
                self.catalog_completed(tenant.as_deref(), &id, &file.path, &info);
                self.emit(Event::RecordingCompleted(Box::new(Completed {
                    download_url: format!("/v1/recordings/{id}/download"),
                    recording_id: id.clone(),
                    call_id: call_id.clone(),
                    customer_id: tenant.clone(),
                    format: info.format.extension().to_owned(),
                    content_type: info.content_type.clone(),
                    duration_ms: info.duration_ms,
                    duration_seconds: info.duration_ms as f64 / 1000.0,
                    started_at: info.started_at.clone(),
                    completed_at: rfc3339(unix_now()),
                    file_size_bytes: file.size,
                    checksum: Checksum::sha256(file.sha256.clone()),
                    path: file.path.to_string_lossy().into_owned(),
                    pauses: info.pauses.clone(),
                    channels: info.channels.as_str().to_owned(),
                    sample_rate: info.sample_rate,
                    recovered: false,
                })));
            }
            SinkReport::Failed { id, error } => self.fail_recording(&id, Failure::Storage, &error),
            SinkReport::Discarded { .. } => {}
        }
    }

    /// Writes a finished recording's full row.
    pub(super) fn catalog_completed(
        &self,
        tenant: Option<&str>,
        id: &str,
        path: &std::path::Path,
        info: &RecordingInfo,
    ) {
        let now = unix_now();
        let Ok(Some(mut row)) = self.catalog.get(tenant, id) else {
            tracing::error!(
                recording = %scoped_key(tenant, id),
                "completed recording missing from the catalog"
            );
            return;
        };
        row.status = RecordingStatus::Completed;
        row.path = Some(path.to_string_lossy().into_owned());
        row.duration_ms = info.duration_ms;
        row.file_size_bytes = Some(info.file_size_bytes);
        row.checksum = Some(info.checksum.value.clone());
        row.stopped_at = Some(info.stopped_at.clone());
        row.completed_at = Some(rfc3339(now));
        row.completed_ms = Some(now.as_millis() as i64);
        row.updated_at = rfc3339(now);
        row.recovered = info.recovered;
        row.info_json = serde_json::to_string(info).ok();
        row.encryption = info.encryption.clone();
        // The recording is finished: a customer-held data key is the
        // customer's alone from now on.
        row.recovery_key = None;
        self.note("completed", self.catalog.put_recording(&row));
        self.queue_upload(tenant, id, path, info.file_size_bytes, now);
    }

    /// With object storage: queues the finished file's upload and wakes
    /// the uploader.
    fn queue_upload(
        &self,
        tenant: Option<&str>,
        id: &str,
        path: &std::path::Path,
        size: u64,
        now: std::time::Duration,
    ) {
        let Some((objects, kick)) = self.objects.get() else {
            return;
        };
        let key = objects.key_for(&self.storage, path);
        self.note(
            "upload queued",
            self.catalog.queue_upload(
                tenant,
                id,
                &key,
                &path.to_string_lossy(),
                size,
                now.as_millis() as i64,
            ),
        );
        kick.notify_one();
    }
}
