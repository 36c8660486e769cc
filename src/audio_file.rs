//! Audio files read whole from memory: WAV and MP3 through Symphonia, Ogg
//! Opus through the core's libopus decoder. The recordings `loadgen
//! --verify` checks and the prompts recording notices play.

/// Decoded audio, one vector per channel.
pub struct Decoded {
    pub channels: Vec<Vec<i16>>,
    pub rate: u32,
    pub lossy: bool,
}

/// Decodes a WAV, MP3 or Ogg Opus file held in memory; the error says
/// which step failed.
pub fn decode(mut bytes: Vec<u8>) -> Result<Decoded, String> {
    if bytes.starts_with(b"OggS") {
        return decode_ogg_opus(&bytes);
    }
    fix_streamed_wav(&mut bytes);
    use symphonia::core::codecs::audio::AudioDecoderOptions;
    use symphonia::core::formats::probe::Hint;
    use symphonia::core::formats::{FormatOptions, TrackType};
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;

    let lossy = !bytes.starts_with(b"RIFF");
    let bad = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let mss = MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(if lossy { "mp3" } else { "wav" });
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| bad("probing the file", &e))?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| "no audio track".to_owned())?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| "no audio parameters".to_owned())?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| bad("no decoder", &e))?;
    let mut out = Decoded {
        channels: Vec::new(),
        rate: 0,
        lossy,
    };
    let mut buf: Vec<i16> = Vec::new();
    while let Some(packet) = format
        .next_packet()
        .map_err(|e| bad("reading the file", &e))?
    {
        if packet.track_id != track_id {
            continue;
        }
        let audio = decoder.decode(&packet).map_err(|e| bad("decoding", &e))?;
        let n = audio.spec().channels().count().max(1);
        out.rate = audio.spec().rate();
        out.channels.resize_with(n, Vec::new);
        buf.resize(audio.samples_interleaved(), 0);
        audio.copy_to_slice_interleaved(&mut buf);
        for frame in buf.chunks_exact(n) {
            for (c, &s) in frame.iter().enumerate() {
                out.channels[c].push(s);
            }
        }
    }
    Ok(out)
}

/// A WAV written to a pipe (`espeak-ng --stdout`) cannot go back to write
/// its sizes, and leaves placeholders larger than the file: they are set
/// from the length, as crash repair does. A WAV whose sizes fit is left
/// alone.
fn fix_streamed_wav(bytes: &mut Vec<u8>) {
    let Some(repair) = crate::core::repair::repair_wav(bytes, bytes.len()) else {
        return;
    };
    let Some((data_size_at, _)) = repair.patches.get(1) else {
        return;
    };
    let declared = bytes
        .get(*data_size_at..data_size_at + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    if declared <= bytes.len().saturating_sub(data_size_at + 4) {
        return;
    }
    bytes.truncate(repair.keep);
    for (at, patch) in repair.patches {
        if let Some(dst) = bytes.get_mut(at..at + patch.len()) {
            dst.copy_from_slice(&patch);
        }
    }
}

/// An Ogg Opus file (RFC 7845) as mono 48 kHz: its channels are mixed
/// down by the decoder, its pre-skip dropped.
fn decode_ogg_opus(bytes: &[u8]) -> Result<Decoded, String> {
    let packets = crate::core::encode::ogg_packets(bytes)?;
    let head = packets
        .first()
        .filter(|p| p.starts_with(b"OpusHead") && p.len() >= 19)
        .ok_or("not an Ogg Opus file (no OpusHead)")?;
    let pre_skip = usize::from(u16::from_le_bytes([head[10], head[11]]));
    let mut decoder =
        crate::core::opus::OpusDecoder::new(48_000).map_err(|e| format!("opus: {e}"))?;
    let mut pcm = Vec::new();
    for packet in packets.iter().skip(2) {
        decoder
            .decode(packet, &mut pcm)
            .map_err(|e| format!("decoding: {e}"))?;
    }
    pcm.drain(..pre_skip.min(pcm.len()));
    Ok(Decoded {
        channels: vec![pcm],
        rate: 48_000,
        lossy: true,
    })
}
