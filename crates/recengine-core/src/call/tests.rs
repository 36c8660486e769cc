//! `CallMedia` scenarios on a virtual clock: no daemon, no sockets, no
//! files. Each sends G.711 packets with jitter inside the playout delay,
//! ticks every 20 ms, and checks the WAV the outputs build sample by
//! sample against what was sent.

use std::collections::HashMap;

use super::plan::{PlanLeg, Selection, plan};
use super::*;
use crate::call::plan::Role;
use crate::decode::ulaw_to_linear;
use crate::format::{Channels, Format};
use crate::rtp::{Codec, PayloadMap};
use crate::testkit::{event_payload, pcmu_frames, rtp_packet, tone};

const RATE: u32 = 8000;
const DELAY: Duration = Duration::from_millis(60);
const TICK: Duration = Duration::from_millis(20);
const EVENT_PT: u8 = 101;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn leg_config() -> LegConfig {
    leg_config_at(RATE)
}

fn leg_config_at(rate: u32) -> LegConfig {
    let mut payload_map = PayloadMap::default();
    payload_map
        .set(
            u32::from(EVENT_PT),
            Codec::from_rtpmap("telephone-event/8000").unwrap(),
        )
        .unwrap();
    LegConfig {
        payload_map,
        rate,
        playout_delay: DELAY,
        jitter_capacity: 64,
        drift_bound: ms(20),
    }
}

/// One party's packets: 20 ms PCMU frames of a tone from `start`, each
/// arriving up to 35 ms late (inside the 60 ms playout delay).
struct Party {
    leg: usize,
    frames: Vec<Vec<u8>>,
    start: Duration,
    ssrc: u32,
}

impl Party {
    fn new(leg: usize, hz: f64, start: Duration, length: Duration) -> Self {
        let samples = (length.as_millis() as usize) * RATE as usize / 1000;
        Self {
            leg,
            frames: pcmu_frames(&tone(RATE, hz, 8_000.0, samples)),
            start,
            ssrc: 0x1000 + leg as u32,
        }
    }

    /// What the recording must hold for this party: the decoded frames.
    fn sent(&self) -> Vec<i16> {
        self.frames
            .iter()
            .flatten()
            .map(|&c| ulaw_to_linear(c))
            .collect()
    }

    /// (arrival, leg, datagram) of every packet.
    fn packets(&self) -> Vec<(Duration, usize, Vec<u8>)> {
        self.frames
            .iter()
            .enumerate()
            .map(|(k, f)| {
                let send = self.start + TICK * k as u32;
                let jitter = ms((k as u64 * 7) % 36);
                let pkt = rtp_packet(0, k == 0, k as u16, 160 * k as u32, self.ssrc, f);
                (send + jitter, self.leg, pkt)
            })
            .collect()
    }
}

/// Drives a call: packets pushed at their arrival, a tick every 20 ms,
/// outputs gathered into files.
struct Drive {
    media: CallMedia,
    packets: Vec<(Duration, usize, Vec<u8>)>,
    next: usize,
    now: Duration,
    files: HashMap<RecordingHandle, Vec<u8>>,
    flushes: HashMap<RecordingHandle, usize>,
    finished: HashMap<RecordingHandle, Finished>,
    discarded: Vec<RecordingHandle>,
    failed: Vec<(RecordingHandle, Failure)>,
}

impl Drive {
    fn new(legs: usize, parties: &[&Party]) -> Self {
        Self::at_rate(
            RATE,
            legs,
            parties.iter().flat_map(|p| p.packets()).collect(),
        )
    }

    /// A call whose legs play out at `rate`, with these packets.
    fn at_rate(rate: u32, legs: usize, mut packets: Vec<(Duration, usize, Vec<u8>)>) -> Self {
        let mut media = CallMedia::new(rate, DELAY);
        for _ in 0..legs {
            media.add_leg(leg_config_at(rate));
        }
        packets.sort_by_key(|p| p.0);
        Self {
            media,
            packets,
            next: 0,
            now: Duration::ZERO,
            files: HashMap::new(),
            flushes: HashMap::new(),
            finished: HashMap::new(),
            discarded: Vec::new(),
            failed: Vec::new(),
        }
    }

    fn add(&mut self, extra: Vec<(Duration, usize, Vec<u8>)>) {
        self.packets.extend(extra);
        self.packets[self.next..].sort_by_key(|p| p.0);
    }

    fn push_until(&mut self, t: Duration) {
        while let Some((at, leg, pkt)) = self.packets.get(self.next) {
            if *at > t {
                break;
            }
            let _ = self.media.push(*leg, pkt, *at);
            self.next += 1;
        }
    }

    /// Ticks up to and including `t`.
    fn run_to(&mut self, t: Duration) {
        while self.now + TICK <= t {
            self.now += TICK;
            self.push_until(self.now);
            self.media.tick(self.now);
            self.collect();
        }
    }

    /// A stop as the daemon makes it: what reached the engine by `at` is
    /// played out at once, then the recording finishes at `at`.
    fn stop(&mut self, h: RecordingHandle, at: Duration) {
        self.run_to(at);
        self.push_until(at);
        self.media.begin_step();
        for leg in 0..self.media.leg_count() {
            self.media.play_out(leg, at + DELAY);
        }
        self.media.stop_recording(h, at);
        self.collect();
    }

    fn collect(&mut self) {
        while let Some(o) = self.media.poll_output() {
            match o {
                Output::Bytes { recording, bytes } => {
                    self.files.entry(recording).or_default().extend(bytes)
                }
                Output::Flush { recording, .. } => {
                    *self.flushes.entry(recording).or_default() += 1;
                }
                Output::Finished { recording, summary } => {
                    let file = self.files.entry(recording).or_default();
                    if let Some(h) = &summary.header {
                        file[..h.len()].copy_from_slice(h);
                    }
                    self.finished.insert(recording, summary);
                }
                Output::Discarded { recording, .. } => self.discarded.push(recording),
                Output::Failed {
                    recording, failure, ..
                } => self.failed.push((recording, failure)),
            }
        }
    }

    /// The finished WAV's channels.
    fn channels(&self, h: RecordingHandle, count: usize) -> Vec<Vec<i16>> {
        assert!(self.finished.contains_key(&h), "not finished");
        let file = &self.files[&h];
        let data = file
            .windows(4)
            .position(|w| w == b"data")
            .expect("a data chunk")
            + 8;
        let samples: Vec<i16> = file[data..]
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        (0..count)
            .map(|c| samples.iter().skip(c).step_by(count).copied().collect())
            .collect()
    }
}

fn recording(inputs: &[(usize, u16)], channels: u16) -> RecordingPlan {
    RecordingPlan {
        spec: EncoderSpec {
            format: Format::Wav,
            sample_rate: RATE,
            channels,
            bitrate_kbps: 0,
            mp3_quality: 7,
            opus_complexity: 5,
        },
        inputs: inputs
            .iter()
            .map(|&(track, channel)| MixInput { track, channel })
            .collect(),
        pause_behavior: PauseBehavior::Silence,
        suppress_dtmf: false,
        start: Duration::ZERO,
        flush_interval: ms(1000),
        min_duration: Duration::ZERO,
        notices: Vec::new(),
    }
}

/// Where `want` sits in `got`, exactly, sample for sample.
fn find_exact(got: &[i16], want: &[i16]) -> Option<usize> {
    (0..=got.len().saturating_sub(want.len())).find(|&i| got[i..i + want.len()] == *want)
}

fn samples(d: Duration) -> usize {
    d.as_millis() as usize * RATE as usize / 1000
}

#[test]
fn two_parties_are_recorded_sample_for_sample_on_their_channels() {
    let caller = Party::new(0, 440.0, ms(0), ms(1000));
    let callee = Party::new(1, 697.0, ms(100), ms(900));
    let mut d = Drive::new(2, &[&caller, &callee]);
    let h = d
        .media
        .start_recording(recording(&[(0, 0), (1, 1)], 2))
        .unwrap();
    d.stop(h, ms(1200));
    let ch = d.channels(h, 2);
    let at0 = find_exact(&ch[0], &caller.sent()).expect("the caller, exactly");
    let at1 = find_exact(&ch[1], &callee.sent()).expect("the callee, exactly");
    // Placed by their timestamps' send times: the callee 100 ms later.
    assert_eq!(at1 - at0, samples(ms(100)));
    assert!(ch[0][..at0].iter().all(|&s| s == 0));
    assert_eq!(d.finished[&h].duration_ms, 1200);
}

#[test]
fn pause_with_silence_keeps_time_and_skip_removes_it() {
    for behaviour in [PauseBehavior::Silence, PauseBehavior::Skip] {
        let caller = Party::new(0, 440.0, ms(0), ms(1000));
        let mut d = Drive::new(1, &[&caller]);
        let mut plan = recording(&[(0, 0)], 1);
        plan.pause_behavior = behaviour;
        let h = d.media.start_recording(plan).unwrap();
        d.run_to(ms(300));
        d.media.pause(h, ms(300)).unwrap();
        d.run_to(ms(500));
        d.media.resume(h, ms(500)).unwrap();
        d.stop(h, ms(1100));
        let got = &d.channels(h, 1)[0];
        let sent = caller.sent();
        let start = find_exact(got, &sent[..samples(ms(200))]).expect("the audio before the pause");
        let (p, r) = (start + samples(ms(300)), start + samples(ms(500)));
        match behaviour {
            PauseBehavior::Silence => {
                assert_eq!(d.finished[&h].duration_ms, 1100);
                assert!(got[p..r].iter().all(|&s| s == 0), "silence while paused");
                assert_eq!(got[r..r + 800], sent[samples(ms(500))..samples(ms(600))]);
            }
            PauseBehavior::Skip => {
                assert_eq!(d.finished[&h].duration_ms, 900);
                // What followed the pause comes right after what preceded it.
                assert_eq!(got[p..p + 800], sent[samples(ms(500))..samples(ms(600))]);
            }
        }
        assert_eq!(d.finished[&h].pauses.len(), 1);
    }
}

#[test]
fn a_stop_keeps_what_the_jitter_buffer_held() {
    let caller = Party::new(0, 440.0, ms(0), ms(1000));
    let mut d = Drive::new(1, &[&caller]);
    let h = d.media.start_recording(recording(&[(0, 0)], 1)).unwrap();
    // By 1.02 s every packet has arrived (the last at most 35 ms after
    // its send time, 980 ms), but the last ones' playout delay has not
    // passed: a tick would not have played them yet.
    let last_arrival = caller.packets().iter().map(|p| p.0).max().unwrap();
    assert!(last_arrival <= ms(1020) && last_arrival + DELAY > ms(1020));
    d.stop(h, ms(1020));
    let got = &d.channels(h, 1)[0];
    assert!(
        find_exact(got, &caller.sent()).is_some(),
        "every frame sent"
    );
}

#[test]
fn dtmf_is_suppressed_only_when_asked() {
    for suppress in [false, true] {
        let caller = Party::new(0, 440.0, ms(0), ms(1000));
        let mut d = Drive::new(1, &[&caller]);
        // Digit 5 from 400 ms for 200 ms (its packets carry the event's
        // start timestamp), the tone's packets going on meanwhile.
        let events: Vec<_> = (0..10u16)
            .map(|k| {
                let end = k == 9;
                let pkt = rtp_packet(
                    EVENT_PT,
                    k == 0,
                    1000 + k,
                    160 * 20,
                    caller.ssrc,
                    &event_payload(5, end, 10, 160 * (k + 1)),
                );
                (ms(400) + TICK * u32::from(k), 0, pkt)
            })
            .collect();
        d.add(events);
        let mut plan = recording(&[(0, 0)], 1);
        plan.suppress_dtmf = suppress;
        let h = d.media.start_recording(plan).unwrap();
        d.stop(h, ms(1100));
        let got = &d.channels(h, 1)[0];
        let start = find_exact(got, &caller.sent()[..800]).expect("the tone's start");
        let during = &got[start + samples(ms(420))..start + samples(ms(580))];
        let after = &got[start + samples(ms(700))..start + samples(ms(800))];
        assert!(after.iter().any(|&s| s != 0));
        assert_eq!(
            during.iter().all(|&s| s == 0),
            suppress,
            "suppress {suppress}"
        );
        assert_eq!(d.media.leg(0).unwrap().dtmf().len(), 1);
    }
}

#[test]
fn a_recording_shorter_than_its_minimum_is_discarded() {
    let caller = Party::new(0, 440.0, ms(0), ms(1000));
    let mut d = Drive::new(1, &[&caller]);
    let mut plan = recording(&[(0, 0)], 1);
    plan.min_duration = ms(1000);
    let h = d.media.start_recording(plan).unwrap();
    d.stop(h, ms(500));
    assert_eq!(d.discarded, vec![h]);
    assert!(d.finished.is_empty());
    assert!(!d.media.has_recording(h));
}

#[test]
fn a_recording_whose_legs_never_received_a_packet_fails_for_want_of_media() {
    // The callee sends; a recording of the caller alone hears nothing.
    let callee = Party::new(1, 440.0, ms(0), ms(1000));
    let mut d = Drive::new(2, &[&callee]);
    let caller_only = d.media.start_recording(recording(&[(0, 0)], 1)).unwrap();
    let both = d
        .media
        .start_recording(recording(&[(0, 0), (1, 1)], 2))
        .unwrap();
    d.run_to(ms(1200));
    d.media.end(EndAt::LastAudio);
    d.collect();
    assert_eq!(d.failed, vec![(caller_only, Failure::NoMedia)]);
    assert!(d.finished.contains_key(&both));
    assert_eq!(Failure::NoMedia.reason(), "no_media");
}

#[test]
fn a_late_participant_joins_a_mono_recording() {
    let a = Party::new(0, 440.0, ms(0), ms(1400));
    let b = Party::new(1, 697.0, ms(0), ms(1400));
    let late = Party::new(2, 1209.0, ms(600), ms(600));
    let mut d = Drive::new(2, &[&a, &b]);
    let h = d
        .media
        .start_recording(recording(&[(0, 0), (1, 0)], 1))
        .unwrap();
    d.run_to(ms(560));
    let leg = d.media.add_leg(leg_config());
    assert_eq!(leg, 2);
    d.add(late.packets());
    d.media.add_input(
        h,
        MixInput {
            track: 2,
            channel: 0,
        },
    );
    d.stop(h, ms(1500));
    // Three parties in one channel: the late one is in the mix exactly
    // where the other two were silent... they never are, so compare the
    // mix with the sum of what was sent.
    let got = &d.channels(h, 1)[0];
    let (sa, sb, sl) = (a.sent(), b.sent(), late.sent());
    let start = (0..got.len())
        .find(|&i| {
            got[i..i + 160]
                .iter()
                .zip(&sa)
                .zip(&sb)
                .all(|((&g, &x), &y)| g == x + y)
        })
        .expect("the first two parties mixed");
    let from = samples(ms(600));
    for k in 0..sl.len() {
        let want = sa[from + k] + sb[from + k] + sl[k];
        assert_eq!(got[start + from + k], want, "sample {k} of the late party");
    }
}

#[test]
fn mute_silences_one_party_until_unmuted() {
    let caller = Party::new(0, 440.0, ms(0), ms(1000));
    let callee = Party::new(1, 697.0, ms(0), ms(1000));
    let mut d = Drive::new(2, &[&caller, &callee]);
    let h = d
        .media
        .start_recording(recording(&[(0, 0), (1, 1)], 2))
        .unwrap();
    d.run_to(ms(300));
    d.media.mute(0, true, ms(300));
    d.run_to(ms(600));
    d.media.mute(0, false, ms(600));
    d.stop(h, ms(1100));
    let ch = d.channels(h, 2);
    let start = find_exact(&ch[1], &callee.sent()).expect("the callee, untouched");
    assert!(
        ch[0][start + samples(ms(300))..start + samples(ms(600))]
            .iter()
            .all(|&s| s == 0)
    );
    let sent = caller.sent();
    assert_eq!(
        ch[0][start + samples(ms(600))..start + samples(ms(1000))],
        sent[samples(ms(600))..]
    );
}

#[test]
fn five_parties_get_five_channels_by_role() {
    let roles = [
        Role::Participant,
        Role::Callee,
        Role::Participant,
        Role::Caller,
        Role::Participant,
    ];
    let parties: Vec<Party> = (0..5)
        .map(|i| Party::new(i, 300.0 + 150.0 * i as f64, ms(0), ms(600)))
        .collect();
    let ids: Vec<String> = (0..5).map(|i| format!("leg-{i}")).collect();
    let legs: Vec<PlanLeg<'_>> = ids
        .iter()
        .zip(roles)
        .map(|(id, role)| PlanLeg { id, role })
        .collect();
    let planned = plan(&legs, &Selection::All, Channels::Dual).unwrap();
    assert_eq!(planned.channel_count, 5);
    let mut d = Drive::new(5, &parties.iter().collect::<Vec<_>>());
    let mut rec = recording(&[], 5);
    rec.inputs = planned.inputs.clone();
    let h = d.media.start_recording(rec).unwrap();
    d.stop(h, ms(700));
    let ch = d.channels(h, 5);
    for input in &planned.inputs {
        let sent = parties[input.track].sent();
        assert!(
            find_exact(&ch[usize::from(input.channel)], &sent).is_some(),
            "leg {} on channel {}",
            input.track,
            input.channel
        );
    }
    // The caller (leg 3) first, the callee (leg 1) second.
    assert_eq!(planned.inputs[0].track, 3);
    assert_eq!(planned.inputs[1].track, 1);
}

#[test]
fn flushes_come_at_the_flush_interval_with_the_bytes_before_them() {
    let caller = Party::new(0, 440.0, ms(0), ms(2000));
    let mut d = Drive::new(1, &[&caller]);
    let mut plan = recording(&[(0, 0)], 1);
    plan.flush_interval = ms(500);
    let h = d.media.start_recording(plan).unwrap();
    d.run_to(ms(1000));
    assert_eq!(d.flushes.get(&h), Some(&2));
    // Everything mixed so far is out by the flush: 1 s minus the delay
    // and margin, 16-bit mono.
    let mixed = d.media.duration_ms(h).unwrap() as usize * 16;
    assert_eq!(d.files[&h].len(), 44 + mixed);
}

#[test]
fn an_encoder_that_cannot_be_made_starts_nothing() {
    let mut media = CallMedia::new(RATE, DELAY);
    media.add_leg(leg_config());
    let mut plan = recording(&[(0, 0)], 1);
    plan.spec.format = Format::Mp3;
    plan.spec.sample_rate = 7_000;
    assert!(media.start_recording(plan).is_err());
    media.tick(ms(20));
    assert_eq!(media.poll_output(), None);
}

#[test]
fn a_recording_whose_file_failed_is_removed_without_output() {
    let caller = Party::new(0, 440.0, ms(0), ms(1000));
    let mut d = Drive::new(1, &[&caller]);
    let h = d.media.start_recording(recording(&[(0, 0)], 1)).unwrap();
    d.run_to(ms(300));
    // The driver's writer refused the file: it removes the recording.
    d.media.remove(h);
    let before = d.files.get(&h).map_or(0, Vec::len);
    d.stop(h, ms(900));
    d.media.end(EndAt::Time(ms(900)));
    d.collect();
    assert_eq!(d.files.get(&h).map_or(0, Vec::len), before);
    assert!(d.finished.is_empty() && d.failed.is_empty());
}

#[test]
fn a_notice_opens_the_recording_and_reaches_each_party_in_its_codec() {
    let caller = Party::new(0, 440.0, ms(0), ms(3000));
    let callee = Party::new(1, 697.0, ms(300), ms(2700));
    let mut d = Drive::new(2, &[&caller, &callee]);
    let prompt: Arc<[i16]> = Arc::from(crate::notice::beep(RATE, 1000.0, ms(400), 8000));
    let reminder: Arc<[i16]> = Arc::from(vec![500i16; 80]);
    let mut plan = recording(&[(0, 0), (1, 1)], 2);
    for (audio, delay, every) in [
        (prompt.clone(), Duration::ZERO, None),
        (reminder.clone(), ms(1000), Some(ms(1000))),
    ] {
        plan.notices.push(Notice {
            audio,
            delay,
            every,
            into_recording: true,
            to_parties: true,
            ssrc_seed: 77,
        });
    }
    let h = d.media.start_recording(plan).unwrap();
    let mut sent: Vec<(Duration, usize, Vec<u8>)> = Vec::new();
    let mut sending = Vec::new();
    while d.now < ms(2900) {
        d.run_to(d.now + TICK);
        let mut out = Vec::new();
        d.media.party_packets(d.now, &mut out);
        sent.extend(out.into_iter().map(|(leg, p)| (d.now, leg, p)));
        sending.push((d.now, d.media.sending_party_notice()));
    }
    // A driver stepping less often keeps calling party_packets while a
    // notice streams: the caller's prompt from the start, the callee's
    // from 300 ms; a one-packet reminder is out at once.
    let sending_at = |t| sending.iter().find(|&&(at, _)| at >= t).map(|&(_, s)| s);
    assert_eq!(sending_at(ms(100)), Some(true));
    assert_eq!(sending_at(ms(500)), Some(true), "the callee's prompt");
    assert_eq!(sending_at(ms(800)), Some(false));
    assert_eq!(sending_at(ms(1500)), Some(false));
    d.stop(h, ms(2900));
    // Into the recording: the prompt over both channels from the start,
    // then the reminder at 1 s and 2 s, on top of each party's audio.
    let ch = d.channels(h, 2);
    let caller_audio = caller.sent();
    for pos in 0..samples(ms(2500)) {
        let over = if pos < prompt.len() {
            i32::from(prompt[pos])
        } else if pos >= 8000 && (pos - 8000) % 8000 < 80 {
            500
        } else {
            0
        };
        let want = (i32::from(caller_audio[pos]) + over).clamp(-32_768, 32_767) as i16;
        assert_eq!(ch[0][pos], want, "caller channel at {pos}");
    }
    // To the parties: each leg gets the 20 packets of the prompt in PCMU
    // (the codec it sends), paced one per tick, with its own SSRC; the
    // callee, silent until 300 ms, gets it from then. Then a reminder
    // packet for each at 1 s and 2 s.
    for leg in 0..2 {
        let mine: Vec<&(Duration, usize, Vec<u8>)> =
            sent.iter().filter(|(_, l, _)| *l == leg).collect();
        assert_eq!(mine.len(), 20 + 2, "leg {leg}");
        let first = crate::rtp::RtpPacket::parse(&mine[0].2).unwrap();
        assert!(first.marker);
        assert_eq!(first.payload_type, 0);
        let heard: Vec<i16> = mine[..20]
            .iter()
            .flat_map(|(_, _, p)| {
                let p = crate::rtp::RtpPacket::parse(p).unwrap();
                assert_eq!(p.ssrc, first.ssrc);
                p.payload
                    .iter()
                    .map(|&c| ulaw_to_linear(c))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            crate::testkit::correlation(&heard, &prompt) > 0.99,
            "leg {leg} hears the prompt"
        );
        let times: Vec<Duration> = mine[..20].iter().map(|(t, _, _)| *t).collect();
        assert!(
            times.windows(2).all(|w| w[1] - w[0] == TICK),
            "paced: {times:?}"
        );
        let seqs: Vec<u16> = mine
            .iter()
            .map(|(_, _, p)| crate::rtp::RtpPacket::parse(p).unwrap().sequence)
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "sequence numbers go on across the notice and its reminders: {seqs:?}"
        );
    }
    let callee_first = sent.iter().find(|(_, l, _)| *l == 1).unwrap().0;
    assert!(callee_first >= ms(300), "{callee_first:?}");
    assert_ne!(
        crate::rtp::RtpPacket::parse(&sent.iter().find(|(_, l, _)| *l == 0).unwrap().2)
            .unwrap()
            .ssrc,
        crate::rtp::RtpPacket::parse(&sent.iter().find(|(_, l, _)| *l == 1).unwrap().2)
            .unwrap()
            .ssrc
    );
    // Nothing more once the recording has stopped.
    let mut out = Vec::new();
    d.media.party_packets(ms(3500), &mut out);
    assert!(out.is_empty());
}

/// A 16 kHz Opus recording of one G.711 party and one G.722 party who
/// starts speaking at 1 s: coded in mediumband (the G.711 audio holds
/// nothing above 4 kHz) until the G.722 audio comes, then in wideband;
/// with a notice mixed in, wideband throughout.
#[test]
fn opus_codes_the_band_the_legs_carry_and_widens_when_a_wideband_leg_plays() {
    const WIDE_RATE: u32 = 16_000;
    let caller = Party::new(0, 440.0, ms(0), ms(2000));
    let g722_from = ms(1000);
    let g722: Vec<_> = (0..50u16)
        .map(|k| {
            // Any bytes are G.722 audio; these vary so that it is not silence.
            let payload: Vec<u8> = (0..160).map(|i| (i * 37 + k as usize * 11) as u8).collect();
            let ts = 160 * u32::from(k);
            let pkt = rtp_packet(9, k == 0, k, ts, 0x2000, &payload);
            (g722_from + TICK * u32::from(k), 1, pkt)
        })
        .collect();
    let mut packets = caller.packets();
    packets.extend(g722);
    packets.sort_by_key(|p| p.0);
    let mut plan = recording(&[(0, 0), (1, 0)], 1);
    plan.spec.format = Format::Opus;
    plan.spec.sample_rate = WIDE_RATE;
    let only_g711 = {
        let mut d = Drive::at_rate(WIDE_RATE, 2, caller.packets());
        let h = d.media.start_recording(plan.clone()).unwrap();
        d.stop(h, ms(2000));
        crate::encode::ogg_packets(&d.files[&h]).expect("an Ogg stream")
    };
    let with_notice = {
        // A prompt may be wideband: a recording it is mixed into is not
        // narrowed.
        let mut plan = plan.clone();
        plan.notices.push(Notice {
            audio: Arc::from(crate::notice::beep(WIDE_RATE, 1000.0, ms(400), 8000)),
            delay: Duration::ZERO,
            every: None,
            into_recording: true,
            to_parties: false,
            ssrc_seed: 1,
        });
        let mut d = Drive::at_rate(WIDE_RATE, 2, caller.packets());
        let h = d.media.start_recording(plan).unwrap();
        d.stop(h, ms(2000));
        crate::encode::ogg_packets(&d.files[&h]).expect("an Ogg stream")
    };
    let mut d = Drive::at_rate(WIDE_RATE, 2, packets);
    let h = d.media.start_recording(plan).unwrap();
    d.stop(h, ms(2000));
    let both = crate::encode::ogg_packets(&d.files[&h]).expect("an Ogg stream");

    use crate::opus::Bandwidth;
    let bands = |p: &[Vec<u8>]| -> Vec<Bandwidth> {
        // Two header packets, then one 20 ms packet per frame.
        p[2..]
            .iter()
            .filter_map(|p| Bandwidth::of_packet(p))
            .collect()
    };
    let only_g711 = bands(&only_g711);
    assert_eq!(only_g711.len(), 100);
    assert!(
        only_g711.iter().all(|&b| b == Bandwidth::Medium),
        "{only_g711:?}"
    );
    let with_notice = bands(&with_notice);
    assert_eq!(with_notice.len(), 100);
    assert!(
        with_notice.iter().all(|&b| b == Bandwidth::Wide),
        "{with_notice:?}"
    );
    let both = bands(&both);
    assert_eq!(both.len(), 100);
    // Frame 50 is where the G.722 audio starts. The leg decodes it a
    // playout delay (three frames) before the mix reaches it, which is
    // when the encoder hears of it; libopus then takes a few frames to
    // move up (six at most in speech, measured). It never goes back.
    let wide_from = both
        .iter()
        .position(|&b| b == Bandwidth::Wide)
        .expect("wideband once the G.722 party speaks");
    assert!((47..=56).contains(&wide_from), "{both:?}");
    assert!(
        both[..wide_from].iter().all(|&b| b == Bandwidth::Medium),
        "{both:?}"
    );
    assert!(
        both[wide_from..].iter().all(|&b| b == Bandwidth::Wide),
        "{both:?}"
    );
}
