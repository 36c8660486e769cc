//! Opus recordings at 8, 16 and 48 kHz: what each encoder complexity costs and
//! what it keeps of the test speech, to set wideband's price against
//! narrowband's (issue #19 target 2).
//!
//! For every setting it encodes 20 s of the test speech (`testkit::speech`,
//! mono, as a call's mixed audio) in 20 ms pieces through the daemon's Ogg
//! Opus encoder and reports the encoder's realtime factor on one core
//! (fastest of three runs) and its CPU-seconds per call-minute. Quality:
//! the same libopus settings encode the speech again packet by packet, the
//! core's decoder decodes it at the recording's rate, and the segmental SNR
//! against what went in is given (20 ms segments with speech, each clamped
//! to [−10, 35] dB, after aligning by the encoder's delay). SILK shapes its
//! noise under the speech, which SNR counts against it, so the score is
//! for comparing settings at one rate, not Opus with MP3; with
//! `OPUS_SETTINGS_WAV_DIR=DIR` the input and every decoded version are also
//! written there as WAV for a perceptual score (`benches/pesq_score.py DIR`,
//! ITU-T P.862 through PyPI's `pesq`).
//!
//! `OPUS_SETTINGS_INPUT=FILE.wav` (8 kHz mono, e.g. a reference decode of
//! a real call in `../shared/captures/`) replaces the test speech: as is at
//! 8 kHz, and through the daemon's resampler at 16 kHz, as a G.711 leg
//! reaches a 16 kHz recording.
//!
//! The encoder is told the source's rate as the daemon tells it (8 kHz for
//! the real call, the recording's rate for the test speech), so a G.711
//! call at 16 kHz is coded in mediumband; `OPUS_SETTINGS_SOURCE_RATE=16000`
//! codes it in wideband instead.
//!
//! Run: cargo bench --bench opus_settings
//! (`OPUS_SETTINGS_ONLY=16000:32:5` runs one rate:kbit/s:complexity).

use std::time::{Duration, Instant};

use recengine::config::Format;
use recengine::core::encode::{EncoderSpec, encoder_for};
use recengine::core::opus::{Application, Bandwidth, OpusDecoder, OpusEncoder};

#[path = "support/speech_quality.rs"]
mod speech_quality;
use speech_quality::{align, input, segmental_snr, write_wav};

const SECS: usize = 20;

fn spec(format: Format, rate: u32, kbps: u32, complexity: u8) -> EncoderSpec {
    EncoderSpec {
        format,
        sample_rate: rate,
        channels: 1,
        bitrate_kbps: kbps,
        mp3_quality: 7,
        opus_complexity: complexity,
    }
}

/// The fastest of three encodings through the daemon's Ogg Opus encoder,
/// told the source's rate as the daemon tells it.
fn encode_cost(pcm: &[i16], rate: u32, source: u32, kbps: u32, complexity: u8) -> Duration {
    let frame = rate as usize / 50;
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let mut enc =
            encoder_for(spec(Format::Opus, rate, kbps, complexity)).expect("an Opus setting");
        enc.set_source_rate(source).expect("a source rate");
        let mut out = Vec::with_capacity(256 * 1024);
        let start = Instant::now();
        for samples in pcm.chunks(frame) {
            enc.encode(samples, &mut out).expect("encode");
        }
        enc.finish(&mut out).expect("finish");
        best = best.min(start.elapsed());
    }
    best
}

/// The speech through libopus and back at `rate`, with the daemon's
/// encoder settings (VoIP, voice signal).
fn round_trip(pcm: &[i16], rate: u32, source: u32, kbps: u32, complexity: u8) -> Vec<i16> {
    let frame = rate as usize / 50;
    let mut enc =
        OpusEncoder::new(rate, 1, Application::Voip, kbps * 1000, complexity).expect("encoder");
    enc.set_max_bandwidth(Bandwidth::for_source_rate(source))
        .expect("a bandwidth");
    let mut dec = OpusDecoder::new(rate).expect("decoder");
    let mut packet = [0u8; 4000];
    let mut decoded = Vec::with_capacity(pcm.len());
    for samples in pcm.chunks_exact(frame) {
        let n = enc.encode(samples, &mut packet).expect("encode");
        dec.decode(&packet[..n], &mut decoded).expect("decode");
    }
    decoded
}

fn main() {
    let only = std::env::var("OPUS_SETTINGS_ONLY").ok();
    let wav_dir = std::env::var_os("OPUS_SETTINGS_WAV_DIR").map(std::path::PathBuf::from);
    println!(
        "| rate | kbit/s | complexity | encoder realtime × | encoder CPU-s per call-minute | segmental SNR dB |"
    );
    println!("|---|---|---|---|---|---|");
    for rate in [8000u32, 16_000, 48_000] {
        let pcm = input("OPUS_SETTINGS_INPUT", rate, SECS);
        // A real call's decode is 8 kHz audio; the test speech is made at
        // the rate. OPUS_SETTINGS_SOURCE_RATE overrides (16000: wideband
        // coding of a G.711 call, as before session 18).
        let source = std::env::var("OPUS_SETTINGS_SOURCE_RATE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if std::env::var_os("OPUS_SETTINGS_INPUT").is_some() {
                8000
            } else {
                rate
            })
            .min(rate);
        let secs = pcm.len() as f64 / f64::from(rate);
        if let Some(dir) = &wav_dir {
            write_wav(&dir.join(format!("ref-{rate}.wav")), &pcm, rate);
        }
        for kbps in [16u32, 24, 32] {
            for complexity in [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10] {
                if only
                    .as_deref()
                    .is_some_and(|o| o != format!("{rate}:{kbps}:{complexity}"))
                {
                    continue;
                }
                if only.is_none() && kbps != 32 && complexity != 5 {
                    continue; // other bitrates at the default complexity only
                }
                let took = encode_cost(&pcm, rate, source, kbps, complexity);
                let decoded = round_trip(&pcm, rate, source, kbps, complexity);
                let lag = align(&pcm, &decoded, rate as usize, rate as usize / 10);
                let aligned = decoded.get(lag..).unwrap_or_default();
                let snr = segmental_snr(&pcm, aligned, rate as usize);
                if let Some(dir) = &wav_dir {
                    let name = format!("{rate}-{kbps}k-c{complexity}.wav");
                    write_wav(&dir.join(name), aligned, rate);
                }
                let realtime = secs / took.as_secs_f64();
                println!(
                    "| {rate} | {kbps} | {complexity} | {realtime:.0} | {:.4} | {snr:.1} |",
                    60.0 / realtime
                );
            }
        }
    }
}
