//! `recengine loadgen --verify`: after a run, every recording is
//! downloaded through the API, decoded, and compared with what the
//! generator sent to each leg.
//!
//! What is checked, per recording:
//! - it completed, and was recorded at the generator's 8 kHz;
//! - every party is found in its channel (or in the mono mix);
//! - WAV: every sample of every packet that was sent and could arrive in
//!   time equals the G.711 decode of what was sent (sample for sample);
//!   MP3: the decoded audio correlates with what was sent, as a whole and
//!   in every half second of speech;
//! - the parties are where they were sent relative to each other (both
//!   legs' packets of one instant leave in one batch, so their audio must
//!   line up within `align_tolerance`);
//! - the file is as long as the audio that arrived before the stop, and not
//!   much longer.
//!
//! A packet is owed to the recording when the generator sent it, did not
//! delay it on purpose beyond the playout delay, and it was due before the
//! recording was stopped. Concealment of a lost packet is not compared.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::{LoadCodec, LoadgenOptions, LoadgenReport, http_json, http_request};
pub use crate::audio_file::Decoded;
use crate::core::decode::{alaw_to_linear, ulaw_to_linear};
use crate::error::Error;
use crate::testkit::correlation_of;
use crate::testkit::netem::Pattern;

/// `SentLeg::delay_us` of a packet that was never sent.
pub const NEVER_SENT: u32 = u32::MAX;

/// Samples per 20 ms packet at the generator's 8 kHz.
const PACKET: usize = 160;
const RATE: u32 = 8000;

/// What one leg carried.
#[derive(Debug, Clone, PartialEq)]
pub struct SentLeg {
    pub leg_id: String,
    pub role: String,
    /// The packet of the speech signal its tick 0 carried.
    pub phase: usize,
    /// Per tick: how long the generator held the packet back on purpose
    /// (arrival pattern, reordering), or [`NEVER_SENT`].
    pub delay_us: Vec<u32>,
}

/// What one call carried, on the generator's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct SentCall {
    pub call_id: String,
    pub legs: Vec<SentLeg>,
    /// From the call's creation to the first packet of the run.
    pub lead: Duration,
    /// From the first packet of the run to this call's stop request.
    pub stopped_after: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    /// The daemon's `jitter.playout_delay_ms`: packets the generator held
    /// back longer than this (less a 10 ms margin) are not owed.
    pub playout_delay: Duration,
    /// How far apart, in samples, the two parties may land.
    pub align_tolerance: usize,
    /// How long to wait for all recordings to complete.
    pub timeout: Duration,
}

impl VerifyOptions {
    /// Options for a run with `pattern` against a daemon whose playout
    /// delay is `playout_delay`. The alignment tolerance follows the
    /// pattern: each leg is anchored on the least-delayed packet it saw
    /// before its first playout, so two legs line up exactly when each had
    /// a packet on time early on (paced, bursts, a stall later), and
    /// within the least delay their early packets saw otherwise.
    pub fn for_pattern(pattern: Pattern, playout_delay: Duration) -> Self {
        let ms = RATE as usize / 1000;
        let spread = match pattern {
            Pattern::Paced | Pattern::Bursts(_) | Pattern::StallThenBurst { .. } => 0,
            Pattern::WifiSpikes => 6 * ms,
            Pattern::Uniform { max_ms } => max_ms as usize * ms / 4,
        };
        Self {
            playout_delay,
            align_tolerance: spread + 2 * ms,
            ..Default::default()
        }
    }
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            playout_delay: Duration::from_millis(200),
            align_tolerance: 16,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Why a recording failed verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The recording ended in another state than completed.
    NotCompleted { status: String },
    /// It could not be fetched or decoded.
    Unreadable { reason: String },
    /// Recorded at another rate than the generator's 8 kHz.
    WrongRate { rate: u32 },
    /// A party's audio is not in its channel.
    PartyNotFound { role: String },
    /// Samples of owed packets differ from what was sent (WAV).
    Mismatch {
        role: String,
        samples: u64,
        first_tick: u32,
    },
    /// A lossy recording does not follow what was sent (MP3).
    LowCorrelation {
        role: String,
        overall: f64,
        worst_window: f64,
        worst_window_tick: u32,
    },
    /// The parties are not where they were sent relative to each other.
    Misaligned { samples: usize },
    /// The file ends before the last owed packet.
    Short { missing_ms: u64 },
    /// The file runs on well after the stop.
    Long { extra_ms: u64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::NotCompleted { status } => write!(f, "recording {status}, not completed"),
            Problem::Unreadable { reason } => write!(f, "unreadable: {reason}"),
            Problem::WrongRate { rate } => {
                write!(f, "recorded at {rate} Hz; verify compares at 8000 Hz")
            }
            Problem::PartyNotFound { role } => write!(f, "{role} not found in its channel"),
            Problem::Mismatch {
                role,
                samples,
                first_tick,
            } => write!(
                f,
                "{role}: {samples} samples differ from what was sent (first in packet {first_tick})"
            ),
            Problem::LowCorrelation {
                role,
                overall,
                worst_window,
                worst_window_tick,
            } => write!(
                f,
                "{role}: correlation {overall:.3} overall, {worst_window:.3} at packet {worst_window_tick}"
            ),
            Problem::Misaligned { samples } => {
                write!(
                    f,
                    "parties {samples} samples apart from their sent alignment"
                )
            }
            Problem::Short { missing_ms } => write!(f, "{missing_ms} ms short"),
            Problem::Long { extra_ms } => write!(f, "{extra_ms} ms longer than the call"),
        }
    }
}

/// One recording's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordingCheck {
    pub call_id: String,
    pub recording_id: Option<String>,
    /// Samples compared (WAV) or correlated (MP3), all parties.
    pub compared_samples: u64,
    /// How far apart the parties landed, in samples.
    pub misalignment: usize,
    /// The lowest half-second correlation (MP3), 1.0 for WAV.
    pub worst_correlation: f64,
    pub problems: Vec<Problem>,
}

impl RecordingCheck {
    /// Nothing checked yet, nothing wrong yet.
    pub fn new(call_id: &str) -> Self {
        Self {
            call_id: call_id.to_owned(),
            recording_id: None,
            compared_samples: 0,
            misalignment: 0,
            worst_correlation: 1.0,
            problems: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VerifyReport {
    pub recordings: usize,
    pub passed: usize,
    pub failed: usize,
    pub compared_samples: u64,
    pub max_misalignment_samples: usize,
    pub worst_correlation: f64,
    /// The failed recordings (at most 50).
    pub failures: Vec<RecordingCheck>,
}

/// Refuses what cannot be verified exactly enough, before any load runs.
pub fn supported(opts: &LoadgenOptions) -> Result<(), Error> {
    if !matches!(opts.codec, LoadCodec::Pcmu | LoadCodec::Pcma) {
        return Err(Error::Invalid(
            "--verify needs --codec pcmu or pcma (G.711 gives an exact reference)".into(),
        ));
    }
    match opts.recording["format"].as_str() {
        Some("wav" | "mp3") => Ok(()),
        other => Err(Error::Invalid(format!(
            "--verify checks wav and mp3 recordings, not {}",
            other.unwrap_or("?")
        ))),
    }
}

/// Downloads and checks every recording of `report`'s calls.
pub fn verify(
    opts: &LoadgenOptions,
    report: &LoadgenReport,
    vopts: &VerifyOptions,
) -> Result<VerifyReport, Error> {
    supported(opts)?;
    let reference = Reference::new(opts.codec)?;
    let deadline = Instant::now() + vopts.timeout;
    let next = AtomicUsize::new(0);
    let checks = Mutex::new(Vec::with_capacity(report.sent.len()));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(call) = report.sent.get(i) else {
                        break;
                    };
                    let check =
                        check_call(opts.api, &opts.token, call, &reference, vopts, deadline);
                    if let Ok(mut c) = checks.lock() {
                        c.push(check);
                    }
                }
            });
        }
    });
    let checks = checks.into_inner().unwrap_or_default();
    let mut out = VerifyReport {
        recordings: checks.len(),
        worst_correlation: 1.0,
        ..Default::default()
    };
    for c in checks {
        out.compared_samples += c.compared_samples;
        out.max_misalignment_samples = out.max_misalignment_samples.max(c.misalignment);
        out.worst_correlation = out.worst_correlation.min(c.worst_correlation);
        if c.problems.is_empty() {
            out.passed += 1;
        } else {
            out.failed += 1;
            if out.failures.len() < 50 {
                out.failures.push(c);
            }
        }
    }
    Ok(out)
}

/// The G.711 decode of every packet of the speech signal.
struct Reference {
    frames: Vec<Vec<i16>>,
}

impl Reference {
    fn new(codec: LoadCodec) -> Result<Self, Error> {
        let decode: fn(u8) -> i16 = match codec {
            LoadCodec::Pcmu => ulaw_to_linear,
            LoadCodec::Pcma => alaw_to_linear,
            _ => return Err(Error::Invalid("verify needs a G.711 codec".into())),
        };
        let frames = super::payloads(codec)?
            .iter()
            .map(|p| p.iter().map(|&b| decode(b)).collect())
            .collect();
        Ok(Self { frames })
    }

    /// What `leg` sent in `tick`.
    fn packet(&self, leg: &SentLeg, tick: usize) -> &[i16] {
        &self.frames[(tick + leg.phase) % self.frames.len()]
    }
}

fn check_call(
    api: SocketAddr,
    token: &str,
    call: &SentCall,
    reference: &Reference,
    vopts: &VerifyOptions,
    deadline: Instant,
) -> RecordingCheck {
    let mut check = RecordingCheck::new(&call.call_id);
    match fetch(api, token, call, deadline, &mut check) {
        Ok(Some((audio, detail))) => compare(call, reference, vopts, &audio, &detail, &mut check),
        Ok(None) => {}
        Err(e) => check.problems.push(Problem::Unreadable {
            reason: e.to_string(),
        }),
    }
    check
}

/// Waits for the call's recording to finish; downloads and decodes it.
fn fetch(
    api: SocketAddr,
    token: &str,
    call: &SentCall,
    deadline: Instant,
    check: &mut RecordingCheck,
) -> Result<Option<(Decoded, Value)>, Error> {
    let path = format!("/v1/calls/{}/recording", call.call_id);
    let summary = loop {
        let (status, v) = http_json(api, "GET", &path, token, None)?;
        if status != 200 {
            return Err(Error::Invalid(format!("GET {path}: HTTP {status}: {v}")));
        }
        match v["recording_status"].as_str() {
            Some("completed") => break v,
            // Anything but an end state (recording, stopped, processing…)
            // is still being made or finalized.
            Some(state)
                if !matches!(state, "failed" | "discarded") && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => {
                check.problems.push(Problem::NotCompleted {
                    status: other.unwrap_or("unknown").to_owned(),
                });
                return Ok(None);
            }
        }
    };
    let recording_id = summary["recording_id"].as_str().unwrap_or_default();
    check.recording_id = Some(recording_id.to_owned());
    let (status, detail) = http_json(
        api,
        "GET",
        &format!("/v1/recordings/{recording_id}"),
        token,
        None,
    )?;
    if status != 200 {
        return Err(Error::Invalid(format!(
            "GET /v1/recordings/{recording_id}: HTTP {status}"
        )));
    }
    let url = summary["url"].as_str().unwrap_or_default();
    let (status, bytes) = match url.find("/v1/files/") {
        Some(i) => http_request(api, "GET", &url[i..], None, &[])?,
        // A pre-signed URL of the object store (storage.backend = "s3").
        None => {
            let rest = url
                .strip_prefix("http://")
                .ok_or_else(|| Error::Invalid(format!("no download URL in {summary}")))?;
            let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let addr: SocketAddr = host.parse().map_err(|_| {
                Error::Invalid(format!("download URL host {host:?} is not an address"))
            })?;
            http_request(addr, "GET", path, None, &[])?
        }
    };
    if status != 200 {
        return Err(Error::Invalid(format!("download: HTTP {status}")));
    }
    Ok(Some((decode(bytes)?, detail)))
}

/// Decodes a WAV or MP3 file held in memory.
pub fn decode(bytes: Vec<u8>) -> Result<Decoded, Error> {
    crate::audio_file::decode(bytes).map_err(Error::Invalid)
}

/// One channel to check and the legs heard in it.
struct Party<'a> {
    role: String,
    legs: Vec<&'a SentLeg>,
    channel: usize,
}

/// What one leg sent, as one signal from its tick 0, and which of its
/// packets the recording owes.
struct LegSignal {
    samples: Vec<i16>,
    owed: Vec<bool>,
}

impl LegSignal {
    fn new(reference: &Reference, leg: &SentLeg, owed: impl Fn(&SentLeg, usize) -> bool) -> Self {
        let ticks = leg.delay_us.len();
        let mut samples = Vec::with_capacity(ticks * PACKET);
        for t in 0..ticks {
            samples.extend_from_slice(reference.packet(leg, t));
        }
        Self {
            samples,
            owed: (0..ticks).map(|t| owed(leg, t)).collect(),
        }
    }

    /// Sample `i` of the leg if its packet is owed.
    fn at(&self, i: i64) -> Option<i16> {
        let i = usize::try_from(i).ok()?;
        (*self.owed.get(i / PACKET)?).then(|| self.samples[i])
    }

    /// The leg's first `n` samples (0 where not owed) and which are owed.
    fn head(&self, n: usize) -> (Vec<i16>, Vec<bool>) {
        (0..self.samples.len().min(n) as i64)
            .map(|p| self.at(p).map_or((0, false), |s| (s, true)))
            .unzip()
    }
}

/// A party's legs placed in the recording: leg `k` starts at `lags[k]`.
struct Placed<'a> {
    legs: &'a [LegSignal],
    lags: Vec<i64>,
}

impl Placed<'_> {
    /// What the recording must hold at `pos`, if every leg owes it.
    fn expected(&self, pos: i64) -> Option<i16> {
        let mut sum = 0i32;
        for (leg, lag) in self.legs.iter().zip(&self.lags) {
            sum += i32::from(leg.at(pos - lag)?);
        }
        Some(sum.clamp(-32_768, 32_767) as i16)
    }

    /// The span of recording positions the legs cover.
    fn span(&self) -> std::ops::Range<i64> {
        let start = self.lags.iter().copied().min().unwrap_or(0);
        let end = self
            .legs
            .iter()
            .zip(&self.lags)
            .map(|(l, lag)| lag + l.samples.len() as i64)
            .max()
            .unwrap_or(0);
        start..end
    }

    /// One past the last owed sample.
    fn last_owed_end(&self) -> i64 {
        self.legs
            .iter()
            .zip(&self.lags)
            .filter_map(|(l, lag)| {
                let t = l.owed.iter().rposition(|&o| o)?;
                Some(lag + ((t + 1) * PACKET) as i64)
            })
            .max()
            .unwrap_or(0)
    }
}

fn compare(
    call: &SentCall,
    reference: &Reference,
    vopts: &VerifyOptions,
    audio: &Decoded,
    detail: &Value,
    check: &mut RecordingCheck,
) {
    if audio.rate != RATE {
        check.problems.push(Problem::WrongRate { rate: audio.rate });
        return;
    }
    // Owed: sent, not held back beyond the playout delay, and due before
    // the stop (with 100 ms for the stop request to arrive).
    let late_after = vopts
        .playout_delay
        .saturating_sub(Duration::from_millis(10))
        .as_micros() as u64;
    let owed = |leg: &SentLeg, t: usize| -> bool {
        let d = leg.delay_us[t];
        let due = (t as u64 * 20_000) + vopts.playout_delay.as_micros() as u64 + 100_000;
        d != NEVER_SENT && u64::from(d) < late_after && due <= call.stopped_after.as_micros() as u64
    };
    let mut starts = Vec::new();
    let mut last_owed_end = 0i64;
    for party in parties(call, audio, detail) {
        let Some(got) = audio.channels.get(party.channel) else {
            check
                .problems
                .push(Problem::PartyNotFound { role: party.role });
            continue;
        };
        let legs: Vec<LegSignal> = party
            .legs
            .iter()
            .map(|l| LegSignal::new(reference, l, owed))
            .collect();
        let placed = if audio.lossy {
            // Each party on its own (in a mono mix the other is noise to
            // it), so that parties a few samples apart are named so.
            legs.iter()
                .map(|leg| locate_by_correlation(got, leg, call.lead))
                .collect::<Option<Vec<i64>>>()
                .map(|lags| Placed { legs: &legs, lags })
        } else {
            // Search past the tolerance so that a misplaced party is
            // named as such.
            locate_exactly(got, &legs, vopts.align_tolerance.max(2 * PACKET) as i64)
        };
        let Some(placed) = placed else {
            check
                .problems
                .push(Problem::PartyNotFound { role: party.role });
            continue;
        };
        starts.extend(placed.lags.iter().copied());
        last_owed_end = last_owed_end.max(placed.last_owed_end());
        if audio.lossy {
            let (compared, overall, worst, worst_pos) = correlate(got, &placed);
            check.compared_samples += compared;
            check.worst_correlation = check.worst_correlation.min(worst);
            if overall < 0.8 || worst < 0.5 {
                check.problems.push(Problem::LowCorrelation {
                    role: party.role.clone(),
                    overall,
                    worst_window: worst,
                    worst_window_tick: ((worst_pos - placed.lags[0]).max(0) as usize / PACKET)
                        as u32,
                });
            }
        } else {
            let (mut differ, mut first) = (0u64, None);
            for pos in placed.span() {
                let (Some(want), Some(&have)) = (
                    placed.expected(pos),
                    usize::try_from(pos).ok().and_then(|p| got.get(p)),
                ) else {
                    continue;
                };
                check.compared_samples += 1;
                if have != want {
                    differ += 1;
                    first.get_or_insert(((pos - placed.lags[0]).max(0) as usize / PACKET) as u32);
                }
            }
            if differ > 0 {
                check.problems.push(Problem::Mismatch {
                    role: party.role.clone(),
                    samples: differ,
                    first_tick: first.unwrap_or(0),
                });
            }
        }
    }
    if let (Some(lo), Some(hi)) = (starts.iter().min(), starts.iter().max()) {
        check.misalignment = (hi - lo) as usize;
        if check.misalignment > vopts.align_tolerance {
            check.problems.push(Problem::Misaligned {
                samples: check.misalignment,
            });
        }
    }
    let frames = audio.channels.first().map_or(0, Vec::len) as i64;
    let ms = |samples: i64| (samples as u64 * 1000) / u64::from(RATE);
    if frames < last_owed_end {
        check.problems.push(Problem::Short {
            missing_ms: ms(last_owed_end - frames),
        });
    }
    // The recording runs from its start to the stop; allow a second and a
    // half for the stop request and the encoder's flush.
    let lead = starts.iter().min().copied().unwrap_or(0);
    let longest = lead + ((call.stopped_after.as_secs_f64() + 1.5) * f64::from(RATE)) as i64;
    if frames > longest {
        check.problems.push(Problem::Long {
            extra_ms: ms(frames - longest),
        });
    }
}

/// The parties to find: one per channel in dual recordings (by the
/// recording's `legs[].channel`), or one mix of every leg in mono ones.
fn parties<'a>(call: &'a SentCall, audio: &Decoded, detail: &Value) -> Vec<Party<'a>> {
    if audio.channels.len() == 1 {
        return vec![Party {
            role: "mix".into(),
            legs: call.legs.iter().collect(),
            channel: 0,
        }];
    }
    let channel_of = |leg: &SentLeg| {
        detail["legs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["leg_id"] == leg.leg_id.as_str())
            .and_then(|l| l["channel"].as_u64())
    };
    call.legs
        .iter()
        .enumerate()
        .map(|(i, leg)| Party {
            role: leg.role.clone(),
            legs: vec![leg],
            channel: channel_of(leg).map_or(i, |c| c as usize),
        })
        .collect()
}

/// Places the legs exactly: the first leg by the first exact match of its
/// mix's loudest owed packet (among the first 250), the others relative to
/// it, nearest first, up to `search` samples apart (legs anchored on
/// different arrivals may land a sample apart).
fn locate_exactly<'a>(got: &[i16], legs: &'a [LegSignal], search: i64) -> Option<Placed<'a>> {
    let ticks = legs.iter().map(|l| l.owed.len()).min()?;
    let shifts: Vec<i64> = if legs.len() == 2 {
        // Nearest shifts first.
        let mut v: Vec<i64> = (-search..=search).collect();
        v.sort_by_key(|d| d.abs());
        v
    } else {
        vec![0]
    };
    for d in shifts {
        let mut lags = vec![0i64; legs.len()];
        if legs.len() == 2 {
            lags[1] = d;
        }
        let placed = Placed { legs, lags };
        let window = |t: usize| -> Option<Vec<i16>> {
            let at = (t * PACKET) as i64;
            (at..at + PACKET as i64)
                .map(|p| placed.expected(p))
                .collect()
        };
        let Some((anchor, want)) = (0..ticks.min(250))
            .filter_map(|t| window(t).map(|w| (t, w)))
            .max_by_key(|(_, w)| w.iter().map(|&s| i64::from(s).abs()).sum::<i64>())
        else {
            continue;
        };
        if let Some(pos) = got.windows(PACKET).position(|w| w == want) {
            let base = pos as i64 - (anchor * PACKET) as i64;
            let lags = placed.lags.iter().map(|l| l + base).collect();
            return Some(Placed { legs, lags });
        }
    }
    None
}

/// How much of a leg locates it in a lossy file: its first three seconds.
const HEAD: usize = 150 * PACKET;

/// Where a leg's tick 0 sits in a lossy file: the best correlation of 1 kHz
/// envelopes of its first three seconds, searched up to two seconds past
/// where the generator's clock can put it, refined sample by sample.
fn locate_by_correlation(got: &[i16], leg: &LegSignal, lead: Duration) -> Option<i64> {
    const BLOCK: usize = 8;
    let (want, mask) = leg.head(HEAD);
    let envelope = |x: &[i16]| -> Vec<f64> {
        x.chunks(BLOCK)
            .map(|c| c.iter().map(|&s| f64::from(s).abs()).sum::<f64>())
            .collect()
    };
    let want_env = envelope(&want);
    let got_env = envelope(got);
    // The recording starts at the call's creation (`lead` before the first
    // packet) or at its first media: search from its start to two seconds
    // past the lead.
    let lo = 0;
    let hi = ((lead.as_secs_f64() + 2.0) * f64::from(RATE)) as usize / BLOCK;
    let hi = hi.min(got_env.len().saturating_sub(want_env.len() / 2));
    let coarse = (lo..hi)
        .map(|lag| {
            (
                lag,
                correlation_of(got_env[lag..].iter().copied().zip(want_env.iter().copied())),
            )
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))?
        .0;
    // The envelope peak can sit a pitch period off: refine over ±10 ms.
    let lo = (coarse * BLOCK).saturating_sub(10 * BLOCK);
    let hi = (coarse * BLOCK + 10 * BLOCK).min(got.len());
    let (lag, best) = (lo..hi)
        .map(|lag| (lag, masked_correlation(&got[lag..], &want, &mask)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (best > 0.3).then_some(lag as i64)
}

/// Correlation of the owed audio: overall, the worst half second with
/// speech in it, and where that starts in the recording.
fn correlate(got: &[i16], placed: &Placed) -> (u64, f64, f64, i64) {
    const WINDOW: i64 = 25 * PACKET as i64;
    let (mut ab, mut aa, mut bb, mut n) = (0f64, 0f64, 0f64, 0u64);
    let (mut worst, mut worst_pos) = (1.0f64, 0i64);
    let span = placed.span();
    let mut w = span.start;
    while w < span.end {
        let (mut wab, mut waa, mut wbb) = (0f64, 0f64, 0f64);
        let mut complete = true;
        for pos in w..(w + WINDOW).min(span.end) {
            let have = usize::try_from(pos).ok().and_then(|p| got.get(p));
            let (Some(want), Some(&have)) = (placed.expected(pos), have) else {
                complete = false;
                continue;
            };
            let (x, y) = (f64::from(have), f64::from(want));
            wab += x * y;
            waa += x * x;
            wbb += y * y;
            n += 1;
        }
        ab += wab;
        aa += waa;
        bb += wbb;
        // Windows with a lost packet or near-silence say little.
        let loud = wbb / WINDOW as f64 > 300.0 * 300.0;
        if complete && loud {
            let c = if waa == 0.0 {
                0.0
            } else {
                wab / (waa * wbb).sqrt()
            };
            if c < worst {
                (worst, worst_pos) = (c, w);
            }
        }
        w += WINDOW;
    }
    let overall = if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    };
    (n, overall, worst, worst_pos)
}

/// Correlation of `a` against `b` where `mask` is set.
fn masked_correlation(a: &[i16], b: &[i16], mask: &[bool]) -> f64 {
    correlation_of(
        a.iter()
            .zip(b)
            .zip(mask)
            .filter(|(_, m)| **m)
            .map(|((&x, &y), _)| (f64::from(x), f64::from(y))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(ticks: usize) -> SentCall {
        let leg = |role: &str, phase| SentLeg {
            leg_id: format!("leg-{role}"),
            role: role.into(),
            phase,
            delay_us: vec![0; ticks],
        };
        SentCall {
            call_id: "c".into(),
            legs: vec![leg("caller", 0), leg("callee", 166)],
            lead: Duration::from_millis(100),
            stopped_after: Duration::from_millis(ticks as u64 * 20 + 1000),
        }
    }

    /// A dual recording as the daemon should make it: each party at
    /// `lead` samples plus its own shift.
    fn recording(r: &Reference, call: &SentCall, shifts: [usize; 2]) -> Decoded {
        let ticks = call.legs[0].delay_us.len();
        let channels = call
            .legs
            .iter()
            .zip(shifts)
            .map(|(leg, shift)| {
                let mut v = vec![0i16; 800 + shift];
                for t in 0..ticks {
                    v.extend_from_slice(r.packet(leg, t));
                }
                v.resize(v.len() + 1600, 0);
                v
            })
            .collect();
        Decoded {
            channels,
            rate: RATE,
            lossy: false,
        }
    }

    fn problems(audio: &Decoded, call: &SentCall) -> Vec<Problem> {
        let r = Reference::new(LoadCodec::Pcmu).unwrap();
        let mut check = RecordingCheck::new(&call.call_id);
        compare(
            call,
            &r,
            &VerifyOptions::default(),
            audio,
            &Value::Null,
            &mut check,
        );
        check.problems
    }

    #[test]
    fn a_faithful_recording_passes() {
        let r = Reference::new(LoadCodec::Pcmu).unwrap();
        let c = call(300);
        assert_eq!(problems(&recording(&r, &c, [0, 0]), &c), vec![]);
    }

    #[test]
    fn one_changed_sample_a_shifted_party_and_a_cut_tail_fail() {
        let r = Reference::new(LoadCodec::Pcmu).unwrap();
        let c = call(300);
        let mut edited = recording(&r, &c, [0, 0]);
        let at = 800 + 200 * PACKET + 17;
        edited.channels[1][at] = edited.channels[1][at].wrapping_add(1);
        assert_eq!(
            problems(&edited, &c),
            vec![Problem::Mismatch {
                role: "callee".into(),
                samples: 1,
                first_tick: 200
            }]
        );
        let shifted = recording(&r, &c, [0, 80]);
        assert_eq!(
            problems(&shifted, &c),
            vec![Problem::Misaligned { samples: 80 }]
        );
        let mut cut = recording(&r, &c, [0, 0]);
        for ch in &mut cut.channels {
            ch.truncate(800 + 250 * PACKET);
        }
        assert!(
            matches!(
                problems(&cut, &c)[..],
                [Problem::Short { missing_ms: 1000 }]
            ),
            "{:?}",
            problems(&cut, &c)
        );
    }

    #[test]
    fn lost_and_held_back_packets_are_not_owed() {
        let r = Reference::new(LoadCodec::Pcmu).unwrap();
        let mut c = call(300);
        let mut rec = recording(&r, &c, [0, 0]);
        // Packet 40 of the caller was lost, 41 held back past the delay:
        // what the recording has there is not compared.
        c.legs[0].delay_us[40] = NEVER_SENT;
        c.legs[0].delay_us[41] = 250_000;
        rec.channels[0][800 + 40 * PACKET..800 + 42 * PACKET].fill(0);
        assert_eq!(problems(&rec, &c), vec![]);
        // But a packet held back within the delay is owed.
        c.legs[0].delay_us[41] = 150_000;
        assert!(matches!(
            problems(&rec, &c)[..],
            [Problem::Mismatch { first_tick: 41, .. }]
        ));
    }

    /// A mono mix of the two parties, the callee `shift` samples later.
    fn mix(r: &Reference, c: &SentCall, shift: usize) -> Decoded {
        let dual = recording(r, c, [0, shift]);
        let n = dual.channels[1].len();
        let mut mono = vec![0i16; n];
        for (i, m) in mono.iter_mut().enumerate() {
            let a = i32::from(dual.channels[0].get(i).copied().unwrap_or(0));
            *m = (a + i32::from(dual.channels[1][i])).clamp(-32_768, 32_767) as i16;
        }
        Decoded {
            channels: vec![mono],
            rate: RATE,
            lossy: false,
        }
    }

    #[test]
    fn a_mono_mix_is_checked_sample_for_sample_with_each_party_placed() {
        let r = Reference::new(LoadCodec::Pcmu).unwrap();
        let c = call(300);
        assert_eq!(problems(&mix(&r, &c, 0), &c), vec![]);
        // A sample apart: within the tolerance, still sample-exact.
        assert_eq!(problems(&mix(&r, &c, 1), &c), vec![]);
        // 40 samples apart: the sum is found, and named misaligned.
        assert_eq!(
            problems(&mix(&r, &c, 40), &c),
            vec![Problem::Misaligned { samples: 40 }]
        );
        let mut edited = mix(&r, &c, 0);
        edited.channels[0][800 + 100 * PACKET] ^= 0x10;
        assert!(matches!(
            problems(&edited, &c)[..],
            [Problem::Mismatch {
                samples: 1,
                first_tick: 100,
                ..
            }]
        ));
    }

    /// The correlation path (MP3) places each party of a mono mix on its
    /// own, so parties 23 samples apart are named misaligned, not "low
    /// correlation" (the 1,000-call MP3 run had one such call).
    #[test]
    fn a_lossy_mix_places_each_party() {
        let r = Reference::new(LoadCodec::Pcmu).unwrap();
        let c = call(300);
        let mut rec = mix(&r, &c, 0);
        rec.lossy = true;
        assert_eq!(problems(&rec, &c), vec![]);
        let mut shifted = mix(&r, &c, 23);
        shifted.lossy = true;
        assert_eq!(
            problems(&shifted, &c),
            vec![Problem::Misaligned { samples: 23 }]
        );
    }

    /// A mono mix through the real MP3 encoder (8 kHz, default bitrate)
    /// and back, the callee `shift` samples later, after `pad` samples of
    /// silence.
    fn mp3_mix(r: &Reference, c: &SentCall, shift: usize, pad: usize) -> Decoded {
        use crate::config::schema::Format;
        use crate::core::encode::{EncoderSpec, encoder_for};
        let mut pcm = vec![0i16; pad];
        pcm.extend(mix(r, c, shift).channels.remove(0));
        let mut enc = encoder_for(EncoderSpec {
            format: Format::Mp3,
            sample_rate: RATE,
            channels: 1,
            bitrate_kbps: 0,
            mp3_quality: 5,
            opus_complexity: 0,
        })
        .unwrap();
        let mut bytes = Vec::new();
        for chunk in pcm.chunks(PACKET) {
            enc.encode(chunk, &mut bytes).unwrap();
        }
        enc.finish(&mut bytes).unwrap();
        let tag = enc.header().unwrap();
        bytes[..tag.len()].copy_from_slice(&tag);
        decode(bytes).unwrap()
    }

    /// Through a real codec each party of a mix is still placed to a
    /// sample or two: a faithful recording passes at every small shift,
    /// and parties 23 samples apart are named so.
    #[test]
    fn an_mp3_mix_places_each_party_to_a_sample_or_two() {
        let r = Reference::new(LoadCodec::Pcmu).unwrap();
        let c = call(400);
        // Different leading silence puts the codec's frames elsewhere.
        for (shift, pad) in [(0, 0), (1, 300), (2, 577), (5, 0), (9, 1000), (13, 151)] {
            let rec = mp3_mix(&r, &c, shift, pad);
            assert!(rec.lossy);
            let mut check = RecordingCheck::new("c");
            compare(
                &c,
                &r,
                &VerifyOptions::default(),
                &rec,
                &Value::Null,
                &mut check,
            );
            assert_eq!(check.problems, vec![], "shift {shift}");
            assert!(
                check.misalignment.abs_diff(shift) <= 2,
                "shift {shift}: {check:?}"
            );
        }
        let problems = problems(&mp3_mix(&r, &c, 23, 0), &c);
        assert!(
            matches!(problems[..], [Problem::Misaligned { samples: 21..=25 }]),
            "{problems:?}"
        );
    }

    #[test]
    fn a_missing_party_is_named() {
        let r = Reference::new(LoadCodec::Pcmu).unwrap();
        let c = call(300);
        let mut rec = recording(&r, &c, [0, 0]);
        rec.channels[1].fill(0);
        assert_eq!(
            problems(&rec, &c),
            vec![Problem::PartyNotFound {
                role: "callee".into()
            }]
        );
    }
}
