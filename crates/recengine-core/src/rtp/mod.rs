//! RTP on the wire: a borrowed, allocation-free packet view ([`RtpPacket`]),
//! the per-leg payload-type map ([`PayloadMap`]), RFC 4733 telephone events
//! ([`dtmf`]) and RFC 3389 comfort noise.

pub mod dtmf;
mod packet;
mod payload;

pub use packet::{RtpError, RtpPacket, is_rtcp};
pub use payload::{Codec, MediaKind, PayloadMap, PayloadMapError};
