//! Empties this node's upload queue (the catalog's `uploads`): each
//! finished recording's file and sidecar go to the object store; once the
//! store holds the whole file the row is `uploaded`, the local copy is
//! removed and `recording.uploaded` announced. A failed upload is retried
//! with backoff (1 s doubling to 5 min) for as long as it takes, across
//! restarts. A recording deleted before its upload is dropped from the
//! queue and its local files removed. Runs on its own thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::Objects;
use crate::catalog::Catalog;
use crate::catalog::uploads::{UploadRow, UploadState};
use crate::events::{Event, EventBus};
use crate::timefmt::{rfc3339, unix_now};

/// Uploads in flight at once.
const PARALLEL_UPLOADS: usize = 8;

/// Counters for `/metrics` and `/healthz`.
#[derive(Debug, Default)]
pub struct UploadStats {
    pub uploaded: AtomicU64,
    pub failures: AtomicU64,
    /// Pending uploads of this node, as of the last round.
    pub backlog: AtomicU64,
    /// Sum of finalize-to-durable latencies (ms) of the uploads counted.
    pub latency_ms_sum: AtomicU64,
}

/// The running uploader.
pub struct Uploader {
    kick: Arc<Notify>,
    stop: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<UploadStats>,
}

/// What the uploader works with.
struct Ctx {
    objects: Arc<Objects>,
    catalog: Arc<Catalog>,
    bus: Arc<EventBus>,
    stats: Arc<UploadStats>,
}

impl Uploader {
    /// Queues what was finished but never queued (crash recovery, or
    /// object storage newly turned on), then starts the thread.
    pub fn start(
        objects: Arc<Objects>,
        catalog: Arc<Catalog>,
        bus: Arc<EventBus>,
        storage: PathBuf,
    ) -> std::io::Result<Self> {
        match catalog.unqueued_uploads() {
            Ok(rows) => {
                let now = unix_now().as_millis() as i64;
                for (customer, id, path, size) in rows {
                    let key = objects.key_for(&storage, Path::new(&path));
                    if let Err(e) =
                        catalog.queue_upload(customer.as_deref(), &id, &key, &path, size, now)
                    {
                        tracing::error!(recording = %id, error = %e, "could not queue an upload");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "could not look for recordings to upload"),
        }
        let kick = Arc::new(Notify::new());
        let stop = Arc::new(Notify::new());
        let stats = Arc::new(UploadStats::default());
        let ctx = Ctx {
            objects,
            catalog,
            bus,
            stats: stats.clone(),
        };
        let (k, s) = (kick.clone(), stop.clone());
        let thread = crate::events::spawn_on_own_runtime(
            "recengine-upload",
            "object-store uploader",
            move || run(ctx, k, s),
        )?;
        Ok(Self {
            kick,
            stop,
            thread: Some(thread),
            stats,
        })
    }

    /// Something was queued: look now rather than at the next round.
    pub fn kick(&self) -> Arc<Notify> {
        self.kick.clone()
    }

    /// Stops after the upload in flight (the rest waits in the queue).
    pub fn shutdown(mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The catalog, off this thread's runtime.
async fn catalog<T: Send + 'static>(
    c: &Arc<Catalog>,
    f: impl FnOnce(&Catalog) -> Result<T, crate::catalog::CatalogError> + Send + 'static,
) -> Result<T, crate::catalog::CatalogError> {
    let c = c.clone();
    crate::offload::spawn_blocking(move || f(&c))
        .await
        .unwrap_or_else(|e| Err(crate::catalog::CatalogError::Invalid(e.to_string())))
}

async fn run(ctx: Ctx, kick: Arc<Notify>, stop: Arc<Notify>) {
    loop {
        let now = unix_now().as_millis() as i64;
        let due = catalog(&ctx.catalog, move |c| {
            c.due_uploads(now, 2 * PARALLEL_UPLOADS as u32)
        })
        .await;
        let backlog = catalog(&ctx.catalog, |c| c.upload_backlog()).await;
        if let Ok(n) = backlog {
            ctx.stats.backlog.store(n, Ordering::Relaxed);
        }
        let due = match due {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "the upload queue cannot be read; retrying");
                Vec::new()
            }
        };
        if due.is_empty() {
            let next = catalog(&ctx.catalog, |c| c.next_upload_due_ms())
                .await
                .ok()
                .flatten();
            let wait = next.map_or(Duration::from_secs(1), |at| {
                Duration::from_millis((at - now).clamp(10, 1000) as u64)
            });
            tokio::select! {
                () = stop.notified() => return,
                () = kick.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        // A few at once: when many calls end together (a shift change),
        // one slow object does not hold up the rest.
        let round = futures_util::StreamExt::for_each_concurrent(
            futures_util::stream::iter(due),
            PARALLEL_UPLOADS,
            |u| upload_one(&ctx, u),
        );
        tokio::select! {
            () = stop.notified() => return,
            () = round => {}
        }
    }
}

fn remove_local(local: &Path) {
    for f in [local.to_path_buf(), local.with_extension("json")] {
        if let Err(e) = std::fs::remove_file(&f)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(file = %f.display(), error = %e, "could not remove a local copy");
        }
    }
}

async fn upload_one(ctx: &Ctx, u: UploadRow) {
    let customer = u.customer_id.clone();
    let id = u.recording_id.clone();
    let local = PathBuf::from(&u.local_path);
    let (c2, i2) = (customer.clone(), id.clone());
    let row = match catalog(&ctx.catalog, move |c| c.get(c2.as_deref(), &i2)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(recording = %id, error = %e, "upload: catalog read failed; retrying");
            return;
        }
    };
    let Some(row) = row.filter(|r| r.deleted_at.is_none()) else {
        // Deleted before it was uploaded: nothing to keep.
        remove_local(&local);
        let (c2, i2) = (customer.clone(), id.clone());
        let now = unix_now().as_millis() as i64;
        let _ = catalog(&ctx.catalog, move |c| {
            c.finish_upload(c2.as_deref(), &i2, UploadState::Dropped, now)
        })
        .await;
        return;
    };
    let sidecar = local.with_extension("json");
    let sidecar_key = Objects::sidecar_key(&u.object_key);
    let result = async {
        let size = ctx.objects.upload_file(&local, &u.object_key).await?;
        if sidecar.exists() {
            ctx.objects.upload_file(&sidecar, &sidecar_key).await?;
        }
        Ok::<u64, super::ObjectsError>(size)
    }
    .await;
    let now = unix_now().as_millis() as i64;
    match result {
        Ok(size) => {
            let (c2, i2) = (customer.clone(), id.clone());
            let done = catalog(&ctx.catalog, move |c| {
                c.finish_upload(c2.as_deref(), &i2, UploadState::Uploaded, now)
            })
            .await;
            match done {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    // Uploaded, not recorded: the next round uploads it
                    // again (the same bytes to the same key).
                    tracing::error!(recording = %id, error = %e, "upload done but not recorded; retrying");
                    return;
                }
            }
            remove_local(&local);
            let latency = (now - u.queued_ms).max(0) as u64;
            ctx.stats.uploaded.fetch_add(1, Ordering::Relaxed);
            ctx.stats
                .latency_ms_sum
                .fetch_add(latency, Ordering::Relaxed);
            tracing::info!(recording = %id, key = %u.object_key, size, latency_ms = latency, "recording uploaded");
            let _ = ctx.bus.announce(Event::RecordingUploaded {
                recording_id: id,
                call_id: row.call_id,
                customer_id: customer,
                bucket: ctx.objects.bucket().to_owned(),
                object_key: u.object_key,
                size_bytes: size,
                uploaded_at: rfc3339(Duration::from_millis(now.max(0) as u64)),
                latency_ms: latency,
            });
        }
        Err(e) => {
            ctx.stats.failures.fetch_add(1, Ordering::Relaxed);
            let backoff = Duration::from_secs(1)
                .saturating_mul(1 << u.attempts.min(9))
                .min(Duration::from_secs(300));
            let retry_at = now + backoff.as_millis() as i64;
            tracing::warn!(recording = %id, key = %u.object_key, attempt = u.attempts + 1,
                retry_in = ?backoff, error = %e, "upload failed; the local copy stays and it is retried");
            let (c2, i2, msg) = (customer, id, e.to_string());
            let _ = catalog(&ctx.catalog, move |c| {
                c.upload_failed(c2.as_deref(), &i2, &msg, retry_at)
            })
            .await;
        }
    }
}
