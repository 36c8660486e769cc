//! The encrypted file format: AES-256-GCM in fixed-size segments, so a
//! recording is written incrementally, survives a crash segment by segment,
//! and a byte range is read by decrypting only the segments it touches.
//!
//! ```text
//! file    = header frame*
//! header  = "RECENC\0\x01" segment_size:u32be reserved:u32 file_id:16   (32 bytes)
//! frame   = length:u32be revision:u32be flags:u8 pad:3  ciphertext[length] tag[16]
//! ```
//!
//! Frame `i` holds plaintext bytes `i*S .. i*S+length` (S = segment size)
//! and sits at `32 + i*(12+S+16)`: every frame but the last is full. The
//! last frame carries the *final* flag (STREAM, Hoang–Reyhanitabar–Rogaway–
//! Vizár 2015): a file cut at a frame border is detected, not mistaken for a
//! shorter recording. Each frame's nonce is `index:u32be revision:u32be
//! flags:u8 0 0 0` and its associated data is the file header, so frames
//! cannot be moved within a file, between files, or have their flag changed.
//!
//! A frame is rewritten in place only by a writer that also raises its
//! revision (the partial last segment at each flush, and segment 0 once at
//! the end for a WAV header), so no (key, nonce) pair ever seals two
//! plaintexts. Data keys are fresh per file, so the nonce space is the
//! file's own.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::Tag;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use sha2::{Digest, Sha256};

use super::DataKey;
use crate::crypto::hex;

/// The scheme name stored with every encrypted recording.
pub const SCHEME: &str = "aes-256-gcm-segmented-v1";
/// The first bytes of every encrypted file (the last byte is the version).
pub const MAGIC: [u8; 8] = *b"RECENC\0\x01";
/// Plaintext bytes per full segment. 16 KiB: one second of 8 kHz 16-bit
/// WAV, so the partial segment sealed again at each flush stays small (a
/// quarter of 64 KiB's work and memory per recording), for 0.17 % of
/// framing overhead.
pub const SEGMENT_SIZE: usize = 16 * 1024;
/// The file header's length.
pub const HEADER_LEN: usize = 32;
/// A frame's clear header: length, revision, flags, padding.
pub const FRAME_HEAD: usize = 12;
/// The GCM tag closing every frame.
pub const TAG_LEN: usize = 16;
const FULL_FRAME: u64 = (FRAME_HEAD + SEGMENT_SIZE + TAG_LEN) as u64;
const FLAG_FINAL: u8 = 1;

/// Why an encrypted file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("not a recengine encrypted file (its first bytes are not the format's magic)")]
    NotEncrypted,
    #[error("encrypted with segments of {0} bytes; this version reads {SEGMENT_SIZE}")]
    UnsupportedSegmentSize(u32),
    #[error("segment {segment} is cut short: the file is truncated")]
    Truncated { segment: u64 },
    #[error(
        "segment {segment} failed authentication: the file was altered, or the key is not this recording's"
    )]
    Altered { segment: u64 },
    #[error(
        "the file ends without its final segment: it was cut short (a crash while recording, or truncation)"
    )]
    NotFinal,
    #[error("a plaintext patch at {at}+{len} is outside the first segment")]
    PatchOutside { at: u64, len: usize },
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<SealError> for io::Error {
    fn from(e: SealError) -> Self {
        match e {
            SealError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// Where frame `index` starts.
pub fn frame_offset(index: u64) -> u64 {
    HEADER_LEN as u64 + index * FULL_FRAME
}

fn new_header() -> io::Result<[u8; HEADER_LEN]> {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&(SEGMENT_SIZE as u32).to_be_bytes());
    getrandom::fill(&mut h[16..]).map_err(io::Error::other)?;
    Ok(h)
}

fn check_header(h: &[u8]) -> Result<[u8; HEADER_LEN], SealError> {
    if h.len() < HEADER_LEN || h[..8] != MAGIC {
        return Err(SealError::NotEncrypted);
    }
    let size = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    if size as usize != SEGMENT_SIZE {
        return Err(SealError::UnsupportedSegmentSize(size));
    }
    let mut out = [0u8; HEADER_LEN];
    out.copy_from_slice(&h[..HEADER_LEN]);
    Ok(out)
}

/// Whether `bytes` start like an encrypted recording.
pub fn is_encrypted(bytes: &[u8]) -> bool {
    bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] == MAGIC
}

fn nonce(index: u32, revision: u32, flags: u8) -> Nonce<aes_gcm::aes::cipher::consts::U12> {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&index.to_be_bytes());
    n[4..8].copy_from_slice(&revision.to_be_bytes());
    n[8] = flags;
    n.into()
}

/// Seals `plain` as frame `index` into `out` (cleared first).
fn seal_frame(
    cipher: &Aes256Gcm,
    header: &[u8; HEADER_LEN],
    index: u32,
    revision: u32,
    last: bool,
    plain: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let flags = if last { FLAG_FINAL } else { 0 };
    out.clear();
    out.reserve(FRAME_HEAD + plain.len() + TAG_LEN);
    out.extend_from_slice(&(plain.len() as u32).to_be_bytes());
    out.extend_from_slice(&revision.to_be_bytes());
    out.extend_from_slice(&[flags, 0, 0, 0]);
    out.extend_from_slice(plain);
    let tag = cipher
        .encrypt_inout_detached(
            &nonce(index, revision, flags),
            header,
            (&mut out[FRAME_HEAD..]).into(),
        )
        .map_err(|_| io::Error::other("AES-GCM refused to seal a segment"))?;
    out.extend_from_slice(&tag);
    Ok(())
}

/// One opened frame.
struct Opened {
    plain: Vec<u8>,
    revision: u32,
    last: bool,
}

/// A frame's clear header: (plaintext length, revision, flags).
fn frame_head(head: &[u8], index: u64) -> Result<(usize, u32, u8), SealError> {
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let revision = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let flags = head[8];
    if len > SEGMENT_SIZE || flags & !FLAG_FINAL != 0 || head[9..FRAME_HEAD] != [0, 0, 0] {
        return Err(SealError::Altered { segment: index });
    }
    Ok((len, revision, flags))
}

/// Opens frame `index` held whole in `frame` (clear header, ciphertext,
/// tag), decrypting in place; the plaintext is `frame[FRAME_HEAD..][..len]`.
fn open_in_place(
    cipher: &Aes256Gcm,
    header: &[u8; HEADER_LEN],
    index: u64,
    frame: &mut [u8],
) -> Result<(usize, u32, bool), SealError> {
    if frame.len() < FRAME_HEAD + TAG_LEN {
        return Err(SealError::Truncated { segment: index });
    }
    let (len, revision, flags) = frame_head(frame, index)?;
    if frame.len() != FRAME_HEAD + len + TAG_LEN {
        return Err(SealError::Truncated { segment: index });
    }
    let altered = || SealError::Altered { segment: index };
    let (body, tag) = frame[FRAME_HEAD..].split_at_mut(len);
    let tag = Tag::<Aes256Gcm>::try_from(&tag[..]).map_err(|_| altered())?;
    let index32 = u32::try_from(index).map_err(|_| altered())?;
    cipher
        .decrypt_inout_detached(&nonce(index32, revision, flags), header, body.into(), &tag)
        .map_err(|_| altered())?;
    Ok((len, revision, flags & FLAG_FINAL != 0))
}

/// Reads and opens frame `index` (its plaintext, revision and flag).
fn open_frame(
    file: &File,
    cipher: &Aes256Gcm,
    header: &[u8; HEADER_LEN],
    index: u64,
) -> Result<Opened, SealError> {
    let at = frame_offset(index);
    let mut head = [0u8; FRAME_HEAD];
    read_exact_at(file, &mut head, at).map_err(|e| truncated(e, index))?;
    let (len, _, _) = frame_head(&head, index)?;
    let mut frame = vec![0u8; FRAME_HEAD + len + TAG_LEN];
    read_exact_at(file, &mut frame, at).map_err(|e| truncated(e, index))?;
    let (len, revision, last) = open_in_place(cipher, header, index, &mut frame)?;
    frame.truncate(FRAME_HEAD + len);
    frame.drain(..FRAME_HEAD);
    Ok(Opened {
        plain: frame,
        revision,
        last,
    })
}

fn truncated(e: io::Error, segment: u64) -> SealError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        SealError::Truncated { segment }
    } else {
        SealError::Io(e)
    }
}

fn read_exact_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<()> {
    file.read_exact_at(buf, at)
}

/// Writes a recording's plaintext as an encrypted file, incrementally.
///
/// It holds at most one segment of plaintext (the part not yet sealed as a
/// full segment); [`SealedWriter::flush`] puts that partial segment on disk
/// too, so a crash loses no more than it would unencrypted.
pub struct SealedWriter {
    cipher: Aes256Gcm,
    header: [u8; HEADER_LEN],
    /// Plaintext of the segment being filled (index `index`).
    tail: Vec<u8>,
    index: u32,
    /// Revision the tail segment has on disk, if it was flushed.
    tail_revision: Option<u32>,
    tail_dirty: bool,
}

impl SealedWriter {
    /// Starts an encrypted file in `file` (empty) under `key`.
    pub fn create(key: &DataKey, file: &File) -> io::Result<Self> {
        let header = new_header()?;
        file.write_all_at(&header, 0)?;
        Ok(Self {
            cipher: key.cipher(),
            header,
            tail: Vec::new(),
            index: 0,
            tail_revision: None,
            tail_dirty: false,
        })
    }

    /// Appends plaintext; every segment it fills is sealed and written.
    pub fn write(&mut self, file: &File, mut bytes: &[u8]) -> io::Result<()> {
        let mut frame = Vec::new();
        while !bytes.is_empty() {
            if self.tail.capacity() == 0 {
                self.tail.reserve_exact(SEGMENT_SIZE);
            }
            let take = (SEGMENT_SIZE - self.tail.len()).min(bytes.len());
            self.tail.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            self.tail_dirty = true;
            if self.tail.len() == SEGMENT_SIZE {
                self.write_tail(file, false, &mut frame)?;
                self.tail.clear();
                self.index = self.index.checked_add(1).ok_or_else(|| {
                    io::Error::other("an encrypted file has at most 2^32 segments")
                })?;
                self.tail_revision = None;
                self.tail_dirty = false;
            }
        }
        Ok(())
    }

    fn write_tail(&mut self, file: &File, last: bool, frame: &mut Vec<u8>) -> io::Result<()> {
        let revision = match self.tail_revision {
            None => 0,
            Some(r) => r
                .checked_add(1)
                .ok_or_else(|| io::Error::other("a segment was rewritten 2^32 times"))?,
        };
        seal_frame(
            &self.cipher,
            &self.header,
            self.index,
            revision,
            last,
            &self.tail,
            frame,
        )?;
        file.write_all_at(frame, frame_offset(u64::from(self.index)))?;
        self.tail_revision = Some(revision);
        Ok(())
    }

    /// Seals and writes the partial segment, so the OS has every byte
    /// written so far. The segment is rewritten (at a higher revision) as
    /// it grows.
    pub fn flush(&mut self, file: &File) -> io::Result<()> {
        if self.tail_dirty && !self.tail.is_empty() {
            self.write_tail(file, false, &mut Vec::new())?;
            self.tail_dirty = false;
        }
        if self.tail.is_empty() {
            // Nothing held between segments: an idle recording costs no buffer.
            self.tail = Vec::new();
        }
        Ok(())
    }

    /// Ends the file: `patch` (a final WAV header) overwrites plaintext at
    /// offset 0, and the last segment is written with the final flag.
    pub fn finish(mut self, file: &File, patch: Option<&[u8]>) -> Result<(), SealError> {
        let mut frame = Vec::new();
        if let Some(p) = patch {
            if p.len() > SEGMENT_SIZE {
                return Err(SealError::PatchOutside {
                    at: 0,
                    len: p.len(),
                });
            }
            if self.index == 0 {
                if self.tail.len() >= p.len() {
                    self.tail[..p.len()].copy_from_slice(p);
                }
            } else {
                // Segment 0 is on disk: open it, patch, seal it again one
                // revision up (never reusing a nonce).
                let mut first = open_frame(file, &self.cipher, &self.header, 0)?;
                first.plain[..p.len()].copy_from_slice(p);
                let revision = first
                    .revision
                    .checked_add(1)
                    .ok_or(SealError::Altered { segment: 0 })?;
                seal_frame(
                    &self.cipher,
                    &self.header,
                    0,
                    revision,
                    false,
                    &first.plain,
                    &mut frame,
                )?;
                file.write_all_at(&frame, frame_offset(0))?;
            }
        }
        self.write_tail(file, true, &mut frame)?;
        // A tail shorter than an earlier flush's cannot happen (it only
        // grows), so the file ends where this frame ends.
        let end = frame_offset(u64::from(self.index)) + frame.len() as u64;
        file.set_len(end)?;
        Ok(())
    }
}

/// Random access to a finished encrypted file: its plaintext length, and
/// segments decrypted and authenticated one at a time.
pub struct SealedReader {
    cipher: Aes256Gcm,
    header: [u8; HEADER_LEN],
    segments: u64,
    plain_len: u64,
}

impl SealedReader {
    /// Opens `file` under `key`, checking the header and that the last
    /// segment is the final one.
    pub fn open(file: &File, key: &DataKey) -> Result<Self, SealError> {
        let mut h = [0u8; HEADER_LEN];
        read_exact_at(file, &mut h, 0).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => SealError::NotEncrypted,
            _ => SealError::Io(e),
        })?;
        let header = check_header(&h)?;
        let cipher = key.cipher();
        let len = file.metadata()?.len();
        let body = len - HEADER_LEN as u64;
        if body == 0 {
            return Err(SealError::NotFinal);
        }
        let segments = body.div_ceil(FULL_FRAME);
        let last = open_frame(file, &cipher, &header, segments - 1)?;
        if !last.last {
            return Err(SealError::NotFinal);
        }
        if frame_offset(segments - 1) + (FRAME_HEAD + last.plain.len() + TAG_LEN) as u64 != len {
            return Err(SealError::Altered {
                segment: segments - 1,
            });
        }
        Ok(Self {
            cipher,
            header,
            segments,
            plain_len: (segments - 1) * SEGMENT_SIZE as u64 + last.plain.len() as u64,
        })
    }

    /// Bytes of plaintext.
    pub fn plain_len(&self) -> u64 {
        self.plain_len
    }

    /// The plaintext of segment `index`, authenticated.
    pub fn segment(&self, file: &File, index: u64) -> Result<Vec<u8>, SealError> {
        let f = open_frame(file, &self.cipher, &self.header, index)?;
        let should_be_last = index + 1 == self.segments;
        if f.last != should_be_last
            || (!should_be_last && f.plain.len() != SEGMENT_SIZE)
            || index >= self.segments
        {
            return Err(SealError::Altered { segment: index });
        }
        Ok(f.plain)
    }

    /// Plaintext bytes `start..start+len`, segment by segment, handed to
    /// `out` as they are decrypted.
    pub fn read_range(
        &self,
        file: &File,
        start: u64,
        len: u64,
        mut out: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), SealError> {
        let end = (start + len).min(self.plain_len);
        let mut at = start;
        while at < end {
            let index = at / SEGMENT_SIZE as u64;
            let seg = self.segment(file, index)?;
            let from = (at - index * SEGMENT_SIZE as u64) as usize;
            let to = ((end - index * SEGMENT_SIZE as u64) as usize).min(seg.len());
            out(&seg[from..to])?;
            at = index * SEGMENT_SIZE as u64 + to as u64;
        }
        Ok(())
    }
}

/// What a finished encrypted file hashes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedDigest {
    /// SHA-256 and length of the plaintext (the recording's checksum).
    pub plain_sha256: String,
    pub plain_len: u64,
    /// SHA-256 and length of the bytes stored.
    pub stored_sha256: String,
    pub stored_len: u64,
}

/// Authenticates every segment of `file`, hashing plaintext and ciphertext.
///
/// One pass: each frame is read once, hashed as stored, then decrypted in
/// place and hashed as plaintext.
pub fn digest(file: &File, key: &DataKey) -> Result<SealedDigest, SealError> {
    let reader = SealedReader::open(file, key)?;
    let stored_len = file.metadata()?.len();
    let mut stored = Sha256::new();
    stored.update(reader.header);
    let mut plain = Sha256::new();
    let mut frame = vec![0u8; FULL_FRAME as usize];
    for i in 0..reader.segments {
        let at = frame_offset(i);
        let last = i + 1 == reader.segments;
        let len = if last { stored_len - at } else { FULL_FRAME } as usize;
        frame.resize(len, 0);
        read_exact_at(file, &mut frame, at).map_err(|e| truncated(e, i))?;
        stored.update(&frame);
        let (n, _, flagged_last) = open_in_place(&reader.cipher, &reader.header, i, &mut frame)?;
        if flagged_last != last || (!last && n != SEGMENT_SIZE) {
            return Err(SealError::Altered { segment: i });
        }
        plain.update(&frame[FRAME_HEAD..FRAME_HEAD + n]);
    }
    Ok(SealedDigest {
        plain_sha256: hex(&plain.finalize()),
        plain_len: reader.plain_len,
        stored_sha256: hex(&stored.finalize()),
        stored_len,
    })
}

/// What [`salvage`] kept of a file cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged {
    pub plain: Vec<u8>,
    /// Segments authenticated and kept.
    pub segments: u64,
    /// Whether the file was in fact complete (it had its final segment).
    pub complete: bool,
}

/// Keeps every whole authenticated segment of a file cut short by a crash,
/// from the start up to the first one missing, torn or altered.
pub fn salvage(file: &File, key: &DataKey) -> Result<Salvaged, SealError> {
    let mut h = [0u8; HEADER_LEN];
    read_exact_at(file, &mut h, 0).map_err(|e| truncated(e, 0))?;
    let header = check_header(&h)?;
    let cipher = key.cipher();
    let mut out = Salvaged {
        plain: Vec::new(),
        segments: 0,
        complete: false,
    };
    let mut index = 0u64;
    while let Ok(f) = open_frame(file, &cipher, &header, index) {
        let full = f.plain.len() == SEGMENT_SIZE;
        out.plain.extend_from_slice(&f.plain);
        out.segments += 1;
        if f.last {
            out.complete = true;
            break;
        }
        if !full {
            break; // a flushed partial segment: the last one written
        }
        index += 1;
    }
    Ok(out)
}

/// Writes `plain` as a complete encrypted file at `file` (truncated first).
pub fn write_all(file: &File, key: &DataKey, plain: &[u8]) -> io::Result<()> {
    file.set_len(0)?;
    let mut w = SealedWriter::create(key, file)?;
    w.write(file, plain)?;
    w.finish(file, None).map_err(io::Error::from)
}

impl DataKey {
    /// The AES-256-GCM instance of this key (its schedule is zeroized when
    /// dropped).
    pub(super) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn temp(name: &str) -> (std::path::PathBuf, File) {
        let dir = std::env::temp_dir().join(format!("recengine-seg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        (path, f)
    }

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 300) as u8).collect()
    }

    /// A whole file's plaintext, as `recengine decrypt` reads it.
    fn decrypt_to(file: &File, key: &DataKey, out: &mut Vec<u8>) -> Result<u64, SealError> {
        let reader = SealedReader::open(file, key)?;
        reader.read_range(file, 0, reader.plain_len(), |b| {
            out.extend_from_slice(b);
            Ok(())
        })?;
        Ok(reader.plain_len())
    }

    fn plain_of(f: &File, key: &DataKey) -> Vec<u8> {
        let mut out = Vec::new();
        decrypt_to(f, key, &mut out).unwrap();
        out
    }

    #[test]
    fn round_trips_at_every_interesting_length_with_flushes_and_a_header_patch() {
        let key = DataKey::generate().unwrap();
        for n in [
            0,
            1,
            100,
            SEGMENT_SIZE - 1,
            SEGMENT_SIZE,
            SEGMENT_SIZE + 1,
            3 * SEGMENT_SIZE + 777,
        ] {
            let (_, f) = temp(&format!("rt-{n}"));
            let data = sample(n);
            let mut w = SealedWriter::create(&key, &f).unwrap();
            for (i, chunk) in data.chunks(5000).enumerate() {
                w.write(&f, chunk).unwrap();
                if i % 3 == 0 {
                    w.flush(&f).unwrap();
                }
            }
            let patch = b"HEAD";
            w.finish(&f, Some(patch)).unwrap();
            let mut want = data.clone();
            if want.len() >= 4 {
                want[..4].copy_from_slice(patch);
            }
            assert_eq!(plain_of(&f, &key), want, "length {n}");
            let d = digest(&f, &key).unwrap();
            assert_eq!(d.plain_len, n as u64);
            assert_eq!(d.plain_sha256, crate::crypto::sha256_hex(&want));
            assert_eq!(d.stored_len, f.metadata().unwrap().len());
        }
    }

    #[test]
    fn ranges_across_segment_borders_decrypt_only_what_they_ask() {
        let key = DataKey::generate().unwrap();
        let (_, f) = temp("ranges");
        let data = sample(2 * SEGMENT_SIZE + 10);
        write_all(&f, &key, &data).unwrap();
        let r = SealedReader::open(&f, &key).unwrap();
        for (start, len) in [
            (0u64, 10u64),
            (SEGMENT_SIZE as u64 - 3, 6),
            (SEGMENT_SIZE as u64 - 1, SEGMENT_SIZE as u64 + 2),
            (2 * SEGMENT_SIZE as u64, 10),
            (5, 2 * SEGMENT_SIZE as u64 + 5),
        ] {
            let mut got = Vec::new();
            r.read_range(&f, start, len, |b| {
                got.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
            let s = start as usize;
            assert_eq!(got, data[s..s + len as usize], "{start}+{len}");
        }
    }

    #[test]
    fn any_flipped_byte_is_detected_and_never_yields_other_plaintext() {
        let key = DataKey::generate().unwrap();
        let (path, f) = temp("flip");
        let data = sample(SEGMENT_SIZE + 300);
        write_all(&f, &key, &data).unwrap();
        let good = std::fs::read(&path).unwrap();
        // Every header byte, every frame-header byte, and a spread of
        // ciphertext and tag bytes.
        let mut positions: Vec<usize> = (0..HEADER_LEN + FRAME_HEAD).collect();
        positions.extend((HEADER_LEN + FRAME_HEAD..good.len()).step_by(997));
        positions.extend(good.len() - TAG_LEN..good.len());
        for at in positions {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let f = File::open(&path).unwrap();
            let mut out = Vec::new();
            let r = decrypt_to(&f, &key, &mut out);
            assert!(r.is_err(), "flip at {at} went unnoticed");
        }
    }

    #[test]
    fn truncation_at_a_frame_border_and_a_wrong_key_are_errors() {
        let key = DataKey::generate().unwrap();
        let (path, f) = temp("trunc");
        write_all(&f, &key, &sample(2 * SEGMENT_SIZE + 5)).unwrap();
        let other = DataKey::generate().unwrap();
        assert!(matches!(
            SealedReader::open(&f, &other),
            Err(SealError::Altered { .. })
        ));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..frame_offset(2) as usize]).unwrap();
        let f = File::open(&path).unwrap();
        assert!(matches!(
            SealedReader::open(&f, &key),
            Err(SealError::NotFinal)
        ));
        std::fs::write(&path, b"RIFF....WAVE").unwrap();
        let f = File::open(&path).unwrap();
        assert!(matches!(
            SealedReader::open(&f, &key),
            Err(SealError::NotEncrypted)
        ));
    }

    #[test]
    fn salvage_keeps_whole_segments_and_the_last_flushed_partial_one() {
        let key = DataKey::generate().unwrap();
        let (path, f) = temp("salvage");
        let data = sample(2 * SEGMENT_SIZE + 1000);
        let mut w = SealedWriter::create(&key, &f).unwrap();
        w.write(&f, &data).unwrap();
        w.flush(&f).unwrap();
        w.write(&f, b"not flushed").unwrap();
        drop(w); // the process dies here
        let s = salvage(&f, &key).unwrap();
        assert_eq!((s.segments, s.complete), (3, false));
        assert_eq!(s.plain, data);
        // A torn last frame: the whole segments before it are kept.
        let len = std::fs::metadata(&path).unwrap().len();
        f.set_len(len - 5).unwrap();
        let s = salvage(&f, &key).unwrap();
        assert_eq!(s.plain, data[..2 * SEGMENT_SIZE]);
    }
}
