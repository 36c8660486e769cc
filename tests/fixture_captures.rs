//! The captures the project generates (fixtures/README.md): each is what
//! `recengine::testkit` writes, and each impairment comes out right.

mod common;

use common::{correlation, fixture, read_wav, run_pcap, scratch};
use recengine::core::decode::{linear_to_ulaw, ulaw_to_linear};
use recengine::core::resample::Resampler;
use recengine::testkit;

#[test]
fn committed_fixtures_are_what_the_generator_writes() {
    let dir = scratch("regenerated");
    testkit::generate_fixtures(&dir).unwrap();
    for (name, _) in testkit::FIXTURES {
        let committed = std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let fresh = std::fs::read(dir.join(name)).unwrap();
        assert!(
            committed == fresh,
            "{name} differs from `cargo run --example make_fixtures` output"
        );
    }
}

/// The source as it sounds after G.711 µ-law.
fn pcmu_source(samples: usize) -> Vec<i16> {
    testkit::speech(8000, samples)
        .iter()
        .map(|&s| ulaw_to_linear(linear_to_ulaw(s)))
        .collect()
}

#[test]
fn impaired_stream_keeps_every_received_sample_in_place() {
    let out = scratch("fx-impaired");
    let reports = run_pcap(&fixture("impaired-pcmu.pcap"), &out, false);
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(
        (r.stats.lost, r.stats.duplicates, r.stats.late),
        (4, 2, 0),
        "{:?}",
        r.stats
    );
    // Two swapped pairs, plus the late copy of 300 (a lower sequence number
    // than one already seen, as the captures' manifest counts it).
    assert_eq!(r.stats.reordered, 3);
    let (got, _) = read_wav(r.wav.as_ref().unwrap());
    let mut want = pcmu_source(80_000);
    for i in testkit::IMPAIRED_LOST {
        want[i * 160..(i + 1) * 160].fill(0);
    }
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "first difference at {:?}",
        got.iter().zip(&want).position(|(a, b)| a != b)
    );
}

#[test]
fn ssrc_change_on_one_flow_continues_without_gap() {
    let out = scratch("fx-ssrc");
    let reports = run_pcap(&fixture("ssrc-change.pcap"), &out, true);
    assert_eq!(reports.len(), 1, "one flow, one leg");
    let r = &reports[0];
    assert_eq!(
        (r.stats.ssrc_changes, r.stats.lost, r.stats.foreign_ssrc),
        (1, 0, 0),
        "{:?}",
        r.stats
    );
    let (got, _) = read_wav(r.wav.as_ref().unwrap());
    assert!(
        got == pcmu_source(48_000),
        "audio differs at {:?}",
        got.iter()
            .zip(&pcmu_source(48_000))
            .position(|(a, b)| a != b)
    );
}

#[test]
fn dtmf_and_comfort_noise_become_digits_and_silence() {
    let out = scratch("fx-dtmf");
    let reports = run_pcap(&fixture("dtmf-cn.pcap"), &out, false);
    let r = &reports[0];
    assert_eq!(r.digits(), "1#");
    assert_eq!(r.dtmf[0].start_ms, 2000);
    assert_eq!(r.dtmf[0].duration_ms, 500);
    assert_eq!(r.dtmf[1].start_ms, 3000);
    assert!(r.dtmf.iter().all(|d| d.ended));
    // End packets are retransmitted with new sequence numbers (RFC 4733
    // §2.5.1.4), so they are not RTP duplicates.
    assert_eq!((r.stats.lost, r.stats.duplicates), (0, 0), "{:?}", r.stats);
    let (got, _) = read_wav(r.wav.as_ref().unwrap());
    let mut want = pcmu_source(48_000);
    want[16_000..20_000].fill(0); // digit 1
    want[24_000..26_400].fill(0); // digit #
    want[32_000..40_000].fill(0); // comfort noise
    assert!(
        got == want,
        "first difference at {:?}",
        got.iter().zip(&want).position(|(a, b)| a != b)
    );
}

#[test]
fn opus_loss_is_recovered_from_forward_error_correction() {
    let out = scratch("fx-opus");
    let reports = run_pcap(&fixture("opus-fec.pcap"), &out, false);
    let r = &reports[0];
    assert_eq!(r.sample_rate, 48_000);
    assert_eq!(r.stats.lost, 4);
    let (got, _) = read_wav(r.wav.as_ref().unwrap());
    assert_eq!(got.len(), 240_000, "5 s at 48 kHz");
    // Opus's own delay: align by searching the best lag in 0..10 ms.
    let mut source = Vec::new();
    let mut up = Resampler::new(16_000, 48_000);
    up.process(&testkit::speech(16_000, 80_000), &mut source);
    up.flush(&mut source);
    let best = (0..480)
        .map(|lag| (lag, correlation(&got[lag..], &source)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert!(best.1 > 0.8, "overall correlation {best:?}");
    // Each lost frame was rebuilt from the next packet's FEC, not left silent.
    for i in testkit::OPUS_FEC_LOST {
        let frame = &got[i * 960 + best.0..(i + 1) * 960 + best.0];
        let src = &source[i * 960..(i + 1) * 960];
        let energy: f64 = frame.iter().map(|&s| f64::from(s).powi(2)).sum();
        let src_energy: f64 = src.iter().map(|&s| f64::from(s).powi(2)).sum();
        if src_energy > 1e9 {
            assert!(
                energy > src_energy * 0.1,
                "frame {i} concealed as near-silence"
            );
            assert!(
                correlation(frame, src) > 0.5,
                "frame {i}: {}",
                correlation(frame, src)
            );
        }
    }
}
