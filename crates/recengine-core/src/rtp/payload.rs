//! Payload types: which codec each RTP payload type number means on a leg.
//!
//! Static types (RFC 3551) are filled in; dynamic types (96–127) come from
//! signalling (SDP `a=rtpmap`) through the control API or the `pcap` command.

use thiserror::Error;

/// A codec or non-audio payload this engine understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// G.711 µ-law, 8 kHz.
    Pcmu,
    /// G.711 A-law, 8 kHz.
    Pcma,
    /// G.722: 16 kHz audio on an 8 kHz RTP clock (RFC 3551 §4.5.2).
    G722,
    /// Linear 16-bit big-endian PCM.
    L16 { rate: u32, channels: u8 },
    /// Opus (RFC 7587): RTP clock always 48 kHz.
    Opus,
    /// RFC 4733 telephone events (DTMF).
    TelephoneEvent { rate: u32 },
    /// RFC 3389 comfort noise.
    ComfortNoise { rate: u32 },
}

/// What a payload contributes to the leg's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// Decodable audio.
    Audio,
    /// A telephone event: no audio, its timestamp is the event start.
    Event,
    /// Comfort noise: the sender is silent until the next audio packet.
    ComfortNoise,
    /// A payload type the leg has no mapping for: counted and dropped.
    Unknown,
}

impl Codec {
    /// The RTP timestamp clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma | Codec::G722 => 8000,
            Codec::L16 { rate, .. } => rate,
            Codec::Opus => 48_000,
            Codec::TelephoneEvent { rate } | Codec::ComfortNoise { rate } => rate,
        }
    }

    /// The sample rate the decoder naturally produces.
    pub fn audio_rate(self) -> u32 {
        match self {
            Codec::G722 => 16_000,
            other => other.clock_rate(),
        }
    }

    pub fn kind(self) -> MediaKind {
        match self {
            Codec::TelephoneEvent { .. } => MediaKind::Event,
            Codec::ComfortNoise { .. } => MediaKind::ComfortNoise,
            _ => MediaKind::Audio,
        }
    }

    /// The conventional encoding name, as in SDP.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
            Codec::L16 { .. } => "L16",
            Codec::Opus => "opus",
            Codec::TelephoneEvent { .. } => "telephone-event",
            Codec::ComfortNoise { .. } => "CN",
        }
    }

    /// Parses an SDP rtpmap encoding (`"opus/48000/2"`, `"L16/16000/2"`,
    /// `"telephone-event/8000"`); the name is case-insensitive.
    pub fn from_rtpmap(encoding: &str) -> Result<Self, PayloadMapError> {
        let bad = || PayloadMapError::UnknownEncoding(encoding.to_owned());
        let mut parts = encoding.split('/');
        let name = parts.next().ok_or_else(bad)?.to_ascii_lowercase();
        let rate: Option<u32> = match parts.next() {
            Some(r) => Some(r.parse().map_err(|_| bad())?),
            None => None,
        };
        let channels: Option<u8> = match parts.next() {
            Some(c) => Some(c.parse().map_err(|_| bad())?),
            None => None,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        let codec = match name.as_str() {
            "pcmu" => Codec::Pcmu,
            "pcma" => Codec::Pcma,
            "g722" => Codec::G722,
            "opus" => Codec::Opus,
            "l16" => Codec::L16 {
                rate: rate.unwrap_or(8000),
                channels: channels.unwrap_or(1),
            },
            "telephone-event" => Codec::TelephoneEvent {
                rate: rate.unwrap_or(8000),
            },
            "cn" => Codec::ComfortNoise {
                rate: rate.unwrap_or(8000),
            },
            _ => return Err(bad()),
        };
        if let Codec::L16 { rate, channels } = codec
            && (!(1000..=192_000).contains(&rate) || !(1..=8).contains(&channels))
        {
            return Err(bad());
        }
        if let Codec::TelephoneEvent { rate } | Codec::ComfortNoise { rate } = codec
            && !(1000..=192_000).contains(&rate)
        {
            return Err(bad());
        }
        Ok(codec)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PayloadMapError {
    #[error("payload type {0} is out of range (0-127)")]
    OutOfRange(u32),
    #[error("payload type {0} is static and cannot be remapped")]
    Static(u8),
    #[error(
        "unknown or malformed encoding {0:?} (expected e.g. PCMU, opus/48000/2, L16/16000/2, telephone-event/8000)"
    )]
    UnknownEncoding(String),
}

/// The payload-type → codec table of one leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadMap {
    entries: [Option<Codec>; 128],
}

impl Default for PayloadMap {
    /// The static assignments of RFC 3551 this engine decodes.
    fn default() -> Self {
        let mut entries = [None; 128];
        entries[0] = Some(Codec::Pcmu);
        entries[8] = Some(Codec::Pcma);
        entries[9] = Some(Codec::G722);
        entries[10] = Some(Codec::L16 {
            rate: 44_100,
            channels: 2,
        });
        entries[11] = Some(Codec::L16 {
            rate: 44_100,
            channels: 1,
        });
        entries[13] = Some(Codec::ComfortNoise { rate: 8000 });
        Self { entries }
    }
}

impl PayloadMap {
    /// Maps a dynamic payload type (96–127), or re-states a static one
    /// with its own codec. Remapping a static number to another codec is an
    /// error: senders that do so are broken and guessing would corrupt audio.
    pub fn set(&mut self, pt: u32, codec: Codec) -> Result<(), PayloadMapError> {
        let pt_u8 = u8::try_from(pt)
            .ok()
            .filter(|p| *p < 128)
            .ok_or(PayloadMapError::OutOfRange(pt))?;
        if pt_u8 < 96
            && let Some(existing) = self.entries[usize::from(pt_u8)]
            && existing != codec
        {
            return Err(PayloadMapError::Static(pt_u8));
        }
        self.entries[usize::from(pt_u8)] = Some(codec);
        Ok(())
    }

    pub fn get(&self, pt: u8) -> Option<Codec> {
        self.entries.get(usize::from(pt)).copied().flatten()
    }

    pub fn kind(&self, pt: u8) -> MediaKind {
        self.get(pt).map_or(MediaKind::Unknown, Codec::kind)
    }

    /// Every mapped payload type, in number order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, Codec)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(pt, c)| c.map(|c| (pt as u8, c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_types_and_dynamic_mapping() {
        let mut map = PayloadMap::default();
        assert_eq!(map.get(0), Some(Codec::Pcmu));
        assert_eq!(map.get(8), Some(Codec::Pcma));
        assert_eq!(map.get(9), Some(Codec::G722));
        assert_eq!(map.kind(13), MediaKind::ComfortNoise);
        assert_eq!(map.kind(101), MediaKind::Unknown);
        map.set(101, Codec::from_rtpmap("telephone-event/8000").unwrap())
            .unwrap();
        map.set(111, Codec::from_rtpmap("opus/48000/2").unwrap())
            .unwrap();
        assert_eq!(map.kind(101), MediaKind::Event);
        assert_eq!(map.get(111), Some(Codec::Opus));
        assert_eq!(map.set(0, Codec::Pcma), Err(PayloadMapError::Static(0)));
        assert_eq!(
            map.set(128, Codec::Pcma),
            Err(PayloadMapError::OutOfRange(128))
        );
        assert!(map.set(0, Codec::Pcmu).is_ok());
    }

    #[test]
    fn rtpmap_parsing() {
        let cases: &[(&str, Option<Codec>)] = &[
            ("PCMU/8000", Some(Codec::Pcmu)),
            ("opus/48000/2", Some(Codec::Opus)),
            (
                "L16/16000/2",
                Some(Codec::L16 {
                    rate: 16_000,
                    channels: 2,
                }),
            ),
            (
                "l16/11025",
                Some(Codec::L16 {
                    rate: 11_025,
                    channels: 1,
                }),
            ),
            (
                "telephone-event/8000",
                Some(Codec::TelephoneEvent { rate: 8000 }),
            ),
            ("G729/8000", None),
            ("L16/abc", None),
            ("L16/8000/0", None),
            ("opus/48000/2/9", None),
        ];
        for (text, want) in cases {
            assert_eq!(Codec::from_rtpmap(text).ok(), *want, "{text}");
        }
    }
}
