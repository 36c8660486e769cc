//! Mixer behaviour on a virtual clock: channels, saturation, alignment,
//! pause, mute and drift.

use std::time::Duration;

use super::*;

const RATE: u32 = 8000;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A track filled directly with `pcm` starting at call position `at`.
fn track_with(at: i64, pcm: &[i16]) -> Track {
    let mut t = Track::new(RATE as usize * 4);
    let mut sink = t.sink(at);
    crate::leg::PcmSink::samples(&mut sink, 0, pcm);
    t
}

fn mixer(inputs: &[MixInput], channels: u16, pause: PauseBehavior) -> Mixer {
    Mixer::new(RATE, channels, inputs, pause, Duration::ZERO)
}

fn mono(tracks: usize) -> Vec<MixInput> {
    (0..tracks)
        .map(|track| MixInput { track, channel: 0 })
        .collect()
}

#[test]
fn two_full_scale_legs_saturate_instead_of_wrapping() {
    let loud = vec![32_767i16; 800];
    let quiet = vec![-32_768i16; 800];
    let tracks = [
        track_with(0, &loud),
        track_with(0, &loud),
        track_with(0, &quiet),
        track_with(0, &quiet),
    ];
    let mut m = mixer(&mono(2), 1, PauseBehavior::Silence);
    let mut out = Vec::new();
    m.mix(&tracks[..2], 800, &mut out);
    assert!(out.iter().all(|&s| s == 32_767), "positive clip");
    let mut m = mixer(&mono(2), 1, PauseBehavior::Silence);
    out.clear();
    m.mix(&tracks[2..], 800, &mut out);
    assert!(out.iter().all(|&s| s == -32_768), "negative clip");
}

#[test]
fn dual_channel_maps_inputs_to_their_channels() {
    let tone: Vec<i16> = (0..1600)
        .map(|i| ((i as f64 * 0.3).sin() * 10_000.0) as i16)
        .collect();
    // The callee's track started first; it still goes right.
    let callee = track_with(0, &vec![0; 1600]);
    let caller = track_with(0, &tone);
    let tracks = [callee, caller];
    let inputs = [
        MixInput {
            track: 1,
            channel: 0,
        },
        MixInput {
            track: 0,
            channel: 1,
        },
    ];
    let mut m = mixer(&inputs, 2, PauseBehavior::Silence);
    let mut out = Vec::new();
    m.mix(&tracks, 1600, &mut out);
    assert_eq!(out.len(), 3200);
    let left: Vec<i16> = out.iter().step_by(2).copied().collect();
    let right: Vec<i16> = out.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(left, tone);
    assert!(right.iter().all(|&s| s == 0));
}

#[test]
fn late_joining_leg_gets_leading_silence_and_lines_up() {
    let a: Vec<i16> = vec![100; 1600];
    let b: Vec<i16> = vec![10; 800];
    let tracks = [track_with(0, &a), track_with(800, &b)];
    let mut m = mixer(&mono(2), 1, PauseBehavior::Silence);
    let mut out = Vec::new();
    m.mix(&tracks, 2000, &mut out);
    assert_eq!(&out[..800], &[100; 800][..]);
    assert_eq!(&out[800..1600], &[110; 800][..]);
    assert!(
        out[1600..].iter().all(|&s| s == 0),
        "both ended: trailing silence"
    );
}

#[test]
fn pause_writes_silence_or_skips() {
    let a: Vec<i16> = vec![7; 8000];
    let tracks = [track_with(0, &a)];
    for (behavior, want_len) in [
        (PauseBehavior::Silence, 8000usize),
        (PauseBehavior::Skip, 6000),
    ] {
        let mut m = mixer(&mono(1), 1, behavior);
        let mut out = Vec::new();
        m.mix(&tracks, 1000, &mut out);
        m.pause(ms(125)).unwrap();
        assert_eq!(m.pause(ms(130)), Err(MixerError::AlreadyPaused));
        m.mix(&tracks, 2000, &mut out);
        m.resume(ms(250)).unwrap();
        assert_eq!(m.resume(ms(260)), Err(MixerError::NotPaused));
        m.pause(ms(500)).unwrap();
        m.resume(ms(625)).unwrap();
        m.mix(&tracks, 8000, &mut out);
        assert_eq!(out.len(), want_len, "{behavior:?}");
        if behavior == PauseBehavior::Silence {
            assert!(out[1000..2000].iter().all(|&s| s == 0));
            assert!(out[4000..5000].iter().all(|&s| s == 0));
            assert!(out[2000..4000].iter().all(|&s| s == 7));
        } else {
            let bad = out.iter().position(|&s| s != 7);
            assert_eq!(
                bad,
                None,
                "{:?}",
                &out[bad.unwrap_or(0)..][..10.min(out.len() - bad.unwrap_or(0))]
            );
        }
        assert_eq!(
            m.pauses(),
            vec![
                PauseInterval {
                    start_ms: 125,
                    end_ms: Some(250)
                },
                PauseInterval {
                    start_ms: 500,
                    end_ms: Some(625)
                }
            ]
        );
    }
}

#[test]
fn mute_silences_only_that_party() {
    let tracks = [
        track_with(0, &vec![1; 4000]),
        track_with(0, &vec![20; 4000]),
    ];
    let mut m = mixer(&mono(2), 1, PauseBehavior::Silence);
    m.set_muted(1, true, ms(100)).unwrap();
    m.set_muted(1, false, ms(300)).unwrap();
    m.suppress(0, 3000, Some(3200)).unwrap();
    assert_eq!(m.set_muted(7, true, ms(0)), Err(MixerError::NoSuchInput(7)));
    let mut out = Vec::new();
    m.mix(&tracks, 4000, &mut out);
    assert!(out[..800].iter().all(|&s| s == 21));
    assert!(out[800..2400].iter().all(|&s| s == 1));
    assert!(out[2400..3000].iter().all(|&s| s == 21));
    assert!(out[3000..3200].iter().all(|&s| s == 20));
}

#[test]
fn a_notice_is_laid_over_every_channel_and_repeats_on_its_period() {
    let voice: Vec<i16> = (0..4000).map(|i| (i % 100) as i16).collect();
    let tracks = [track_with(0, &voice), track_with(0, &voice)];
    let inputs = [
        MixInput {
            track: 0,
            channel: 0,
        },
        MixInput {
            track: 1,
            channel: 1,
        },
    ];
    let mut m = mixer(&inputs, 2, PauseBehavior::Silence);
    let beep: Arc<[i16]> = Arc::from(vec![1000i16; 80]); // 10 ms
    m.overlay(ms(0), beep.clone(), None);
    m.overlay(ms(100), Arc::from(vec![7i16; 8]), Some(ms(150)));
    let mut out = Vec::new();
    // Mixed in uneven steps, so occurrences straddle block edges.
    for upto in [37, 800, 1203, 2000, 4000] {
        m.mix(&tracks, upto, &mut out);
    }
    assert_eq!(out.len(), 8000);
    for pos in 0..4000usize {
        let v = (pos % 100) as i16;
        let notice = if pos < 80 { 1000 } else { 0 };
        let reminder = if pos >= 800 && (pos - 800) % 1200 < 8 {
            7
        } else {
            0
        };
        let want = v + notice + reminder;
        assert_eq!(
            (out[2 * pos], out[2 * pos + 1]),
            (want, want),
            "position {pos}"
        );
    }
}
