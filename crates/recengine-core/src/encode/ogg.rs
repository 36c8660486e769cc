//! Ogg pages (RFC 3533): segment tables, granule positions, page sequence
//! numbers and the CRC-32 (polynomial 0x04c11db7, no reflection); and
//! [`packets`], the packets of a stream read back.

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut j = 0;
        while j < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04c1_1db7
            } else {
                r << 1
            };
            j += 1;
        }
        t[i] = r;
        i += 1;
    }
    t
}

static CRC: [u32; 256] = crc_table();

/// Ogg's CRC-32 of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    data.iter().fold(0u32, |crc, &b| {
        (crc << 8) ^ CRC[((crc >> 24) as u8 ^ b) as usize]
    })
}

/// Collects packets into pages of one logical stream.
#[derive(Debug)]
pub struct OggPageWriter {
    serial: u32,
    sequence: u32,
    /// Lacing values and bytes of the packets on the page being built.
    lacing: Vec<u8>,
    body: Vec<u8>,
    granule: u64,
    packets_on_page: usize,
}

impl OggPageWriter {
    pub fn new(serial: u32) -> Self {
        Self {
            serial,
            sequence: 0,
            lacing: Vec::with_capacity(255),
            body: Vec::with_capacity(8192),
            granule: 0,
            packets_on_page: 0,
        }
    }

    /// Adds a packet ending at `granule`. Packets never span pages here: a
    /// page is emitted first if this packet would not fit in its table.
    pub fn add_packet(&mut self, packet: &[u8], granule: u64, out: &mut Vec<u8>) {
        let segments = packet.len() / 255 + 1;
        if self.lacing.len() + segments > 255 {
            self.flush_page(false, out);
        }
        let mut left = packet.len();
        while left >= 255 {
            self.lacing.push(255);
            left -= 255;
        }
        self.lacing.push(left as u8);
        self.body.extend_from_slice(packet);
        self.granule = granule;
        self.packets_on_page += 1;
    }

    /// Sets the granule position of the page being built (the end of the
    /// stream may end before the last packet's nominal end).
    pub fn set_granule(&mut self, granule: u64) {
        self.granule = granule;
    }

    /// Packets waiting for a page.
    pub fn pending(&self) -> usize {
        self.packets_on_page
    }

    /// Writes the current page (if it has packets, or `eos` is requested).
    pub fn flush_page(&mut self, eos: bool, out: &mut Vec<u8>) {
        if self.packets_on_page == 0 && !eos {
            return;
        }
        let start = out.len();
        out.extend_from_slice(b"OggS");
        out.push(0);
        let mut flags = 0u8;
        if self.sequence == 0 {
            flags |= 0x02; // beginning of stream
        }
        if eos {
            flags |= 0x04;
        }
        out.push(flags);
        out.extend_from_slice(&self.granule.to_le_bytes());
        out.extend_from_slice(&self.serial.to_le_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // CRC placeholder
        out.push(self.lacing.len() as u8);
        out.extend_from_slice(&self.lacing);
        out.extend_from_slice(&self.body);
        let crc = crc32(&out[start..]);
        out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
        self.sequence += 1;
        self.lacing.clear();
        self.body.clear();
        self.packets_on_page = 0;
    }

    /// Writes a header packet on a page of its own (granule 0).
    pub fn header_page(&mut self, packet: &[u8], out: &mut Vec<u8>) {
        self.add_packet(packet, 0, out);
        self.flush_page(false, out);
    }
}

/// The packets of one Ogg stream held in memory, in order (page CRCs
/// are not checked); the error names the byte where the framing breaks.
pub fn packets(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let cut = || format!("an Ogg page cut short at byte {at}");
        let header = bytes.get(at..at + 27).ok_or_else(cut)?;
        if &header[..4] != b"OggS" {
            return Err(format!("no Ogg page at byte {at}"));
        }
        let segments = usize::from(header[26]);
        let table = bytes.get(at + 27..at + 27 + segments).ok_or_else(cut)?;
        let mut body = at + 27 + segments;
        for &lace in table {
            let lace = usize::from(lace);
            current.extend_from_slice(bytes.get(body..body + lace).ok_or_else(cut)?);
            body += lace;
            if lace < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        at = body;
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_known_input() {
        // CRC-32/MPEG-2 style (poly 04c11db7, init 0, no reflection, no xorout).
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0x89a1_897f);
    }

    #[test]
    fn pages_split_before_the_segment_table_overflows() {
        let mut w = OggPageWriter::new(7);
        let mut out = Vec::new();
        for i in 0..3u64 {
            w.add_packet(&[0u8; 40_000], i * 960, &mut out);
        }
        w.flush_page(true, &mut out);
        let pages = out.windows(4).filter(|w| w == b"OggS").count();
        assert_eq!(pages, 3, "157 segments each: no two fit one page");
    }
}
