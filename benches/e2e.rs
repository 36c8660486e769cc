//! End-to-end benchmark: the real daemon (release build) recording calls
//! driven by `recengine::loadgen` over loopback, per format and rate.
//! Reports daemon CPU seconds per call-minute, peak RSS and RSS per call,
//! packets dropped inside the engine (ring, late), lost, and finalize
//! latency, as a table and as JSON in `target/e2e-results.json`. In the
//! 8 kHz WAV and MP3 cases every recording is then downloaded and verified
//! against what was sent (`loadgen --verify`); `failed` counts those that
//! differ.
//!
//!     cargo bench --bench e2e                         # 50 calls, 20 s per case
//!     E2E_CALLS=200 E2E_SECS=30 cargo bench --bench e2e
//!     E2E_CASES=wav8,mp3-8 cargo bench --bench e2e    # a subset
//!     E2E_SEARCH=1 E2E_CALLS=200 E2E_CASES=wav8 cargo bench --bench e2e
//!         # doubles N from 200 until the engine drops a packet (at most
//!         # E2E_SEARCH_MAX, default 1600), then bisects to within 5 %
//!     E2E_RECEIVE_PATH=recvmmsg cargo bench --bench e2e   # workers.receive_path
//!         # (auto, io_uring or recvmmsg); each row prints the path in use
//!     E2E_TICK_MS=40 cargo bench --bench e2e          # workers.tick_ms
//!     E2E_OPUS_COMPLEXITY=5 cargo bench --bench e2e   # recording.opus_complexity
//!     E2E_MP3_BITRATE=64 cargo bench --bench e2e      # the MP3 cases' bitrate
//!         # (default: the daemon's own for mp3-8, 64 for mp3-16)
//!     E2E_ENCRYPT=1 cargo bench --bench e2e           # encryption at rest on
//!     E2E_S3=1 cargo bench --bench e2e                # recordings uploaded to an
//!         # S3 server on loopback (s3s-fs, in this process); reports
//!         # completion-to-durable latency p50/p99 from recording.uploaded
//!     E2E_PG=1 cargo bench --bench e2e                # catalog on the PostgreSQL
//!         # at 127.0.0.1:5432 (database test), a fresh schema per case
//!
//! The load generator runs in this process on the same machine, as it
//! would in a single-box benchmark; its own schedule slip is reported so a
//! generator that falls behind is visible.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/s3/server.rs"]
mod s3_server;

use recengine::loadgen::verify::{VerifyOptions, verify};
use recengine::loadgen::{LoadCodec, LoadgenOptions, http_json, run};
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    format: &'static str,
    rate: u32,
    bitrate: Option<u32>,
}

const CASES: [Case; 6] = [
    Case {
        name: "wav8",
        format: "wav",
        rate: 8000,
        bitrate: None,
    },
    Case {
        name: "wav16",
        format: "wav",
        rate: 16_000,
        bitrate: None,
    },
    Case {
        name: "mp3-8",
        format: "mp3",
        rate: 8000,
        bitrate: None, // the daemon's default at 8 kHz: 48 kbit/s
    },
    Case {
        name: "mp3-16",
        format: "mp3",
        rate: 16_000,
        bitrate: Some(64),
    },
    Case {
        name: "opus8",
        format: "opus",
        rate: 8000,
        bitrate: Some(32),
    },
    Case {
        name: "opus16",
        format: "opus",
        rate: 16_000,
        bitrate: Some(32),
    },
];

fn proc_stat(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    (ticks / hz.max(1.0), hwm)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Approximate percentile (ms) from the cumulative finalize histogram.
fn percentile(text: &str, p: f64) -> f64 {
    let count = metric(text, "recengine_finalize_latency_ms_count");
    for b in recengine::engine::FINALIZE_BUCKETS_MS {
        let c = metric(
            text,
            &format!("recengine_finalize_latency_ms_bucket{{le=\"{b}\"}}"),
        );
        if count > 0.0 && c / count >= p {
            return b as f64;
        }
    }
    f64::INFINITY
}

/// Completion-to-durable latencies (ms) of every `recording.uploaded` in
/// the daemon's event log, sorted.
fn upload_latencies(dir: &Path) -> Vec<u64> {
    let log = std::fs::read_to_string(dir.join("storage/events.log")).unwrap_or_default();
    let mut out: Vec<u64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "recording.uploaded")
        .filter_map(|e| e["data"]["latency_ms"].as_u64())
        .collect();
    out.sort_unstable();
    out
}

fn start_daemon(dir: &Path, rate: u32, calls: usize) -> (Child, std::net::SocketAddr, String) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let pairs = calls * 2 + 8;
    let config = format!(
        "[log]\nlevel = \"warn\"\n[api]\nlisten = \"127.0.0.1:0\"\n[rtp]\nport_min = 24000\nport_max = {}\nport_quarantine_s = 1\n\
         [recording]\nsample_rate = {rate}\n{2}[storage]\ndir = \"{1}/storage\"\n[events]\nsocket_path = \"{1}/events.sock\"\n",
        24_000 + pairs * 2 - 1,
        dir.display(),
        std::env::var("E2E_OPUS_COMPLEXITY")
            .map(|c| format!("opus_complexity = {c}\n"))
            .unwrap_or_default()
    );
    let mut config = config;
    let mut workers = String::new();
    if let Ok(path) = std::env::var("E2E_RECEIVE_PATH") {
        // auto (the default), io_uring or recvmmsg: both paths compared
        // with one build.
        workers.push_str(&format!("receive_path = \"{path}\"\n"));
    }
    if let Ok(ms) = std::env::var("E2E_TICK_MS") {
        // workers.tick_ms: what a longer or shorter tick costs.
        workers.push_str(&format!("tick_ms = {ms}\n"));
    }
    if !workers.is_empty() {
        config.push_str(&format!("[workers]\n{workers}"));
    }
    if std::env::var_os("E2E_ENCRYPT").is_some() {
        // Encryption at rest: every recording sealed under its own data key.
        let key = dir.join("kek.key");
        recengine::encryption::keyring::generate_key_file(&key).unwrap();
        config.push_str(&format!(
            "[storage.encryption]\nenabled = true\nkey_id = \"bench\"\nkeys = [{{ id = \"bench\", file = \"{}\" }}]\n",
            key.display()
        ));
    }
    if std::env::var_os("E2E_S3").is_some() {
        let server = s3_server::S3Server::start(&dir.join("s3"), "bench");
        // Appended after [storage]: one table each, so the backend goes
        // into the existing [storage] and [storage.s3] is added.
        let toml = server.storage_toml(&dir.join("secrets"), "bench");
        let (backend, s3) = toml.split_once("\n\n").unwrap();
        config = config.replace("[storage]\n", &format!("{}\n", backend.trim_end()));
        config.push_str(s3);
        // The server lives as long as the bench process.
        std::mem::forget(server);
    }
    if std::env::var_os("E2E_PG").is_some() {
        let schema = format!(
            "e2e_{}",
            dir.file_name().unwrap().to_string_lossy().replace('-', "_")
        );
        if let Ok(mut c) =
            postgres::Client::connect("postgres://postgres@127.0.0.1:5432/test", postgres::NoTls)
        {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
        config.push_str(&format!(
            "[catalog]\nbackend = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:5432/test\"\nschema = \"{schema}\"\nnode_id = \"bench\"\n"
        ));
    }
    std::fs::write(dir.join("engine.toml"), config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_recengine"))
        .args(["run", "-c"])
        .arg(dir.join("engine.toml"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start recengine");
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        if let Ok(s) = std::fs::read_to_string(dir.join("storage/api.addr"))
            && let Ok(a) = s.trim().parse()
        {
            break a;
        }
        assert!(Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let token = std::fs::read_to_string(dir.join("storage/admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    (child, addr, token)
}

/// Runs one case at `calls` concurrent calls; prints a row and returns it.
fn measure(case: &Case, calls: usize, secs: u64, base: &Path) -> Value {
    let dir = base.join(format!("{}-{calls}", case.name));
    let (mut child, api, token) = start_daemon(&dir, case.rate, calls);
    let pid = child.id();
    let (rss_idle_cpu, rss_idle) = proc_stat(pid);
    let mut rec = json!({"format": case.format, "sample_rate": case.rate});
    let mp3_bitrate = std::env::var("E2E_MP3_BITRATE").ok();
    let mp3_bitrate = mp3_bitrate.and_then(|b| b.parse::<u32>().ok());
    let bitrate = match case.format {
        "mp3" => mp3_bitrate.or(case.bitrate),
        _ => case.bitrate,
    };
    if let Some(b) = bitrate {
        rec["bitrate"] = json!(b);
    }
    let (cpu0, _) = proc_stat(pid);
    let opts = LoadgenOptions {
        calls,
        duration: Duration::from_secs(secs),
        codec: LoadCodec::Pcmu,
        recording: rec,
        ..LoadgenOptions::new(api, token.clone())
    };
    let report = run(&opts).expect("loadgen");
    let (cpu1, hwm) = proc_stat(pid);
    // Every recording downloaded and compared with what was sent (the
    // 8 kHz WAV and MP3 cases, where G.711 gives an exact reference).
    let checked = (case.rate == 8000 && case.format != "opus").then(|| {
        verify(
            &opts,
            &report,
            &VerifyOptions::for_pattern(opts.pattern, Duration::from_millis(200)),
        )
        .expect("verify")
    });
    for f in checked.iter().flat_map(|c| &c.failures).take(5) {
        eprintln!("  verify {}: {:?}", f.call_id, f.problems);
    }
    let failed = checked
        .as_ref()
        .map_or("n/a".to_owned(), |c| c.failed.to_string());
    std::thread::sleep(Duration::from_secs(2));
    let text = {
        let mut s = std::net::TcpStream::connect(api).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut t = String::new();
        let _ = s.read_to_string(&mut t);
        t
    };
    let _ = http_json(api, "GET", "/healthz", &token, None);
    // With E2E_S3: wait (at most 60 s) for the uploads to drain, then read
    // their latencies.
    let uploads = std::env::var_os("E2E_S3").is_some().then(|| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while upload_latencies(&dir).len() < calls && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let l = upload_latencies(&dir);
        let at = |p: f64| {
            l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
                .copied()
        };
        println!(
            "  uploads: {} of {calls}; completion-to-durable p50 {:?} ms, p99 {:?} ms, max {:?} ms",
            l.len(),
            at(0.5),
            at(0.99),
            l.last()
        );
        json!({"uploaded": l.len(), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": l.last()})
    });
    let call_minutes = calls as f64 * secs as f64 / 60.0;
    let cpu_per = (cpu1 - cpu0) / call_minutes;
    let per_call_kib = hwm.saturating_sub(rss_idle) as f64 / calls as f64;
    let ring = metric(&text, "recengine_rtp_dropped_total{reason=\"queue_full\"}");
    let late = metric(&text, "recengine_rtp_dropped_total{reason=\"late\"}");
    let lost = metric(&text, "recengine_rtp_lost_total");
    let (p50, p99) = (percentile(&text, 0.5), percentile(&text, 0.99));
    let receive_path = ["io_uring", "recvmmsg"].into_iter().find(|p| {
        metric(
            &text,
            &format!("recengine_media_workers{{receive_path=\"{p}\"}}"),
        ) > 0.0
    });
    println!(
        "{:<8} {:>5} {:>12.4} {:>10.1} {:>10.0} {:>8} {:>6} {:>6} {:>9} {:>9} {:>8.2} {:>7}",
        case.name,
        calls,
        cpu_per,
        hwm as f64 / 1024.0,
        per_call_kib,
        ring,
        late,
        lost,
        format!("<={p50}"),
        format!("<={p99}"),
        report.max_slip_ms,
        failed
    );
    println!(
        "  media workers read RTP with {} ({} io_uring buffer exhaustions)",
        receive_path.unwrap_or("(not reported)"),
        metric(&text, "recengine_io_uring_buffer_exhaustions_total")
    );
    let row = json!({"case": case.name, "format": case.format, "sample_rate": case.rate, "bitrate_kbps": bitrate,
        "calls": calls, "seconds": secs, "cpu_s_per_call_minute": cpu_per, "peak_rss_kib": hwm,
        "rss_idle_kib": rss_idle, "rss_per_call_kib": per_call_kib, "queue_drops": ring, "late": late, "lost": lost,
        "finalize_ms_p50_le": p50, "finalize_ms_p99_le": p99, "packets_sent": report.packets_sent,
        "generator_max_slip_ms": report.max_slip_ms, "idle_cpu_s": rss_idle_cpu, "receive_path": receive_path,
        "verified": checked.as_ref().map(|c| c.recordings), "verify_failed": checked.as_ref().map(|c| c.failed),
        "max_misalignment_samples": checked.as_ref().map(|c| c.max_misalignment_samples),
        "worst_correlation": checked.as_ref().map(|c| c.worst_correlation), "uploads": uploads});
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    row
}

/// Packets the engine dropped (ring full or late) in a result row.
fn drops(row: &Value) -> f64 {
    // A missing figure counts as a drop: never report an unmeasured N.
    row["queue_drops"].as_f64().unwrap_or(f64::INFINITY)
        + row["late"].as_f64().unwrap_or(f64::INFINITY)
        + row["verify_failed"].as_f64().unwrap_or(0.0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // useful: run only when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let calls_list: Vec<usize> = std::env::var("E2E_CALLS")
        .unwrap_or_else(|_| "50".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let secs: u64 = std::env::var("E2E_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let only: Option<Vec<String>> = std::env::var("E2E_CASES")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e");
    let mut results = Vec::new();
    let mut summary = Vec::new();
    // E2E_SEARCH=1: find the largest N with zero engine drops per case.
    let search = std::env::var_os("E2E_SEARCH").is_some();
    let search_max: usize = std::env::var("E2E_SEARCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1600);
    println!(
        "{:<8} {:>5} {:>12} {:>10} {:>10} {:>8} {:>6} {:>6} {:>9} {:>9} {:>8} {:>7}",
        "case",
        "calls",
        "CPU-s/c-min",
        "RSS MB",
        "KiB/call",
        "queue",
        "late",
        "lost",
        "fin p50",
        "fin p99",
        "slip ms",
        "failed"
    );
    for case in CASES
        .iter()
        .filter(|c| only.as_ref().is_none_or(|o| o.iter().any(|n| n == c.name)))
    {
        let mut rows: Vec<Value> = calls_list
            .iter()
            .map(|&calls| measure(case, calls, secs, &base))
            .collect();
        if search {
            // Double until the engine drops a packet (or the ceiling), then
            // bisect to within 5 %.
            let mut good = rows
                .iter()
                .filter(|r| drops(r) == 0.0)
                .filter_map(|r| r["calls"].as_u64())
                .max()
                .unwrap_or(0) as usize;
            let mut bad = rows
                .iter()
                .filter(|r| drops(r) > 0.0)
                .filter_map(|r| r["calls"].as_u64())
                .min()
                .map(|b| b as usize);
            loop {
                let n = match bad {
                    None if good > 0 && good < search_max => (good * 2).min(search_max),
                    Some(b) if b - good > (good / 20).max(10) => (good + b) / 2,
                    _ => break,
                };
                let row = measure(case, n, secs, &base);
                if drops(&row) == 0.0 {
                    good = n
                } else {
                    bad = Some(n)
                }
                rows.push(row);
            }
        }
        let best = rows
            .iter()
            .filter(|r| drops(r) == 0.0)
            .filter_map(|r| r["calls"].as_u64())
            .max();
        println!(
            "{:<8} largest N with zero engine drops: {}",
            case.name,
            best.map_or("none of those tried".into(), |n| n.to_string())
        );
        summary.push(json!({"case": case.name, "largest_zero_drop_calls": best}));
        results.extend(rows);
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .join("e2e-results.json");
    let doc: Value = json!({"results": results, "largest_zero_drop": summary});
    std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    println!("results written to {}", out.display());
}
