//! Recorded files on disk: the free-space and quota check before a
//! recording starts, the retention sweep, DELETE, and the catalogued rows
//! downloads read.

use std::time::Duration;

use crate::catalog::RecordingRow;
use crate::events::{DeleteReason, Event};
use crate::timefmt::{rfc3339, unix_now};

use super::access::{IdKind, Principal, resolve};
use super::{Engine, EngineError};

impl Engine {
    /// Refuses a new recording of `customer` over its `[[tenants]]`
    /// `max_bytes`, over `storage.max_bytes` or under
    /// `storage.min_free_bytes`; the message names the limit.
    pub(super) fn check_quota(&self, customer: Option<&str>) -> Result<(), EngineError> {
        if let Some(customer) = customer
            && let Some(tenant) = self.cfg.tenant(customer)
            && tenant.max_bytes > 0
        {
            let used = self
                .catalog
                .stored_bytes_of(Some(customer))
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            if used >= tenant.max_bytes {
                return Err(EngineError::QuotaExceeded(format!(
                    "tenant quota reached: {used} of {} bytes in use by {customer:?} ([[tenants]] max_bytes)",
                    tenant.max_bytes
                )));
            }
        }
        let s = &self.cfg.storage;
        if s.max_bytes > 0 {
            let used = self
                .catalog
                .stored_bytes()
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            if used >= s.max_bytes {
                return Err(EngineError::QuotaExceeded(format!(
                    "storage quota reached: {used} of {} bytes in use (storage.max_bytes)",
                    s.max_bytes
                )));
            }
        }
        if s.min_free_bytes > 0
            && let Some(free) = free_bytes(&self.storage)
            && free < s.min_free_bytes
        {
            return Err(EngineError::QuotaExceeded(format!(
                "only {free} bytes free on the storage filesystem (storage.min_free_bytes = {})",
                s.min_free_bytes
            )));
        }
        Ok(())
    }

    /// Deletes audit records older than `audit.retention_days` at `now_ms`
    /// (the chain's anchor moves with them).
    pub fn expire_audit(&self, now_ms: i64) {
        let days = self.cfg.audit.retention_days;
        if days == 0 {
            return;
        }
        let before = now_ms - i64::from(days) * 86_400_000;
        match self.catalog.expire_audit(before) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                "audit records past audit.retention_days deleted"
            ),
            Err(e) => tracing::error!(error = %e, "audit retention could not delete old records"),
        }
    }

    /// Deletes recordings past their retention at `now_ms` (Unix ms): file
    /// and sidecar go, the catalog keeps a tombstone, `recording.deleted`
    /// is announced. Returns how many were deleted.
    pub fn sweep_retention(&self, now_ms: i64) -> usize {
        let due = match self
            .catalog
            .expired(now_ms, self.cfg.storage.retention_days)
        {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "retention sweep could not query the catalog");
                return 0;
            }
        };
        let n = due.len();
        for r in due {
            self.remove_files(&r);
            let at = rfc3339(Duration::from_millis(now_ms.max(0) as u64));
            self.note(
                "tombstone",
                self.catalog
                    .mark_deleted(r.customer_id.as_deref(), &r.recording_id, &at),
            );
            self.emit(Event::RecordingDeleted {
                recording_id: r.recording_id.clone(),
                call_id: r.call_id.clone(),
                customer_id: r.customer_id.clone(),
                reason: DeleteReason::Retention,
            });
        }
        n
    }

    pub(super) fn remove_files(&self, r: &RecordingRow) {
        if let Some(objects) = self.objects() {
            self.remove_objects(objects, r);
        }
        if let Some(p) = &r.path {
            let p = std::path::Path::new(p);
            for f in [p.to_path_buf(), p.with_extension("json")] {
                if let Err(e) = std::fs::remove_file(&f)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::error!(file = %f.display(), error = %e, "could not delete recording file");
                }
            }
        }
    }

    /// Deletes a recording's objects, or drops its upload from the queue
    /// if it is not in the store yet (the node holding the file removes
    /// it then).
    fn remove_objects(&self, objects: &crate::objects::Objects, r: &RecordingRow) {
        use crate::catalog::uploads::UploadState;
        let customer = r.customer_id.as_deref();
        let upload = match self.catalog.upload_of(customer, &r.recording_id) {
            Ok(Some(u)) => u,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(recording = %r.recording_id, error = %e, "could not read the recording's upload");
                return;
            }
        };
        match upload.state {
            UploadState::Uploaded => {
                let sidecar = crate::objects::Objects::sidecar_key(&upload.object_key);
                for key in [upload.object_key.as_str(), sidecar.as_str()] {
                    if let Err(e) = objects.delete(key) {
                        tracing::error!(recording = %r.recording_id, key, error = %e, "could not delete an object");
                    }
                }
            }
            UploadState::Pending => {
                let now = unix_now().as_millis() as i64;
                self.note(
                    "upload dropped",
                    self.catalog
                        .finish_upload(customer, &r.recording_id, UploadState::Dropped, now)
                        .map(drop),
                );
            }
            UploadState::Dropped => {}
        }
    }

    /// The catalogued recording `who` means by `id` (see the module
    /// documentation for how an admin's id is resolved).
    pub fn catalogued(&self, who: &Principal, id: &str) -> Result<RecordingRow, EngineError> {
        let internal = |e: crate::catalog::CatalogError| EngineError::Internal(e.to_string());
        resolve(
            who,
            IdKind::Recording,
            id,
            self.catalog.get(who.scope(), id).map_err(internal)?,
            || self.catalog.recordings_with_id(id).map_err(internal),
            |r| r.customer_id.as_deref(),
        )
    }

    /// Deletes a finished recording's file and sidecar, keeping a tombstone.
    pub fn delete_recording(&self, who: &Principal, id: &str) -> Result<RecordingRow, EngineError> {
        let row = self.catalogued(who, id)?;
        if row.status.in_progress() {
            return Err(EngineError::RecordingBusy(id.into()));
        }
        if self.objects().is_none() {
            // Local storage: only the recorder holding the file can
            // delete it.
            self.file_is_here(&row)?;
        }
        let customer = row.customer_id.as_deref();
        if row.deleted_at.is_none() {
            self.remove_files(&row);
            self.note(
                "tombstone",
                self.catalog
                    .mark_deleted(customer, id, &rfc3339(unix_now())),
            );
            self.emit(Event::RecordingDeleted {
                recording_id: id.to_owned(),
                call_id: row.call_id.clone(),
                customer_id: customer.map(str::to_owned),
                reason: DeleteReason::Api,
            });
        }
        self.catalog
            .get(customer, id)
            .map_err(|e| EngineError::Internal(e.to_string()))?
            .ok_or_else(|| EngineError::RecordingNotFound(id.into()))
    }
}

/// Free bytes on the filesystem holding `path` (statvfs).
pub(super) fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is a plain C struct, valid when zeroed.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and outlives the call; statvfs writes
    // only into `st`, which we own.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}
