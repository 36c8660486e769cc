//! How much of a speech signal survived a lossy encoder, for the encoder
//! settings benches (`mp3_settings`, `opus_settings`): their input (the
//! test speech or a real call), alignment by the codec's delay, segmental
//! SNR, and WAV files for a perceptual score (`benches/pesq_score.py`).

use std::path::Path;

use recengine::audio_file;
use recengine::config::Format;
use recengine::core::encode::{EncoderSpec, encoder_for};
use recengine::core::resample::Resampler;
use recengine::testkit::speech;

/// A bench's input at `rate`: `secs` of the test speech, or the WAV file
/// the environment variable `var` names (8 kHz mono, e.g. a reference
/// decode of a real call in `../shared/captures/`), as is at 8 kHz and
/// through the daemon's resampler at other rates, as a G.711 leg reaches
/// a wideband recording.
pub fn input(var: &str, rate: u32, secs: usize) -> Vec<i16> {
    let Some(path) = std::env::var_os(var) else {
        return speech(rate, secs * rate as usize);
    };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{var} is not readable: {e}"));
    let decoded =
        audio_file::decode(bytes).unwrap_or_else(|e| panic!("{var} is not a WAV file: {e}"));
    assert_eq!(decoded.rate, 8000, "{var} is 8 kHz");
    let narrow = decoded.channels.into_iter().next().unwrap_or_default();
    if rate == 8000 {
        return narrow;
    }
    let mut resampler = Resampler::new(8000, rate);
    let mut wide = Vec::with_capacity(narrow.len() * rate as usize / 8000);
    resampler.process(&narrow, &mut wide);
    resampler.flush(&mut wide);
    wide
}

/// `pcm` as a mono WAV file at `path`, through the daemon's WAV encoder.
pub fn write_wav(path: &Path, pcm: &[i16], rate: u32) {
    let spec = EncoderSpec {
        format: Format::Wav,
        sample_rate: rate,
        channels: 1,
        bitrate_kbps: 0,
        mp3_quality: 7,
        opus_complexity: 5,
    };
    let mut enc = encoder_for(spec).expect("a WAV setting");
    let mut file = Vec::new();
    enc.encode(pcm, &mut file).expect("wav");
    enc.finish(&mut file).expect("wav");
    if let Some(header) = enc.header() {
        file[..header.len()].copy_from_slice(&header);
    }
    std::fs::write(path, file).expect("write a WAV file");
}

/// The lag (decoded behind original, in samples, below `max_lag`) with the
/// largest correlation over the original's seconds 1-3.
pub fn align(original: &[i16], decoded: &[i16], rate: usize, max_lag: usize) -> usize {
    let span = &original[rate..rate * 3];
    (0..max_lag)
        .max_by_key(|&lag| {
            let d = decoded.get(rate + lag..).unwrap_or_default();
            span.iter()
                .zip(d)
                .map(|(&a, &b)| i64::from(a) * i64::from(b))
                .sum::<i64>()
        })
        .unwrap_or(0)
}

/// Segmental SNR in dB: 20 ms segments with speech in them (above
/// −50 dBFS), each clamped to [−10, 35] dB, averaged.
pub fn segmental_snr(original: &[i16], decoded: &[i16], rate: usize) -> f64 {
    let seg = rate / 50;
    let mut sum = 0.0;
    let mut n = 0;
    for (x, y) in original.chunks_exact(seg).zip(decoded.chunks_exact(seg)) {
        let signal: f64 = x.iter().map(|&s| f64::from(s).powi(2)).sum();
        if signal / (seg as f64) < (32768.0f64 * 10f64.powf(-50.0 / 20.0)).powi(2) {
            continue;
        }
        let noise: f64 = x
            .iter()
            .zip(y)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum();
        sum += (10.0 * (signal / noise.max(1.0)).log10()).clamp(-10.0, 35.0);
        n += 1;
    }
    sum / f64::from(n.max(1))
}
