//! The `recengine` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use recengine::config::{Channels, Config, Format, PauseBehavior};
use recengine::core::rtp::Codec;
use recengine::offline::record::{Participant, PartySelector, RecordOptions, record};
use recengine::offline::{self, PcapOptions};

#[derive(Parser)]
#[command(name = "recengine", version, about = "Real-time call-recording engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the recording daemon (built-in defaults when no file is given).
    Run {
        /// Configuration file (see engine.toml).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print the daemon's events as they happen (one JSON object per line).
    Events {
        /// Replay every event after this sequence number first.
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// The event socket (default: events.socket_path from the config).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Configuration naming the socket.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Rebuild the catalog's recordings from the sidecar files in storage.dir
    /// (stop the daemon first).
    Reindex {
        /// Configuration naming storage.dir (built-in defaults otherwise).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// The audit trail in the catalog.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Encryption-at-rest keys: make a key file, rewrap stored data keys to
    /// the current key, make a customer key pair.
    Keys {
        #[command(subcommand)]
        command: recengine::encryption::cli::KeysCommand,
    },
    /// Decrypt an encrypted recording file offline (with a customer's
    /// private key, or the operator's keys).
    Decrypt(recengine::encryption::cli::DecryptArgs),
    /// Generate RTP load against a running daemon (loopback only): create
    /// calls, stream two legs each in real time, end them, report.
    Loadgen {
        /// Control API address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        api: std::net::SocketAddr,
        /// API token (or set RECENGINE_TOKEN, or use --token-file).
        #[arg(long, env = "RECENGINE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// File holding the token (e.g. recordings/admin.token).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Concurrent two-party calls.
        #[arg(long, default_value_t = 10)]
        calls: usize,
        /// Seconds to stream.
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// pcmu | pcma | g722 | opus
        #[arg(long, default_value = "pcmu", value_parser = parse_codec)]
        codec: recengine::loadgen::LoadCodec,
        /// Recording format for every call.
        #[arg(long, default_value = "wav", value_parser = parse_format)]
        format: Format,
        /// Recording bitrate (kbit/s) for MP3/Opus.
        #[arg(long)]
        bitrate: Option<u32>,
        /// mono (one mix) or dual (one channel per party); the daemon's
        /// recording.channels when left out.
        #[arg(long, value_parser = ["mono", "dual"])]
        channels: Option<String>,
        /// Fraction of packets dropped (0-1).
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Fraction of packets that arrive just after the next one (0-1).
        #[arg(long, default_value_t = 0.0)]
        reorder: f64,
        /// Fraction of packets sent twice (0-1).
        #[arg(long, default_value_t = 0.0)]
        duplicate: f64,
        /// How each leg's packets travel: paced, bursts:N (N packets leave
        /// together), uniform:MAX_MS (random delay), stall:AT_MS:STALL_MS
        /// (nothing, then all at once) or wifi (spikes of 60-180 ms).
        #[arg(long, default_value = "paced", value_parser = recengine::loadgen::parse_pattern)]
        pattern: recengine::testkit::netem::Pattern,
        /// After the run, download every recording and compare it with
        /// what was sent (G.711 codecs; WAV sample for sample, MP3 by
        /// correlation); exits non-zero if any recording fails.
        #[arg(long)]
        verify: bool,
        /// The daemon's jitter.playout_delay_ms, for --verify: packets held
        /// back longer than this are not expected in the recording.
        #[arg(long, default_value_t = 200)]
        playout_delay_ms: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Control a running daemon: calls, recordings, downloads, webhook
    /// deliveries (`recengine ctl --help`).
    Ctl(Box<recengine::ctl::CtlArgs>),
    /// Validate a configuration file and print every problem with its line.
    Check {
        /// The file to check.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Also try what it names beyond the file: the encryption key files
        /// and the NATS server.
        #[arg(long)]
        connect: bool,
    },
    /// Decode the RTP streams of a pcap/pcapng capture into one WAV each.
    Pcap {
        /// Capture file (pcap or pcapng).
        input: PathBuf,
        /// Directory for the WAV files (created if missing).
        #[arg(short, long, value_name = "DIR")]
        output: PathBuf,
        /// Treat UDP traffic on this port as RTP even if the heuristic would
        /// not (repeatable).
        #[arg(long = "rtp-port", value_name = "PORT")]
        rtp_ports: Vec<u16>,
        /// Map a dynamic payload type, e.g. `--pt 96=opus/48000/2` or
        /// `--pt 101=telephone-event/8000` (repeatable). SDP found in the
        /// capture is used automatically.
        #[arg(long = "pt", value_name = "PT=ENCODING", value_parser = parse_pt)]
        payload_types: Vec<(u8, Codec)>,
        /// One stream per source/destination pair, following SSRC changes
        /// the way a daemon leg does, instead of one stream per SSRC.
        #[arg(long)]
        by_flow: bool,
        /// Configuration whose [jitter] and [recording] settings to use
        /// (built-in defaults otherwise).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        mix: MixArgs,
    },
}

fn parse_pt(s: &str) -> Result<(u8, Codec), String> {
    let (pt, enc) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected PT=ENCODING, e.g. 96=opus/48000/2"))?;
    let pt: u8 = pt
        .trim()
        .parse()
        .ok()
        .filter(|p| *p < 128)
        .ok_or_else(|| format!("{pt:?} is not a payload type (0-127)"))?;
    let codec = Codec::from_rtpmap(enc.trim()).map_err(|e| e.to_string())?;
    Ok((pt, codec))
}

/// The mixed recording of a two-party capture (written when --format is given).
#[derive(clap::Args)]
struct MixArgs {
    /// Also write the mixed recording of the call, as the daemon would, with
    /// its JSON sidecar: wav | mp3 | opus.
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    format: Option<Format>,
    /// Parties in the recording: all | caller | callee.
    #[arg(long, value_name = "WHO", default_value = "all", value_parser = parse_participant)]
    participant: Participant,
    /// mono | dual (caller left, callee right). Default from config.
    #[arg(long, value_name = "LAYOUT", value_parser = parse_channels)]
    channels: Option<Channels>,
    /// kbit/s for MP3/Opus. Default from config.
    #[arg(long, value_name = "KBPS")]
    bitrate: Option<u32>,
    /// Recording sample rate in Hz. Default from config.
    #[arg(long = "sample-rate", value_name = "HZ")]
    sample_rate: Option<u32>,
    /// silence | skip: what a paused stretch becomes. Default from config.
    #[arg(long = "pause-behavior", value_name = "MODE", value_parser = parse_pause_behavior)]
    pause_behavior: Option<PauseBehavior>,
    /// Pause the recording from FROM to TO seconds of capture time, e.g.
    /// `--pause 2.5-4` (repeatable).
    #[arg(long = "pause", value_name = "FROM-TO", value_parser = parse_pause)]
    pauses: Vec<(Duration, Duration)>,
    /// keep | suppress: silence a party while it sends RFC 4733 DTMF.
    #[arg(long, value_name = "MODE", default_value = "keep", value_parser = parse_dtmf)]
    dtmf: bool,
    /// The caller's stream: SSRC as 8 hex digits, or source IP[:port].
    /// Default: the first audio stream in the capture.
    #[arg(long, value_name = "SSRC|ADDR")]
    caller: Option<String>,
    /// The callee's stream. Default: the next audio stream.
    #[arg(long, value_name = "SSRC|ADDR")]
    callee: Option<String>,
}

fn choice<T: Copy>(s: &str, options: &[(&str, T)]) -> Result<T, String> {
    options
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            format!("{s:?}: expected one of {}", names.join(", "))
        })
}

fn parse_format(s: &str) -> Result<Format, String> {
    choice(
        s,
        &[
            ("wav", Format::Wav),
            ("mp3", Format::Mp3),
            ("opus", Format::Opus),
        ],
    )
}

fn parse_codec(s: &str) -> Result<recengine::loadgen::LoadCodec, String> {
    use recengine::loadgen::LoadCodec;
    choice(
        s,
        &[
            ("pcmu", LoadCodec::Pcmu),
            ("pcma", LoadCodec::Pcma),
            ("g722", LoadCodec::G722),
            ("opus", LoadCodec::Opus),
        ],
    )
}

fn parse_participant(s: &str) -> Result<Participant, String> {
    choice(
        s,
        &[
            ("all", Participant::All),
            ("caller", Participant::Caller),
            ("callee", Participant::Callee),
        ],
    )
}

fn parse_channels(s: &str) -> Result<Channels, String> {
    choice(s, &[("mono", Channels::Mono), ("dual", Channels::Dual)])
}

fn parse_pause_behavior(s: &str) -> Result<PauseBehavior, String> {
    choice(
        s,
        &[
            ("silence", PauseBehavior::Silence),
            ("skip", PauseBehavior::Skip),
        ],
    )
}

fn parse_dtmf(s: &str) -> Result<bool, String> {
    choice(s, &[("keep", false), ("suppress", true)])
}

fn parse_pause(s: &str) -> Result<(Duration, Duration), String> {
    let bad = || format!("{s:?}: expected FROM-TO in seconds, e.g. 2.5-4");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let secs = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
    };
    let (a, b) = (secs(a).ok_or_else(bad)?, secs(b).ok_or_else(bad)?);
    if b <= a {
        return Err(format!("{s:?}: the pause must end after it starts"));
    }
    Ok((Duration::from_secs_f64(a), Duration::from_secs_f64(b)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => match recengine::daemon::run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("recengine run: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Events {
            since,
            socket,
            config,
        } => events(since, socket, config),
        Command::Reindex { config } => reindex(config),
        Command::Audit {
            command: AuditCommand::Verify { config },
        } => audit_verify(config),
        Command::Ctl(args) => recengine::ctl::run(*args),
        Command::Keys { command } => recengine::encryption::cli::run_keys(command),
        Command::Decrypt(args) => recengine::encryption::cli::run_decrypt(args),
        Command::Loadgen {
            api,
            token,
            token_file,
            calls,
            duration,
            codec,
            format,
            bitrate,
            channels,
            loss,
            reorder,
            duplicate,
            pattern,
            verify,
            playout_delay_ms,
            json,
        } => {
            let token = match (token, token_file) {
                (Some(t), _) => t,
                (None, Some(f)) => match std::fs::read_to_string(&f) {
                    Ok(t) => t.trim().to_owned(),
                    Err(e) => {
                        eprintln!("recengine loadgen: reading {}: {e}", f.display());
                        return ExitCode::FAILURE;
                    }
                },
                (None, None) => {
                    eprintln!("recengine loadgen: give --token, RECENGINE_TOKEN or --token-file");
                    return ExitCode::FAILURE;
                }
            };
            let mut recording = serde_json::json!({"format": format.extension()});
            if let Some(b) = bitrate {
                recording["bitrate"] = serde_json::json!(b);
            }
            if let Some(c) = channels {
                recording["channels"] = serde_json::json!(c);
            }
            let opts = recengine::loadgen::LoadgenOptions {
                api,
                token,
                calls,
                duration: Duration::from_secs(duration),
                codec,
                recording,
                pattern,
                loss,
                reorder,
                duplicate,
            };
            let vopts = recengine::loadgen::verify::VerifyOptions::for_pattern(
                pattern,
                Duration::from_millis(playout_delay_ms),
            );
            if verify && let Err(e) = recengine::loadgen::verify::supported(&opts) {
                eprintln!("recengine loadgen: {e}");
                return ExitCode::FAILURE;
            }
            match recengine::loadgen::run(&opts) {
                Ok(r) => {
                    let checked = if verify {
                        match recengine::loadgen::verify::verify(&opts, &r, &vopts) {
                            Ok(v) => Some(v),
                            Err(e) => {
                                eprintln!("recengine loadgen: verifying: {e}");
                                return ExitCode::FAILURE;
                            }
                        }
                    } else {
                        None
                    };
                    if json {
                        let mut v = serde_json::to_value(&r).unwrap_or_default();
                        if let Some(c) = &checked {
                            v["verify"] = serde_json::to_value(c).unwrap_or_default();
                        }
                        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    } else {
                        println!(
                            "{} calls, {} packets sent ({:.0} packets/s), {} send errors, generator slip mean {:.2} ms max {:.2} ms, {:.1} s",
                            r.calls,
                            r.packets_sent,
                            r.packets_per_second,
                            r.send_errors,
                            r.mean_slip_ms,
                            r.max_slip_ms,
                            r.wall_seconds
                        );
                        if let Some(c) = &checked {
                            println!(
                                "verify: {} recordings, {} passed, {} failed; {} samples compared, parties at most {} samples apart, worst correlation {:.3}",
                                c.recordings,
                                c.passed,
                                c.failed,
                                c.compared_samples,
                                c.max_misalignment_samples,
                                c.worst_correlation
                            );
                            for f in &c.failures {
                                let problems: Vec<String> =
                                    f.problems.iter().map(ToString::to_string).collect();
                                println!("  {}: {}", f.call_id, problems.join("; "));
                            }
                        }
                    }
                    if checked.is_some_and(|c| c.failed > 0) {
                        return ExitCode::FAILURE;
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("recengine loadgen: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config, connect } => match Config::load(&config) {
            Ok(cfg) => {
                println!("{}: OK", config.display());
                let mut code = ExitCode::SUCCESS;
                if connect {
                    for o in recengine::check::backends(&cfg) {
                        let mark = if o.ok { "OK" } else { "FAILED" };
                        println!("{}: {mark}: {}", o.what, o.detail);
                        if !o.ok {
                            code = ExitCode::FAILURE;
                        }
                    }
                }
                code
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Pcap {
            input,
            output,
            rtp_ports,
            payload_types,
            by_flow,
            config,
            mix,
        } => {
            let cfg = match config.map(|c| Config::load(&c)).transpose() {
                Ok(c) => c.unwrap_or_default(),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = PcapOptions {
                input,
                output_dir: output,
                rtp_ports,
                payload_types,
                playout_delay: Duration::from_millis(u64::from(cfg.jitter.playout_delay_ms)),
                jitter_capacity: cfg.jitter.capacity_packets as usize,
                by_flow,
            };
            pcap(opts, mix, &cfg)
        }
    }
}

fn pcap(opts: PcapOptions, mix: MixArgs, cfg: &Config) -> ExitCode {
    match offline::run(&opts) {
        Ok(reports) => {
            print!("{}", offline::table(&reports));
            if reports.is_empty() {
                eprintln!("no RTP streams found (try --rtp-port PORT)");
            }
        }
        Err(e) => {
            eprintln!("recengine pcap: {e}");
            return ExitCode::FAILURE;
        }
    }
    let Some(format) = mix.format else {
        return ExitCode::SUCCESS;
    };
    let rec = &cfg.recording;
    let ropts = RecordOptions {
        input: opts.input,
        output_dir: opts.output_dir,
        rtp_ports: opts.rtp_ports,
        payload_types: opts.payload_types,
        playout_delay: opts.playout_delay,
        jitter_capacity: opts.jitter_capacity,
        drift_bound: Duration::from_millis(u64::from(cfg.jitter.drift_bound_ms)),
        format,
        sample_rate: mix.sample_rate.unwrap_or(rec.sample_rate),
        channels: mix.channels.unwrap_or(rec.channels),
        bitrate_kbps: mix.bitrate.unwrap_or(if format == rec.format {
            rec.bitrate_kbps
        } else {
            0
        }),
        mp3_quality: rec.mp3_quality,
        opus_complexity: rec.opus_complexity,
        participant: mix.participant,
        pause_behavior: mix.pause_behavior.unwrap_or(rec.pause_behavior),
        pauses: mix.pauses,
        suppress_dtmf: mix.dtmf,
        caller: mix.caller.as_deref().map(PartySelector::parse),
        callee: mix.callee.as_deref().map(PartySelector::parse),
        flush_interval: Duration::from_millis(u64::from(cfg.storage.flush_interval_ms)),
    };
    match record(&ropts) {
        Ok(info) => {
            println!(
                "\nrecording {}: {} {} Hz {} channel(s) {} kbit/s, {:.2} s, {} bytes, sha256 {}",
                info.file,
                info.format.extension(),
                info.sample_rate,
                info.channel_count,
                info.bitrate_kbps,
                info.duration_ms as f64 / 1000.0,
                info.file_size_bytes,
                info.checksum.value
            );
            for leg in &info.legs {
                let channel = leg
                    .channel
                    .map_or_else(|| "not recorded".to_owned(), |c| format!("channel {c}"));
                println!(
                    "  {:?} {} -> {channel}",
                    leg.role,
                    leg.source.as_deref().unwrap_or("-")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("recengine pcap: {e}");
            ExitCode::FAILURE
        }
    }
}

fn events(since: Option<u64>, socket: Option<PathBuf>, config: Option<PathBuf>) -> ExitCode {
    use std::io::{BufRead, BufReader, Write};
    let path = match socket {
        Some(p) => p,
        None => match config.map(|c| Config::load(&c)).transpose() {
            Ok(c) => PathBuf::from(c.unwrap_or_default().events.socket_path),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "recengine events: cannot connect to {}: {e} (is the daemon running?)",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(n) = since
        && let Err(e) = writeln!(stream, "{{\"since_seq\":{n}}}")
    {
        eprintln!("recengine events: {e}");
        return ExitCode::FAILURE;
    }
    let stdout = std::io::stdout();
    for line in BufReader::new(stream).lines() {
        match line {
            Ok(l) => {
                let mut out = stdout.lock();
                if writeln!(out, "{l}").and_then(|()| out.flush()).is_err() {
                    return ExitCode::SUCCESS;
                }
            }
            Err(e) => {
                eprintln!("recengine events: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

#[derive(clap::Subcommand)]
enum AuditCommand {
    /// Check the audit trail's hash chain: exit 0 when every record is
    /// intact, 1 naming the first edited or missing record.
    Verify {
        /// Configuration naming storage.dir (built-in defaults otherwise).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn audit_verify(config: Option<PathBuf>) -> ExitCode {
    use recengine::catalog::audit::AuditVerdict;
    let cfg = match config.map(|c| Config::load(&c)).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let storage = PathBuf::from(&cfg.storage.dir);
    let path = storage.join("catalog.db");
    if cfg.catalog.backend == recengine::config::CatalogBackend::Sqlite && !path.is_file() {
        eprintln!("recengine audit verify: no catalog at {}", path.display());
        return ExitCode::FAILURE;
    }
    let verdict = recengine::catalog::Catalog::open_configured(&cfg.catalog, &storage)
        .and_then(|c| c.verify_audit());
    match verdict {
        Ok(AuditVerdict::Intact { records }) => {
            println!("audit trail intact: {records} record(s) chain from the anchor");
            ExitCode::SUCCESS
        }
        Ok(AuditVerdict::Broken { seq, reason }) => {
            eprintln!("audit trail BROKEN at record {seq}: {reason}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("recengine audit verify: {e}");
            ExitCode::FAILURE
        }
    }
}

fn reindex(config: Option<PathBuf>) -> ExitCode {
    let cfg = match config.map(|c| Config::load(&c)).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let storage = PathBuf::from(&cfg.storage.dir);
    let catalog = match recengine::catalog::Catalog::open_configured(&cfg.catalog, &storage) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("recengine reindex: {e}");
            return ExitCode::FAILURE;
        }
    };
    match recengine::catalog::reindex::reindex(&catalog, &storage) {
        Ok(r) => {
            println!(
                "{} sidecar(s) found, {} recording(s) indexed",
                r.sidecars, r.indexed
            );
            for (path, why) in &r.skipped {
                eprintln!("skipped {}: {why}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("recengine reindex: {e}");
            ExitCode::FAILURE
        }
    }
}
