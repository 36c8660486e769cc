//! `recengine pcap --format …`: the mixed recording of a two-party capture,
//! made as the daemon makes one — by the same [`CallMedia`] with the same
//! [`plan`](crate::core::call::plan) — from one leg per flow (following
//! SSRC changes), ticked every 20 ms of capture time, into the same file
//! writer and sidecar. This module only reads the capture and carries out
//! what the call's media answers.

use std::path::PathBuf;
use std::time::Duration;

use crate::capture::net::udp_in_frame;
use crate::capture::streams::{StreamFinder, StreamSummary};
use crate::config::{Channels, Format, PauseBehavior};
use crate::core::call::plan::{PlanLeg, Selection, plan};
use crate::core::call::{CallMedia, EndAt, Output, RecordingHandle, RecordingPlan};
use crate::core::encode::EncoderSpec;
use crate::core::leg::LegConfig;
use crate::error::Error;
use crate::io::sink::{FinalFile, RecordingFile, write_sidecar};
use crate::recording::{Checksum, LegInfo, RecordingInfo, RecordingStatus, Role};
use crate::timefmt::rfc3339;

use super::{find_streams, open, ssrc_of};

/// Which parties a recording contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Participant {
    All,
    Caller,
    Callee,
}

impl Participant {
    pub fn name(self) -> &'static str {
        match self {
            Participant::All => "all",
            Participant::Caller => "caller",
            Participant::Callee => "callee",
        }
    }

    fn selection(self) -> Selection {
        match self {
            Participant::All => Selection::All,
            Participant::Caller => Selection::Caller,
            Participant::Callee => Selection::Callee,
        }
    }
}

/// How a party is picked from the capture: an SSRC (hex) or a source
/// address (`ip` or `ip:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartySelector {
    Ssrc(u32),
    Address(String),
}

impl PartySelector {
    pub fn parse(s: &str) -> Self {
        let hex = s.trim_start_matches("0x");
        match u32::from_str_radix(hex, 16) {
            Ok(v) if hex.len() == 8 => PartySelector::Ssrc(v),
            _ => PartySelector::Address(s.to_owned()),
        }
    }

    fn matches(&self, s: &StreamSummary) -> bool {
        match self {
            PartySelector::Ssrc(v) => s.key.ssrc == *v,
            PartySelector::Address(a) => {
                s.key.src.to_string() == *a || s.key.src.ip().to_string() == *a
            }
        }
    }
}

/// Options of a mixed recording from a capture.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub input: PathBuf,
    pub output_dir: PathBuf,
    pub rtp_ports: Vec<u16>,
    pub payload_types: Vec<(u8, crate::core::rtp::Codec)>,
    pub playout_delay: Duration,
    pub jitter_capacity: usize,
    /// See [`crate::core::leg::LegConfig::drift_bound`].
    pub drift_bound: Duration,
    pub format: Format,
    pub sample_rate: u32,
    pub channels: Channels,
    pub bitrate_kbps: u32,
    pub mp3_quality: u8,
    pub opus_complexity: u8,
    pub participant: Participant,
    pub pause_behavior: PauseBehavior,
    /// Pauses as (from, to) in capture time since its first packet.
    pub pauses: Vec<(Duration, Duration)>,
    pub suppress_dtmf: bool,
    pub caller: Option<PartySelector>,
    pub callee: Option<PartySelector>,
    pub flush_interval: Duration,
}

struct Party {
    summary: StreamSummary,
    /// The stream's SSRC in hex.
    leg_id: String,
    role: Role,
    channel: Option<u16>,
}

const TICK: Duration = Duration::from_millis(20);

/// Makes the recording; returns its metadata (also written as the sidecar).
pub fn record(opts: &RecordOptions) -> Result<RecordingInfo, Error> {
    let (mut finder, mut parties) = choose_parties(opts)?;
    let mut media = CallMedia::new(opts.sample_rate, opts.playout_delay);
    for p in &parties {
        media.add_leg(LegConfig {
            payload_map: finder.payload_map(&p.summary, &opts.payload_types),
            rate: opts.sample_rate,
            playout_delay: opts.playout_delay,
            jitter_capacity: opts.jitter_capacity,
            drift_bound: opts.drift_bound,
        });
    }
    let plan_legs: Vec<PlanLeg<'_>> = parties
        .iter()
        .map(|p| PlanLeg {
            id: &p.leg_id,
            role: p.role,
        })
        .collect();
    let channels = plan(&plan_legs, &opts.participant.selection(), opts.channels)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    for input in &channels.inputs {
        parties[input.track].channel = Some(input.channel);
    }
    let spec = EncoderSpec {
        format: opts.format,
        sample_rate: opts.sample_rate,
        channels: channels.channel_count,
        bitrate_kbps: opts.bitrate_kbps,
        mp3_quality: opts.mp3_quality,
        opus_complexity: opts.opus_complexity,
    };
    let recording = media
        .start_recording(RecordingPlan {
            spec,
            inputs: channels.inputs,
            pause_behavior: opts.pause_behavior,
            suppress_dtmf: opts.suppress_dtmf,
            start: Duration::ZERO,
            flush_interval: opts.flush_interval,
            min_duration: Duration::ZERO,
            notices: Vec::new(),
        })
        .map_err(|e| Error::Invalid(e.to_string()))?;

    let stem = opts.input.file_stem().map_or_else(
        || "capture".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let recording_id = format!("pcap-{stem}");
    let mut out = FileOut::create(opts, &recording_id)?;
    let mut pauses = PauseSchedule::new(&opts.pauses);
    let clock = replay(
        opts,
        &mut finder,
        &parties,
        &mut media,
        &mut out,
        |media, t| {
            pauses.apply_until(media, recording, Some(t));
        },
    )?;
    // End of capture: release everything, mix to the end of the last audio.
    pauses.apply_until(&mut media, recording, None);
    media.end(EndAt::LastAudio);
    let finished = out.carry_out(&mut media)?;
    let (Some(summary), Some(done)) = (finished, out.done.take()) else {
        return Err(Error::Invalid(format!(
            "{}: the recording did not finish",
            opts.input.display()
        )));
    };
    // The file is the statement: it starts at the first packet and lasts
    // its duration.
    let started = clock.epoch + clock.first_seen;
    let info = RecordingInfo {
        encryption: None,
        siprec: None,
        recording_id: recording_id.clone(),
        call_id: stem,
        customer_id: None,
        reference_type: "call".into(),
        status: RecordingStatus::Completed,
        format: opts.format,
        content_type: opts.format.content_type().into(),
        sample_rate: opts.sample_rate,
        channels: opts.channels,
        channel_count: channels.channel_count,
        bitrate_kbps: spec.effective_bitrate_kbps(),
        participant: opts.participant.name().into(),
        pause_behavior: opts.pause_behavior,
        started_at: rfc3339(started),
        stopped_at: rfc3339(started + Duration::from_millis(summary.duration_ms)),
        duration_ms: summary.duration_ms,
        file: done
            .path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
        file_size_bytes: done.size,
        checksum: Checksum::sha256(done.sha256),
        pauses: summary.pauses,
        legs: parties
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let leg = media.leg(i);
                LegInfo {
                    leg_id: p.leg_id,
                    role: p.role,
                    label: None,
                    channel: p.channel,
                    codecs: leg.map(|l| l.codecs_used()).unwrap_or_default(),
                    source: Some(p.summary.key.src.to_string()),
                    stats: leg.map(|l| l.stats()).unwrap_or_default(),
                    dtmf: leg.map(|l| l.dtmf().to_vec()).unwrap_or_default(),
                }
            })
            .collect(),
        recovered: false,
        owner: Default::default(),
        call_flow_id: None,
        announcement: None,
    };
    let sidecar = opts.output_dir.join(format!("{recording_id}.json"));
    write_sidecar(&sidecar, &info)
        .map_err(|e| Error::io(format!("writing {}", sidecar.display()), e))?;
    Ok(info)
}

/// The caller's and the callee's audio streams: chosen by `--caller` and
/// `--callee`, else the first audio stream and the next of another flow.
fn choose_parties(opts: &RecordOptions) -> Result<(StreamFinder, Vec<Party>), Error> {
    let finder = find_streams(&opts.input, &opts.rtp_ports, true)?;
    let audio: Vec<StreamSummary> = finder
        .streams()
        .into_iter()
        .filter(|s| {
            s.main_audio_codec(&finder.payload_map(s, &opts.payload_types))
                .is_some()
        })
        .collect();
    let find = |sel: &PartySelector| audio.iter().find(|s| sel.matches(s)).cloned();
    let caller = match &opts.caller {
        Some(sel) => find(sel),
        None => audio.first().cloned(),
    }
    .ok_or_else(|| no_party(opts, "caller"))?;
    let callee = match &opts.callee {
        Some(sel) => Some(find(sel).ok_or_else(|| no_party(opts, "callee"))?),
        None => audio.iter().find(|s| s.key != caller.key).cloned(),
    };
    let parties = [(Some(caller), Role::Caller), (callee, Role::Callee)]
        .into_iter()
        .filter_map(|(summary, role)| {
            summary.map(|summary| Party {
                leg_id: format!("{:08x}", summary.key.ssrc),
                summary,
                role,
                channel: None,
            })
        })
        .collect();
    Ok((finder, parties))
}

/// Where the replay's clock stood: capture time of its zero, and the first
/// packet of a recorded party after it.
struct ReplayClock {
    epoch: Duration,
    first_seen: Duration,
}

/// Feeds the recorded parties' packets to `media` at their capture times,
/// ticking every 20 ms of capture time (calling `before_tick` first) and
/// carrying out the outputs. The replay runs from the first packet of a
/// recorded party to its last: whatever the capture holds after it
/// (signalling, other calls) is not the call.
fn replay(
    opts: &RecordOptions,
    finder: &mut StreamFinder,
    parties: &[Party],
    media: &mut CallMedia,
    out: &mut FileOut,
    mut before_tick: impl FnMut(&mut CallMedia, Duration),
) -> Result<ReplayClock, Error> {
    let media_start = parties
        .iter()
        .map(|p| p.summary.first_seen)
        .min()
        .unwrap_or_default();
    let media_end = parties
        .iter()
        .map(|p| p.summary.last_seen)
        .max()
        .unwrap_or_default();
    let mut reader = open(&opts.input)?;
    let mut epoch: Option<Duration> = None;
    let mut first_seen: Option<Duration> = None;
    let mut next_tick = Duration::ZERO;
    while let Some(rec) = reader.next_record()? {
        if rec.time < media_start {
            continue;
        }
        if rec.time > media_end {
            break;
        }
        let start = *epoch.get_or_insert(rec.time);
        let now = rec.time.saturating_sub(start);
        while next_tick <= now {
            before_tick(media, next_tick);
            media.tick(next_tick);
            out.carry_out(media)?;
            next_tick += TICK;
        }
        let Some(udp) = udp_in_frame(rec.linktype, rec.data) else {
            continue;
        };
        let Some(ssrc) = ssrc_of(udp.payload) else {
            continue;
        };
        let key = finder.key_for(udp.src, udp.dst, ssrc);
        if let Some(i) = parties.iter().position(|p| p.summary.key == key) {
            let _ = media.push(i, udp.payload, now);
            first_seen.get_or_insert(now);
        }
    }
    Ok(ReplayClock {
        epoch: epoch.unwrap_or_default(),
        first_seen: first_seen.unwrap_or_default(),
    })
}

/// `--pause FROM-TO` intervals as pause and resume instants, applied in
/// order as the replay's clock reaches them.
struct PauseSchedule {
    events: Vec<(Duration, bool)>,
    next: usize,
}

impl PauseSchedule {
    fn new(pauses: &[(Duration, Duration)]) -> Self {
        let mut events: Vec<(Duration, bool)> = pauses
            .iter()
            .flat_map(|&(a, b)| [(a, true), (b, false)])
            .collect();
        events.sort_by_key(|p| p.0);
        Self { events, next: 0 }
    }

    /// Applies every pause and resume due by `until` (all that are left
    /// when `None`).
    fn apply_until(
        &mut self,
        media: &mut CallMedia,
        recording: RecordingHandle,
        until: Option<Duration>,
    ) {
        while let Some(&(at, pause)) = self.events.get(self.next) {
            if until.is_some_and(|t| at > t) {
                break;
            }
            let _ = if pause {
                media.pause(recording, at)
            } else {
                media.resume(recording, at)
            };
            self.next += 1;
        }
    }
}

fn no_party(opts: &RecordOptions, role: &str) -> Error {
    Error::Invalid(format!(
        "{}: no audio stream found for the {role} (see the stream table; choose with --{role} SSRC|ADDR)",
        opts.input.display()
    ))
}

/// The recording's file as the call's media writes it.
struct FileOut {
    path: PathBuf,
    file: Option<RecordingFile>,
    done: Option<FinalFile>,
}

impl FileOut {
    /// `<output_dir>/<recording_id>.<ext>`, replacing an earlier run's.
    fn create(opts: &RecordOptions, recording_id: &str) -> Result<Self, Error> {
        std::fs::create_dir_all(&opts.output_dir)
            .map_err(|e| Error::io(format!("creating {}", opts.output_dir.display()), e))?;
        let path = opts
            .output_dir
            .join(format!("{recording_id}.{}", opts.format.extension()));
        let _ = std::fs::remove_file(&path);
        let mut part_path = path.clone().into_os_string();
        part_path.push(".part");
        let _ = std::fs::remove_file(&part_path);
        let file = RecordingFile::create(&path, opts.flush_interval, Duration::ZERO, None)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(Self {
            path,
            file: Some(file),
            done: None,
        })
    }

    /// Carries out the media's outputs; answers the summary once the
    /// recording has finished.
    fn carry_out(
        &mut self,
        media: &mut CallMedia,
    ) -> Result<Option<crate::core::call::Finished>, Error> {
        let mut finished = None;
        while let Some(output) = media.poll_output() {
            match output {
                Output::Bytes { bytes, .. } => {
                    if let Some(f) = self.file.as_mut() {
                        f.write_owned(bytes);
                    }
                }
                Output::Flush { header, .. } => {
                    if let Some(f) = self.file.as_mut() {
                        f.flush(header.as_deref())
                            .map_err(|e| Error::io("writing the recording", e))?;
                    }
                }
                Output::Finished { summary, .. } => {
                    if let Some(f) = self.file.take() {
                        self.done = Some(f.finalize(summary.header.as_deref()).map_err(|e| {
                            Error::io(format!("finalizing {}", self.path.display()), e)
                        })?);
                    }
                    finished = Some(summary);
                }
                Output::Discarded { duration_ms, .. } => {
                    return Err(Error::Invalid(format!(
                        "the recording was discarded after {duration_ms} ms"
                    )));
                }
                Output::Failed { message, .. } => return Err(Error::Invalid(message)),
            }
        }
        Ok(finished)
    }
}
