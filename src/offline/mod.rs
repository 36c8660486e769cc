//! `recengine pcap`: a capture file in, one WAV per RTP stream out, through
//! exactly the media core the daemon runs, with capture timestamps as the
//! clock.
//!
//! Two passes over the file: the first finds the RTP streams and any SDP
//! (so dynamic payload types resolve), the second feeds each stream's
//! packets to its own [`LegReceiver`] in capture order, pulling playout after
//! every packet of that stream, and finishes each leg at the end.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::capture::net::udp_in_frame;
use crate::capture::reader::CaptureReader;
use crate::capture::streams::{StreamFinder, StreamKey, StreamSummary};
use crate::core::leg::{DtmfRecord, LegConfig, LegReceiver, LegStats, PcmSink};
use crate::core::rtp::Codec;
use crate::error::Error;

/// Options of the offline command.
#[derive(Debug, Clone)]
pub struct PcapOptions {
    pub input: PathBuf,
    pub output_dir: PathBuf,
    /// UDP ports whose traffic is RTP whatever it looks like.
    pub rtp_ports: Vec<u16>,
    /// Extra payload-type mappings (`101=telephone-event/8000`).
    pub payload_types: Vec<(u8, Codec)>,
    pub playout_delay: Duration,
    pub jitter_capacity: usize,
    /// One stream per (source, destination) whatever its SSRCs, as a daemon
    /// leg sees it, instead of one per SSRC.
    pub by_flow: bool,
}

/// What came out of one stream.
#[derive(Debug, Clone)]
pub struct StreamReport {
    pub key: StreamKey,
    /// The main audio codec, if the stream carried audio.
    pub codec: Option<Codec>,
    pub sample_rate: u32,
    pub stats: LegStats,
    pub dtmf: Vec<DtmfRecord>,
    /// Samples written (at `sample_rate`).
    pub samples: u64,
    /// The WAV written, `None` for streams without audio.
    pub wav: Option<PathBuf>,
}

impl StreamReport {
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.samples * 1_000_000_000 / u64::from(self.sample_rate.max(1)))
    }

    pub fn digits(&self) -> String {
        self.dtmf.iter().map(|d| d.digit).collect()
    }
}

/// A PCM sink writing 16-bit mono WAV, from the first sample it is given.
struct WavSink {
    writer: hound::WavWriter<std::io::BufWriter<File>>,
    samples: u64,
    error: Option<hound::Error>,
}

impl PcmSink for WavSink {
    fn samples(&mut self, _start: i64, pcm: &[i16]) {
        for &s in pcm {
            if self.error.is_none()
                && let Err(e) = self.writer.write_sample(s)
            {
                self.error = Some(e);
            }
        }
        self.samples += pcm.len() as u64;
    }

    fn silence(&mut self, _start: i64, len: i64) {
        for _ in 0..len {
            if self.error.is_none()
                && let Err(e) = self.writer.write_sample(0i16)
            {
                self.error = Some(e);
            }
        }
        self.samples += len.max(0) as u64;
    }
}

/// A sink that only counts (for streams that will not get a file).
#[derive(Default)]
struct NullSink;

impl PcmSink for NullSink {
    fn samples(&mut self, _start: i64, _pcm: &[i16]) {}
    fn silence(&mut self, _start: i64, _len: i64) {}
}

fn open(path: &Path) -> Result<CaptureReader<BufReader<File>>, Error> {
    let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    Ok(CaptureReader::new(BufReader::new(file))?)
}

/// Pass one: the streams of a capture and how to decode them.
pub fn find_streams(input: &Path, rtp_ports: &[u16], by_flow: bool) -> Result<StreamFinder, Error> {
    let mut reader = open(input)?;
    let mut finder = StreamFinder::new(rtp_ports.to_vec(), by_flow);
    while let Some(rec) = reader.next_record()? {
        if let Some(udp) = udp_in_frame(rec.linktype, rec.data) {
            finder.observe(rec.time, udp.src, udp.dst, udp.payload);
        }
    }
    Ok(finder)
}

/// File name for a stream: its SSRC as 8 hex digits, with `-2`, `-3` … for
/// further streams carrying the same SSRC (a relayed call).
fn wav_name(ssrc: u32, seen: &mut HashMap<u32, u32>) -> String {
    let n = seen.entry(ssrc).or_insert(0);
    *n += 1;
    if *n == 1 {
        format!("{ssrc:08x}.wav")
    } else {
        format!("{ssrc:08x}-{n}.wav")
    }
}

struct Running {
    summary: StreamSummary,
    leg: LegReceiver,
    codec: Option<Codec>,
    sink: Option<WavSink>,
    path: Option<PathBuf>,
}

/// Runs the whole command: returns one report per stream, in order of first
/// appearance.
pub fn run(opts: &PcapOptions) -> Result<Vec<StreamReport>, Error> {
    let mut finder = find_streams(&opts.input, &opts.rtp_ports, opts.by_flow)?;
    std::fs::create_dir_all(&opts.output_dir)
        .map_err(|e| Error::io(format!("creating {}", opts.output_dir.display()), e))?;
    let mut names = HashMap::new();
    let mut running: Vec<Running> = Vec::new();
    let mut index: HashMap<StreamKey, usize> = HashMap::new();
    for summary in finder.streams() {
        let map = finder.payload_map(&summary, &opts.payload_types);
        let main = summary.main_audio_codec(&map);
        let rate = main.map_or(8000, |(_, c)| c.audio_rate());
        let (sink, path) = match main {
            Some(_) => {
                let path = opts.output_dir.join(wav_name(summary.key.ssrc, &mut names));
                let spec = hound::WavSpec {
                    channels: 1,
                    sample_rate: rate,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                };
                let writer = hound::WavWriter::create(&path, spec)
                    .map_err(|e| Error::io(format!("creating {}", path.display()), hound_io(e)))?;
                (
                    Some(WavSink {
                        writer,
                        samples: 0,
                        error: None,
                    }),
                    Some(path),
                )
            }
            None => (None, None),
        };
        index.insert(summary.key, running.len());
        running.push(Running {
            leg: LegReceiver::new(LegConfig {
                payload_map: map,
                rate,
                playout_delay: opts.playout_delay,
                jitter_capacity: opts.jitter_capacity,
                // One stream alone is a pure decode placed by timestamp:
                // drift is measured and reported, never corrected (that
                // only matters for aligning parties in a mix).
                drift_bound: Duration::ZERO,
            }),
            codec: main.map(|(_, c)| c),
            summary,
            sink,
            path,
        });
    }

    // Pass two: feed every stream its packets with capture time as the clock.
    let mut reader = open(&opts.input)?;
    let mut epoch: Option<Duration> = None;
    while let Some(rec) = reader.next_record()? {
        let Some(udp) = udp_in_frame(rec.linktype, rec.data) else {
            continue;
        };
        let Some(ssrc) = ssrc_of(udp.payload) else {
            continue;
        };
        let key = finder.key_for(udp.src, udp.dst, ssrc);
        let Some(&i) = index.get(&key) else {
            continue;
        };
        let start = *epoch.get_or_insert(rec.time);
        let now = rec.time.saturating_sub(start);
        let r = &mut running[i];
        let _ = r.leg.push(udp.payload, now);
        match r.sink.as_mut() {
            Some(sink) => r.leg.pull(now, sink),
            None => r.leg.pull(now, &mut NullSink),
        }
    }

    let mut reports = Vec::with_capacity(running.len());
    for mut r in running {
        let samples = match r.sink.as_mut() {
            Some(sink) => {
                r.leg.finish(sink);
                sink.samples
            }
            None => {
                r.leg.finish(&mut NullSink);
                0
            }
        };
        if let Some(sink) = r.sink.take() {
            if let Some(e) = sink.error {
                return Err(Error::io("writing WAV", hound_io(e)));
            }
            sink.writer
                .finalize()
                .map_err(|e| Error::io("finalizing WAV", hound_io(e)))?;
        }
        reports.push(StreamReport {
            key: r.summary.key,
            codec: r.codec,
            sample_rate: r.leg.rate(),
            stats: r.leg.stats(),
            dtmf: r.leg.dtmf().to_vec(),
            samples,
            wav: r.path,
        });
    }
    Ok(reports)
}

/// The SSRC field of a datagram that may be RTP.
pub(super) fn ssrc_of(payload: &[u8]) -> Option<u32> {
    let b = payload.get(8..12)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn hound_io(e: hound::Error) -> std::io::Error {
    match e {
        hound::Error::IoError(io) => io,
        other => std::io::Error::other(other.to_string()),
    }
}

/// A printable table of the reports.
pub fn table(reports: &[StreamReport]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<8}  {:<45}  {:<6}  {:>7}  {:>5}  {:>5}  {:>5}  {:>9}  {:>11}  {:<12}  {:>9}  {}\n",
        "SSRC",
        "SOURCE -> DESTINATION",
        "CODEC",
        "PACKETS",
        "LOST",
        "LATE",
        "DUPS",
        "DRIFT_PPM",
        "CORRECTIONS",
        "DTMF",
        "DURATION",
        "FILE"
    ));
    for r in reports {
        let flow = format!("{} -> {}", r.key.src, r.key.dst);
        let codec = r.codec.map_or("-", Codec::name);
        let file = r.wav.as_ref().and_then(|p| p.file_name()).map_or_else(
            || "(no audio)".to_owned(),
            |f| f.to_string_lossy().into_owned(),
        );
        let digits = r.digits();
        out.push_str(&format!(
            "{:08x}  {:<45}  {:<6}  {:>7}  {:>5}  {:>5}  {:>5}  {:>9.1}  {:>11}  {:<12}  {:>8.2}s  {}\n",
            r.key.ssrc,
            flow,
            codec,
            r.stats.received,
            r.stats.lost,
            r.stats.late,
            r.stats.duplicates,
            r.stats.drift_ppm,
            format!(
                "{} (+{}/-{})",
                r.stats.corrections, r.stats.samples_inserted, r.stats.samples_removed
            ),
            if digits.is_empty() {
                "-".to_owned()
            } else {
                digits
            },
            r.duration().as_secs_f64(),
            file
        ));
    }
    out
}

pub mod record;
