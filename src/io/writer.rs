//! The writer pool: every file write of every recording happens on a small
//! pool of threads, never on a media worker.
//!
//! Each recording has a [`SinkHandle`] with its own queue. A worker appends
//! messages (bytes, flush, finalize) and returns at once; the first message
//! into an idle queue schedules it on the pool, and one writer thread at a
//! time drains it, so a recording's writes stay in order. A disk that stalls
//! on one recording holds one writer thread; the other threads keep the
//! other recordings moving. A queue that grows beyond `max_queued_bytes`
//! (the disk is not keeping up) makes [`SinkHandle::send`] refuse, and the
//! worker fails that recording with `storage_error` instead of buffering
//! without bound. A write error fails the recording the same way and keeps
//! the partial `.part` file.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::encryption::DataKey;
use crate::io::FileError;
use crate::io::sink::{FinalFile, RecordingFile, sidecar_json};
use crate::recording::{Checksum, RecordingInfo};

/// A message for a recording's file.
#[derive(Debug)]
pub enum SinkMsg {
    /// Open `<path>.part`.
    Create {
        path: PathBuf,
        flush_interval: Duration,
        /// Encrypt the file under this data key.
        key: Option<DataKey>,
    },
    Bytes(Vec<u8>),
    /// Hand buffered bytes to the OS, rewriting the header first.
    Flush {
        header: Option<Vec<u8>>,
    },
    /// Finish the file and write the sidecar; `info` is completed with the
    /// file's size and checksum.
    Finalize {
        header: Option<Vec<u8>>,
        sidecar: PathBuf,
        info: Box<RecordingInfo>,
    },
    /// Remove the part file (a recording discarded before it had content).
    Discard,
}

/// What the pool reports back, once per recording.
#[derive(Debug)]
pub enum SinkReport {
    Finalized {
        id: String,
        file: FinalFile,
        info: Box<RecordingInfo>,
    },
    Failed {
        id: String,
        error: String,
    },
    Discarded {
        id: String,
    },
}

#[derive(Default)]
struct QueueState {
    msgs: VecDeque<SinkMsg>,
    queued_bytes: usize,
    scheduled: bool,
    file: Option<RecordingFile>,
}

struct SinkQueue {
    id: String,
    state: Mutex<QueueState>,
    failed: AtomicBool,
    max_queued: usize,
}

/// A worker's end of one recording's queue.
#[derive(Clone)]
pub struct SinkHandle {
    queue: Arc<SinkQueue>,
    pool: Sender<Arc<SinkQueue>>,
}

/// Why a message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkRefused {
    #[error("the disk is not keeping up: {0} bytes are waiting to be written")]
    Backlog(usize),
    #[error("the recording's file has already failed")]
    Failed,
}

impl SinkHandle {
    /// Queues a message without blocking.
    pub fn send(&self, msg: SinkMsg) -> Result<(), SinkRefused> {
        if self.queue.failed.load(Ordering::Acquire) {
            return Err(SinkRefused::Failed);
        }
        let size = match &msg {
            SinkMsg::Bytes(b) => b.len(),
            _ => 0,
        };
        let schedule = {
            let mut st = self.queue.state.lock().unwrap_or_else(|e| e.into_inner());
            if size > 0 && st.queued_bytes + size > self.queue.max_queued {
                return Err(SinkRefused::Backlog(st.queued_bytes));
            }
            st.queued_bytes += size;
            st.msgs.push_back(msg);
            !std::mem::replace(&mut st.scheduled, true)
        };
        if schedule {
            let _ = self.pool.send(self.queue.clone());
        }
        Ok(())
    }

    /// True once a write has failed (the pool has reported it).
    pub fn has_failed(&self) -> bool {
        self.queue.failed.load(Ordering::Acquire)
    }
}

/// The pool of writer threads.
pub struct WriterPool {
    jobs: Sender<Arc<SinkQueue>>,
    threads: Vec<JoinHandle<()>>,
    max_queued: usize,
}

impl WriterPool {
    /// Starts `threads` writer threads reporting to `reports`.
    pub fn start(threads: usize, max_queued: usize, reports: Sender<SinkReport>) -> Self {
        let (jobs, rx) = crossbeam_channel::unbounded::<Arc<SinkQueue>>();
        let threads = (0..threads.max(1))
            .map(|i| {
                let rx: Receiver<Arc<SinkQueue>> = rx.clone();
                let reports = reports.clone();
                std::thread::Builder::new()
                    .name(format!("recengine-writer-{i}"))
                    .spawn(move || {
                        while let Ok(q) = rx.recv() {
                            drain(&q, &reports);
                        }
                    })
                    .expect("spawn writer thread")
            })
            .collect();
        Self {
            jobs,
            threads,
            max_queued,
        }
    }

    /// A queue for a new recording.
    pub fn sink(&self, id: &str) -> SinkHandle {
        SinkHandle {
            queue: Arc::new(SinkQueue {
                id: id.to_owned(),
                state: Mutex::new(QueueState::default()),
                failed: AtomicBool::new(false),
                max_queued: self.max_queued,
            }),
            pool: self.jobs.clone(),
        }
    }

    /// Waits for every queued message to be written, then stops the threads.
    pub fn shutdown(self) {
        drop(self.jobs);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Drains one queue until it is empty (and unschedules it).
fn drain(q: &SinkQueue, reports: &Sender<SinkReport>) {
    loop {
        let (msgs, mut file) = {
            let mut st = q.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.msgs.is_empty() {
                st.scheduled = false;
                return;
            }
            st.queued_bytes = 0;
            (std::mem::take(&mut st.msgs), st.file.take())
        };
        for msg in msgs {
            if q.failed.load(Ordering::Acquire) {
                continue; // drop the rest; the partial file stays on disk
            }
            if let Err(e) = apply(q, msg, &mut file, reports) {
                let error = e.to_string();
                q.failed.store(true, Ordering::Release);
                if let Some(f) = file.as_mut() {
                    let _ = f.flush(None);
                }
                tracing::error!(recording = %q.id, %error, "recording file failed; partial file kept");
                let _ = reports.send(SinkReport::Failed {
                    id: q.id.clone(),
                    error,
                });
            }
        }
        q.state.lock().unwrap_or_else(|e| e.into_inner()).file = file;
    }
}

/// Why a recording's file could not be written.
#[derive(Debug, thiserror::Error)]
enum SinkError {
    /// A message for a file that was never created or is already final.
    #[error("no file open")]
    NoFile,
    #[error(transparent)]
    File(#[from] FileError),
}

fn apply(
    q: &SinkQueue,
    msg: SinkMsg,
    file: &mut Option<RecordingFile>,
    reports: &Sender<SinkReport>,
) -> Result<(), SinkError> {
    match msg {
        SinkMsg::Create {
            path,
            flush_interval,
            key,
        } => {
            let f = RecordingFile::create(&path, flush_interval, Duration::ZERO, key)
                .map_err(FileError::at("creating", &path))?;
            *file = Some(f);
        }
        SinkMsg::Bytes(bytes) => {
            let f = file.as_mut().ok_or(SinkError::NoFile)?;
            f.write_owned(bytes);
        }
        SinkMsg::Flush { header } => {
            let f = file.as_mut().ok_or(SinkError::NoFile)?;
            let part = f.part_path().to_path_buf();
            f.flush(header.as_deref())
                .map_err(FileError::at("writing", &part))?;
        }
        SinkMsg::Finalize {
            header,
            sidecar,
            mut info,
        } => {
            let f = file.take().ok_or(SinkError::NoFile)?;
            let part = f.part_path().to_path_buf();
            let finished = f
                .finish(header.as_deref())
                .map_err(FileError::at("finalizing", &part))?;
            let done = finished.file();
            info.file_size_bytes = done.size;
            info.checksum = Checksum::sha256(done.sha256.clone());
            if let (Some(enc), Some((sha, size))) = (info.encryption.as_mut(), &done.stored) {
                enc.stored_sha256 = Some(sha.clone());
                enc.stored_size_bytes = Some(*size);
            }
            let json = sidecar_json(info.as_ref()).map_err(FileError::at("writing", &sidecar))?;
            // The file and its sidecar go into place together, under one
            // directory fsync.
            let done = finished.place(Some((&sidecar, &json)))?;
            let _ = reports.send(SinkReport::Finalized {
                id: q.id.clone(),
                file: done,
                info,
            });
        }
        SinkMsg::Discard => {
            if let Some(f) = file.take() {
                let _ = std::fs::remove_file(f.part_path());
            }
            let _ = reports.send(SinkReport::Discarded { id: q.id.clone() });
        }
    }
    Ok(())
}
