//! Repairing recording files cut short by a crash (kill -9, power loss):
//! pure functions over the bytes of a `.part` file that say what to keep
//! and what to rewrite.
//!
//! - WAV: the RIFF and data sizes are set from the file length (rounded
//!   down to whole sample frames).
//! - MP3: cut after the last whole frame.
//! - Ogg: cut after the last whole page with a valid CRC; that page gets the
//!   end-of-stream flag (its granule position already states the length).

use crate::encode::ogg_crc32;

/// What to do to a damaged file: keep `keep` bytes, then write each
/// `(offset, bytes)` patch over the kept part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    pub keep: usize,
    pub patches: Vec<(usize, Vec<u8>)>,
}

fn u32le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// WAV: finds the `data` chunk and rewrites the sizes for a file of `len`
/// bytes whose first bytes are `head` (at least up to the data chunk).
pub fn repair_wav(head: &[u8], len: usize) -> Option<Repair> {
    if head.get(0..4)? != b"RIFF" || head.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12;
    let mut block_align = 1usize;
    loop {
        let id = head.get(at..at + 4)?;
        let size = u32le(head, at + 4)? as usize;
        if id == b"fmt " && size >= 16 {
            // Only a whole fmt chunk says anything about the frame size.
            if let Some(b) = head.get(at + 20..at + 22) {
                block_align = usize::from(u16::from_le_bytes([b[0], b[1]])).max(1);
            }
        }
        if id == b"data" {
            let data_start = at + 8;
            let data = len.saturating_sub(data_start) / block_align * block_align;
            let keep = data_start + data;
            let riff = (keep - 8).min(u32::MAX as usize) as u32;
            let data32 = data.min(u32::MAX as usize) as u32;
            return Some(Repair {
                keep,
                patches: vec![
                    (4, riff.to_le_bytes().to_vec()),
                    (at + 4, data32.to_le_bytes().to_vec()),
                ],
            });
        }
        at += 8 + size + (size & 1);
    }
}

/// Length in bytes of an MPEG audio Layer III frame starting with `h`.
fn mp3_frame_len(h: &[u8]) -> Option<usize> {
    if h.len() < 4 || h[0] != 0xff || h[1] & 0xe0 != 0xe0 {
        return None;
    }
    let version = (h[1] >> 3) & 0x03; // 0: 2.5, 2: 2, 3: 1
    let layer = (h[1] >> 1) & 0x03; // 1: layer III
    if version == 1 || layer != 1 {
        return None;
    }
    let bitrate_index = usize::from(h[2] >> 4);
    let rate_index = usize::from((h[2] >> 2) & 0x03);
    let padding = usize::from((h[2] >> 1) & 1);
    if bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 {
        return None;
    }
    const V1: [usize; 15] = [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ];
    const V2: [usize; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
    let (kbps, rate, coef) = match version {
        3 => (V1[bitrate_index], [44_100, 48_000, 32_000][rate_index], 144),
        2 => (V2[bitrate_index], [22_050, 24_000, 16_000][rate_index], 72),
        _ => (V2[bitrate_index], [11_025, 12_000, 8000][rate_index], 72),
    };
    Some(coef * kbps * 1000 / rate + padding)
}

/// MP3: keeps whole frames from the start (an ID3v2 tag, if any, first).
pub fn repair_mp3(bytes: &[u8]) -> Repair {
    let mut at = 0;
    if bytes.get(0..3) == Some(b"ID3") && bytes.len() >= 10 {
        let size = bytes[6..10]
            .iter()
            .fold(0usize, |acc, &b| (acc << 7) | usize::from(b & 0x7f));
        at = 10 + size;
    }
    let mut keep = at.min(bytes.len());
    while let Some(len) = bytes.get(at..).and_then(mp3_frame_len) {
        if at + len > bytes.len() {
            break;
        }
        at += len;
        keep = at;
    }
    Repair {
        keep,
        patches: Vec::new(),
    }
}

/// Ogg: keeps whole pages with valid CRCs and marks the last one EOS.
pub fn repair_ogg(bytes: &[u8]) -> Repair {
    let mut at = 0;
    let mut last_page: Option<(usize, usize)> = None;
    while bytes.len() >= at + 27 && &bytes[at..at + 4] == b"OggS" {
        let segs = usize::from(bytes[at + 26]);
        let Some(table) = bytes.get(at + 27..at + 27 + segs) else {
            break;
        };
        let body: usize = table.iter().map(|&l| usize::from(l)).sum();
        let end = at + 27 + segs + body;
        if end > bytes.len() {
            break;
        }
        let mut page = bytes[at..end].to_vec();
        let stored = u32le(&page, 22).unwrap_or(0);
        page[22..26].fill(0);
        if ogg_crc32(&page) != stored {
            break;
        }
        last_page = Some((at, end));
        at = end;
    }
    let Some((start, end)) = last_page else {
        return Repair {
            keep: 0,
            patches: Vec::new(),
        };
    };
    let mut page = bytes[start..end].to_vec();
    let mut patches = Vec::new();
    if page[5] & 0x04 == 0 {
        page[5] |= 0x04;
        page[22..26].fill(0);
        let crc = ogg_crc32(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        patches.push((start, page));
    }
    Repair { keep: end, patches }
}

/// The audio duration (ms) of a WAV file with a correct header.
pub fn wav_duration_ms(bytes: &[u8]) -> Option<u64> {
    let mut at = 12;
    let (mut rate, mut align) = (0u64, 0u64);
    loop {
        let id = bytes.get(at..at + 4)?;
        let size = u64::from(u32le(bytes, at + 4)?);
        if id == b"fmt " && size >= 16 {
            rate = u64::from(u32le(bytes, at + 12)?);
            align = u64::from(u16::from_le_bytes(
                bytes.get(at + 20..at + 22)?.try_into().ok()?,
            ));
        }
        if id == b"data" {
            return (rate > 0 && align > 0).then(|| size / align * 1000 / rate);
        }
        at += 8 + size as usize + (size as usize & 1);
    }
}

/// The audio duration (ms) of an MP3 stream (frames × samples per frame).
pub fn mp3_duration_ms(bytes: &[u8]) -> u64 {
    let mut at = 0;
    if bytes.get(0..3) == Some(b"ID3") && bytes.len() >= 10 {
        at = 10
            + bytes[6..10]
                .iter()
                .fold(0usize, |acc, &b| (acc << 7) | usize::from(b & 0x7f));
    }
    let mut micros = 0u64;
    while let Some(h) = bytes.get(at..at + 4) {
        let Some(len) = mp3_frame_len(h) else { break };
        let version = (h[1] >> 3) & 0x03;
        let rate_index = usize::from((h[2] >> 2) & 0x03);
        let (spf, rate) = match version {
            3 => (1152u64, [44_100u64, 48_000, 32_000][rate_index]),
            2 => (576, [22_050, 24_000, 16_000][rate_index]),
            _ => (576, [11_025, 12_000, 8000][rate_index]),
        };
        micros += spf * 1_000_000 / rate;
        at += len;
    }
    micros / 1000
}

/// The audio duration (ms) of a repaired Ogg Opus file: final granule minus
/// pre-skip, at 48 kHz.
pub fn ogg_opus_duration_ms(bytes: &[u8]) -> Option<u64> {
    let pre_skip = u64::from(u16::from_le_bytes(
        bytes.get(28 + 10..28 + 12)?.try_into().ok()?,
    ));
    let mut at = 0;
    let mut granule = 0u64;
    while bytes.len() >= at + 27 && &bytes[at..at + 4] == b"OggS" {
        let g = u64::from_le_bytes(bytes[at + 6..at + 14].try_into().ok()?);
        if g != u64::MAX {
            granule = g;
        }
        let segs = usize::from(bytes[at + 26]);
        let body: usize = bytes
            .get(at + 27..at + 27 + segs)?
            .iter()
            .map(|&l| usize::from(l))
            .sum();
        at += 27 + segs + body;
    }
    Some(granule.saturating_sub(pre_skip) / 48)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{EncoderSpec, encoder_for};
    use crate::format::Format;

    fn encoded(format: Format, secs: usize) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut enc = encoder_for(EncoderSpec {
            format,
            sample_rate: 8000,
            channels: 1,
            bitrate_kbps: 0,
            mp3_quality: 5,
            opus_complexity: 5,
        })
        .unwrap();
        let pcm = crate::testkit::speech(8000, 8000 * secs);
        let mut out = Vec::new();
        for c in pcm.chunks(160) {
            enc.encode(c, &mut out).unwrap();
            enc.flush(&mut out);
        }
        if format == Format::Mp3 {
            enc.finish(&mut out).unwrap();
        }
        (out, enc.header())
    }

    #[test]
    fn wav_sizes_follow_the_length() {
        let (mut bytes, _) = encoded(Format::Wav, 1);
        bytes.truncate(bytes.len() - 3); // half a sample lost
        let r = repair_wav(&bytes, bytes.len()).unwrap();
        assert_eq!(r.keep, bytes.len() - 1);
        assert_eq!(
            r.patches[0],
            (4, ((r.keep - 8) as u32).to_le_bytes().to_vec())
        );
        assert_eq!(
            r.patches[1],
            (40, ((r.keep - 44) as u32).to_le_bytes().to_vec())
        );
        assert!(repair_wav(b"not a wav file at all.....", 30).is_none());
    }

    #[test]
    fn mp3_is_cut_after_the_last_whole_frame() {
        let (bytes, _) = encoded(Format::Mp3, 2);
        let whole = repair_mp3(&bytes);
        assert_eq!(whole.keep, bytes.len(), "an intact stream is kept whole");
        let cut = repair_mp3(&bytes[..bytes.len() - 100]);
        assert!(cut.keep < bytes.len() - 100 && cut.keep > bytes.len() / 2);
        assert_eq!(repair_mp3(&bytes[..cut.keep]).keep, cut.keep);
    }

    #[test]
    fn ogg_is_cut_after_the_last_good_page_which_gets_eos() {
        let (bytes, _) = encoded(Format::Opus, 3);
        let cut = &bytes[..bytes.len() - 10];
        let r = repair_ogg(cut);
        assert!(r.keep > 0 && r.keep < cut.len());
        let mut fixed = cut[..r.keep].to_vec();
        for (at, p) in &r.patches {
            fixed[*at..*at + p.len()].copy_from_slice(p);
        }
        let again = repair_ogg(&fixed);
        assert_eq!(again.keep, fixed.len());
        assert!(again.patches.is_empty(), "EOS set and CRC valid");
        let ms = ogg_opus_duration_ms(&fixed).unwrap();
        assert!(ms > 1000 && ms < 3000, "{ms}");
    }
}
