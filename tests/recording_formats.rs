//! Mixed recordings made by `recengine pcap --format …`, decoded back with
//! independent decoders (symphonia for WAV and MP3, libopus for Ogg Opus)
//! and compared with what went in.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use recengine::config::{Channels, Format, PauseBehavior};
use recengine::core::decode::{linear_to_ulaw, ulaw_to_linear};
use recengine::core::opus::Bandwidth;
use recengine::io::sink::sha256_file;
use recengine::offline::record::{PartySelector, RecordOptions, record};
use recengine::recording::RecordingInfo;
use recengine::testkit;

const SECS: usize = 6;

fn options(input: &Path, out: &Path, format: Format, channels: Channels) -> RecordOptions {
    RecordOptions {
        caller: Some(PartySelector::Ssrc(testkit::CALLER_SSRC)),
        callee: Some(PartySelector::Ssrc(testkit::CALLEE_SSRC)),
        ..record_options(input, out, format, channels)
    }
}

/// Caller: 1 kHz tone. Callee: speech, starting 300 ms earlier.
fn tone_and_speech(dir: &Path) -> (PathBuf, Vec<i16>, Vec<i16>) {
    let caller = testkit::tone(8000, 1000.0, 8000.0, SECS * 8000);
    let callee = testkit::speech(8000, SECS * 8000);
    let path = dir.join("two-party.pcap");
    testkit::two_party_pcmu(&path, &caller, &callee, 300).unwrap();
    let g711 = |x: &[i16]| {
        x.iter()
            .map(|&s| ulaw_to_linear(linear_to_ulaw(s)))
            .collect::<Vec<_>>()
    };
    (path, g711(&caller), g711(&callee))
}

fn decode(info: &RecordingInfo, dir: &Path) -> Decoded {
    let path = dir.join(&info.file);
    match info.format {
        Format::Wav | Format::Mp3 => decode_with_symphonia(&path),
        Format::Opus => decode_ogg_opus(&path),
    }
}

/// Frame tolerance for duration checks: one codec frame (MP3 at 8 kHz:
/// 576 samples; Opus and WAV: 20 ms).
fn frame_len(format: Format) -> usize {
    match format {
        Format::Mp3 => 576,
        _ => 160,
    }
}

/// Every format decodes back to the right length and channel count, the
/// sidecar's checksum is the file's, and in dual mode the caller's tone is
/// only in the left channel even though the callee spoke first.
#[test]
fn every_format_decodes_back_with_parties_on_their_channels() {
    let dir = scratch("formats");
    let (capture, caller, callee) = tone_and_speech(&dir);
    for format in [Format::Wav, Format::Mp3, Format::Opus] {
        for channels in [Channels::Mono, Channels::Dual] {
            let out = dir.join(format!("{format:?}-{channels:?}"));
            let info = record(&options(&capture, &out, format, channels)).unwrap();
            let file = out.join(&info.file);
            assert_eq!(
                info.checksum.value,
                sha256_file(&file).unwrap(),
                "{format:?}"
            );
            assert_eq!(
                info.file_size_bytes,
                std::fs::metadata(&file).unwrap().len()
            );
            let sidecar: serde_json::Value = serde_json::from_slice(
                &std::fs::read(out.join(format!("{}.json", info.recording_id))).unwrap(),
            )
            .unwrap();
            assert_eq!(sidecar["checksum"]["value"], info.checksum.value);
            assert_eq!(sidecar["checksum"]["algorithm"], "sha256");

            let d = decode(&info, &out);
            let want_ch = if channels == Channels::Dual { 2 } else { 1 };
            assert_eq!(
                (d.channels, d.rate),
                (want_ch, 8000),
                "{format:?} {channels:?}"
            );
            // The callee started 300 ms before the caller; both sent 6 s.
            let expect = (SECS * 8000) + 2400;
            let tol = frame_len(format);
            assert!(
                d.frames().abs_diff(expect) <= tol,
                "{format:?} {channels:?}: {} frames, want {expect}±{tol}",
                d.frames()
            );
            assert!(
                (info.duration_ms as i64 - (expect as i64 / 8)).abs() <= 20,
                "{format:?}: sidecar says {} ms",
                info.duration_ms
            );

            if channels == Channels::Dual {
                let (left, right) = (d.channel(0), d.channel(1));
                // Content: left is the caller's tone (which starts 300 ms in),
                // right the callee's speech; neither leaks into the other.
                let min = threshold(format);
                let (lag, cl) = best_correlation(&left[2400..], &caller, 400);
                let (_, cr) = best_correlation(&right, &callee, 400);
                assert!(
                    cl > min && cr > min,
                    "{format:?}: caller {cl:.3} callee {cr:.3} (min {min})"
                );
                let leak_right = correlation(&right[2400 + lag..], &caller).abs();
                let leak_left = correlation(&left[lag..], &callee).abs();
                assert!(
                    leak_right < 0.05 && leak_left < 0.05,
                    "{format:?}: cross-talk {leak_left:.3}/{leak_right:.3}"
                );
                let tone_left = tone_power(&left[8000..40_000], 8000, 1000.0);
                assert!(
                    tone_left > 1e6,
                    "{format:?}: 1 kHz tone missing on the left ({tone_left:.0})"
                );
            }
        }
    }
}

/// Correlation a decoded party must reach with its source. WAV is lossless
/// after G.711 (same samples: > 0.999). MP3 at 64 kbit/s stereo (32 per
/// channel) and Opus at 32 kbit/s are perceptual codecs that do not keep the
/// waveform exactly; on this voiced test signal both measure above 0.9, so
/// 0.8 leaves room for encoder-version differences while still failing on
/// misplaced, missing or swapped audio (which correlates near 0).
fn threshold(format: Format) -> f64 {
    match format {
        Format::Wav => 0.999,
        Format::Mp3 | Format::Opus => 0.8,
    }
}

#[test]
fn pause_is_silent_or_left_out() {
    let dir = scratch("pause");
    let (capture, _, _) = tone_and_speech(&dir);
    let pause = (Duration::from_secs(2), Duration::from_secs(3));
    for format in [Format::Wav, Format::Mp3, Format::Opus] {
        for behavior in [PauseBehavior::Silence, PauseBehavior::Skip] {
            let out = dir.join(format!("{format:?}-{behavior:?}"));
            let mut o = options(&capture, &out, format, Channels::Mono);
            o.pause_behavior = behavior;
            o.pauses = vec![pause];
            let info = record(&o).unwrap();
            assert_eq!(info.pauses.len(), 1);
            assert_eq!(info.pauses[0].start_ms, 2000);
            assert_eq!(info.pauses[0].end_ms, Some(3000));
            let d = decode(&info, &out);
            let full = SECS * 8000 + 2400;
            let tol = frame_len(format);
            match behavior {
                PauseBehavior::Silence => {
                    assert!(
                        d.frames().abs_diff(full) <= tol,
                        "{format:?}: {}",
                        d.frames()
                    );
                    // 2.0–3.0 s is silent, give or take one frame at each edge.
                    let quiet = &d.samples[16_000 + tol..24_000 - tol];
                    let peak = quiet.iter().map(|s| s.unsigned_abs()).max().unwrap();
                    assert!(peak < 300, "{format:?}: paused stretch peaks at {peak}");
                    let loud = &d.samples[24_000 + tol..32_000];
                    assert!(
                        loud.iter().any(|s| s.unsigned_abs() > 3000),
                        "{format:?}: audio after resume"
                    );
                }
                PauseBehavior::Skip => {
                    assert!(
                        d.frames().abs_diff(full - 8000) <= tol,
                        "{format:?}: {} frames",
                        d.frames()
                    );
                }
            }
        }
    }
}

/// RFC 7845 structure: CRCs, granule positions, pre-skip, EOS, and a
/// duration from granules that matches the sidecar; and every packet in
/// the band the G.711 call carries.
#[test]
fn ogg_opus_structure_is_valid() {
    let dir = scratch("ogg");
    let (capture, _, _) = tone_and_speech(&dir);
    for rate in [8000, 16_000, 48_000] {
        let out = dir.join(format!("ogg-{rate}"));
        let mut o = options(&capture, &out, Format::Opus, Channels::Mono);
        o.sample_rate = rate;
        let info = record(&o).unwrap();
        let bytes = std::fs::read(out.join(&info.file)).unwrap();
        let pages = ogg_pages(&bytes);
        assert!(pages.iter().all(|p| p.crc_ok), "page CRCs");
        assert!(
            pages.windows(2).all(|w| w[1].sequence == w[0].sequence + 1),
            "page sequence"
        );
        assert_eq!(pages[0].flags & 0x02, 0x02, "BOS on the first page");
        assert_eq!(
            pages.last().unwrap().flags & 0x04,
            0x04,
            "EOS on the last page"
        );
        assert!(pages[..pages.len() - 1].iter().all(|p| p.flags & 0x04 == 0));
        let head = &pages[0].packets[0];
        assert_eq!(&head[..8], b"OpusHead");
        assert_eq!(head[8], 1, "version");
        let pre_skip = u64::from(u16::from_le_bytes([head[10], head[11]]));
        assert!((100..=1000).contains(&pre_skip), "pre-skip {pre_skip}");
        assert_eq!(
            u32::from_le_bytes([head[12], head[13], head[14], head[15]]),
            rate
        );
        assert_eq!(&pages[1].packets[0][..8], b"OpusTags");
        let granules: Vec<u64> = pages[2..].iter().map(|p| p.granule).collect();
        assert!(
            granules.windows(2).all(|w| w[1] >= w[0]),
            "granules monotone"
        );
        let duration_ms = (granules.last().unwrap() - pre_skip) / 48;
        assert!(
            duration_ms.abs_diff(info.duration_ms) <= 1,
            "granules {duration_ms} ms, sidecar {} ms",
            info.duration_ms
        );
        // A G.711 call holds nothing above 4 kHz: coded in mediumband at
        // 16 and 48 kHz (8 kHz allows only narrowband).
        let want = if rate == 8000 {
            Bandwidth::Narrow
        } else {
            Bandwidth::Medium
        };
        let bands: Vec<Bandwidth> = pages[2..]
            .iter()
            .flat_map(|p| &p.packets)
            .filter_map(|p| Bandwidth::of_packet(p))
            .collect();
        assert!(
            bands.len() >= SECS * 50,
            "{rate} Hz: {} packets",
            bands.len()
        );
        assert!(bands.iter().all(|&b| b == want), "{rate} Hz: {bands:?}");
    }
}

#[test]
fn bad_requests_are_refused_before_any_file_exists() {
    let dir = scratch("refused");
    let (capture, _, _) = tone_and_speech(&dir);
    for (format, rate, kbps) in [
        (Format::Mp3, 8000, 128),
        (Format::Opus, 44_100, 32),
        (Format::Opus, 8000, 600),
    ] {
        let out = dir.join(format!("{format:?}-{rate}-{kbps}"));
        let mut o = options(&capture, &out, format, Channels::Mono);
        o.sample_rate = rate;
        o.bitrate_kbps = kbps;
        let err = record(&o).unwrap_err().to_string();
        assert!(
            err.contains(&kbps.to_string()) || err.contains(&rate.to_string()),
            "{err}"
        );
        assert!(
            !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
            "{format:?}: left files behind"
        );
    }
}

/// A speech capture recorded with DTMF suppression is silent where the
/// RFC 4733 digits were (plus guard), and untouched elsewhere.
#[test]
fn dtmf_suppression_silences_the_digit_stretches() {
    let dir = scratch("dtmf-suppress");
    let out = dir.join("out");
    let mut o = options(&fixture("dtmf-cn.pcap"), &out, Format::Wav, Channels::Mono);
    o.suppress_dtmf = true;
    o.caller = None;
    o.callee = None;
    let info = record(&o).unwrap();
    assert_eq!(info.legs[0].dtmf.len(), 2);
    let d = decode(&info, &out);
    // Digit 1 at 2.0–2.5 s was sent instead of audio; suppression widens the
    // silence by the 40 ms guard on both sides: 1.96–2.54 s.
    let around = &d.samples[15_680 + 16..20_320 - 16];
    assert!(
        around.iter().all(|&s| s == 0),
        "audio inside the suppressed digit"
    );
    let before = &d.samples[14_000..15_500];
    assert!(
        before.iter().any(|s| s.unsigned_abs() > 1000),
        "audio before the digit kept"
    );
}

/// The Ekiga caller of nesfit_codecs3-pcmu runs about 4,000 ppm slow (its
/// least transit grows by 25 ms over 8 s): the mix measures that drift and
/// inserts about as much silence as the sender fell behind, so it stays
/// where it belongs; the callee, whose clock is right, is left untouched.
/// The recording ends with the media, and the sidecar agrees with the file.
#[test]
fn real_drift_in_a_capture_is_measured_and_corrected() {
    let Some(dir) = shared_captures() else { return };
    let out = scratch("ekiga-drift");
    let mut opts = options(
        &dir.join("nesfit_codecs3-pcmu.pcap"),
        &out,
        Format::Wav,
        Channels::Dual,
    );
    opts.caller = Some(PartySelector::Ssrc(0x7df5_fe10));
    opts.callee = Some(PartySelector::Ssrc(0x0f4b_fe34));
    let info = record(&opts).expect("record");
    let caller = &info.legs[0].stats;
    let callee = &info.legs[1].stats;
    assert!((3500.0..4500.0).contains(&caller.drift_ppm), "{caller:?}");
    assert!(caller.corrections >= 1, "{caller:?}");
    // 4,000 ppm over the ~7 s after the anchor settles: ~28 ms = ~220 samples.
    let inserted_ms = caller.samples_inserted as f64 / 8.0;
    assert!((15.0..=40.0).contains(&inserted_ms), "{caller:?}");
    assert_eq!(caller.samples_removed, 0, "{caller:?}");
    assert_eq!(callee.corrections, 0, "{callee:?}");
    // The file ends with the last packet of either party (8.1 s of call).
    assert!(
        (7_900..=8_400).contains(&info.duration_ms),
        "{}",
        info.duration_ms
    );
    let started = recengine::timefmt::parse_rfc3339(&info.started_at).unwrap();
    let stopped = recengine::timefmt::parse_rfc3339(&info.stopped_at).unwrap();
    assert_eq!(
        stopped.saturating_sub(started),
        Duration::from_millis(info.duration_ms)
    );
}
