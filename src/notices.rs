//! Recording notices, the IO side: the audio an announcement names — the
//! built-in beep, an operator prompt file, or text spoken by the
//! operator's text-to-speech command — decoded once, resampled to the
//! call's rate and cached. What a notice then does to the media is the
//! core's (`core::notice`, the mixer's overlays,
//! `CallMedia::party_packets`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::config::NoticesSection;
use crate::core::notice::{beep, resample_all};

/// The prompt built in.
pub const BEEP: &str = "beep";

/// Most prompts kept decoded; past it the cache starts over.
const CACHE_ENTRIES: usize = 256;
/// Most bytes read from a prompt file or the TTS command.
const MAX_FILE_BYTES: u64 = 32 << 20;
/// Longest text given to the TTS command.
pub const MAX_TEXT: usize = 2000;

/// Why an announcement cannot be played; each names the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PromptError {
    #[error(
        "announcement: no prompt {0:?} (\"beep\" is built in; others are notices.prompts_dir/<name>.wav, .mp3 or .opus), and no notices.tts_command to speak it as text"
    )]
    Unknown(String),
    #[error("announcement: text longer than {MAX_TEXT} bytes")]
    TextTooLong,
    #[error("announcement: prompt file {path}: {message}")]
    BadFile { path: String, message: String },
    #[error("announcement: the text-to-speech command failed: {0}")]
    Tts(String),
    #[error("announcement: the prompt lasts {0} s, longer than notices.max_prompt_s ({1} s)")]
    TooLong(u64, u32),
}

/// What an announcement turned out to name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    BuiltIn,
    File,
    Text,
}

impl PromptKind {
    /// As `recording.announced` and the sidecar name it.
    pub fn as_str(self) -> &'static str {
        match self {
            PromptKind::BuiltIn => "builtin",
            PromptKind::File => "file",
            PromptKind::Text => "text",
        }
    }
}

/// Where an announcement's audio comes from.
enum Source {
    BuiltIn,
    File(PathBuf),
    Text,
}

impl Source {
    fn kind(&self) -> PromptKind {
        match self {
            Source::BuiltIn => PromptKind::BuiltIn,
            Source::File(_) => PromptKind::File,
            Source::Text => PromptKind::Text,
        }
    }
}

/// Decoded prompts, and what they were, by (announcement, rate).
type PromptCache = HashMap<(String, u32), (PromptKind, Arc<[i16]>)>;

/// See the module documentation.
pub struct Prompts {
    cfg: NoticesSection,
    cache: Mutex<PromptCache>,
}

/// Whether `name` can name a prompt file (no path can be built from it).
fn is_prompt_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl Prompts {
    pub fn new(cfg: NoticesSection) -> Self {
        Self {
            cfg,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// What `announcement` is: the built-in beep, a prompt file, or text.
    pub fn kind(&self, announcement: &str) -> PromptKind {
        self.source(announcement).kind()
    }

    fn source(&self, announcement: &str) -> Source {
        if announcement == BEEP {
            Source::BuiltIn
        } else if let Some(path) = self.file(announcement) {
            Source::File(path)
        } else {
            Source::Text
        }
    }

    /// The default announcement (`notices.default_prompt`).
    pub fn default_prompt(&self) -> &str {
        &self.cfg.default_prompt
    }

    /// The file a prompt name stands for, if there is one.
    fn file(&self, name: &str) -> Option<PathBuf> {
        if self.cfg.prompts_dir.is_empty() || !is_prompt_name(name) {
            return None;
        }
        ["wav", "mp3", "opus", "ogg"]
            .iter()
            .map(|ext| PathBuf::from(&self.cfg.prompts_dir).join(format!("{name}.{ext}")))
            .find(|p| p.is_file())
    }

    /// The short tone a reminder plays (1.4 kHz, 0.2 s), at `rate`.
    pub fn reminder(&self, rate: u32) -> Arc<[i16]> {
        Arc::from(beep(rate, 1400.0, Duration::from_millis(200), 6000))
    }

    /// What `announcement` is and its audio at `rate` Hz (mono), from the
    /// cache or made now: decoding a file or running the TTS command,
    /// which can take a while (call it off the async runtime).
    pub fn audio(
        &self,
        announcement: &str,
        rate: u32,
    ) -> Result<(PromptKind, Arc<[i16]>), PromptError> {
        let key = (announcement.to_owned(), rate);
        if let Some(cached) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(cached.clone());
        }
        let source = self.source(announcement);
        let audio: Arc<[i16]> = match &source {
            Source::BuiltIn => Arc::from(beep(rate, 1000.0, Duration::from_millis(400), 8000)),
            Source::File(path) => {
                let bad = |message: String| PromptError::BadFile {
                    path: path.display().to_string(),
                    message,
                };
                let bytes = read_capped(path).map_err(|e| bad(e.to_string()))?;
                Arc::from(self.to_rate(bytes, rate).map_err(bad)?)
            }
            Source::Text => {
                if self.cfg.tts_command.trim().is_empty() {
                    return Err(PromptError::Unknown(announcement.to_owned()));
                }
                if announcement.len() > MAX_TEXT {
                    return Err(PromptError::TextTooLong);
                }
                let wav = self.speak(announcement)?;
                Arc::from(
                    self.to_rate(wav, rate)
                        .map_err(|e| PromptError::Tts(format!("its output: {e}")))?,
                )
            }
        };
        let seconds = audio.len() as u64 / u64::from(rate.max(1));
        if seconds > u64::from(self.cfg.max_prompt_s) {
            return Err(PromptError::TooLong(seconds, self.cfg.max_prompt_s));
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        let entry = (source.kind(), audio);
        cache.insert(key, entry.clone());
        Ok(entry)
    }

    /// A WAV or MP3 file's audio, mixed down to mono, at `rate`.
    fn to_rate(&self, bytes: Vec<u8>, rate: u32) -> Result<Vec<i16>, String> {
        let d = crate::audio_file::decode(bytes)?;
        let channels = d.channels.len();
        let frames = d.channels.iter().map(Vec::len).min().unwrap_or(0);
        if frames == 0 || d.rate == 0 {
            return Err("no audio in it".into());
        }
        if frames as u64 > u64::from(self.cfg.max_prompt_s + 1) * u64::from(d.rate) {
            return Err(format!(
                "longer than notices.max_prompt_s ({} s)",
                self.cfg.max_prompt_s
            ));
        }
        let mono: Vec<i16> = (0..frames)
            .map(|i| {
                let sum: i32 = d.channels.iter().map(|c| i32::from(c[i])).sum();
                (sum / channels as i32) as i16
            })
            .collect();
        Ok(resample_all(&mono, d.rate, rate))
    }

    /// Runs the TTS command with `text` on stdin; answers what it wrote.
    fn speak(&self, text: &str) -> Result<Vec<u8>, PromptError> {
        let mut words = self.cfg.tts_command.split_whitespace();
        let program = words.next().unwrap_or_default();
        let fail = |m: String| PromptError::Tts(format!("{program}: {m}"));
        let mut child = Command::new(program)
            .args(words)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot start it: {e}")))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            return Err(fail("no pipes".into()));
        };
        // Writing and reading on their own threads: a command that reads
        // all its input before writing, or the other way round, cannot
        // deadlock against us.
        let text = text.to_owned();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(text.as_bytes());
        });
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.take(MAX_FILE_BYTES).read_to_end(&mut out);
            out
        });
        let errors = std::thread::spawn(move || {
            let mut out = String::new();
            let _ = stderr.take(4096).read_to_string(&mut out);
            out
        });
        let deadline = Instant::now() + Duration::from_secs(u64::from(self.cfg.tts_timeout_s));
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!(
                        "no answer within notices.tts_timeout_s ({} s)",
                        self.cfg.tts_timeout_s
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(fail(e.to_string())),
            }
        };
        let _ = writer.join();
        let wav = reader.join().unwrap_or_default();
        let stderr = errors.join().unwrap_or_default();
        if !status.success() {
            return Err(fail(format!("{status}: {}", stderr.trim())));
        }
        Ok(wav)
    }
}

/// A file's bytes, refusing one larger than [`MAX_FILE_BYTES`].
fn read_capped(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other("larger than 32 MiB"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, samples: &[i16]) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    fn prompts(dir: &std::path::Path, tts: &str) -> Prompts {
        Prompts::new(NoticesSection {
            prompts_dir: dir.display().to_string(),
            tts_command: tts.into(),
            tts_timeout_s: 2,
            ..NoticesSection::default()
        })
    }

    #[test]
    fn files_text_and_the_beep_resolve_and_are_cached() {
        let dir = std::env::temp_dir().join(format!("recengine-prompts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tone = crate::testkit::tone(16_000, 500.0, 8000.0, 16_000);
        std::fs::write(dir.join("welcome.wav"), wav(16_000, &tone)).unwrap();
        let spoken = dir.join("spoken.wav");
        std::fs::write(&spoken, wav(8000, &vec![100i16; 4000])).unwrap();
        let p = prompts(&dir, &format!("cat {}", spoken.display()));
        assert_eq!(p.kind("beep"), PromptKind::BuiltIn);
        assert_eq!(p.kind("welcome"), PromptKind::File);
        assert_eq!(p.kind("This call is recorded"), PromptKind::Text);
        assert_eq!(p.kind("../welcome"), PromptKind::Text, "never a path");
        let (kind, a) = p.audio("welcome", 8000).unwrap();
        assert_eq!(kind, PromptKind::File);
        assert!(
            (7990..=8010).contains(&a.len()),
            "1 s at 8 kHz: {}",
            a.len()
        );
        assert!(
            Arc::ptr_eq(&a, &p.audio("welcome", 8000).unwrap().1),
            "cached"
        );
        let (kind, t) = p.audio("This call is recorded", 8000).unwrap();
        assert_eq!((kind, t.len()), (PromptKind::Text, 4000));
        assert_eq!(p.audio("beep", 8000).unwrap().1.len(), 3200);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_ogg_opus_prompt_is_decoded() {
        use crate::core::encode::{EncoderSpec, encoder_for};
        let dir =
            std::env::temp_dir().join(format!("recengine-prompts-ogg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tone = crate::testkit::tone(16_000, 500.0, 8000.0, 16_000);
        let mut enc = encoder_for(EncoderSpec {
            format: crate::config::Format::Opus,
            sample_rate: 16_000,
            channels: 1,
            bitrate_kbps: 32,
            mp3_quality: 5,
            opus_complexity: 5,
        })
        .unwrap();
        let mut file = Vec::new();
        enc.encode(&tone, &mut file).unwrap();
        enc.finish(&mut file).unwrap();
        std::fs::write(dir.join("hold.opus"), file).unwrap();
        let p = prompts(&dir, "");
        assert_eq!(p.kind("hold"), PromptKind::File);
        let (_, a) = p.audio("hold", 8000).unwrap();
        assert!((7900..=8100).contains(&a.len()), "1 s: {}", a.len());
        let power = crate::testkit::tone_power(&a[1000..7000], 8000, 500.0);
        let other = crate::testkit::tone_power(&a[1000..7000], 8000, 1300.0);
        assert!(power > 100.0 * other.max(1.0), "{power} vs {other}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_name_what_went_wrong() {
        let dir =
            std::env::temp_dir().join(format!("recengine-prompts-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("broken.wav"), b"RIFF but not audio").unwrap();
        let none = prompts(&dir, "");
        assert!(matches!(
            none.audio("Hello", 8000),
            Err(PromptError::Unknown(_))
        ));
        assert!(matches!(
            none.audio("broken", 8000),
            Err(PromptError::BadFile { .. })
        ));
        let failing = prompts(&dir, "false");
        assert!(matches!(
            failing.audio("Hello", 8000),
            Err(PromptError::Tts(_))
        ));
        let missing = prompts(&dir, "/nonexistent/tts --stdout");
        let e = missing.audio("Hello", 8000).unwrap_err().to_string();
        assert!(e.contains("cannot start it"), "{e}");
        let slow = prompts(&dir, "sleep 30");
        let started = Instant::now();
        let e = slow.audio("Hello", 8000).unwrap_err().to_string();
        assert!(e.contains("tts_timeout_s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
