//! MP3 at telephone rates: what each LAME bitrate and quality setting costs
//! and what it keeps of the test speech.
//!
//! For every setting it encodes 20 s of the test speech (`testkit::speech`,
//! mono at 8 and 16 kHz, as a call's mixed audio) in 20 ms pieces, as the
//! daemon does, and reports the encoder's realtime factor on one core
//! (fastest of five runs), its CPU-seconds per call-minute, and the
//! segmental SNR of the file decoded again by Symphonia against what went
//! in (20 ms segments with speech in them, each clamped to [−10, 35] dB,
//! averaged; the decoded audio is aligned first by searching the encoder's
//! delay).
//! With `MP3_SETTINGS_WAV_DIR=DIR` the input and every decoded version are
//! also written there as WAV (with each MP3 file beside its decode) for a perceptual score (`benches/pesq_score.py
//! DIR`, ITU-T P.862 through PyPI's `pesq`); `MP3_SETTINGS_INPUT=FILE.wav`
//! (8 kHz mono, e.g. a reference decode of a real call in
//! `../shared/captures/`) replaces the test speech: as is at 8 kHz, and
//! through the daemon's resampler at 16 kHz, as a G.711 leg reaches a
//! 16 kHz recording.
//!
//! Run: cargo bench --bench mp3_settings
//! (`MP3_SETTINGS_ONLY=8000:64:7` runs one rate:kbit/s:quality, e.g. under
//! `perf record`).

use std::time::{Duration, Instant};

use recengine::audio_file;
use recengine::config::Format;
use recengine::core::encode::{EncoderSpec, encoder_for};
use recengine::testkit::speech;

#[path = "support/speech_quality.rs"]
mod speech_quality;
use speech_quality::{align, input, segmental_snr, write_wav};

const SECS: usize = 20;

fn encode(pcm: &[i16], rate: u32, kbps: u32, quality: u8, piece: usize) -> (Duration, Vec<u8>) {
    let spec = EncoderSpec {
        format: Format::Mp3,
        sample_rate: rate,
        channels: 1,
        bitrate_kbps: kbps,
        mp3_quality: quality,
        opus_complexity: 5,
    };
    let mut best = Duration::MAX;
    let mut file = Vec::new();
    for _ in 0..5 {
        let mut enc = encoder_for(spec).expect("a LAME setting");
        let mut out = Vec::with_capacity(256 * 1024);
        let start = Instant::now();
        for samples in pcm.chunks(piece) {
            enc.encode(samples, &mut out).expect("encode");
        }
        enc.finish(&mut out).expect("finish");
        best = best.min(start.elapsed());
        file = out;
    }
    (best, file)
}

fn main() {
    let only = std::env::var("MP3_SETTINGS_ONLY").ok();
    let wav_dir = std::env::var_os("MP3_SETTINGS_WAV_DIR").map(std::path::PathBuf::from);
    println!(
        "| rate | kbit/s | quality | encoder realtime × | encoder CPU-s per call-minute | segmental SNR dB |"
    );
    println!("|---|---|---|---|---|---|");
    for (rate, rates) in [
        (8000u32, &[16, 24, 32, 48, 64][..]),
        (16_000, &[32, 48, 64][..]),
    ] {
        let pcm = input("MP3_SETTINGS_INPUT", rate, SECS);
        let secs = pcm.len() as f64 / f64::from(rate);
        if let Some(dir) = &wav_dir {
            write_wav(&dir.join(format!("ref-{rate}.wav")), &pcm, rate);
        }
        for &kbps in rates {
            for quality in [2, 5, 7, 9] {
                if only
                    .as_deref()
                    .is_some_and(|o| o != format!("{rate}:{kbps}:{quality}"))
                {
                    continue;
                }
                let (took, file) = encode(&pcm, rate, kbps, quality, rate as usize / 50);
                let decoded = match audio_file::decode(file.clone()) {
                    Ok(d) => d.channels.into_iter().next().unwrap_or_default(),
                    Err(e) => {
                        println!("| {rate} | {kbps} | {quality} | decode failed: {e} | | |");
                        continue;
                    }
                };
                let lag = align(&pcm, &decoded, rate as usize, 2400);
                let aligned = decoded.get(lag..).unwrap_or_default();
                let snr = segmental_snr(&pcm, aligned, rate as usize);
                if let Some(dir) = &wav_dir {
                    let name = format!("{rate}-{kbps}k-q{quality}");
                    write_wav(&dir.join(format!("{name}.wav")), aligned, rate);
                    std::fs::write(dir.join(format!("{name}.mp3")), &file).expect("write the MP3");
                }
                let realtime = secs / took.as_secs_f64();
                println!(
                    "| {rate} | {kbps} | {quality} | {realtime:.0} | {:.4} | {snr:.1} |",
                    60.0 / realtime
                );
            }
        }
    }
    if only.is_some() {
        return;
    }
    // The daemon hands the encoder 20 ms at a time; LAME works in granules
    // of 576 samples at 8 kHz. Does handing it whole frames change the cost?
    let pcm = speech(8000, SECS * 8000);
    for piece in [160, 576, 1152, 8000] {
        let (took, _) = encode(&pcm, 8000, 32, 7, piece);
        println!(
            "8 kHz, 32 kbit/s, quality 7, {piece} samples per call: {:.0}x realtime",
            SECS as f64 / took.as_secs_f64()
        );
    }
}
