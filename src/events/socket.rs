//! The event socket: a Unix stream socket serving the [`EventBus`] as NDJSON.
//! Every client is bounded: its first line is read up to [`MAX_HELLO`]
//! bytes, its replay a page at a time, a line it does not take within
//! `WRITE_TIMEOUT` drops it, and at most `MAX_CLIENTS` are served at
//! once (one more is told so and closed).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast::error::RecvError;

use super::EventBus;

/// How long a new client has to send `{"since_seq":N}`.
const HELLO_WAIT: Duration = Duration::from_millis(250);
/// The longest first line read from a client.
pub const MAX_HELLO: u64 = 1024;
/// Clients served at once.
pub const MAX_CLIENTS: u64 = 256;
/// Events replayed per read of the log.
const REPLAY_PAGE: usize = 256;
/// A client whose socket does not take a line for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds the socket: refuses a path another live process is serving,
/// replaces a stale socket file left by a crash, and sets `mode`.
pub fn bind(path: &Path, mode: u32) -> io::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use by another running process (is another recengine running?)",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("removing stale socket {}: {e}", path.display()),
            )
        })?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Accepts clients until the listener fails.
pub async fn serve(listener: UnixListener, bus: Arc<EventBus>, clients: Arc<AtomicU64>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let bus = bus.clone();
        let clients = clients.clone();
        if clients.fetch_add(1, Ordering::Relaxed) >= MAX_CLIENTS {
            clients.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(max = MAX_CLIENTS, "event socket full; refusing a client");
            tokio::spawn(async move {
                let mut stream = stream;
                let msg = format!(
                    "{{\"error\":{{\"code\":\"too_many_clients\",\"message\":\"the event socket serves {MAX_CLIENTS} clients at most\"}}}}\n"
                );
                let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(msg.as_bytes())).await;
            });
            continue;
        }
        tokio::spawn(async move {
            if let Err(e) = client(stream, bus).await {
                tracing::debug!(error = %e, "event socket client left");
            }
            clients.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn client(stream: UnixStream, bus: Arc<EventBus>) -> io::Result<()> {
    // Subscribe first so nothing emitted during the replay is missed.
    let mut live = bus.subscribe();
    let (read, mut write) = stream.into_split();
    // The first line is all a client sends; a longer one is cut (and is
    // then not valid JSON).
    let mut lines = BufReader::new(read.take(MAX_HELLO)).lines();
    let since = match tokio::time::timeout(HELLO_WAIT, lines.next_line()).await {
        Ok(Ok(Some(line))) => match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(v) => match v.get("since_seq").and_then(serde_json::Value::as_u64) {
                Some(n) => Some(n),
                None => {
                    let msg = r#"{"error":{"code":"invalid_request","message":"send {\"since_seq\":N} or nothing"}}"#;
                    write.write_all(format!("{msg}\n").as_bytes()).await?;
                    return Ok(());
                }
            },
            Err(_) => {
                let msg = r#"{"error":{"code":"invalid_json","message":"the first line must be {\"since_seq\":N}"}}"#;
                write.write_all(format!("{msg}\n").as_bytes()).await?;
                return Ok(());
            }
        },
        _ => None,
    };
    // Without since_seq: everything from the moment of connecting (the
    // subscription above buffers it). With it: the log after N, then live,
    // deduplicated by seq.
    let mut last = 0;
    if let Some(since) = since {
        last = since;
        loop {
            let reader = bus.clone();
            let page =
                crate::offload::spawn_blocking(move || reader.replay_page(last, REPLAY_PAGE))
                    .await
                    .map_err(io::Error::other)??;
            for e in &page {
                send(&mut write, &e.json).await?;
                last = e.seq;
            }
            if page.len() < REPLAY_PAGE {
                break;
            }
        }
    }
    loop {
        match live.recv().await {
            Ok(e) if e.seq <= last => {}
            Ok(e) => {
                send(&mut write, &e.json).await?;
                last = e.seq;
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "event socket client too slow; disconnecting it (it can resume with since_seq)"
                );
                return Ok(());
            }
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, line: &str) -> io::Result<()> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&buf)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client not reading",
        )),
    }
}
