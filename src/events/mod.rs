//! Events: every state change gets a global, gap-free, increasing `seq`, is
//! appended to `<storage.dir>/events.log` (NDJSON, fsynced) before anyone
//! hears of it, and is then broadcast to the event socket's clients.
//!
//! The fsync is a group commit. [`EventBus::emit`] appends the line and
//! returns; a syncer thread waits [`GROUP_COMMIT_WINDOW`] after the first
//! line it has not synced, makes everything appended by then durable with
//! one `fdatasync`, and only then broadcasts those events, in order. A call
//! makes five events; one `fdatasync` each (~50 µs of CPU and ~120 µs of
//! waiting, on the thread that emitted it) was 7.5 % of the daemon's CPU
//! on short calls (PERFORMANCE.md, session 16). Replays
//! and [`EventBus::last_seq`] see durable events only, so no one hears of
//! an event a crash could still take back.
//!
//! A client of the Unix socket may send `{"since_seq":N}` as its first line
//! (within 250 ms of connecting) to receive every event after `N` from the
//! log, then live ones without a gap or a repeat. Without it the client gets
//! events from the moment the server took the connection: a client that must
//! not miss anything sends `since_seq` (0 for everything). A client that cannot keep
//! up is disconnected rather than slowing the engine; it reconnects with the
//! last `seq` it saw.
//!
//! Replays read the log from a sparse in-memory index (the byte offset of
//! every [`INDEX_EVERY`]th event), a page at a time: a client asking for
//! the last few events of a long log reads only those, and no replay holds
//! more than a page in memory.

pub mod event;
pub mod nats;
pub mod socket;
pub mod webhooks;

pub use event::{Completed, DeleteReason, DiscardReason, Event, StopReason};

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::timefmt::{rfc3339, unix_now};

/// One delivered event: its sequence number and its JSON line.
#[derive(Debug, Clone)]
pub struct EventLine {
    pub seq: u64,
    /// The event's name (`recording.completed`, …).
    pub event: Arc<str>,
    pub json: Arc<str>,
}

/// One index entry per this many events.
pub const INDEX_EVERY: u64 = 256;

/// How long the syncer lets lines gather after the first unsynced one
/// before it syncs them all: the most an event's delivery is delayed for
/// the group commit.
pub const GROUP_COMMIT_WINDOW: Duration = Duration::from_millis(5);

/// After a failed `fdatasync`, the syncer tries again this much later.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

struct LogState {
    file: File,
    next_seq: u64,
    /// Bytes in the log.
    len: u64,
    /// (seq, byte offset of its line) of every [`INDEX_EVERY`]th event, in
    /// order.
    index: Vec<(u64, u64)>,
    /// Appended, not yet synced nor broadcast, in `seq` order.
    unsynced: Vec<EventLine>,
    /// The last `seq` on disk for certain and broadcast.
    durable_seq: u64,
    /// Dropping the bus: the syncer syncs what is left and stops.
    closing: bool,
}

/// The log and the broadcast, shared by the bus and its syncer thread.
struct Shared {
    path: PathBuf,
    state: Mutex<LogState>,
    /// Rung when the first unsynced line is appended, and at close.
    appended: Condvar,
    /// The log's file again, for the syncer's `fdatasync` outside the
    /// state lock (appends carry on meanwhile).
    sync_file: File,
    /// Held for the whole of one sync-and-broadcast, so batches go out in
    /// order whoever syncs them.
    syncing: Mutex<()>,
    tx: broadcast::Sender<EventLine>,
}

/// See the module documentation.
pub struct EventBus {
    shared: Arc<Shared>,
    syncer: Option<JoinHandle<()>>,
}

impl EventBus {
    /// Opens (or creates) the log; numbering continues after its last
    /// event. Starts the syncer thread.
    pub fn open(path: &Path) -> io::Result<Self> {
        let (mut last, mut len, mut index) = (0, 0u64, Vec::new());
        if let Ok(f) = File::open(path) {
            let mut reader = BufReader::new(f);
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader.read_line(&mut line)?;
                if n == 0 {
                    break;
                }
                if let Some(seq) = seq_of(line.trim_end())
                    && seq > last
                {
                    if seq % INDEX_EVERY == 1 {
                        index.push((seq, len));
                    }
                    last = seq;
                }
                len += n as u64;
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        // What an earlier run appended is durable from here on.
        file.sync_data()?;
        let sync_file = file.try_clone()?;
        let (tx, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            state: Mutex::new(LogState {
                file,
                next_seq: last + 1,
                len,
                index,
                unsynced: Vec::new(),
                durable_seq: last,
                closing: false,
            }),
            appended: Condvar::new(),
            sync_file,
            syncing: Mutex::new(()),
            tx,
        });
        let syncer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("recengine-events".into())
                .spawn(move || shared.sync_forever())?
        };
        Ok(Self {
            shared,
            syncer: Some(syncer),
        })
    }

    /// Logs and broadcasts an event; answers its `seq`.
    pub fn announce(&self, event: Event) -> io::Result<u64> {
        let (name, data) = event.into_parts();
        self.emit(&name, data)
    }

    /// Appends an event to the log and answers its `seq`. It is broadcast
    /// once synced, within [`GROUP_COMMIT_WINDOW`] and one `fdatasync`.
    pub fn emit(&self, event: &str, data: Value) -> io::Result<u64> {
        let mut st = self.shared.lock();
        let seq = st.next_seq;
        let mut line =
            json!({"seq": seq, "event": event, "time": rfc3339(unix_now()), "data": data})
                .to_string();
        line.push('\n');
        // One write: a replay reading meanwhile never sees half a line.
        st.file.write_all(line.as_bytes())?;
        if seq % INDEX_EVERY == 1 {
            let at = st.len;
            st.index.push((seq, at));
        }
        st.len += line.len() as u64;
        st.next_seq += 1;
        line.pop();
        st.unsynced.push(EventLine {
            seq,
            event: Arc::from(event),
            json: Arc::from(line),
        });
        let first = st.unsynced.len() == 1;
        drop(st);
        if first {
            self.shared.appended.notify_one();
        }
        Ok(seq)
    }

    /// Syncs and broadcasts everything appended so far, now, on this
    /// thread (at shutdown, before the webhook and NATS senders take their
    /// last look at the log).
    pub fn flush(&self) -> io::Result<()> {
        self.shared.sync_and_broadcast()
    }

    /// The last durable `seq` (0 if none): the newest event anyone can
    /// have heard of.
    pub fn last_seq(&self) -> u64 {
        self.shared.lock().durable_seq
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EventLine> {
        self.shared.tx.subscribe()
    }

    /// Every logged event with `seq > since`, in order.
    pub fn replay(&self, since: u64) -> io::Result<Vec<EventLine>> {
        self.replay_page(since, usize::MAX)
    }

    /// At most `max` durable events with `seq > since`, in order; read
    /// from the nearest indexed event at or before `since + 1`.
    pub fn replay_page(&self, since: u64, max: usize) -> io::Result<Vec<EventLine>> {
        let (start, durable) = {
            let st = self.shared.lock();
            let i = st.index.partition_point(|&(seq, _)| seq <= since + 1);
            (
                i.checked_sub(1).map_or(0, |i| st.index[i].1),
                st.durable_seq,
            )
        };
        let mut f = File::open(&self.shared.path)?;
        f.seek(SeekFrom::Start(start))?;
        let mut out = Vec::new();
        for line in BufReader::new(f).lines() {
            if out.len() >= max {
                break;
            }
            let line = line?;
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let Some(seq) = v.get("seq").and_then(Value::as_u64) else {
                continue;
            };
            if seq > durable {
                break;
            }
            if seq > since {
                let event = v.get("event").and_then(Value::as_str).unwrap_or_default();
                out.push(EventLine {
                    seq,
                    event: Arc::from(event),
                    json: Arc::from(line),
                });
            }
        }
        Ok(out)
    }
}

impl Drop for EventBus {
    /// Syncs and broadcasts what is left, then stops the syncer.
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.appended.notify_one();
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The syncer thread: waits for an unsynced line, lets others gather
    /// behind it for [`GROUP_COMMIT_WINDOW`], syncs and broadcasts them.
    fn sync_forever(&self) {
        loop {
            let closing = {
                let mut st = self.lock();
                while st.unsynced.is_empty() && !st.closing {
                    st = self.appended.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                if st.unsynced.is_empty() {
                    return;
                }
                st.closing
            };
            if !closing {
                std::thread::sleep(GROUP_COMMIT_WINDOW);
            }
            if let Err(e) = self.sync_and_broadcast() {
                let held = self.lock().unsynced.len();
                tracing::error!(error = %e, held, path = %self.path.display(),
                    "cannot sync the event log; its newest events are held back until it can");
                if closing {
                    return;
                }
                std::thread::sleep(RETRY_AFTER_FAILURE);
            }
        }
    }

    /// Makes every appended line durable with one `fdatasync`, then
    /// broadcasts them in order.
    fn sync_and_broadcast(&self) -> io::Result<()> {
        let _one_at_a_time = self.syncing.lock().unwrap_or_else(|e| e.into_inner());
        // Lines appended from here on wait for the next sync.
        let batch = std::mem::take(&mut self.lock().unsynced);
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.sync_file.sync_data() {
            let mut st = self.lock();
            let newer = std::mem::replace(&mut st.unsynced, batch);
            st.unsynced.extend(newer);
            return Err(e);
        }
        let mut st = self.lock();
        // Durable before broadcast: a subscriber that replays after this
        // point finds the batch in the log; one subscribed before hears it
        // live (and drops repeats by seq).
        st.durable_seq = batch.last().map_or(st.durable_seq, |e| e.seq);
        for e in batch {
            let _ = self.tx.send(e);
        }
        Ok(())
    }
}

fn seq_of(line: &str) -> Option<u64> {
    serde_json::from_str::<Value>(line)
        .ok()?
        .get("seq")?
        .as_u64()
}

/// Runs the future `work` makes on a thread of its own with a
/// current-thread runtime, so a slow or absent receiver (webhooks, NATS)
/// never touches the API's or the media's threads. `what` names it in the
/// log if the runtime cannot start.
pub(crate) fn spawn_on_own_runtime<F, W>(
    name: &str,
    what: &'static str,
    work: W,
) -> io::Result<std::thread::JoinHandle<()>>
where
    W: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(work()),
                Err(e) => tracing::error!(error = %e, what, "cannot start its runtime; events stay in the log"),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty directory of the system's temporary one, named for the
    /// test and this process.
    fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn numbering_survives_a_reopen_and_replay_is_exact() {
        let dir = fresh_dir("recengine-events");
        let path = dir.join("events.log");
        {
            let bus = EventBus::open(&path).unwrap();
            assert_eq!(
                bus.emit("call.created", json!({"call_id": "a"})).unwrap(),
                1
            );
            assert_eq!(bus.emit("call.ended", json!({"call_id": "a"})).unwrap(), 2);
        }
        let bus = EventBus::open(&path).unwrap();
        assert_eq!(bus.last_seq(), 2);
        assert_eq!(
            bus.emit("call.created", json!({"call_id": "b"})).unwrap(),
            3
        );
        bus.flush().unwrap();
        assert_eq!(bus.last_seq(), 3);
        let seqs: Vec<u64> = bus.replay(1).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The group commit: whatever thread emits, events are broadcast in
    /// `seq` order without a gap, and each is durable (replayable, counted
    /// by `last_seq`) by the time anyone hears of it.
    #[test]
    fn events_are_heard_in_order_and_only_once_durable() {
        let dir = fresh_dir("recengine-events-group");
        let bus = Arc::new(EventBus::open(&dir.join("events.log")).unwrap());
        let mut live = bus.subscribe();
        let emitters: Vec<_> = (0..3)
            .map(|t| {
                let bus = bus.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        bus.emit("call.created", json!({"call_id": format!("t{t}-{i}")}))
                            .unwrap();
                        if i % 10 == 0 {
                            std::thread::sleep(GROUP_COMMIT_WINDOW);
                        }
                    }
                })
            })
            .collect();
        for want in 1..=300 {
            let e = live.blocking_recv().unwrap();
            assert_eq!(e.seq, want);
            assert!(
                bus.last_seq() >= e.seq,
                "heard {} before it was durable",
                e.seq
            );
            let replayed = bus.replay_page(e.seq - 1, 1).unwrap();
            assert_eq!(replayed.first().map(|r| r.seq), Some(e.seq));
        }
        for t in emitters {
            t.join().unwrap();
        }
        drop(live);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Pages start at the index entry before them and hold at most `max`;
    /// the index built when a log is opened agrees with the one kept while
    /// writing it.
    #[test]
    fn replay_pages_through_the_index() {
        let dir = fresh_dir("recengine-events-index");
        let path = dir.join("events.log");
        let n = 3 * INDEX_EVERY + 17;
        {
            let bus = EventBus::open(&path).unwrap();
            for i in 0..n {
                bus.emit("call.created", json!({"call_id": format!("c{i}")}))
                    .unwrap();
            }
            bus.flush().unwrap();
            check_pages(&bus, n);
        }
        let bus = EventBus::open(&path).unwrap();
        assert_eq!(bus.shared.lock().index.len(), 4);
        check_pages(&bus, n);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn check_pages(bus: &EventBus, n: u64) {
        for since in [
            0,
            1,
            INDEX_EVERY - 1,
            INDEX_EVERY,
            INDEX_EVERY + 1,
            2 * INDEX_EVERY + 5,
            n - 1,
            n,
        ] {
            let page = bus.replay_page(since, 10).unwrap();
            let want: Vec<u64> = (since + 1..=n).take(10).collect();
            let got: Vec<u64> = page.iter().map(|e| e.seq).collect();
            assert_eq!(got, want, "since {since}");
            for e in &page {
                let v: Value = serde_json::from_str(&e.json).unwrap();
                assert_eq!(v["data"]["call_id"], format!("c{}", e.seq - 1));
            }
        }
    }
}
