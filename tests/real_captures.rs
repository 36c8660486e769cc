//! `recengine pcap` on the public captures in ../shared/captures: G.711
//! output must equal the reference decode sample for sample; other codecs
//! and event-only streams are checked against the facts in the captures'
//! README/manifest.

mod common;

use common::{read_wav, run_pcap, scratch, shared_captures};

/// Every G.711 stream with a reference WAV decodes identically.
///
/// The reference policy (captures/README.md) and the engine agree on every
/// point that matters here: duplicates dropped, packets placed by timestamp,
/// gaps (loss, DTX) as zeros, sample 0 at the first audio packet. The
/// one-byte PCMA packets in SIP_CALL_RTP_G711 (a vendor's level byte sent as
/// audio) decode to one sample each in both, so they match too; if a future
/// change treated them as comfort noise this test would name the capture.
#[test]
fn g711_streams_equal_the_reference_decode() {
    let Some(dir) = shared_captures() else { return };
    let mut compared = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".wav") {
            continue;
        }
        let mut parts = name.rsplitn(3, '.');
        let (_, ssrc, stem) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        let capture = dir.join(format!("{stem}.pcap"));
        let out = scratch(&format!("real-{stem}"));
        let reports = run_pcap(&capture, &out, false);
        assert!(
            reports
                .iter()
                .any(|r| format!("{:08x}", r.key.ssrc) == ssrc),
            "{stem}: no stream {ssrc}"
        );
        let (want, want_rate) = read_wav(&path);
        let (got, got_rate) = read_wav(&out.join(format!("{ssrc}.wav")));
        assert_eq!(got_rate, want_rate, "{name}");
        assert_eq!(got.len(), want.len(), "{name}: sample count");
        let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(first_diff, None, "{name}: first differing sample");
        compared += 1;
    }
    assert_eq!(compared, 10, "expected the 10 reference WAVs");
}

#[test]
fn sequence_statistics_match_the_manifest() {
    let Some(dir) = shared_captures() else { return };
    // (capture, ssrc, packets, lost, duplicates)
    let rows: &[(&str, u32, u64, u64, u64)] = &[
        ("rtp_example.pcap", 0xF3CB_2001, 229, 1, 0),
        ("rtpproxy_sess6.a.pcap", 0x4995_4FD1, 2546, 0, 470),
        ("rtpproxy_lost.a.pcap", 0x0A73_28F3, 244, 321, 0),
        ("sipp_dtmf_2833_1.pcap", 0x0E05_384E, 10, 0, 2),
        ("rtpproxy_catch_dtmf.pcapng", 0x37ED_87F3, 151, 193, 52),
    ];
    for &(file, ssrc, packets, lost, dups) in rows {
        let out = scratch(&format!("stats-{file}"));
        let reports = run_pcap(&dir.join(file), &out, false);
        let r = reports
            .iter()
            .find(|r| r.key.ssrc == ssrc)
            .unwrap_or_else(|| panic!("{file}: no {ssrc:08x}"));
        assert_eq!(
            (r.stats.received, r.stats.lost, r.stats.duplicates),
            (packets, lost, dups),
            "{file}"
        );
    }
    // Reordering in the G.729 carrier capture: 473 out-of-order arrivals.
    let out = scratch("stats-sess6");
    let reports = run_pcap(&dir.join("rtpproxy_sess6.a.pcap"), &out, false);
    assert_eq!(reports[0].stats.reordered, 473);
}

#[test]
fn dtmf_digits_are_reported_once_each() {
    let Some(dir) = shared_captures() else { return };
    let cases: &[(&str, u32, &str)] = &[
        ("sipp_dtmf_2833_1.pcap", 0x0E05_384E, "1"),
        ("rtpproxy_catch_dtmf.pcapng", 0x37ED_87F3, "123456789*0#5"),
        ("rtpproxy_catch_dtmf.pcapng", 0xEE69_3E61, "54321#"),
    ];
    for &(file, ssrc, digits) in cases {
        let out = scratch(&format!("dtmf-{file}-{ssrc:x}"));
        let reports = run_pcap(&dir.join(file), &out, false);
        let r = reports.iter().find(|r| r.key.ssrc == ssrc).unwrap();
        assert_eq!(r.digits(), digits, "{file}");
        assert!(r.wav.is_none(), "event-only streams write no audio file");
    }
}

/// G.722, Opus and L16 have no reference WAV: check rate and duration from
/// the timestamps, and that the audio is not silence.
#[test]
fn wideband_and_linear_codecs_decode_at_their_rates() {
    let Some(dir) = shared_captures() else { return };
    // (capture, ssrc, rate, expected seconds)
    let rows: &[(&str, u32, u32, f64)] = &[
        ("sip-rtp-g722.pcap", 0x043D_AABA, 16_000, 8.50),
        ("nesfit_codecs3-g722.pcap", 0x307B_5CE8, 16_000, 7.84),
        ("sip-rtp-opus.pcap", 0x043E_EE04, 48_000, 8.50),
        ("sip-rtp-l16.pcap", 0x043D_A974, 8000, 8.50),
        ("sip-rtp-l16.pcap", 0x043F_FA0C, 16_000, 8.50),
        ("sip-rtp-l16.pcap", 0x043F_FA21, 48_000, 8.50),
    ];
    for &(file, ssrc, rate, secs) in rows {
        let out = scratch(&format!("wide-{file}-{ssrc:x}"));
        let reports = run_pcap(&dir.join(file), &out, false);
        let r = reports.iter().find(|r| r.key.ssrc == ssrc).unwrap();
        let (pcm, got_rate) = read_wav(r.wav.as_ref().unwrap());
        assert_eq!(got_rate, rate, "{file} {ssrc:08x}");
        let got = pcm.len() as f64 / f64::from(rate);
        assert!(
            (got - secs).abs() < 0.03,
            "{file} {ssrc:08x}: {got:.3} s, want {secs}"
        );
        let loud = pcm.iter().filter(|s| s.unsigned_abs() > 300).count();
        assert!(
            loud > pcm.len() / 20,
            "{file} {ssrc:08x}: mostly silent ({loud} loud samples)"
        );
        assert_eq!(r.stats.decode_errors, 0, "{file}");
    }
}

/// L16/11025 whose RTP clock runs 27 % slower than the wall clock
/// (256 samples every 32 ms): no real clock drifts that far, so once three
/// seconds of arrivals climb steadily at that rate (about 274,000 ppm; a
/// step in delay never does) the leg follows arrival time instead of its
/// timestamps and keeps every packet from then on. What arrived beyond the
/// playout delay before that (about a second and a half) is lost.
#[test]
fn wrong_rtp_clock_is_followed_once_measured() {
    let Some(dir) = shared_captures() else { return };
    let out = scratch("l16-11025");
    let reports = run_pcap(&dir.join("sip-rtp-l16.pcap"), &out, false);
    let r = reports.iter().find(|r| r.key.ssrc == 0x043D_A985).unwrap();
    assert_eq!(r.sample_rate, 11_025);
    assert_eq!((r.stats.received, r.stats.lost), (366, 0));
    assert!(r.stats.drift_ppm > 200_000.0, "{:?}", r.stats);
    assert!(r.stats.late <= 48, "{:?}", r.stats);
    assert!(r.stats.resyncs >= 1, "{:?}", r.stats);
    let (pcm, _) = read_wav(r.wav.as_ref().unwrap());
    let audio_secs = (366 - r.stats.late) as f64 * 256.0 / 11_025.0;
    let got = pcm.len() as f64 / 11_025.0;
    assert!(got >= audio_secs && got <= 11.8, "{got:.2} s");
}

/// Every two-party G.711 capture, mixed to dual WAV as the daemon mixes a
/// call: each channel holds its own party's timestamp decode sample for
/// sample from where the party starts, except packets its leg counted late
/// (beyond the playout delay), when the sender's clock is within ±200 ppm
/// of the capture's (the Ekiga capture, ~4,000 ppm off, is corrected
/// instead: `recording_formats::real_drift_in_a_capture_is_measured_and_corrected`).
#[test]
fn two_party_captures_mixed_to_dual_wav_keep_each_party_exact() {
    use recengine::config::{Channels, Format};
    use recengine::core::rtp::Codec;
    use recengine::offline::record::{PartySelector, RecordOptions, record};

    let Some(dir) = shared_captures() else { return };
    let mut checked = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    entries.sort();
    for capture in entries {
        let stem = capture.file_stem().unwrap().to_string_lossy().into_owned();
        let out = scratch(&format!("two-party-{stem}"));
        let reports = run_pcap(&capture, &out, false);
        let parties: Vec<_> = reports
            .iter()
            .filter(|r| matches!(r.codec, Some(Codec::Pcmu | Codec::Pcma)))
            .filter(|r| r.wav.is_some() && r.samples >= 8000)
            .collect();
        if parties.len() != 2 || parties.iter().any(|p| p.stats.drift_ppm.abs() > 200.0) {
            continue;
        }
        let opts = RecordOptions {
            caller: Some(PartySelector::Ssrc(parties[0].key.ssrc)),
            callee: Some(PartySelector::Ssrc(parties[1].key.ssrc)),
            ..common::record_options(&capture, &out.join("mixed"), Format::Wav, Channels::Dual)
        };
        let info = record(&opts).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let (mixed, rate) = read_wav(&out.join("mixed").join(&info.file));
        assert_eq!(rate, 8000, "{stem}");
        for (k, party) in parties.iter().enumerate() {
            let channel: Vec<i16> = mixed.iter().skip(k).step_by(2).copied().collect();
            let (want, _) = read_wav(party.wav.as_ref().unwrap());
            let leg = &info.legs[k].stats;
            // Where the party starts: its loudest early 20 ms, found exactly.
            let anchor = (0..want.len().min(16_000) / 160)
                .max_by_key(|&f| {
                    want[f * 160..][..160]
                        .iter()
                        .map(|&s| i64::from(s).abs())
                        .sum::<i64>()
                })
                .unwrap();
            let frame = &want[anchor * 160..][..160];
            let at = channel
                .windows(160)
                .position(|w| w == frame)
                .unwrap_or_else(|| panic!("{stem} party {k}: not found in its channel ({leg:?})"));
            let start = at - anchor * 160;
            let differ = want
                .iter()
                .enumerate()
                .filter(|&(i, s)| channel.get(start + i) != Some(s))
                .count();
            // A late packet is concealed in the mix; at most 30 ms each.
            assert!(
                differ as u64 <= leg.late * 240,
                "{stem} party {k}: {differ} of {} samples differ ({leg:?})",
                want.len()
            );
            assert_eq!(
                (leg.corrections, leg.resyncs),
                (0, 0),
                "{stem} party {k}: {leg:?}"
            );
        }
        checked.push(stem);
    }
    eprintln!("two-party captures checked: {checked:?}");
    assert!(checked.len() >= 2, "{checked:?}");
}
