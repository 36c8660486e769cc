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
