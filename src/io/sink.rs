//! Recording files on disk: written as `<id>.<ext>.part`, hashed with
//! SHA-256 as they are written, flushed to the OS every `flush_interval`
//! (a process crash loses at most that much), and finalized atomically:
//! header fix-up → fsync → sidecar `<id>.json` written to a temporary name
//! and fsynced → both renamed into place → one fsync of the directory for
//! the two.
//!
//! The checksum is of the final file, byte for byte what `sha256sum`
//! prints. For formats without a length header (MP3, Ogg Opus) it is the
//! running hash. A WAV header states the length and is rewritten at the
//! front when the recording ends, so for WAV the file is hashed once more at
//! finalize, from the page cache (about 70 ms per hour of 8 kHz mono).
//!
//! With a data key the file is sealed as it is written
//! ([`crate::encryption::segments`]): the part file never holds plaintext,
//! the WAV header is patched into segment 0 once, at the end, and the
//! finished file is read back once to authenticate every segment and hash
//! both the plaintext (the checksum) and the stored bytes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::encryption::{DataKey, SealedWriter};
use crate::io::FileError;

/// The sealing half of an encrypted recording file.
struct Sealed {
    writer: SealedWriter,
    key: DataKey,
}

/// A recording file being written.
pub struct RecordingFile {
    part: PathBuf,
    path: PathBuf,
    file: File,
    hasher: Sha256,
    /// Bytes accepted, and bytes handed to the OS.
    size: u64,
    buffer: Vec<u8>,
    flush_interval: Duration,
    last_flush: Duration,
    header_written: bool,
    sealed: Option<Sealed>,
}

/// A finalized recording file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalFile {
    pub path: PathBuf,
    pub size: u64,
    /// Lower-case hex SHA-256 of the whole file (of its plaintext, when
    /// encrypted; `size` is the plaintext's too).
    pub sha256: String,
    /// SHA-256 and size of the bytes stored, when encrypted.
    pub stored: Option<(String, u64)>,
}

use crate::crypto::hex;

/// Lower-case hex SHA-256 of a file's content.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    // On the stack: a heap buffer this size is mapped, faulted in and
    // zeroed afresh for every file.
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl RecordingFile {
    /// Creates `path` + `.part` (and its directories). `now` starts the
    /// flush timer. With `key`, the file is encrypted under it.
    pub fn create(
        path: &Path,
        flush_interval: Duration,
        now: Duration,
        key: Option<DataKey>,
    ) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        // Recording ids are unique, so an existing part file can only be a
        // leftover of the same id; it is replaced.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&part)?;
        let sealed = match key {
            Some(key) => Some(Sealed {
                writer: SealedWriter::create(&key, &file)?,
                key,
            }),
            None => None,
        };
        Ok(Self {
            part,
            path: path.to_path_buf(),
            file,
            hasher: Sha256::new(),
            size: 0,
            buffer: Vec::new(),
            flush_interval,
            last_flush: now,
            header_written: false,
            sealed,
        })
    }

    pub fn part_path(&self) -> &Path {
        &self.part
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends bytes (buffered until the next flush).
    pub fn write(&mut self, bytes: &[u8]) {
        self.hash(bytes);
        self.buffer.extend_from_slice(bytes);
        self.size += bytes.len() as u64;
    }

    /// The running hash is the checksum only of a file never rewritten: once
    /// a header has been rewritten at the front (WAV), or when the file is
    /// encrypted, the checksum comes from reading the file back at the end,
    /// and hashing as it goes would be wasted work.
    fn hash(&mut self, bytes: &[u8]) {
        if !self.header_written && self.sealed.is_none() {
            self.hasher.update(bytes);
        }
    }

    /// Appends bytes it may keep as its buffer (no copy when nothing else
    /// is buffered).
    pub fn write_owned(&mut self, bytes: Vec<u8>) {
        if self.buffer.is_empty() {
            self.hash(&bytes);
            self.size += bytes.len() as u64;
            self.buffer = bytes;
        } else {
            self.write(&bytes);
        }
    }

    /// Writes buffered bytes to the OS if `flush_interval` has passed since
    /// the last flush, rewriting `header` at the front first so the part
    /// file is playable as it stands. Returns whether it flushed.
    pub fn maybe_flush(&mut self, now: Duration, header: Option<&[u8]>) -> io::Result<bool> {
        if now.saturating_sub(self.last_flush) < self.flush_interval {
            return Ok(false);
        }
        self.flush(header)?;
        self.last_flush = now;
        Ok(true)
    }

    /// Writes buffered bytes to the OS now.
    pub fn flush(&mut self, header: Option<&[u8]>) -> io::Result<()> {
        if let Some(sealed) = self.sealed.as_mut() {
            // The header waits for the end: rewriting segment 0 at every
            // flush would cost a decrypt and a seal each time, and recovery
            // repairs the header of a part file anyway.
            sealed.writer.write(&self.file, &self.buffer)?;
            self.buffer = Vec::new();
            return sealed.writer.flush(&self.file);
        }
        if !self.buffer.is_empty() {
            self.file.write_all(&self.buffer)?;
            // Nothing is held between flushes: idle recordings cost no buffer.
            self.buffer = Vec::new();
        }
        if let Some(h) = header
            && self.size >= h.len() as u64
        {
            self.file.seek(SeekFrom::Start(0))?;
            self.file.write_all(h)?;
            self.file.seek(SeekFrom::End(0))?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Finishes the file and puts it in place: [`RecordingFile::finish`]
    /// then [`Finished::place`] without a sidecar.
    pub fn finalize(self, header: Option<&[u8]>) -> io::Result<FinalFile> {
        self.finish(header)?
            .place(None)
            .map_err(|e| io::Error::new(e.source.kind(), e))
    }

    /// Finishes the file under its part name: final header, fsync, and its
    /// checksum. [`Finished::place`] then renames it into place.
    pub fn finish(mut self, header: Option<&[u8]>) -> io::Result<Finished> {
        if let Some(Sealed { mut writer, key }) = self.sealed.take() {
            writer.write(&self.file, &self.buffer)?;
            self.buffer = Vec::new();
            let header = header.filter(|h| self.size >= h.len() as u64);
            writer.finish(&self.file, header)?;
            self.file.sync_all()?;
            let digest = crate::encryption::segments::digest(&self.file, &key)?;
            return Ok(Finished {
                part: self.part,
                file: FinalFile {
                    path: self.path,
                    size: digest.plain_len,
                    sha256: digest.plain_sha256,
                    stored: Some((digest.stored_sha256, digest.stored_len)),
                },
            });
        }
        self.flush(header)?;
        self.file.sync_all()?;
        let sha256 = if self.header_written {
            sha256_file(&self.part)?
        } else {
            hex(&std::mem::take(&mut self.hasher).finalize())
        };
        Ok(Finished {
            part: self.part,
            file: FinalFile {
                path: self.path,
                size: self.size,
                sha256,
                stored: None,
            },
        })
    }
}

/// A recording file that is complete and durable under its part name.
#[must_use = "the file is not in place until `place` is called"]
pub struct Finished {
    part: PathBuf,
    file: FinalFile,
}

impl Finished {
    /// What the file will be once in place.
    pub fn file(&self) -> &FinalFile {
        &self.file
    }

    /// Writes `sidecar` (its path and content) beside the file under a
    /// temporary name and fsyncs it, renames the file and then the sidecar
    /// into place, and fsyncs the directory once for both. An error names
    /// the step and the file it failed on.
    pub fn place(self, sidecar: Option<(&Path, &[u8])>) -> Result<FinalFile, FileError> {
        let sidecar_tmp = match sidecar {
            Some((path, content)) => Some((
                write_synced_tmp(path, content).map_err(FileError::at("writing", path))?,
                path,
            )),
            None => None,
        };
        fs::rename(&self.part, &self.file.path).map_err(FileError::at("renaming", &self.part))?;
        let mut dirs = vec![self.file.path.parent()];
        if let Some((tmp, path)) = &sidecar_tmp {
            fs::rename(tmp, path).map_err(FileError::at("renaming", tmp))?;
            dirs.push(path.parent());
        }
        dirs.dedup();
        for dir in dirs.into_iter().flatten() {
            sync_dir(dir).map_err(FileError::at("syncing the directory", dir))?;
        }
        Ok(self.file)
    }
}

/// A sidecar's content: the value as pretty JSON and a newline.
pub fn sidecar_json(value: &impl serde::Serialize) -> io::Result<Vec<u8>> {
    let mut json = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    json.push(b'\n');
    Ok(json)
}

/// Writes `content` to `path` + `.tmp` and fsyncs it; answers that name.
fn write_synced_tmp(path: &Path, content: &[u8]) -> io::Result<PathBuf> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    Ok(tmp)
}

/// Writes a sidecar JSON atomically next to the recording (`<id>.json`).
pub fn write_sidecar(path: &Path, value: &impl serde::Serialize) -> io::Result<()> {
    let tmp = write_synced_tmp(path, &sidecar_json(value)?)?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finalize_hash_matches_the_file_with_and_without_header() {
        let dir = std::env::temp_dir().join(format!("recengine-sink-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (name, header) in [("a.mp3", None), ("b.wav", Some(&b"HEAD"[..]))] {
            let path = dir.join("2026/11/22").join(name);
            let mut f =
                RecordingFile::create(&path, Duration::from_secs(1), Duration::ZERO, None).unwrap();
            f.write(b"xxxx");
            f.write(&[7u8; 10_000]);
            assert!(f.maybe_flush(Duration::from_secs(2), header).unwrap());
            assert!(f.part_path().exists());
            f.write(b"tail");
            let done = f.finalize(header).unwrap();
            assert!(
                !done
                    .path
                    .with_extension(format!(
                        "{}.part",
                        done.path.extension().unwrap().to_string_lossy()
                    ))
                    .exists()
            );
            assert_eq!(done.sha256, sha256_file(&done.path).unwrap(), "{name}");
            assert_eq!(done.size, fs::metadata(&done.path).unwrap().len());
            if header.is_some() {
                assert_eq!(&fs::read(&done.path).unwrap()[..4], b"HEAD");
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
