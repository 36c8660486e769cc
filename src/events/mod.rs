//! Events: every state change gets a global, gap-free, increasing `seq`, is
//! appended to `<storage.dir>/events.log` (NDJSON, fsynced) before anyone
//! hears of it, and is then broadcast to the event socket's clients.
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
use std::sync::{Arc, Mutex};

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

struct LogState {
    file: File,
    next_seq: u64,
    /// Bytes in the log.
    len: u64,
    /// (seq, byte offset of its line) of every [`INDEX_EVERY`]th event, in
    /// order.
    index: Vec<(u64, u64)>,
}

/// See the module documentation.
pub struct EventBus {
    path: PathBuf,
    state: Mutex<LogState>,
    tx: broadcast::Sender<EventLine>,
}

impl EventBus {
    /// Opens (or creates) the log; numbering continues after its last event.
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
        let (tx, _) = broadcast::channel(4096);
        Ok(Self {
            path: path.to_path_buf(),
            state: Mutex::new(LogState {
                file,
                next_seq: last + 1,
                len,
                index,
            }),
            tx,
        })
    }

    /// Records and broadcasts an event; returns its `seq`. The line is on
    /// disk (fsynced) before it is broadcast.
    /// Logs and broadcasts an event; answers its `seq`.
    pub fn announce(&self, event: Event) -> io::Result<u64> {
        let (name, data) = event.into_parts();
        self.emit(&name, data)
    }

    pub fn emit(&self, event: &str, data: Value) -> io::Result<u64> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let seq = st.next_seq;
        let line = json!({"seq": seq, "event": event, "time": rfc3339(unix_now()), "data": data})
            .to_string();
        st.file.write_all(line.as_bytes())?;
        st.file.write_all(b"\n")?;
        st.file.sync_data()?;
        if seq % INDEX_EVERY == 1 {
            let at = st.len;
            st.index.push((seq, at));
        }
        st.len += line.len() as u64 + 1;
        st.next_seq += 1;
        // Broadcast under the lock so subscribers see seq order.
        let _ = self.tx.send(EventLine {
            seq,
            event: Arc::from(event),
            json: Arc::from(line),
        });
        Ok(seq)
    }

    /// The last `seq` issued (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_seq
            - 1
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EventLine> {
        self.tx.subscribe()
    }

    /// Every logged event with `seq > since`, in order.
    pub fn replay(&self, since: u64) -> io::Result<Vec<EventLine>> {
        self.replay_page(since, usize::MAX)
    }

    /// At most `max` logged events with `seq > since`, in order; read from
    /// the nearest indexed event at or before `since + 1`.
    pub fn replay_page(&self, since: u64, max: usize) -> io::Result<Vec<EventLine>> {
        let start = {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let i = st.index.partition_point(|&(seq, _)| seq <= since + 1);
            i.checked_sub(1).map_or(0, |i| st.index[i].1)
        };
        let mut f = File::open(&self.path)?;
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
            if let Some(seq) = v.get("seq").and_then(Value::as_u64)
                && seq > since
            {
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

    #[test]
    fn numbering_survives_a_reopen_and_replay_is_exact() {
        let dir = std::env::temp_dir().join(format!("recengine-events-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
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
        let seqs: Vec<u64> = bus.replay(1).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Pages start at the index entry before them and hold at most `max`;
    /// the index built when a log is opened agrees with the one kept while
    /// writing it.
    #[test]
    fn replay_pages_through_the_index() {
        let dir =
            std::env::temp_dir().join(format!("recengine-events-index-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.log");
        let n = 3 * INDEX_EVERY + 17;
        {
            let bus = EventBus::open(&path).unwrap();
            for i in 0..n {
                bus.emit("call.created", json!({"call_id": format!("c{i}")}))
                    .unwrap();
            }
            check_pages(&bus, n);
        }
        let bus = EventBus::open(&path).unwrap();
        assert_eq!(bus.state.lock().unwrap().index.len(), 4);
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
