//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use recengine::offline::{self, PcapOptions, StreamReport};

/// `../shared/captures` from the project root, or `None` (with a message)
/// when this checkout has no shared folder beside it.
pub fn shared_captures() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: {} is absent; real-capture tests need it",
            dir.display()
        );
        None
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A fresh, empty scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

pub fn run_pcap(input: &Path, out: &Path, by_flow: bool) -> Vec<StreamReport> {
    offline::run(&PcapOptions {
        input: input.to_path_buf(),
        output_dir: out.to_path_buf(),
        rtp_ports: Vec::new(),
        payload_types: Vec::new(),
        playout_delay: Duration::from_millis(200),
        jitter_capacity: 64,
        by_flow,
    })
    .expect("pcap run")
}

pub fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rate = r.spec().sample_rate;
    let s = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    (s, rate)
}

#[allow(unused_imports)]
pub use recengine::testkit::correlation;

/// Decoded audio: interleaved samples, channel count, rate.
pub struct Decoded {
    pub samples: Vec<i16>,
    pub channels: usize,
    pub rate: u32,
}

impl Decoded {
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }
    pub fn channel(&self, c: usize) -> Vec<i16> {
        self.samples
            .iter()
            .skip(c)
            .step_by(self.channels)
            .copied()
            .collect()
    }
}

/// Decodes WAV or MP3 with symphonia (the decoder `loadgen --verify` uses).
pub fn decode_with_symphonia(path: &Path) -> Decoded {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let d = recengine::loadgen::verify::decode(bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let frames = d.channels.first().map_or(0, Vec::len);
    let mut samples = Vec::with_capacity(frames * d.channels.len());
    for i in 0..frames {
        samples.extend(d.channels.iter().map(|c| c[i]));
    }
    Decoded {
        samples,
        channels: d.channels.len(),
        rate: d.rate,
    }
}

/// One Ogg page as read back.
pub struct OggPage {
    pub flags: u8,
    pub granule: u64,
    pub sequence: u32,
    pub crc_ok: bool,
    pub packets: Vec<Vec<u8>>,
}

/// Splits an Ogg file into pages, checking each CRC.
pub fn ogg_pages(bytes: &[u8]) -> Vec<OggPage> {
    let mut pages = Vec::new();
    let mut at = 0;
    let mut partial: Vec<u8> = Vec::new();
    while at + 27 <= bytes.len() {
        assert_eq!(&bytes[at..at + 4], b"OggS", "page capture pattern at {at}");
        let segs = bytes[at + 26] as usize;
        let table = &bytes[at + 27..at + 27 + segs];
        let body_len: usize = table.iter().map(|&l| l as usize).sum();
        let end = at + 27 + segs + body_len;
        let mut page = bytes[at..end].to_vec();
        let stored = u32::from_le_bytes([page[22], page[23], page[24], page[25]]);
        page[22..26].fill(0);
        let crc_ok = recengine::core::encode::ogg_crc32(&page) == stored;
        let mut packets = Vec::new();
        let mut body = &bytes[at + 27 + segs..end];
        for &l in table {
            partial.extend_from_slice(&body[..l as usize]);
            body = &body[l as usize..];
            if l < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
        pages.push(OggPage {
            flags: bytes[at + 5],
            granule: u64::from_le_bytes(bytes[at + 6..at + 14].try_into().unwrap()),
            sequence: u32::from_le_bytes(bytes[at + 18..at + 22].try_into().unwrap()),
            crc_ok,
            packets,
        });
        at = end;
    }
    assert_eq!(at, bytes.len(), "trailing bytes after the last page");
    pages
}

/// Decodes an Ogg Opus file with the Opus decoder at its input rate,
/// trimming pre-skip and end padding as RFC 7845 says.
pub fn decode_ogg_opus(path: &Path) -> Decoded {
    let bytes = std::fs::read(path).expect("read");
    let pages = ogg_pages(&bytes);
    let head = &pages[0].packets[0];
    assert_eq!(&head[..8], b"OpusHead");
    let channels = head[9] as usize;
    let pre_skip = u16::from_le_bytes([head[10], head[11]]) as usize;
    let rate = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
    let final_granule = pages.last().unwrap().granule as usize;
    // Decode at 48 kHz (granule units), then take every (48000/rate)-th frame.
    assert!(channels <= 2);
    let mut pcm48 = Vec::new();
    let mut decoder = StereoOpus::new(channels);
    for page in &pages[2..] {
        for p in &page.packets {
            decoder.decode(p, &mut pcm48);
        }
    }
    let total48 = final_granule - pre_skip;
    let frames48: Vec<i16> = pcm48
        .chunks(channels)
        .skip(pre_skip)
        .take(total48)
        .flatten()
        .copied()
        .collect();
    let step = (48_000 / rate) as usize;
    let samples = frames48
        .chunks(channels)
        .step_by(step)
        .flatten()
        .copied()
        .collect();
    Decoded {
        samples,
        channels,
        rate,
    }
}

/// A stereo libopus decoder for the tests (the engine itself only decodes
/// to mono).
pub struct StereoOpus {
    state: *mut unsafe_libopus::OpusDecoder,
    channels: usize,
}

impl StereoOpus {
    pub fn new(channels: usize) -> Self {
        let mut err = 0;
        // SAFETY: valid rate and channel count.
        let state = unsafe {
            unsafe_libopus::opus_decoder_create(48_000, channels.max(1) as i32, &mut err)
        };
        assert!(!state.is_null());
        Self { state, channels }
    }
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) {
        let mut buf = vec![0i16; 5760 * self.channels];
        // SAFETY: buffer holds 5760 frames; packet slice is live.
        let n = unsafe {
            unsafe_libopus::opus_decode(
                self.state,
                packet.as_ptr(),
                packet.len() as i32,
                buf.as_mut_ptr(),
                5760,
                0,
            )
        };
        assert!(n > 0, "opus decode error {n}");
        out.extend_from_slice(&buf[..n as usize * self.channels]);
    }
}

impl Drop for StereoOpus {
    fn drop(&mut self) {
        // SAFETY: created above, destroyed once.
        unsafe { unsafe_libopus::opus_decoder_destroy(self.state) }
    }
}

#[allow(unused_imports)]
pub use recengine::testkit::tone_power;

/// Best correlation of `got` against `want` over lags 0..max_lag.
pub fn best_correlation(got: &[i16], want: &[i16], max_lag: usize) -> (usize, f64) {
    (0..max_lag.min(got.len()))
        .map(|lag| (lag, correlation(&got[lag..], want)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0))
}

/// `recengine pcap --format` options as the daemon's defaults record: 8 kHz,
/// 200 ms playout delay, 20 ms drift bound, every party; no parties named.
pub fn record_options(
    input: &Path,
    out: &Path,
    format: recengine::config::Format,
    channels: recengine::config::Channels,
) -> recengine::offline::record::RecordOptions {
    recengine::offline::record::RecordOptions {
        input: input.to_path_buf(),
        output_dir: out.to_path_buf(),
        rtp_ports: vec![],
        payload_types: vec![],
        playout_delay: std::time::Duration::from_millis(200),
        jitter_capacity: 64,
        drift_bound: std::time::Duration::from_millis(20),
        format,
        sample_rate: 8000,
        channels,
        bitrate_kbps: 0,
        mp3_quality: 5,
        opus_complexity: 5,
        participant: recengine::offline::record::Participant::All,
        pause_behavior: recengine::config::PauseBehavior::Silence,
        pauses: vec![],
        suppress_dtmf: false,
        caller: None,
        callee: None,
        flush_interval: std::time::Duration::from_millis(500),
    }
}
