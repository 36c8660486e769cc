//! Fidelity on a virtual clock: two G.711 legs driven through the media
//! core exactly as a worker drives them (push arrivals, play out every
//! 20 ms into tracks, mix to one channel per party), under the network
//! patterns of [`recengine::testkit::netem`]. What is recorded must be what
//! was sent, sample for sample, except where a packet never came or came
//! after the playout delay; jitter must never cause a drift correction; a
//! real clock drift must be corrected, in silence, keeping the leg within
//! the bound of where it belongs.

use std::time::Duration;

use recengine::config::PauseBehavior;
use recengine::core::decode::{linear_to_ulaw, ulaw_to_linear};
use recengine::core::leg::{LegConfig, LegReceiver, LegStats, share_drift_reference};
use recengine::core::mixer::{DEFAULT_MARGIN, MixInput, Mixer};
use recengine::core::rtp::PayloadMap;
use recengine::core::time::nanos_to_ticks;
use recengine::core::track::Track;
use recengine::testkit::netem::{NetModel, Pattern};
use recengine::testkit::{Rng, rtp_packet, speech};

const RATE: u32 = 8000;
const DELAY: Duration = Duration::from_millis(200);
const TICK: Duration = Duration::from_millis(20);
const BOUND: Duration = Duration::from_millis(20);

/// What one party sends: a speech-like signal with a little noise (so that
/// every 20 ms frame is unique), as PCMU payloads; `dtx` leaves out the
/// frames of the speech pauses, as a sender with silence suppression does.
struct Sender {
    payloads: Vec<Option<Vec<u8>>>,
    schedule: Vec<(Duration, u64)>,
    ssrc: u32,
}

impl Sender {
    fn new(model: NetModel, packets: u64, seed: u64, dtx: bool) -> Self {
        let mut rng = Rng::new(seed);
        let signal = speech(RATE, packets as usize * 160);
        let payloads: Vec<Option<Vec<u8>>> = signal
            .chunks(160)
            .map(|c| {
                let silent = c.iter().all(|&s| s == 0);
                if dtx && silent {
                    return None;
                }
                Some(
                    c.iter()
                        .map(|&s| {
                            let noise = rng.below(7) as i16 - 3;
                            linear_to_ulaw(s.saturating_add(noise))
                        })
                        .collect(),
                )
            })
            .collect();
        let schedule = model
            .schedule(packets)
            .into_iter()
            .filter(|&(_, i)| payloads[i as usize].is_some())
            .collect();
        Self {
            payloads,
            schedule,
            ssrc: 0x1000 + seed as u32,
        }
    }

    fn datagram(&self, i: u64) -> Vec<u8> {
        let payload = self.payloads[i as usize].as_deref().unwrap_or(&[]);
        let marker = i > 0 && self.payloads[i as usize - 1].is_none();
        rtp_packet(
            0,
            marker,
            (i as u16).wrapping_add(1000),
            (i as u32).wrapping_mul(160).wrapping_add(77_777),
            self.ssrc,
            payload,
        )
    }

    fn decoded(&self, i: u64) -> Option<Vec<i16>> {
        self.payloads[i as usize]
            .as_ref()
            .map(|p| p.iter().map(|&b| ulaw_to_linear(b)).collect())
    }
}

struct Party {
    sender: Sender,
    leg: LegReceiver,
    offset: Option<i64>,
    next: usize,
}

struct Call {
    parties: Vec<Party>,
    /// Interleaved, one channel per party, call position 0 = frame 0.
    mixed: Vec<i16>,
}

fn leg() -> LegReceiver {
    LegReceiver::new(LegConfig {
        payload_map: PayloadMap::default(),
        rate: RATE,
        playout_delay: DELAY,
        jitter_capacity: 64,
        drift_bound: BOUND,
    })
}

/// Runs a call with one sender per model, ticking like a media worker.
fn run(models: &[NetModel], packets: u64, dtx: bool) -> Call {
    let mut parties: Vec<Party> = models
        .iter()
        .enumerate()
        .map(|(k, &m)| Party {
            sender: Sender::new(m, packets, 11 + k as u64, dtx),
            leg: leg(),
            offset: None,
            next: 0,
        })
        .collect();
    let inputs: Vec<MixInput> = (0..parties.len())
        .map(|k| MixInput {
            track: k,
            channel: k as u16,
        })
        .collect();
    let mut mixer = Mixer::new(
        RATE,
        parties.len() as u16,
        &inputs,
        PauseBehavior::Silence,
        Duration::ZERO,
    );
    let mut mixed = Vec::new();
    let end = parties
        .iter()
        .filter_map(|p| p.sender.schedule.last().map(|a| a.0))
        .max()
        .unwrap_or_default()
        + Duration::from_millis(500);
    let mut tracks: Vec<Track> = parties
        .iter()
        .map(|_| Track::new(packets as usize * 170 + 80_000))
        .collect();
    let mut now = Duration::ZERO;
    while now <= end {
        share_drift_reference(&mut parties, |p| &mut p.leg);
        for (p, track) in parties.iter_mut().zip(tracks.iter_mut()) {
            while let Some(&(at, i)) = p.sender.schedule.get(p.next) {
                if at > now {
                    break;
                }
                let _ = p.leg.push(&p.sender.datagram(i), at);
                p.next += 1;
            }
            if track.first_call_pos().is_none()
                && let Some(origin) = p.leg.origin()
            {
                p.offset = Some(nanos_to_ticks(origin.as_nanos() as i128, RATE));
            }
            if let Some(offset) = p.offset {
                p.leg.pull(now, &mut track.sink(offset));
            }
        }
        let upto = mixer.position_at(now.saturating_sub(DELAY + DEFAULT_MARGIN));
        mixer.mix(&tracks, upto, &mut mixed);
        now += TICK;
    }
    for (p, track) in parties.iter_mut().zip(tracks.iter_mut()) {
        let offset = p.offset.unwrap_or(0);
        p.leg.finish(&mut track.sink(offset));
    }
    let last = tracks
        .iter()
        .filter_map(Track::end_call_pos)
        .max()
        .unwrap_or(0);
    mixer.mix(&tracks, last, &mut mixed);
    Call { parties, mixed }
}

impl Call {
    fn channel(&self, k: usize) -> Vec<i16> {
        let ch = self.parties.len();
        self.mixed.iter().skip(k).step_by(ch).copied().collect()
    }

    /// Call position of packet 0 of party `k`.
    fn first_packet_pos(&self, k: usize) -> i64 {
        let p = &self.parties[k];
        let origin = p.leg.origin().expect("leg started");
        let first = p.sender.schedule[0].1 as i64;
        nanos_to_ticks(origin.as_nanos() as i128, RATE) - first * 160
    }

    /// Packets of party `k` that were delivered but whose samples are not
    /// in its channel exactly at their timestamp's place.
    fn misplaced(&self, k: usize) -> Vec<u64> {
        let channel = self.channel(k);
        let p0 = self.first_packet_pos(k);
        let mut delivered: Vec<u64> = self.parties[k]
            .sender
            .schedule
            .iter()
            .map(|a| a.1)
            .collect();
        delivered.sort_unstable();
        delivered.dedup();
        delivered
            .into_iter()
            .filter(|&i| {
                let want = self.parties[k].sender.decoded(i).unwrap();
                let at = (p0 + i as i64 * 160) as usize;
                channel.get(at..at + 160) != Some(&want[..])
            })
            .collect()
    }

    fn stats(&self, k: usize) -> LegStats {
        self.parties[k].leg.stats()
    }
}

/// Every arrival pattern inside the playout delay, clean and with 1 %
/// loss and reordering: each channel is sample-exact wherever a packet
/// came in time, no correction and no resync happens, and the parties
/// keep the alignment they were sent with.
#[test]
fn jitter_inside_the_playout_delay_changes_no_sample() {
    let patterns = [
        Pattern::Paced,
        Pattern::Bursts(2),
        Pattern::Bursts(3),
        Pattern::Bursts(6),
        Pattern::Bursts(10),
        Pattern::Uniform { max_ms: 150 },
        Pattern::WifiSpikes,
    ];
    for pattern in patterns {
        for lossy in [false, true] {
            for seed in [1, 2] {
                let model = |s| {
                    let m = NetModel::new(pattern).seed(s);
                    if lossy { m.lossy() } else { m }
                };
                let call = run(&[model(seed), model(seed + 100)], 1500, false);
                for k in 0..2 {
                    let s = call.stats(k);
                    let name = format!("{pattern:?} lossy={lossy} seed={seed} party {k}");
                    assert_eq!(call.misplaced(k), Vec::<u64>::new(), "{name}: {s:?}");
                    assert_eq!(
                        (s.late, s.corrections, s.resyncs),
                        (0, 0, 0),
                        "{name}: {s:?}"
                    );
                }
                let skew = (call.first_packet_pos(0) - call.first_packet_pos(1)).abs();
                let tolerance = match pattern {
                    // The anchor is the least-delayed packet before the
                    // first playout: exact when some packet comes on time
                    // early on, within the delay's spread otherwise.
                    Pattern::Uniform { .. } => 40 * 8,
                    Pattern::WifiSpikes => 6 * 8,
                    _ => 0,
                };
                assert!(
                    skew <= tolerance,
                    "{pattern:?} lossy={lossy}: parties {skew} samples apart"
                );
            }
        }
    }
}

/// A 300 ms stall (beyond the 200 ms playout delay) then a burst: what came
/// too late is concealed; every packet after it is exactly in place.
#[test]
fn a_stall_beyond_the_playout_delay_costs_only_the_late_packets() {
    let model = NetModel::new(Pattern::StallThenBurst {
        at_ms: 10_000,
        stall_ms: 300,
    });
    let call = run(&[model, model.seed(7)], 1500, false);
    for k in 0..2 {
        let s = call.stats(k);
        let misplaced = call.misplaced(k);
        assert!(s.late >= 4 && s.late <= 6, "{s:?}");
        assert!(misplaced.len() as u64 <= s.late, "{misplaced:?} {s:?}");
        assert!(
            misplaced.iter().all(|&i| (500..515).contains(&i)),
            "only packets of the stall: {misplaced:?}"
        );
        assert_eq!((s.corrections, s.resyncs), (0, 0), "{s:?}");
    }
    assert_eq!(call.first_packet_pos(0), call.first_packet_pos(1));
}

/// Where packet `i` of party 0 ended up in its channel, found by its
/// samples near where it should be; `None` for a frame too quiet to find.
fn found_at(call: &Call, channel: &[i16], i: u64, near: i64) -> Option<i64> {
    let want = call.parties[0].sender.decoded(i)?;
    let level: i64 = want.iter().map(|&s| i64::from(s).abs()).sum::<i64>() / 160;
    if level < 400 {
        return None; // a quiet frame: a correction may have trimmed it
    }
    let lo = (near - 1600).max(0) as usize;
    let hi = ((near + 1600) as usize).min(channel.len().saturating_sub(160));
    (lo..hi)
        .find(|&at| channel[at..at + 160] == want[..])
        .map(|at| at as i64)
}

/// Clock drift of ±100, ±500 and ±5,000 ppm over ten virtual minutes, with
/// a continuous sender and with one that suppresses silence: the leg stays
/// within the bound (plus the time to find a pause) of where its packets
/// belong on our clock, every correction falls in silence, and speech
/// frames are never altered.
#[test]
fn real_clock_drift_is_corrected_in_silence_and_stays_aligned() {
    let packets = 30_000; // 10 minutes
    for ppm in [-5000.0, -500.0, -100.0, 100.0, 500.0, 5000.0] {
        for dtx in [false, true] {
            let model = NetModel::new(Pattern::Uniform { max_ms: 30 })
                .seed(3)
                .drift(ppm);
            let call = run(&[model], packets, dtx);
            let s = call.stats(0);
            let name = format!("{ppm} ppm dtx={dtx}");
            assert_eq!((s.late, s.resyncs), (0, 0), "{name}: {s:?}");
            assert_eq!(s.corrections_outside_silence, 0, "{name}: {s:?}");
            let accumulated_ms = 600_000.0 * ppm.abs() / 1e6;
            assert!(
                s.corrections as f64 >= (accumulated_ms / 40.0).floor(),
                "{name}: {s:?}"
            );
            assert!(
                (s.drift_ppm - ppm).abs() < ppm.abs() * 0.2 + 10.0,
                "{name}: measured {}",
                s.drift_ppm
            );
            let p0 = call.first_packet_pos(0);
            // The first seconds are needed to measure the drift (five
            // one-second blocks): at 5,000 ppm the leg is 25 ms off by then.
            let channel = call.channel(0);
            let mut checked = 0;
            let (mut worst_settling, mut worst) = (0i64, 0i64);
            for i in (0..packets).step_by(97) {
                let ideal = p0 + nanos_to_ticks(model.send_time(i).as_nanos() as i128, RATE);
                if let Some(at) = found_at(&call, &channel, i, ideal) {
                    let off = (at - ideal).abs();
                    if i < 500 {
                        worst_settling = worst_settling.max(off);
                    } else {
                        worst = worst.max(off);
                    }
                    checked += 1;
                }
            }
            assert!(checked > 150, "{name}: only {checked} frames found");
            let (settling_ms, worst_ms) = (worst_settling as f64 / 8.0, worst as f64 / 8.0);
            assert!(worst_ms <= 25.0, "{name}: {worst_ms} ms from its place");
            assert!(
                settling_ms <= 35.0,
                "{name}: {settling_ms} ms while measuring"
            );
        }
    }
}

/// A leg that never pauses (a steady tone) with a 500 ppm slow clock: after
/// waiting for silence in vain, corrections stretch the audio one sample
/// at a time; the tone never jumps, and the leg keeps up with real time.
#[test]
fn a_leg_that_never_pauses_is_stretched_smoothly() {
    let packets = 15_000u64; // 5 minutes
    let model = NetModel::new(Pattern::Paced).drift(500.0);
    let schedule = model.schedule(packets);
    let tone: Vec<i16> = recengine::testkit::tone(RATE, 400.0, 8000.0, packets as usize * 160);
    let mut leg = leg();
    let mut track = Track::new(packets as usize * 170);
    let mut offset = None;
    let mut next = 0;
    let mut now = Duration::ZERO;
    let end = schedule.last().unwrap().0 + Duration::from_secs(1);
    while now <= end {
        while let Some(&(at, i)) = schedule.get(next) {
            if at > now {
                break;
            }
            let payload: Vec<u8> = tone[i as usize * 160..][..160]
                .iter()
                .map(|&s| linear_to_ulaw(s))
                .collect();
            let d = rtp_packet(0, false, i as u16, i as u32 * 160, 9, &payload);
            let _ = leg.push(&d, at);
            next += 1;
        }
        if track.first_call_pos().is_none()
            && let Some(origin) = leg.origin()
        {
            offset = Some(nanos_to_ticks(origin.as_nanos() as i128, RATE));
        }
        if let Some(o) = offset {
            leg.pull(now, &mut track.sink(o));
        }
        now += TICK;
    }
    let s = leg.stats();
    assert_eq!((s.late, s.resyncs), (0, 0), "{s:?}");
    assert!(s.corrections_outside_silence > 100, "{s:?}");
    assert!(s.corrections <= s.corrections_outside_silence + 2, "{s:?}");
    // 5 minutes at 500 ppm is 150 ms; what is still owed is within bound.
    let behind_ms = 150.0 - s.samples_inserted as f64 / 8.0;
    assert!(behind_ms.abs() <= 25.0, "{behind_ms} ms behind: {s:?}");
    let mut out = vec![0i16; track.written() as usize];
    track.copy(0, &mut out);
    let max_step = out[8000..out.len() - 8000]
        .windows(2)
        .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
        .max()
        .unwrap();
    // A 400 Hz tone of amplitude 8000 steps by at most 2π·400/8000·8000 ≈
    // 2513 per sample, plus µ-law error.
    assert!(max_step < 2700, "discontinuity of {max_step}");
}

/// Both parties arriving later and later together — a busy sender host, a
/// busy recorder, or one clock behind both legs — is not edited: each leg
/// aligns with the other, so neither is corrected while they stay inside
/// half the playout delay, and both stay sample-exact and aligned. (The
/// 1,000-call load run, generator on the same two cores, saw 2,000 ppm for
/// seconds on both legs of a call and corrected them by 28 ms.)
#[test]
fn legs_that_drift_together_are_left_alone() {
    for ppm in [-2000.0, 500.0, 2000.0] {
        let model = NetModel::new(Pattern::Paced).drift(ppm);
        // 40 s: 2,000 ppm is 80 ms by the end, inside half of 200 ms.
        let call = run(&[model, model.seed(3)], 2000, false);
        for k in 0..2 {
            let s = call.stats(k);
            assert_eq!(
                call.misplaced(k),
                Vec::<u64>::new(),
                "{ppm} party {k}: {s:?}"
            );
            assert_eq!(
                (s.late, s.corrections, s.resyncs),
                (0, 0, 0),
                "{ppm}: {s:?}"
            );
        }
        assert_eq!(call.first_packet_pos(0), call.first_packet_pos(1), "{ppm}");
    }
}
