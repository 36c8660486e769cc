//! `recengine run`: wires the daemon together and runs it until SIGTERM or
//! SIGINT, then shuts down gracefully (no new calls, every recording
//! finalized and announced, exit 0). SIGHUP reloads what can change
//! without a restart: API tokens and the log level.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

use crate::api::{self, ApiState, Tokens, token_hash};
use crate::config::{Config, LogFormat, TokenEntry};
use crate::engine::Engine;
use crate::error::Error;
use crate::events::EventBus;
use crate::events::socket;
use crate::events::webhooks::{WebhookStats, Webhooks};
use crate::io::clock::MonotonicClock;
use crate::io::legs::LegOpener;
use crate::io::worker::{WorkerConfig, WorkerPool};
use crate::io::writer::WriterPool;

type FilterHandle = reload::Handle<EnvFilter, tracing_subscriber::Registry>;

fn init_logging(cfg: &Config) -> FilterHandle {
    let filter = EnvFilter::try_new(&cfg.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match cfg.log.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    // Colours on a terminal only, not in journald or files.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    let _ = result;
    handle
}

/// Makes sure the storage directory exists and is writable.
fn check_storage(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::io(
            format!("storage.dir {} cannot be created", dir.display()),
            e,
        )
    })?;
    let probe = dir.join(".recengine-write-test");
    std::fs::write(&probe, b"ok")
        .map_err(|e| Error::io(format!("storage.dir {} is not writable", dir.display()), e))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// `n` random bytes as lower-case hex.
fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    crate::ids::fill_random(&mut bytes);
    crate::crypto::hex(&bytes)
}

/// Writes a secret to a file only its owner can read (mode 0600).
fn write_secret(path: &Path, secret: &str) -> Result<(), Error> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    writeln!(f, "{secret}").map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// With no token configured: a one-time admin token, written 0600 to
/// `<storage>/admin.token`.
fn one_time_token(dir: &Path) -> Result<TokenEntry, Error> {
    let token = random_hex(24);
    let path = dir.join("admin.token");
    write_secret(&path, &token)?;
    tracing::warn!(
        path = %path.display(),
        "no [[api.tokens]] configured: made a one-time admin token for this run (valid until restart)"
    );
    Ok(TokenEntry {
        name: "one-time admin".into(),
        sha256: token_hash(&token),
        customer_id: String::new(),
    })
}

/// The key signing download URLs: `<storage>/url.secret` (0600), made at
/// first start so URLs stay valid across restarts.
fn url_secret(dir: &Path) -> Result<Vec<u8>, Error> {
    let path = dir.join("url.secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if s.len() == 64 {
            return Ok(s.as_bytes().to_vec());
        }
    }
    let secret = random_hex(32);
    write_secret(&path, &secret)?;
    Ok(secret.into_bytes())
}

/// Sends a state line to systemd when run as a `Type=notify` service
/// (`$NOTIFY_SOCKET` set); does nothing otherwise.
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    // Never blocks: it runs on the async runtime, and a notify socket
    // nobody reads must not stall the daemon.
    let socket = match std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
    {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|a| socket.send_to_addr(state.as_bytes(), &a))
    } else {
        socket.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Runs the daemon; returns when it has shut down.
pub fn run(config_path: Option<PathBuf>) -> Result<(), Error> {
    // Recordings, sidecars, the catalog and the event log are nobody
    // else's business: files 0640, directories 0750 (group: the daemon's,
    // or the storage directory's if it is set-group-ID). The event socket
    // sets its own mode (events.socket_mode).
    // SAFETY: umask(2) only sets the process's file mode creation mask.
    unsafe {
        libc::umask(0o027);
    }
    let cfg = match &config_path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let log_handle = init_logging(&cfg);
    raise_open_file_limit();
    let cfg = Arc::new(cfg);
    let storage = PathBuf::from(&cfg.storage.dir);
    check_storage(&storage)?;
    let mut token_entries = cfg.api.tokens.clone();
    if token_entries.is_empty() {
        token_entries.push(one_time_token(&storage)?);
    }
    let tokens = Tokens::new(&token_entries);
    let events = Arc::new(EventBus::open(&storage.join("events.log")).map_err(|e| {
        Error::io(
            format!("opening {}", storage.join("events.log").display()),
            e,
        )
    })?);
    let catalog = Arc::new(
        crate::catalog::Catalog::open_configured(&cfg.catalog, &storage)
            .map_err(|e| Error::Invalid(e.to_string()))?,
    );
    tracing::info!(
        backend = ?cfg.catalog.backend,
        node_id = catalog.node_id(),
        schema_version = catalog.schema_version().unwrap_or(0),
        "catalog open"
    );
    // Before recovery emits anything: a catalog that never had webhooks
    // starts its outbox at the current end of the event log.
    catalog
        .init_webhook_cursor(events.last_seq())
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let keyring = Arc::new(
        crate::encryption::Keyring::load(&cfg.storage.encryption)
            .map_err(|e| Error::Invalid(e.to_string()))?,
    );
    crate::engine::encryption::check_keys(&keyring, &catalog)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    if let Some(id) = keyring.current_id() {
        tracing::info!(key = %id, keys = ?keyring.ids(), "encryption at rest is on: new recordings are sealed with AES-256-GCM");
    }
    let url_secret = url_secret(&storage)?;
    let recovered = crate::io::recovery::recover(&catalog, &events, &keyring);
    if !recovered.recovered.is_empty() || !recovered.failed.is_empty() {
        tracing::warn!(
            recovered = recovered.recovered.len(),
            failed = recovered.failed.len(),
            "startup recovery finished recordings cut short by a crash"
        );
    }
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads((cores / 2).max(1))
        .thread_name("recengine-io")
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the IO runtime", e))?;

    let clock = MonotonicClock::start();
    let (worker_tx, worker_rx) = crossbeam_channel::unbounded();
    let (sink_tx, sink_rx) = crossbeam_channel::unbounded();
    let threads = if cfg.workers.threads == 0 {
        cores
    } else {
        cfg.workers.threads as usize
    };
    let (receive, fallback) =
        crate::io::receive::choose(cfg.workers.receive_path).map_err(Error::Invalid)?;
    match fallback {
        None => tracing::info!(
            path = receive.name(),
            workers = threads,
            "media workers read RTP with {}",
            receive.name()
        ),
        Some(why) => tracing::warn!(
            path = receive.name(),
            workers = threads,
            reason = %why,
            "media workers read RTP with recvmmsg: io_uring is not usable"
        ),
    }
    let workers = WorkerPool::start(
        threads,
        WorkerConfig {
            tick: Duration::from_millis(u64::from(cfg.workers.tick_ms)),
            playout_delay: Duration::from_millis(u64::from(cfg.jitter.playout_delay_ms)),
            receive,
        },
        clock,
        worker_tx,
    );
    let writers = WriterPool::start(
        cfg.storage.writer_threads as usize,
        cfg.storage.max_queued_bytes as usize,
        sink_tx,
    );
    let legs = LegOpener::new(&cfg.rtp, runtime.handle().clone()).map_err(Error::Invalid)?;
    let engine = Arc::new(Engine::new(
        cfg.clone(),
        clock,
        legs,
        workers,
        writers,
        events.clone(),
        catalog.clone(),
        keyring,
    ));

    // Outcomes from workers and writers back into the engine.
    let pump = {
        let engine = engine.clone();
        std::thread::Builder::new()
            .name("recengine-reports".into())
            .spawn(move || {
                loop {
                    crossbeam_channel::select! {
                        recv(worker_rx) -> r => match r { Ok(r) => engine.on_worker_report(r), Err(_) => break },
                        recv(sink_rx) -> r => match r { Ok(r) => engine.on_sink_report(r), Err(_) => break },
                    }
                }
                // Drain what is left after one side closed.
                for r in sink_rx.try_iter() {
                    engine.on_sink_report(r);
                }
            })
            .map_err(|e| Error::io("starting the report thread", e))?
    };

    let siprec = crate::siprec::server::SiprecServer::start(
        &cfg.siprec,
        crate::siprec::sessions::sources(&cfg.siprec),
        engine.clone(),
    )
    .map_err(|e| Error::io("starting the SIPREC listeners ([siprec])", e))?;
    if let Some(s) = &siprec {
        // Where clients (and tests, with port 0) find the listeners.
        for (name, addr) in [("siprec.udp.addr", s.udp), ("siprec.tcp.addr", s.tcp)] {
            if let Some(a) = addr {
                let _ = std::fs::write(storage.join(name), a.to_string());
            }
        }
    }
    let uploader = match cfg.storage.backend {
        crate::config::StorageBackend::Local => None,
        crate::config::StorageBackend::S3 => {
            let objects = Arc::new(
                crate::objects::Objects::new(&cfg.storage.s3)
                    .map_err(|e| Error::Invalid(e.to_string()))?,
            );
            let up = crate::objects::uploader::Uploader::start(
                objects.clone(),
                catalog.clone(),
                events.clone(),
                storage.clone(),
            )
            .map_err(|e| Error::io("starting the object-store uploader", e))?;
            engine.attach_objects(objects, up.kick());
            tracing::info!(bucket = %cfg.storage.s3.bucket, endpoint = %cfg.storage.s3.endpoint,
                "finished recordings go to the object store");
            Some(up)
        }
    };
    let nats = crate::events::nats::NatsPublisher::start(
        &cfg.events.nats,
        events.clone(),
        catalog.clone(),
    )
    .map_err(|e| Error::io("starting the NATS publisher ([events.nats])", e))?;
    let webhooks = Webhooks::start(cfg.webhooks.clone(), events.clone(), catalog)
        .map_err(|e| Error::io("starting the webhook thread", e))?;
    let result = runtime.block_on(serve(
        cfg.clone(),
        config_path,
        engine.clone(),
        tokens,
        log_handle,
        url_secret,
        ServiceStats {
            webhooks: webhooks.stats.clone(),
            siprec: siprec.as_ref().map(|s| s.stats()),
            nats: nats.as_ref().map(|n| n.stats.clone()),
            uploads: uploader.as_ref().map(|u| u.stats.clone()),
        },
    ));
    if let Some(s) = siprec {
        s.stop();
    }
    engine.finish_shutdown();
    let _ = pump.join();
    // After the last events (recordings finalized at shutdown) are logged,
    // and synced, so the webhook and NATS senders hear them.
    if let Err(e) = events.flush() {
        tracing::error!(error = %e, "cannot sync the event log at shutdown");
    }
    webhooks.shutdown();
    if let Some(n) = nats {
        n.shutdown();
    }
    if let Some(u) = uploader {
        u.shutdown();
    }
    tracing::info!(last_event = events.last_seq(), "recengine stopped");
    result
}

/// Counters of the services beside the engine, for /metrics.
struct ServiceStats {
    webhooks: Arc<WebhookStats>,
    siprec: Option<Arc<crate::siprec::uas::UasStats>>,
    nats: Option<Arc<crate::events::nats::NatsStats>>,
    uploads: Option<Arc<crate::objects::uploader::UploadStats>>,
}

async fn serve(
    cfg: Arc<Config>,
    config_path: Option<PathBuf>,
    engine: Arc<Engine>,
    tokens: Tokens,
    log_handle: FilterHandle,
    url_secret: Vec<u8>,
    stats: ServiceStats,
) -> Result<(), Error> {
    // Before anything can be observed from outside (the API address file,
    // READY=1), so that no signal meets the default action.
    let signals = install_signals()?;
    let mode = u32::from_str_radix(&cfg.events.socket_mode, 8).unwrap_or(0o660);
    let socket_path = PathBuf::from(&cfg.events.socket_path);
    let listener = socket::bind(&socket_path, mode)
        .map_err(|e| Error::io(format!("event socket {}", socket_path.display()), e))?;
    let clients = Arc::new(AtomicU64::new(0));
    tokio::spawn(socket::serve(
        listener,
        engine.events().clone(),
        clients.clone(),
    ));

    let addr: SocketAddr = cfg.api.listen.parse().map_err(|_| {
        Error::Invalid(format!(
            "api.listen {:?} is not an address:port",
            cfg.api.listen
        ))
    })?;
    let tcp = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::io(
            format!("api.listen {addr} cannot be bound (another process on it? set [api] listen)"),
            e,
        )
    })?;
    let addr = tcp.local_addr().unwrap_or(addr);
    // Tools (and tests using port 0) find the API here.
    let addr_file = PathBuf::from(&cfg.storage.dir).join("api.addr");
    std::fs::write(&addr_file, format!("{addr}\n"))
        .map_err(|e| Error::io(format!("writing {}", addr_file.display()), e))?;
    let state = Arc::new(ApiState {
        engine: engine.clone(),
        tokens: tokens.clone(),
        event_clients: clients,
        urls: crate::api::UrlSigner::new(
            url_secret,
            Duration::from_secs(u64::from(cfg.storage.url_lifetime_s)),
        ),
        public_url: if cfg.api.public_url.is_empty() {
            format!("http://{addr}")
        } else {
            cfg.api.public_url.trim_end_matches('/').to_owned()
        },
        webhooks: stats.webhooks,
        siprec: stats.siprec,
        nats: stats.nats,
        uploads: stats.uploads,
    });
    let app = api::router(state);

    // Ready before the chores task starts: its first watchdog ping comes at
    // once, and systemd (and `tests/systemd_unit.rs`) must see READY=1 first.
    sd_notify("READY=1");
    {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                // Every 5 s: tell systemd's watchdog the engine is alive.
                if n.is_multiple_of(20) {
                    sd_notify("WATCHDOG=1");
                }
                // The engine's chores write the catalog: on the blocking
                // pool, so a slow or locked database never holds the
                // runtime's thread (and with it every connection).
                let engine = engine.clone();
                let chores = crate::offload::spawn_blocking(move || {
                    engine.housekeeping();
                    if n.is_multiple_of(240) {
                        engine.expire_idempotency_keys();
                    }
                    // Retention: at start, then every hour.
                    if n.is_multiple_of(14_400) {
                        let deleted =
                            engine.sweep_retention(crate::timefmt::unix_now().as_millis() as i64);
                        if deleted > 0 {
                            tracing::info!(deleted, "retention sweep deleted expired recordings");
                        }
                        engine.expire_audit(crate::timefmt::unix_now().as_millis() as i64);
                    }
                });
                if let Err(e) = chores.await {
                    tracing::error!(error = %e, "engine housekeeping failed");
                }
                n += 1;
            }
        });
    }

    tracing::info!(
        api = %addr,
        rtp = %format!("{}:{}-{}", cfg.rtp.bind, cfg.rtp.port_min, cfg.rtp.port_max),
        events = %socket_path.display(),
        storage = %cfg.storage.dir,
        "recengine ready"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let stop_rx = stop_rx.clone();
        let limits = api::server::Limits {
            max_connections: cfg.api.max_connections as usize,
            header_timeout: Duration::from_secs(u64::from(cfg.api.header_timeout_s)),
        };
        tokio::spawn(api::server::serve(tcp, app, limits, stop_rx))
    };

    wait_for_signals(signals, config_path.as_deref(), &tokens, &log_handle).await;
    sd_notify("STOPPING=1");
    tracing::info!("shutting down: finishing every recording");
    engine.begin_shutdown();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while engine.unfinished_recordings() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if engine.unfinished_recordings() > 0 {
        tracing::error!(
            left = engine.unfinished_recordings(),
            "recordings still unfinished after 60 s; their .part files stay"
        );
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    let _ = std::fs::remove_file(&socket_path);
    Ok(())
}

/// Raises the soft limit on open files to the hard limit: every leg holds
/// two sockets and every API client one, and the soft default (often 1024)
/// runs out long before the hard one. Logs the limit it runs with.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    tracing::info!(open_files = lim.rlim_cur, "open file limit");
}

/// Returns on SIGTERM or SIGINT; handles SIGHUP reloads meanwhile.
/// SIGTERM, SIGINT and SIGHUP handlers, installed before the daemon says
/// it is ready so that no signal finds the default action in place.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

fn install_signals() -> Result<Signals, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let install = |k: SignalKind| signal(k).map_err(|e| Error::io("installing signal handlers", e));
    Ok(Signals {
        term: install(SignalKind::terminate())?,
        int: install(SignalKind::interrupt())?,
        hup: install(SignalKind::hangup())?,
    })
}

async fn wait_for_signals(
    signals: Signals,
    config_path: Option<&Path>,
    tokens: &Tokens,
    log_handle: &FilterHandle,
) {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => reload(config_path, tokens, log_handle),
        }
    }
}

fn reload(config_path: Option<&Path>, tokens: &Tokens, log_handle: &FilterHandle) {
    let Some(path) = config_path else {
        tracing::warn!("SIGHUP: running on built-in defaults, nothing to reload");
        return;
    };
    match Config::load(path) {
        Ok(cfg) => {
            // What the file says, even nothing: an empty list revokes every
            // token (the one-time admin token is made only at start).
            tokens.replace(&cfg.api.tokens);
            if cfg.api.tokens.is_empty() {
                tracing::warn!(
                    "SIGHUP: api.tokens is empty: every token is revoked and the API refuses all requests until tokens are configured"
                );
            }
            match EnvFilter::try_new(&cfg.log.level) {
                Ok(f) => {
                    let _ = log_handle.reload(f);
                }
                Err(e) => tracing::warn!(error = %e, "SIGHUP: log.level not reloaded"),
            }
            tracing::info!(
                tokens = cfg.api.tokens.len(),
                level = %cfg.log.level,
                "SIGHUP: reloaded api.tokens and log.level; other keys need a restart"
            );
        }
        Err(e) => tracing::error!(error = %e, "SIGHUP: configuration not reloaded"),
    }
}
