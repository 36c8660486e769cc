//! Opus codec: the one place `unsafe-libopus` (libopus 1.3.1 translated to Rust) is
//! called. Everything outside this module sees safe types. The decoder's
//! place in the decode pipeline (loss concealment with in-band FEC) is
//! `core::decode::opus`; the Ogg Opus file encoder is `core::encode::opus`.

use std::ptr::NonNull;

use thiserror::Error;

/// What the Opus codec refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpusError {
    /// Not an Opus packet (its TOC and frame count do not parse).
    #[error("malformed packet of {len} bytes")]
    Malformed { len: usize },
    /// A setting or call refused, in libopus's words and code where it
    /// was libopus that refused.
    #[error("{0}")]
    Refused(String),
}

/// Rates libopus decodes and encodes at.
pub const DECODE_RATES: [u32; 5] = [8000, 12_000, 16_000, 24_000, 48_000];

fn error_text(code: i32) -> String {
    let text = match code {
        unsafe_libopus::OPUS_BAD_ARG => "bad argument",
        unsafe_libopus::OPUS_BUFFER_TOO_SMALL => "buffer too small",
        unsafe_libopus::OPUS_INTERNAL_ERROR => "internal error",
        unsafe_libopus::OPUS_INVALID_PACKET => "invalid packet",
        unsafe_libopus::OPUS_UNIMPLEMENTED => "unimplemented",
        unsafe_libopus::OPUS_INVALID_STATE => "invalid state",
        unsafe_libopus::OPUS_ALLOC_FAIL => "allocation failed",
        _ => "unknown error",
    };
    format!("{text} ({code})")
}

/// Samples per channel a packet holds at 48 kHz, `None` if it is malformed.
pub fn packet_samples_48k(packet: &[u8]) -> Option<u32> {
    if packet.is_empty() {
        return None;
    }
    let len = i32::try_from(packet.len()).ok()?;
    // SAFETY: the pointer and length describe `packet`, which outlives the call;
    // libopus only reads the TOC and frame-count bytes within `len`.
    let n = unsafe { unsafe_libopus::opus_packet_get_nb_samples(packet.as_ptr(), len, 48_000) };
    u32::try_from(n).ok().filter(|&n| n > 0)
}

/// Whether a packet carries SILK low-bitrate redundancy (in-band FEC) for
/// the frame before it. SILK patches its VAD and LBRR flags into the first
/// bits of the range-coded stream (RFC 6716 §4.2.3), so for a single-frame
/// packet in SILK or hybrid mode the LBRR flag of the first channel is bit
/// `frames` of the byte after the TOC.
pub fn has_lbrr(packet: &[u8]) -> bool {
    let Some(&toc) = packet.first() else {
        return false;
    };
    let config = toc >> 3;
    if config >= 16 || toc & 0x03 != 0 {
        return false; // CELT-only has no FEC; multi-frame packets not handled
    }
    let silk_frames = if config < 12 {
        match config % 4 {
            2 => 2,
            3 => 3,
            _ => 1,
        }
    } else {
        1
    };
    packet
        .get(1)
        .is_some_and(|b| b & (0x80 >> silk_frames) != 0)
}

/// A mono Opus decoder (stereo streams are mixed down by libopus itself).
///
/// Decodes to float into a buffer it keeps and converts to 16 bits itself
/// (`opus_decode` allocates a float buffer on every call), applying the
/// same soft clipping and rounding as `opus_decode`, so the samples are
/// those `opus_decode` gives.
pub struct OpusDecoder {
    state: NonNull<unsafe_libopus::OpusDecoder>,
    rate: u32,
    float: Vec<f32>,
    /// `opus_pcm_soft_clip`'s memory across packets (the decoder's own is
    /// reset by `opus_decode_float`).
    soft_clip: [f32; 1],
}

// SAFETY: the decoder state is exclusively owned and libopus keeps no
// thread-local or global mutable state; moving it between threads is sound.
unsafe impl Send for OpusDecoder {}

impl OpusDecoder {
    pub fn new(rate: u32) -> Result<Self, OpusError> {
        if !DECODE_RATES.contains(&rate) {
            return Err(OpusError::Refused(format!(
                "unsupported decode rate {rate}"
            )));
        }
        let mut err = 0i32;
        // SAFETY: valid rate and channel count; `err` is a valid out-pointer.
        let ptr = unsafe { unsafe_libopus::opus_decoder_create(rate as i32, 1, &mut err) };
        let state = NonNull::new(ptr).ok_or_else(|| OpusError::Refused(error_text(err)))?;
        Ok(Self {
            state,
            rate,
            float: Vec::new(),
            soft_clip: [0.0],
        })
    }

    fn run(
        &mut self,
        data: Option<&[u8]>,
        frame: usize,
        fec: bool,
        out: &mut Vec<i16>,
    ) -> Result<usize, OpusError> {
        self.float.clear();
        self.float.resize(frame, 0.0);
        let (ptr, len) = match data {
            Some(d) => (d.as_ptr(), i32::try_from(d.len()).unwrap_or(i32::MAX)),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: `state` is a live decoder; `float` has room for `frame`
        // mono samples, which is the most libopus writes; `ptr`/`len`
        // describe a live slice or are null/0 for concealment.
        let n = unsafe {
            unsafe_libopus::opus_decode_float(
                self.state.as_ptr(),
                ptr,
                len,
                self.float.as_mut_ptr(),
                frame as i32,
                i32::from(fec),
            )
        };
        if n < 0 {
            return Err(OpusError::Refused(error_text(n)));
        }
        let decoded = &mut self.float[..n as usize];
        // `opus_decode` soft-clips what a packet decodes to, but not FEC or
        // concealment.
        if data.is_some_and(|d| !d.is_empty()) && !fec && n > 0 {
            // SAFETY: `decoded` holds `n` mono samples; the memory is one
            // float per channel.
            unsafe {
                unsafe_libopus::opus_pcm_soft_clip(
                    decoded.as_mut_ptr(),
                    n,
                    1,
                    self.soft_clip.as_mut_ptr(),
                );
            }
        }
        // libopus's FLOAT2INT16 for a float build.
        out.extend(
            decoded
                .iter()
                .map(|&x| ((x * 32768.0).clamp(-32768.0, 32767.0) + 0.5).floor() as i16),
        );
        Ok(n as usize)
    }
}

impl Drop for OpusDecoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_decoder_create and destroyed exactly once.
        unsafe { unsafe_libopus::opus_decoder_destroy(self.state.as_ptr()) }
    }
}

impl OpusDecoder {
    /// Decodes one packet, appending its mono samples at
    /// [`OpusDecoder::sample_rate`] to `out`; returns how many.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) -> Result<usize, OpusError> {
        let samples48 =
            packet_samples_48k(packet).ok_or(OpusError::Malformed { len: packet.len() })?;
        let frame = (samples48 as usize * self.rate as usize) / 48_000;
        self.run(Some(packet), frame, false, out)
    }

    /// Decodes the in-band FEC (LBRR) that `following` carries for the
    /// `samples` before it.
    pub fn decode_fec(
        &mut self,
        following: &[u8],
        samples: usize,
        out: &mut Vec<i16>,
    ) -> Result<usize, OpusError> {
        self.run(Some(following), samples, true, out)
    }

    pub fn sample_rate(&self) -> u32 {
        self.rate
    }
}

/// Encoder application mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Application {
    Voip,
    Audio,
}

/// The widest audio band an encoder may code (libopus's
/// `OPUS_SET_MAX_BANDWIDTH`); narrower than the input rate allows when the
/// source holds nothing above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bandwidth {
    /// Up to 4 kHz.
    Narrow,
    /// Up to 6 kHz.
    Medium,
    /// Up to 8 kHz.
    Wide,
    /// Up to 12 kHz.
    SuperWide,
    /// Up to 20 kHz.
    Full,
}

impl Bandwidth {
    fn request_value(self) -> i32 {
        match self {
            Bandwidth::Narrow => unsafe_libopus::OPUS_BANDWIDTH_NARROWBAND,
            Bandwidth::Medium => unsafe_libopus::OPUS_BANDWIDTH_MEDIUMBAND,
            Bandwidth::Wide => unsafe_libopus::OPUS_BANDWIDTH_WIDEBAND,
            Bandwidth::SuperWide => unsafe_libopus::OPUS_BANDWIDTH_SUPERWIDEBAND,
            Bandwidth::Full => unsafe_libopus::OPUS_BANDWIDTH_FULLBAND,
        }
    }

    /// The band to code for a source at `rate`: everything it holds, and
    /// never less than mediumband. A G.711 source (8 kHz, nothing above
    /// 4 kHz) is coded in mediumband, not narrowband: libopus's own 16 → 8
    /// kHz filter would cut into the top of the telephone band (on a real
    /// call PESQ-WB 3.96 narrowband, 4.15 mediumband, 4.11 wideband, where
    /// mediumband costs 15 % less CPU than wideband; PERFORMANCE.md,
    /// session 18).
    pub fn for_source_rate(rate: u32) -> Self {
        match rate {
            0..=12_000 => Bandwidth::Medium,
            12_001..=16_000 => Bandwidth::Wide,
            16_001..=24_000 => Bandwidth::SuperWide,
            _ => Bandwidth::Full,
        }
    }

    /// The band of a packet's TOC byte (RFC 6716 §3.1), `None` for an
    /// empty packet.
    pub fn of_packet(packet: &[u8]) -> Option<Self> {
        let config = packet.first()? >> 3;
        Some(match config {
            0..=3 | 16..=19 => Bandwidth::Narrow,
            4..=7 => Bandwidth::Medium,
            8..=11 | 20..=23 => Bandwidth::Wide,
            12..=13 | 24..=27 => Bandwidth::SuperWide,
            _ => Bandwidth::Full,
        })
    }
}

/// A libopus encoder for `channels` interleaved channels at `rate`.
pub struct OpusEncoder {
    state: NonNull<unsafe_libopus::OpusEncoder>,
    channels: usize,
}

// SAFETY: as for OpusDecoder: exclusively owned, no shared state.
unsafe impl Send for OpusEncoder {}

impl OpusEncoder {
    pub fn new(
        rate: u32,
        channels: u8,
        application: Application,
        bitrate: u32,
        complexity: u8,
    ) -> Result<Self, OpusError> {
        if !DECODE_RATES.contains(&rate) || !(1..=2).contains(&channels) {
            return Err(OpusError::Refused(format!(
                "unsupported encoder input {rate} Hz / {channels} channels"
            )));
        }
        let app = match application {
            Application::Voip => unsafe_libopus::OPUS_APPLICATION_VOIP,
            Application::Audio => unsafe_libopus::OPUS_APPLICATION_AUDIO,
        };
        let mut err = 0i32;
        // SAFETY: arguments validated above; `err` is a valid out-pointer.
        let ptr = unsafe {
            unsafe_libopus::opus_encoder_create(rate as i32, i32::from(channels), app, &mut err)
        };
        let state = NonNull::new(ptr).ok_or_else(|| OpusError::Refused(error_text(err)))?;
        let enc = Self {
            state,
            channels: usize::from(channels),
        };
        enc.ctl(unsafe_libopus::OPUS_SET_BITRATE_REQUEST, bitrate as i32)?;
        enc.ctl(
            unsafe_libopus::OPUS_SET_COMPLEXITY_REQUEST,
            i32::from(complexity.min(10)),
        )?;
        enc.ctl(
            unsafe_libopus::OPUS_SET_SIGNAL_REQUEST,
            unsafe_libopus::OPUS_SIGNAL_VOICE,
        )?;
        Ok(enc)
    }

    fn ctl(&self, request: i32, value: i32) -> Result<(), OpusError> {
        // SAFETY: `state` is a live encoder; every request used here takes
        // one i32 argument.
        let rc = unsafe { unsafe_libopus::opus_encoder_ctl!(self.state.as_ptr(), request, value) };
        if rc == unsafe_libopus::OPUS_OK {
            Ok(())
        } else {
            Err(OpusError::Refused(error_text(rc)))
        }
    }

    /// The widest band the encoder may code from the next frame on
    /// (libopus moves to a wider one within a few frames).
    pub fn set_max_bandwidth(&mut self, band: Bandwidth) -> Result<(), OpusError> {
        self.ctl(
            unsafe_libopus::OPUS_SET_MAX_BANDWIDTH_REQUEST,
            band.request_value(),
        )
    }

    /// Turns in-band forward error correction on, tuned for `loss_percent`.
    pub fn set_fec(&mut self, on: bool, loss_percent: u8) -> Result<(), OpusError> {
        self.ctl(unsafe_libopus::OPUS_SET_INBAND_FEC_REQUEST, i32::from(on))?;
        self.ctl(
            unsafe_libopus::OPUS_SET_PACKET_LOSS_PERC_REQUEST,
            i32::from(loss_percent.min(100)),
        )
    }

    /// Samples of look-ahead the encoder adds (the Ogg pre-skip, at 48 kHz
    /// after scaling by the caller).
    pub fn lookahead(&self) -> Result<u32, OpusError> {
        let mut value: i32 = 0;
        // SAFETY: OPUS_GET_LOOKAHEAD takes one *mut i32 out-argument.
        let rc = unsafe {
            unsafe_libopus::opus_encoder_ctl!(
                self.state.as_ptr(),
                unsafe_libopus::OPUS_GET_LOOKAHEAD_REQUEST,
                &mut value
            )
        };
        if rc == unsafe_libopus::OPUS_OK {
            Ok(value.max(0) as u32)
        } else {
            Err(OpusError::Refused(error_text(rc)))
        }
    }

    /// Encodes one frame (`pcm.len() / channels` samples per channel, a
    /// valid Opus frame size) into `out`, returning the packet length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, OpusError> {
        let frame = pcm.len() / self.channels;
        // SAFETY: `pcm` holds `frame * channels` samples; `out` is writable
        // for its length, which bounds what libopus writes.
        let n = unsafe {
            unsafe_libopus::opus_encode(
                self.state.as_ptr(),
                pcm.as_ptr(),
                frame as i32,
                out.as_mut_ptr(),
                i32::try_from(out.len()).unwrap_or(i32::MAX),
            )
        };
        if n < 0 {
            Err(OpusError::Refused(error_text(n)))
        } else {
            Ok(n as usize)
        }
    }
}

impl Drop for OpusEncoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_encoder_create and destroyed exactly once.
        unsafe { unsafe_libopus::opus_encoder_destroy(self.state.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let mut enc = OpusEncoder::new(16_000, 1, Application::Voip, 32_000, 5).unwrap();
        let mut dec = OpusDecoder::new(16_000).unwrap();
        let frame: Vec<i16> = (0..320)
            .map(|i| ((i as f32 * 0.2).sin() * 8000.0) as i16)
            .collect();
        let mut packet = [0u8; 1500];
        let mut out = Vec::new();
        for _ in 0..10 {
            let n = enc.encode(&frame, &mut packet).unwrap();
            assert_eq!(packet_samples_48k(&packet[..n]), Some(960));
            out.clear();
            assert_eq!(dec.decode(&packet[..n], &mut out).unwrap(), 320);
        }
        assert!(dec.decode(&[], &mut out).is_err());
        assert!(enc.lookahead().unwrap() > 0);
    }

    #[test]
    fn decodes_the_samples_opus_decode_gives() {
        // Loud speech and a full-scale square wave (which decodes past full
        // scale, so soft clipping works), with FEC decodes among them.
        let mut enc = OpusEncoder::new(16_000, 1, Application::Voip, 24_000, 5).unwrap();
        enc.set_fec(true, 10).unwrap();
        let mut loud = OpusEncoder::new(16_000, 1, Application::Audio, 96_000, 5).unwrap();
        let mut signal: Vec<i16> = crate::testkit::speech(16_000, 32_000)
            .iter()
            .map(|&s| s.saturating_mul(4))
            .collect();
        let speech_frames = signal.len() / 320;
        signal.extend((0..16_000).map(|i| if (i / 40) % 2 == 0 { 32767 } else { -32768 }));
        let mut ours = OpusDecoder::new(16_000).unwrap();
        let mut err = 0;
        // SAFETY: valid rate and channels; `err` is a valid out-pointer.
        let reference = unsafe { unsafe_libopus::opus_decoder_create(16_000, 1, &mut err) };
        assert!(!reference.is_null());
        let mut packet = [0u8; 1500];
        let (mut got, mut clipped) = (Vec::new(), 0);
        for (k, frame) in signal.chunks(320).enumerate() {
            let n = if k < speech_frames {
                enc.encode(frame, &mut packet).unwrap()
            } else {
                loud.encode(frame, &mut packet).unwrap()
            };
            let fec = k % 7 == 3 && has_lbrr(&packet[..n]);
            got.clear();
            let m = if fec {
                ours.decode_fec(&packet[..n], 320, &mut got).unwrap()
            } else {
                ours.decode(&packet[..n], &mut got).unwrap()
            };
            let mut want = vec![0i16; 320];
            // SAFETY: live decoder; `want` has room for 320 samples.
            let w = unsafe {
                unsafe_libopus::opus_decode(
                    reference,
                    packet.as_ptr(),
                    n as i32,
                    want.as_mut_ptr(),
                    320,
                    i32::from(fec),
                )
            };
            assert_eq!(m as i32, w, "frame {k}");
            assert_eq!(got, want[..m], "frame {k}");
            clipped += got.iter().filter(|s| s.unsigned_abs() >= 32_767).count();
        }
        // SAFETY: created above, destroyed once.
        unsafe { unsafe_libopus::opus_decoder_destroy(reference) };
        assert!(clipped > 0, "the square wave should decode past full scale");
    }

    /// Documents why `conceal` does not call libopus PLC: if this starts
    /// failing, a fixed unsafe-libopus can be used for PLC again.
    #[test]
    fn plc_of_unsafe_libopus_is_still_broken() {
        let mut enc = OpusEncoder::new(16_000, 1, Application::Voip, 24_000, 5).unwrap();
        let mut dec = OpusDecoder::new(16_000).unwrap();
        let signal = crate::testkit::speech(16_000, 16_000);
        let mut packet = [0u8; 1500];
        let mut out = Vec::new();
        for frame in signal.chunks(320).take(40) {
            let n = enc.encode(frame, &mut packet).unwrap();
            out.clear();
            dec.decode(&packet[..n], &mut out).unwrap();
        }
        out.clear();
        dec.run(None, 320, false, &mut out).unwrap();
        let peak = out.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(
            peak > 30_000,
            "libopus PLC peak {peak}: PLC may be usable now"
        );
    }

    #[test]
    fn lbrr_flag_is_read_from_silk_packets() {
        let mut enc = OpusEncoder::new(16_000, 1, Application::Voip, 24_000, 5).unwrap();
        enc.set_fec(true, 20).unwrap();
        let signal = crate::testkit::speech(16_000, 16_000);
        let mut packet = [0u8; 1500];
        let mut with_lbrr = 0;
        for frame in signal.chunks(320) {
            let n = enc.encode(frame, &mut packet).unwrap();
            with_lbrr += usize::from(has_lbrr(&packet[..n]));
        }
        assert!(with_lbrr > 10, "{with_lbrr} of 50 speech packets carry FEC");
        assert!(!has_lbrr(&[0xfc, 0xff])); // CELT-only
        assert!(!has_lbrr(&[]));
    }
}
