//! Writing classic pcap files of UDP datagrams over Ethernet/IPv4, for the
//! fixtures the project generates and for tools that record what they send.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Writes a microsecond-resolution, little-endian pcap with Ethernet framing.
pub struct PcapWriter<W: Write> {
    out: W,
    frame: Vec<u8>,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0])?;
        out.write_all(&[0; 8])?; // thiszone, sigfigs
        out.write_all(&65_535u32.to_le_bytes())?;
        out.write_all(&1u32.to_le_bytes())?; // LINKTYPE_ETHERNET
        Ok(Self {
            out,
            frame: Vec::with_capacity(1600),
        })
    }

    /// Appends one IPv4 UDP datagram captured at `time` (since the epoch).
    /// Only IPv4 endpoints are supported; IPv6 ones are an error.
    pub fn write_udp(
        &mut self,
        time: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> io::Result<()> {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "only IPv4 endpoints",
            ));
        };
        let udp_len = 8 + payload.len();
        let ip_len = 20 + udp_len;
        let ip_len16 = u16::try_from(ip_len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "datagram too large"))?;
        let f = &mut self.frame;
        f.clear();
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let ip_start = f.len();
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&ip_len16.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&s.octets());
        f.extend_from_slice(&d.octets());
        let sum = checksum(&f[ip_start..ip_start + 20]);
        f[ip_start + 10..ip_start + 12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&src.port().to_be_bytes());
        f.extend_from_slice(&dst.port().to_be_bytes());
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]); // UDP checksum optional over IPv4
        f.extend_from_slice(payload);
        let secs = u32::try_from(time.as_secs()).unwrap_or(u32::MAX);
        self.out.write_all(&secs.to_le_bytes())?;
        self.out.write_all(&time.subsec_micros().to_le_bytes())?;
        let len = (f.len() as u32).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&len)?;
        self.out.write_all(f)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::net::udp_in_frame;
    use crate::capture::reader::CaptureReader;

    #[test]
    fn written_datagrams_read_back() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let src: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let dst: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        w.write_udp(Duration::from_micros(1_500_000), src, dst, b"abc")
            .unwrap();
        let bytes = w.into_inner();
        let mut r = CaptureReader::new(&bytes[..]).unwrap();
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!(rec.time, Duration::from_micros(1_500_000));
        let udp = udp_in_frame(rec.linktype, rec.data).unwrap();
        assert_eq!((udp.src, udp.dst, udp.payload), (src, dst, &b"abc"[..]));
        assert!(r.next_record().unwrap().is_none());
    }
}
