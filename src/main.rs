//! The `recengine` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use recengine::config::Config;
use recengine::core::rtp::Codec;
use recengine::offline::{self, PcapOptions};

#[derive(Parser)]
#[command(name = "recengine", version, about = "Real-time call-recording engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file and print every problem with its line.
    Check {
        /// The file to check.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
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
        /// Configuration whose [jitter] settings to use (defaults otherwise).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(_) => {
                println!("{}: OK", config.display());
                ExitCode::SUCCESS
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
            match offline::run(&opts) {
                Ok(reports) => {
                    print!("{}", offline::table(&reports));
                    if std::env::var_os("RECENGINE_DEBUG_STATS").is_some() {
                        for r in &reports {
                            eprintln!("{:?}", r.stats);
                        }
                    }
                    if reports.is_empty() {
                        eprintln!("no RTP streams found (try --rtp-port PORT)");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("recengine pcap: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
