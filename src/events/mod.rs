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

pub mod socket;
pub mod webhooks;

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
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

struct LogState {
    file: File,
    next_seq: u64,
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
        let mut last = 0;
        if let Ok(f) = File::open(path) {
            for line in BufReader::new(f).lines() {
                if let Some(seq) = line.ok().as_deref().and_then(seq_of) {
                    last = last.max(seq);
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, _) = broadcast::channel(4096);
        Ok(Self {
            path: path.to_path_buf(),
            state: Mutex::new(LogState {
                file,
                next_seq: last + 1,
            }),
            tx,
        })
    }

    /// Records and broadcasts an event; returns its `seq`. The line is on
    /// disk (fsynced) before it is broadcast.
    pub fn emit(&self, event: &str, data: Value) -> io::Result<u64> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let seq = st.next_seq;
        let line = json!({"seq": seq, "event": event, "time": rfc3339(unix_now()), "data": data})
            .to_string();
        st.file.write_all(line.as_bytes())?;
        st.file.write_all(b"\n")?;
        st.file.sync_data()?;
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
        let f = File::open(&self.path)?;
        let mut out = Vec::new();
        for line in BufReader::new(f).lines() {
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
}
