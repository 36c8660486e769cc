//! What a recording file is, as media: its format, channel layout, what a
//! pause leaves in it, and the sample rates and bitrates each format takes.
//! The configuration and the API name these types; the encoders obey them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Wav,
    Mp3,
    Opus,
}

impl Format {
    /// The format a catalog row or a file extension names.
    pub fn from_extension(name: &str) -> Option<Format> {
        match name {
            "wav" => Some(Format::Wav),
            "mp3" => Some(Format::Mp3),
            "opus" => Some(Format::Opus),
            _ => None,
        }
    }

    /// The content type of a catalogued format name; a recording made
    /// elsewhere (`external`) is just bytes.
    pub fn content_type_of(name: &str) -> &'static str {
        Format::from_extension(name).map_or("application/octet-stream", Format::content_type)
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Wav => "wav",
            Format::Mp3 => "mp3",
            Format::Opus => "opus",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Wav => "audio/wav",
            Format::Mp3 => "audio/mpeg",
            Format::Opus => "audio/ogg",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channels {
    Mono,
    Dual,
}

impl Channels {
    pub fn as_str(self) -> &'static str {
        match self {
            Channels::Mono => "mono",
            Channels::Dual => "dual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PauseBehavior {
    Silence,
    Skip,
}

/// Sample rates each format accepts.
pub fn sample_rates(format: Format) -> &'static [u32] {
    match format {
        Format::Wav => &[
            8000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
        ],
        Format::Mp3 => &[
            8000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
        ],
        Format::Opus => &[8000, 12_000, 16_000, 24_000, 48_000],
    }
}

/// CBR bitrates (kbit/s) the MP3 encoder takes at a sample rate: LAME's
/// (MPEG-1 for 32–48 kHz, MPEG-2 for 16–24 kHz, MPEG-2.5 for 8–12 kHz)
/// that `mp3lame-encoder` can name — it has no 56 or 144, so they are
/// refused here rather than failing the recording later.
pub fn mp3_bitrates(sample_rate: u32) -> &'static [u32] {
    match sample_rate {
        32_000 | 44_100 | 48_000 => &[32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
        16_000 | 22_050 | 24_000 => &[8, 16, 24, 32, 40, 48, 64, 80, 96, 112, 128, 160],
        _ => &[8, 16, 24, 32, 40, 48, 64],
    }
}

/// The MP3 bitrate (kbit/s) a recording gets when nothing names one: per
/// channel, 48 at 8-12 kHz and 64 at 16 kHz and above (Audian's 64 kbit/s
/// at 16 kHz), capped at the most LAME allows at the rate (64 at 8-12 kHz).
/// At 8 kHz, 48 kbit/s scores what 64 does (PESQ 4.38 for both on a real
/// G.711 call, 32 kbit/s 4.21; PERFORMANCE.md, session 17) in three
/// quarters of the bytes.
pub fn mp3_default_bitrate(sample_rate: u32, channels: u16) -> u32 {
    let per_channel = if sample_rate < 16_000 { 48 } else { 64 };
    let want = per_channel * u32::from(channels.clamp(1, 2));
    let allowed = mp3_bitrates(sample_rate);
    allowed
        .iter()
        .copied()
        .filter(|&b| b <= want)
        .max()
        .unwrap_or(allowed[0])
}

/// Why a bitrate does not fit a format and rate; `None` when it does
/// (0 means the format's default and always fits).
pub fn bitrate_problem(format: Format, sample_rate: u32, kbps: u32) -> Option<String> {
    match format {
        _ if kbps == 0 => None,
        Format::Wav => None,
        Format::Mp3 => {
            let allowed = mp3_bitrates(sample_rate);
            (!allowed.contains(&kbps)).then(|| {
                format!(
                    "{kbps} kbit/s is not a LAME bitrate at {sample_rate} Hz (allowed: {allowed:?})"
                )
            })
        }
        Format::Opus => {
            (!(6..=510).contains(&kbps)).then(|| format!("{kbps} kbit/s is outside Opus's 6-510"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The MP3 default is 48 kbit/s per channel at 8-12 kHz and 64 above,
    /// within what LAME takes at the rate.
    #[test]
    fn mp3_default_bitrate_follows_rate_and_channels() {
        let cases = [
            (8000, 1, 48),
            (8000, 2, 64),
            (11_025, 1, 48),
            (16_000, 1, 64),
            (16_000, 2, 128),
            (24_000, 1, 64),
            (48_000, 1, 64),
            (48_000, 2, 128),
        ];
        for (rate, channels, kbps) in cases {
            assert_eq!(
                mp3_default_bitrate(rate, channels),
                kbps,
                "{rate} Hz, {channels} channel(s)"
            );
        }
        for &rate in sample_rates(Format::Mp3) {
            for channels in [1, 2] {
                let kbps = mp3_default_bitrate(rate, channels);
                assert_eq!(bitrate_problem(Format::Mp3, rate, kbps), None, "{rate} Hz");
            }
        }
    }
}
