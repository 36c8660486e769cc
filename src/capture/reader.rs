//! pcap (microsecond and nanosecond, either byte order) and pcapng (section
//! header, interface description, enhanced and simple packet blocks) readers
//! over any `Read`, one packet at a time into a reused buffer.

use std::io::{ErrorKind, Read};
use std::time::Duration;

use super::CaptureError;

/// Largest record accepted; anything larger is a corrupt length field.
const MAX_RECORD: u32 = 256 << 20;

/// One captured frame.
#[derive(Debug)]
pub struct Record<'a> {
    /// Capture time since the Unix epoch.
    pub time: Duration,
    /// Link-layer type (LINKTYPE_* numbers).
    pub linktype: u32,
    pub data: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: u32,
    /// Timestamp units per second.
    ticks_per_second: u64,
}

enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        linktype: u32,
    },
    PcapNg {
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
}

/// Reads records one at a time.
pub struct CaptureReader<R> {
    input: R,
    format: Format,
    buf: Vec<u8>,
}

fn u16_at(b: &[u8], big: bool) -> u16 {
    let a = [b[0], b[1]];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

fn u32_at(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` on a clean end of input
/// before the first byte.
fn read_full(
    input: &mut impl Read,
    buf: &mut [u8],
    what: &'static str,
) -> Result<bool, CaptureError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(CaptureError::Truncated(what)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Reads exactly `len` bytes into `buf` (replacing its content), growing
/// the buffer only as data actually arrives: a record header that lies
/// about its length costs no more memory than the file holds.
fn read_exactly(
    input: &mut impl Read,
    buf: &mut Vec<u8>,
    len: usize,
    what: &'static str,
) -> Result<(), CaptureError> {
    buf.clear();
    input.take(len as u64).read_to_end(buf)?;
    if buf.len() < len {
        return Err(CaptureError::Truncated(what));
    }
    Ok(())
}

impl<R: Read> CaptureReader<R> {
    pub fn new(mut input: R) -> Result<Self, CaptureError> {
        let mut magic = [0u8; 4];
        if !read_full(&mut input, &mut magic, "file header")? {
            return Err(CaptureError::Truncated("file header"));
        }
        let format = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0xa1, 0xb2, 0x3c, 0x4d] => {
                let big_endian = magic[0] == 0xa1;
                let nanos = magic == [0x4d, 0x3c, 0xb2, 0xa1] || magic == [0xa1, 0xb2, 0x3c, 0x4d];
                let mut rest = [0u8; 20];
                if !read_full(&mut input, &mut rest, "file header")? {
                    return Err(CaptureError::Truncated("file header"));
                }
                Format::Pcap {
                    big_endian,
                    nanos,
                    linktype: u32_at(&rest[16..20], big_endian) & 0x0fff_ffff,
                }
            }
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                // Section header: length, then byte-order magic.
                let mut head = [0u8; 8];
                if !read_full(&mut input, &mut head, "section header")? {
                    return Err(CaptureError::Truncated("section header"));
                }
                let big_endian = head[4..8] == [0x1a, 0x2b, 0x3c, 0x4d];
                let len = u32_at(&head[0..4], big_endian);
                if !(28..=MAX_RECORD).contains(&len) || !len.is_multiple_of(4) {
                    return Err(CaptureError::BadBlock {
                        block_type: 0x0a0d0d0a,
                        len,
                    });
                }
                let mut skip = Vec::new();
                read_exactly(&mut input, &mut skip, len as usize - 12, "section header")?;
                Format::PcapNg {
                    big_endian,
                    interfaces: Vec::new(),
                }
            }
            other => return Err(CaptureError::BadMagic(other)),
        };
        Ok(Self {
            input,
            format,
            buf: Vec::with_capacity(65_536),
        })
    }

    /// The next packet, or `None` at the end of the capture.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, CaptureError> {
        match &mut self.format {
            Format::Pcap {
                big_endian,
                nanos,
                linktype,
            } => {
                let (big, nanos, linktype) = (*big_endian, *nanos, *linktype);
                let mut head = [0u8; 16];
                if !read_full(&mut self.input, &mut head, "packet header")? {
                    return Ok(None);
                }
                let secs = u64::from(u32_at(&head[0..4], big));
                let frac = u64::from(u32_at(&head[4..8], big));
                let incl = u32_at(&head[8..12], big);
                if incl > MAX_RECORD {
                    return Err(CaptureError::Oversized(incl));
                }
                read_exactly(&mut self.input, &mut self.buf, incl as usize, "packet")?;
                let sub = if nanos { frac } else { frac * 1000 };
                Ok(Some(Record {
                    time: Duration::from_secs(secs) + Duration::from_nanos(sub.min(999_999_999)),
                    linktype,
                    data: &self.buf,
                }))
            }
            Format::PcapNg { .. } => self.next_pcapng(),
        }
    }

    fn next_pcapng(&mut self) -> Result<Option<Record<'_>>, CaptureError> {
        loop {
            let Format::PcapNg {
                big_endian,
                interfaces,
            } = &mut self.format
            else {
                return Ok(None);
            };
            let mut head = [0u8; 8];
            if !read_full(&mut self.input, &mut head, "block header")? {
                return Ok(None);
            }
            let mut big = *big_endian;
            let block_type = u32_at(&head[0..4], big);
            let mut len = u32_at(&head[4..8], big);
            if block_type == 0x0a0d_0d0a {
                // A new section may change byte order.
                let mut bom = [0u8; 4];
                if !read_full(&mut self.input, &mut bom, "section header")? {
                    return Err(CaptureError::Truncated("section header"));
                }
                big = bom == [0x1a, 0x2b, 0x3c, 0x4d];
                *big_endian = big;
                interfaces.clear();
                len = u32_at(&head[4..8], big);
                if !(28..=MAX_RECORD).contains(&len) || !len.is_multiple_of(4) {
                    return Err(CaptureError::BadBlock { block_type, len });
                }
                read_exactly(
                    &mut self.input,
                    &mut self.buf,
                    len as usize - 12,
                    "section header",
                )?;
                continue;
            }
            if !(12..=MAX_RECORD).contains(&len) || !len.is_multiple_of(4) {
                return Err(CaptureError::BadBlock { block_type, len });
            }
            read_exactly(&mut self.input, &mut self.buf, len as usize - 8, "block")?;
            let body = &self.buf[..self.buf.len() - 4];
            match block_type {
                1 => {
                    // Interface description: linktype, then options.
                    if body.len() < 8 {
                        return Err(CaptureError::Truncated("interface description"));
                    }
                    let linktype = u32::from(u16_at(&body[0..2], big));
                    let ticks_per_second = if_tsresol(&body[8..], big);
                    interfaces.push(Interface {
                        linktype,
                        ticks_per_second,
                    });
                }
                6 => {
                    if body.len() < 20 {
                        return Err(CaptureError::Truncated("enhanced packet block"));
                    }
                    let iface = u32_at(&body[0..4], big) as usize;
                    let Some(&Interface {
                        linktype,
                        ticks_per_second,
                    }) = interfaces.get(iface)
                    else {
                        continue;
                    };
                    let ts = (u64::from(u32_at(&body[4..8], big)) << 32)
                        | u64::from(u32_at(&body[8..12], big));
                    let caplen = u32_at(&body[12..16], big) as usize;
                    let end = (20 + caplen).min(body.len());
                    let nanos =
                        u128::from(ts) * 1_000_000_000 / u128::from(ticks_per_second.max(1));
                    let time = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                    return Ok(Some(Record {
                        time,
                        linktype,
                        data: &self.buf[20..end],
                    }));
                }
                3 => {
                    // Simple packet block: no timestamp; interface 0.
                    let Some(&Interface { linktype, .. }) = interfaces.first() else {
                        continue;
                    };
                    if body.len() < 4 {
                        continue;
                    }
                    let orig = u32_at(&body[0..4], big) as usize;
                    let end = (4 + orig).min(body.len());
                    return Ok(Some(Record {
                        time: Duration::ZERO,
                        linktype,
                        data: &self.buf[4..end],
                    }));
                }
                _ => {} // statistics, name resolution, custom blocks
            }
        }
    }
}

/// Timestamp resolution from interface options (`if_tsresol`, code 9);
/// microseconds when absent.
fn if_tsresol(mut options: &[u8], big: bool) -> u64 {
    while options.len() >= 4 {
        let code = u16_at(&options[0..2], big);
        let len = usize::from(u16_at(&options[2..4], big));
        let padded = len.div_ceil(4) * 4;
        if code == 0 || options.len() < 4 + len {
            break;
        }
        if code == 9 && len >= 1 {
            let v = options[4];
            let exp = u32::from(v & 0x7f);
            return if v & 0x80 != 0 {
                1u64.checked_shl(exp).unwrap_or(1_000_000)
            } else {
                10u64.checked_pow(exp).unwrap_or(1_000_000)
            };
        }
        options = &options[(4 + padded).min(options.len())..];
    }
    1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(matches!(
            CaptureReader::new(&b"hello world"[..]),
            Err(CaptureError::BadMagic(_))
        ));
        assert!(matches!(
            CaptureReader::new(&b"\xd4\xc3"[..]),
            Err(CaptureError::Truncated(_))
        ));
    }

    #[test]
    fn truncated_packet_is_an_error_not_a_panic() {
        let mut file = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&65535u32.to_le_bytes());
        file.extend_from_slice(&1u32.to_le_bytes());
        // record header claiming 100 bytes, then 3
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&100u32.to_le_bytes());
        file.extend_from_slice(&100u32.to_le_bytes());
        file.extend_from_slice(&[1, 2, 3]);
        let mut r = CaptureReader::new(&file[..]).unwrap();
        assert!(matches!(r.next_record(), Err(CaptureError::Truncated(_))));
    }
}
