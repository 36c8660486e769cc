//! Offline input: pcap and pcapng files ([`reader`]), link/IP/UDP decoding
//! ([`net`]) and finding RTP streams in the UDP traffic ([`streams`]).

pub mod net;
pub mod reader;
pub mod streams;
pub mod writer;

use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CaptureError {
    #[error("not a pcap or pcapng file (magic {0:02x?})")]
    BadMagic([u8; 4]),
    #[error("capture is truncated inside a {0}")]
    Truncated(&'static str),
    #[error("pcapng block of type {block_type:#x} has invalid length {len}")]
    BadBlock { block_type: u32, len: u32 },
    #[error("packet record claims {0} bytes, more than the 256 MiB limit")]
    Oversized(u32),
    #[error("reading the capture: {0}")]
    Io(#[from] std::io::Error),
}
