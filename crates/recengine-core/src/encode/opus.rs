//! Opus in Ogg (RFC 7845): an OpusHead page (with the encoder's pre-skip and
//! the input rate), an OpusTags page, then 20 ms packets, one page per
//! second of audio (or sooner at a flush), granule positions in 48 kHz
//! samples including the pre-skip, and a final page with the EOS flag.

use crate::opus::{Application, Bandwidth, OpusEncoder};

use super::ogg::OggPageWriter;
use super::{EncodeError, Encoder, EncoderSpec, check_interleaving};

/// Packets per page: 50 × 20 ms = 1 s.
const PACKETS_PER_PAGE: usize = 50;

pub struct OggOpusEncoder {
    spec: EncoderSpec,
    opus: OpusEncoder,
    pages: OggPageWriter,
    /// Samples per channel per 20 ms frame at the input rate.
    frame: usize,
    /// Interleaved input not yet a whole frame.
    pending: Vec<i16>,
    packet: Vec<u8>,
    /// The newest packet, held back so the final page always has one to
    /// carry the end-trimming granule: (bytes, granule when set).
    held: Vec<u8>,
    held_granule: Option<u64>,
    /// Input frames encoded (per channel, at the input rate).
    frames_in: u64,
    /// 48 kHz samples covered by packets written, before pre-skip.
    granule: u64,
    pre_skip: u16,
    started: bool,
}

impl OggOpusEncoder {
    pub fn new(spec: EncoderSpec) -> Result<Self, EncodeError> {
        let kbps = spec.effective_bitrate_kbps();
        let opus = OpusEncoder::new(
            spec.sample_rate,
            spec.channels as u8,
            Application::Voip,
            kbps * 1000,
            spec.opus_complexity,
        )
        .map_err(|e| EncodeError::Opus(e.to_string()))?;
        let lookahead = opus
            .lookahead()
            .map_err(|e| EncodeError::Opus(e.to_string()))?;
        // Pre-skip is in 48 kHz samples whatever the input rate.
        let pre_skip = (u64::from(lookahead) * 48_000 / u64::from(spec.sample_rate)) as u16;
        let frame = spec.sample_rate as usize / 50;
        Ok(Self {
            spec,
            opus,
            pages: OggPageWriter::new(serial_for(&spec)),
            frame,
            pending: Vec::with_capacity(frame * usize::from(spec.channels)),
            packet: vec![0; 4000],
            held: Vec::with_capacity(4000),
            held_granule: None,
            frames_in: 0,
            granule: u64::from(pre_skip),
            pre_skip,
            started: false,
        })
    }

    fn headers(&mut self, out: &mut Vec<u8>) {
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1);
        head.push(self.spec.channels as u8);
        head.extend_from_slice(&self.pre_skip.to_le_bytes());
        head.extend_from_slice(&self.spec.sample_rate.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // mapping family 0: mono or stereo
        self.pages.header_page(&head, out);
        let vendor = concat!("recengine ", env!("CARGO_PKG_VERSION"), " (libopus 1.3.1)");
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor.as_bytes());
        tags.extend_from_slice(&0u32.to_le_bytes());
        self.pages.header_page(&tags, out);
        self.started = true;
    }

    fn encode_frame(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let n = self
            .opus
            .encode(pcm, &mut self.packet)
            .map_err(|e| EncodeError::Opus(e.to_string()))?;
        self.release_held(out);
        self.granule += 960; // 20 ms at 48 kHz
        self.held.clear();
        self.held.extend_from_slice(&self.packet[..n]);
        self.held_granule = Some(self.granule);
        Ok(())
    }

    fn release_held(&mut self, out: &mut Vec<u8>) {
        if let Some(g) = self.held_granule.take() {
            if self.pages.pending() >= PACKETS_PER_PAGE {
                self.pages.flush_page(false, out);
            }
            self.pages.add_packet(&self.held, g, out);
        }
    }

    /// Writes out every complete page (all packets but the newest).
    pub fn flush_pages(&mut self, out: &mut Vec<u8>) {
        self.pages.flush_page(false, out);
    }
}

/// A stream serial derived from the spec (Ogg only needs it unique within
/// one file).
fn serial_for(spec: &EncoderSpec) -> u32 {
    0x7265_6300 ^ spec.sample_rate ^ u32::from(spec.channels) << 24
}

impl Encoder for OggOpusEncoder {
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        check_interleaving(pcm, self.spec.channels)?;
        if !self.started {
            self.headers(out);
        }
        let ch = usize::from(self.spec.channels);
        let frame_len = self.frame * ch;
        let mut rest = pcm;
        if !self.pending.is_empty() {
            let take = (frame_len - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == frame_len {
                let frame = std::mem::take(&mut self.pending);
                self.encode_frame(&frame, out)?;
                self.pending = frame;
                self.pending.clear();
            }
        }
        while rest.len() >= frame_len {
            self.encode_frame(&rest[..frame_len], out)?;
            rest = &rest[frame_len..];
        }
        self.pending.extend_from_slice(rest);
        self.frames_in += (pcm.len() / ch) as u64;
        Ok(())
    }

    /// Pads the last frame with silence, ends the stream, and sets the final
    /// granule so that decoders trim the padding (RFC 7845 §4.5).
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !self.started {
            self.headers(out);
        }
        let ch = usize::from(self.spec.channels);
        if !self.pending.is_empty() {
            let mut frame = std::mem::take(&mut self.pending);
            frame.resize(self.frame * ch, 0);
            self.encode_frame(&frame, out)?;
        }
        // Final granule = pre-skip + real audio length at 48 kHz, so the
        // padding of the last frame is trimmed.
        let end =
            u64::from(self.pre_skip) + self.frames_in * 48_000 / u64::from(self.spec.sample_rate);
        if let Some(g) = self.held_granule {
            self.held_granule = Some(end.min(g));
        }
        self.release_held(out);
        self.pages.flush_page(true, out);
        Ok(())
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        self.flush_pages(out);
    }

    fn frames(&self) -> u64 {
        self.frames_in
    }

    fn spec(&self) -> &EncoderSpec {
        &self.spec
    }

    fn set_source_rate(&mut self, rate: u32) -> Result<(), EncodeError> {
        self.opus
            .set_max_bandwidth(Bandwidth::for_source_rate(rate))
            .map_err(|e| EncodeError::Opus(e.to_string()))
    }
}
