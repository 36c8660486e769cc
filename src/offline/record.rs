//! `recengine pcap --format …`: the mixed recording of a two-party capture,
//! made exactly as the daemon makes one: one leg per flow (following SSRC
//! changes), legs decoded and resampled to the recording rate into tracks,
//! a 20 ms tick driven by capture time that plays out every leg, mixes and
//! encodes, and the same file writer and sidecar.

use std::path::PathBuf;
use std::time::Duration;

use crate::capture::net::udp_in_frame;
use crate::capture::streams::StreamSummary;
use crate::config::{Channels, Format, PauseBehavior};
use crate::core::encode::EncoderSpec;
use crate::core::leg::{LegConfig, LegReceiver, share_drift_reference};
use crate::core::mixer::{DEFAULT_MARGIN, MixInput, Mixer};
use crate::core::recorder::Recorder;
use crate::core::time::nanos_to_ticks;
use crate::core::track::Track;
use crate::error::Error;
use crate::io::sink::{RecordingFile, write_sidecar};
use crate::recording::{Checksum, LegInfo, RecordingInfo, Role};
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
    role: Role,
    leg: LegReceiver,
    /// Leg origin on the call timeline, in ticks (once it has one).
    offset: Option<i64>,
    channel: Option<u16>,
    /// DTMF records already given to the mixer for suppression.
    dtmf_applied: usize,
}

const TICK: Duration = Duration::from_millis(20);

/// Makes the recording; returns its metadata (also written as the sidecar).
pub fn record(opts: &RecordOptions) -> Result<RecordingInfo, Error> {
    let mut finder = find_streams(&opts.input, &opts.rtp_ports, true)?;
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
    let mut parties: Vec<Party> = Vec::new();
    for (summary, role) in [(Some(caller), Role::Caller), (callee, Role::Callee)] {
        let Some(summary) = summary else { continue };
        let map = finder.payload_map(&summary, &opts.payload_types);
        parties.push(Party {
            leg: LegReceiver::new(LegConfig {
                payload_map: map,
                rate: opts.sample_rate,
                playout_delay: opts.playout_delay,
                jitter_capacity: opts.jitter_capacity,
                drift_bound: opts.drift_bound,
            }),
            summary,
            role,
            offset: None,
            channel: None,
            dtmf_applied: 0,
        });
    }

    // Channels by role, never by order of arrival: caller left, callee right.
    let mut inputs = Vec::new();
    for (i, p) in parties.iter_mut().enumerate() {
        let selected = match opts.participant {
            Participant::All => true,
            Participant::Caller => p.role == Role::Caller,
            Participant::Callee => p.role == Role::Callee,
        };
        if !selected {
            continue;
        }
        let channel = match opts.channels {
            Channels::Mono => 0,
            Channels::Dual => match p.role {
                Role::Callee => 1,
                _ => 0,
            },
        };
        p.channel = Some(channel);
        inputs.push(MixInput { track: i, channel });
    }
    let channel_count = match opts.channels {
        Channels::Mono => 1,
        Channels::Dual => 2,
    };
    let spec = EncoderSpec {
        format: opts.format,
        sample_rate: opts.sample_rate,
        channels: channel_count,
        bitrate_kbps: opts.bitrate_kbps,
        mp3_quality: opts.mp3_quality,
        opus_complexity: opts.opus_complexity,
    };
    let mixer = Mixer::new(
        opts.sample_rate,
        channel_count,
        &inputs,
        opts.pause_behavior,
        Duration::ZERO,
    );
    let mut recorder = Recorder::new(mixer, spec).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut tracks: Vec<Track> = parties
        .iter()
        .map(|_| Track::new(opts.sample_rate as usize))
        .collect();

    let stem = opts.input.file_stem().map_or_else(
        || "capture".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let recording_id = format!("pcap-{stem}");
    std::fs::create_dir_all(&opts.output_dir)
        .map_err(|e| Error::io(format!("creating {}", opts.output_dir.display()), e))?;
    let path = opts
        .output_dir
        .join(format!("{recording_id}.{}", opts.format.extension()));
    let _ = std::fs::remove_file(&path);
    let mut part_path = path.clone().into_os_string();
    part_path.push(".part");
    let _ = std::fs::remove_file(&part_path);
    let mut file = RecordingFile::create(&path, opts.flush_interval, Duration::ZERO)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;

    let mut pauses: Vec<(Duration, bool)> = opts
        .pauses
        .iter()
        .flat_map(|&(a, b)| [(a, true), (b, false)])
        .collect();
    pauses.sort_by_key(|p| p.0);
    let mut next_pause = 0;

    // The recording starts with the first packet of a recorded party.
    let media_start = parties
        .iter()
        .map(|p| p.summary.first_seen)
        .min()
        .unwrap_or_default();
    // ... and ends with the last packet of a recorded party: whatever the
    // capture holds after it (signalling, other calls) is not the call.
    let media_end = parties
        .iter()
        .map(|p| p.summary.last_seen)
        .max()
        .unwrap_or_default();
    let mut reader = open(&opts.input)?;
    let mut epoch: Option<Duration> = None;
    let mut first_seen: Option<Duration> = None;
    let mut next_tick = Duration::ZERO;
    let mut ctx = TickCtx {
        opts,
        recorder: &mut recorder,
        file: &mut file,
    };
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
            while next_pause < pauses.len() && pauses[next_pause].0 <= next_tick {
                let (at, pause) = pauses[next_pause];
                let m = ctx.recorder.mixer_mut();
                let _ = if pause { m.pause(at) } else { m.resume(at) };
                next_pause += 1;
            }
            ctx.tick(&mut parties, &mut tracks, next_tick)?;
            next_tick += TICK;
        }
        let Some(udp) = udp_in_frame(rec.linktype, rec.data) else {
            continue;
        };
        let Some(ssrc) = ssrc_of(udp.payload) else {
            continue;
        };
        let key = finder.key_for(udp.src, udp.dst, ssrc);
        if let Some(p) = parties.iter_mut().find(|p| p.summary.key == key) {
            let _ = p.leg.push(udp.payload, now);
            first_seen.get_or_insert(now);
        }
    }
    // End of capture: release everything, mix to the end of the last audio.
    for (p, track) in parties.iter_mut().zip(tracks.iter_mut()) {
        let offset = p.offset.unwrap_or(0);
        p.leg.finish(&mut track.sink(offset));
    }
    while next_pause < pauses.len() {
        let (at, pause) = pauses[next_pause];
        let m = ctx.recorder.mixer_mut();
        let _ = if pause { m.pause(at) } else { m.resume(at) };
        next_pause += 1;
    }
    ctx.suppress_dtmf(&mut parties);
    let end = tracks
        .iter()
        .filter_map(Track::end_call_pos)
        .max()
        .unwrap_or(0);
    let bytes = ctx
        .recorder
        .mix_to(&tracks, end)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    ctx.file.write(bytes);
    let tail = ctx
        .recorder
        .finish()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    ctx.file.write(tail);
    let header = recorder.header();
    let done = file
        .finalize(header.as_deref())
        .map_err(|e| Error::io(format!("finalizing {}", path.display()), e))?;

    let base = epoch.unwrap_or_default();
    let info = RecordingInfo {
        recording_id: recording_id.clone(),
        call_id: stem,
        customer_id: None,
        reference_type: "call".into(),
        status: "completed".into(),
        format: opts.format,
        content_type: opts.format.content_type().into(),
        sample_rate: opts.sample_rate,
        channels: opts.channels,
        channel_count,
        bitrate_kbps: spec.effective_bitrate_kbps(),
        participant: opts.participant.name().into(),
        pause_behavior: opts.pause_behavior,
        started_at: rfc3339(base + first_seen.unwrap_or_default()),
        // The file is the statement: it starts at the first packet and
        // lasts its duration.
        stopped_at: rfc3339(
            base + first_seen.unwrap_or_default() + Duration::from_millis(recorder.duration_ms()),
        ),
        duration_ms: recorder.duration_ms(),
        file: done
            .path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
        file_size_bytes: done.size,
        checksum: Checksum::sha256(done.sha256),
        pauses: recorder.mixer().pauses(),
        legs: parties
            .iter()
            .map(|p| LegInfo {
                leg_id: format!("{:08x}", p.summary.key.ssrc),
                role: p.role,
                label: None,
                channel: p.channel,
                codecs: p.leg.codecs_used(),
                source: Some(p.summary.key.src.to_string()),
                stats: p.leg.stats(),
                dtmf: p.leg.dtmf().to_vec(),
            })
            .collect(),
        recovered: false,
    };
    let sidecar = opts.output_dir.join(format!("{recording_id}.json"));
    write_sidecar(&sidecar, &info)
        .map_err(|e| Error::io(format!("writing {}", sidecar.display()), e))?;
    Ok(info)
}

fn no_party(opts: &RecordOptions, role: &str) -> Error {
    Error::Invalid(format!(
        "{}: no audio stream found for the {role} (see the stream table; choose with --{role} SSRC|ADDR)",
        opts.input.display()
    ))
}

struct TickCtx<'a> {
    opts: &'a RecordOptions,
    recorder: &'a mut Recorder,
    file: &'a mut RecordingFile,
}

impl TickCtx<'_> {
    /// One 20 ms tick at `now`: play out every leg, mix, encode, write.
    fn tick(
        &mut self,
        parties: &mut [Party],
        tracks: &mut [Track],
        now: Duration,
    ) -> Result<(), Error> {
        share_drift_reference(parties, |p| &mut p.leg);
        for (p, track) in parties.iter_mut().zip(tracks.iter_mut()) {
            // The leg's anchor settles until its first audio is written.
            if track.first_call_pos().is_none()
                && let Some(origin) = p.leg.origin()
            {
                p.offset = Some(nanos_to_ticks(
                    origin.as_nanos() as i128,
                    self.opts.sample_rate,
                ));
            }
            let Some(offset) = p.offset else { continue };
            p.leg.pull(now, &mut track.sink(offset));
        }
        self.suppress_dtmf(parties);
        let mix_point = now.saturating_sub(self.opts.playout_delay + DEFAULT_MARGIN);
        let upto = self.recorder.mixer().position_at(mix_point);
        let bytes = self
            .recorder
            .mix_to(tracks, upto)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        self.file.write(bytes);
        let header = self.recorder.header();
        let flushed = self
            .file
            .maybe_flush(now, header.as_deref())
            .map_err(|e| Error::io("writing the recording", e))?;
        if flushed {
            // Pages the encoder held back go out with the next flush.
            let held = self.recorder.flush();
            self.file.write(held);
        }
        Ok(())
    }

    /// Tells the mixer where DTMF happened on each leg, if suppressing.
    fn suppress_dtmf(&mut self, parties: &mut [Party]) {
        if !self.opts.suppress_dtmf {
            return;
        }
        for (i, p) in parties.iter_mut().enumerate() {
            let Some(offset) = p.offset else { continue };
            self.recorder.mixer_mut().suppress_dtmf(
                i,
                offset,
                p.leg.dtmf(),
                p.leg.dtmf_in_progress(),
                &mut p.dtmf_applied,
            );
        }
    }
}
