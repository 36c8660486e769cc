//! A zero-copy view of an RTP packet (RFC 3550 §5.1).
//!
//! [`RtpPacket::parse`] validates the fixed header, the CSRC list, the header
//! extension and the padding against the datagram length, and returns slices
//! into the caller's buffer. Nothing is allocated, so ingest can call it for
//! every datagram.

use thiserror::Error;

/// Why a datagram is not a usable RTP packet. Each is counted and the datagram
/// dropped; none is fatal to the leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RtpError {
    #[error("datagram of {0} bytes is shorter than the 12-byte RTP header")]
    TooShort(usize),
    #[error("RTP version {0} (only version 2 exists)")]
    BadVersion(u8),
    #[error("CSRC count {count} runs past the end of a {len}-byte datagram")]
    CsrcPastEnd { count: u8, len: usize },
    #[error("header extension runs past the end of the datagram")]
    ExtensionPastEnd,
    #[error("padding of {padding} bytes is longer than the {available}-byte payload")]
    BadPadding { padding: usize, available: usize },
    #[error("payload type {0} is an RTCP packet type")]
    Rtcp(u8),
}

/// A parsed RTP packet borrowing the datagram it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub(crate) csrc: &'a [u8],
    /// Header extension as (profile, data), data excluding its 4-byte header.
    pub extension: Option<(u16, &'a [u8])>,
    pub payload: &'a [u8],
    /// Padding bytes removed from the end of the payload.
    pub padding: u8,
}

/// True when the second byte of a datagram names an RTCP packet type
/// (SR 200 … APP 204, and the feedback types up to 207), which is how RTP and
/// RTCP are told apart when they share a port (RFC 5761 §4).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && (200..=207).contains(&datagram[1]) && datagram[0] >> 6 == 2
}

impl<'a> RtpPacket<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < 12 {
            return Err(RtpError::TooShort(buf.len()));
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        if is_rtcp(buf) {
            return Err(RtpError::Rtcp(buf[1]));
        }
        let has_padding = buf[0] & 0x20 != 0;
        let has_extension = buf[0] & 0x10 != 0;
        let csrc_count = buf[0] & 0x0f;
        let marker = buf[1] & 0x80 != 0;
        let payload_type = buf[1] & 0x7f;
        let sequence = u16::from_be_bytes([buf[2], buf[3]]);
        let timestamp = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);

        let mut offset = 12 + 4 * usize::from(csrc_count);
        if offset > buf.len() {
            return Err(RtpError::CsrcPastEnd {
                count: csrc_count,
                len: buf.len(),
            });
        }
        let csrc = &buf[12..offset];

        let extension = if has_extension {
            if offset + 4 > buf.len() {
                return Err(RtpError::ExtensionPastEnd);
            }
            let profile = u16::from_be_bytes([buf[offset], buf[offset + 1]]);
            let words = usize::from(u16::from_be_bytes([buf[offset + 2], buf[offset + 3]]));
            let start = offset + 4;
            let end = start + 4 * words;
            if end > buf.len() {
                return Err(RtpError::ExtensionPastEnd);
            }
            offset = end;
            Some((profile, &buf[start..end]))
        } else {
            None
        };

        let mut end = buf.len();
        let mut padding = 0u8;
        if has_padding {
            let available = end - offset;
            // A count of 0 is out of spec (it includes itself); like the
            // rtp crate, read it as "no padding" and keep the audio.
            let pad = usize::from(buf[end - 1]);
            if pad > available {
                return Err(RtpError::BadPadding {
                    padding: pad,
                    available,
                });
            }
            end -= pad;
            padding = buf[buf.len() - 1];
        }

        Ok(Self {
            marker,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            csrc,
            extension,
            payload: &buf[offset..end],
            padding,
        })
    }

    /// The contributing sources, in order.
    pub fn csrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.csrc
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(first: u8, second: u8) -> Vec<u8> {
        let mut v = vec![
            first, second, 0x12, 0x34, 0, 0, 0x01, 0x40, 0xde, 0xad, 0xbe, 0xef,
        ];
        v.truncate(12);
        v
    }

    #[test]
    fn parses_plain_packet() {
        let mut buf = header(0x80, 0x80);
        buf.extend_from_slice(&[1, 2, 3]);
        let p = RtpPacket::parse(&buf).unwrap();
        assert!(p.marker);
        assert_eq!(p.payload_type, 0);
        assert_eq!(p.sequence, 0x1234);
        assert_eq!(p.timestamp, 320);
        assert_eq!(p.ssrc, 0xdead_beef);
        assert_eq!(p.payload, &[1, 2, 3]);
        assert_eq!(p.csrcs().len(), 0);
    }

    #[test]
    fn parses_csrc_extension_and_padding() {
        let mut buf = header(0x80 | 0x20 | 0x10 | 2, 8);
        buf.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // two CSRCs
        buf.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // one-word extension
        buf.extend_from_slice(&[7, 7, 0, 0, 3]); // payload 7 7 + 3 bytes padding
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(p.extension, Some((0xbede, &[9u8, 9, 9, 9][..])));
        assert_eq!(p.payload, &[7, 7]);
        assert_eq!(p.padding, 3);
    }

    #[test]
    fn malformed_packets_are_typed_errors() {
        let mut csrc_past = header(0x8f, 0);
        csrc_past.extend_from_slice(&[0; 8]);
        let mut ext_past = header(0x90, 0);
        ext_past.extend_from_slice(&[0xbe, 0xde, 0, 5, 1, 2]);
        let ext_head_past = {
            let mut v = header(0x90, 0);
            v.extend_from_slice(&[0xbe]);
            v
        };
        let mut pad_long = header(0xa0, 0);
        pad_long.extend_from_slice(&[1, 2, 9]);
        let rtcp = header(0x80, 200);
        let cases: Vec<(&str, Vec<u8>, RtpError)> = vec![
            ("empty", vec![], RtpError::TooShort(0)),
            ("truncated", vec![0x80, 0, 1], RtpError::TooShort(3)),
            ("version 1", header(0x40, 0), RtpError::BadVersion(1)),
            ("version 0", header(0x00, 0), RtpError::BadVersion(0)),
            (
                "csrc past end",
                csrc_past,
                RtpError::CsrcPastEnd { count: 15, len: 20 },
            ),
            ("extension past end", ext_past, RtpError::ExtensionPastEnd),
            (
                "extension header past end",
                ext_head_past,
                RtpError::ExtensionPastEnd,
            ),
            (
                "padding too long",
                pad_long,
                RtpError::BadPadding {
                    padding: 9,
                    available: 3,
                },
            ),
            ("rtcp", rtcp, RtpError::Rtcp(200)),
        ];
        for (name, buf, want) in cases {
            assert_eq!(RtpPacket::parse(&buf), Err(want), "{name}");
        }
    }

    #[test]
    fn zero_padding_count_keeps_the_payload() {
        let mut buf = header(0xa0, 0);
        buf.extend_from_slice(&[1, 2, 0]);
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!((p.payload, p.padding), (&[1u8, 2, 0][..], 0));
    }

    #[test]
    fn empty_payload_is_valid() {
        let buf = header(0x80, 0);
        assert_eq!(RtpPacket::parse(&buf).unwrap().payload, &[] as &[u8]);
    }
}
