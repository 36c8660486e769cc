//! Link layer → IP → UDP, enough to pull RTP out of captures: Ethernet
//! (with 802.1Q/QinQ tags), Linux cooked capture v1 and v2, raw IP, BSD
//! loopback; IPv4 (non-first fragments are skipped) and IPv6 (extension
//! headers walked).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A UDP datagram found in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: &'a [u8],
}

const LINKTYPE_NULL: u32 = 0;
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_LOOP: u32 = 108;
const LINKTYPE_LINUX_SLL: u32 = 113;
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;
const LINKTYPE_LINUX_SLL2: u32 = 276;

/// The UDP datagram in a frame, if it carries one.
pub fn udp_in_frame(linktype: u32, frame: &[u8]) -> Option<UdpDatagram<'_>> {
    let (ethertype, ip) = match linktype {
        LINKTYPE_ETHERNET => {
            let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
            let mut offset = 14;
            while ethertype == 0x8100 || ethertype == 0x88a8 {
                ethertype = u16::from_be_bytes([*frame.get(offset + 2)?, *frame.get(offset + 3)?]);
                offset += 4;
            }
            (ethertype, frame.get(offset..)?)
        }
        LINKTYPE_LINUX_SLL => (
            u16::from_be_bytes([*frame.get(14)?, *frame.get(15)?]),
            frame.get(16..)?,
        ),
        LINKTYPE_LINUX_SLL2 => (
            u16::from_be_bytes([*frame.first()?, *frame.get(1)?]),
            frame.get(20..)?,
        ),
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let family = frame.get(..4)?;
            let v = u32::from_le_bytes([family[0], family[1], family[2], family[3]]);
            let v = if v > 0xffff { v.swap_bytes() } else { v };
            let ethertype = if v == 2 { 0x0800 } else { 0x86dd };
            (ethertype, frame.get(4..)?)
        }
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => match frame.first()? >> 4 {
            4 => (0x0800, frame),
            6 => (0x86dd, frame),
            _ => return None,
        },
        _ => return None,
    };
    match ethertype {
        0x0800 => udp_in_ipv4(ip),
        0x86dd => udp_in_ipv6(ip),
        _ => None,
    }
}

fn udp_in_ipv4(ip: &[u8]) -> Option<UdpDatagram<'_>> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let frag_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    if ip[9] != 17 || frag_offset != 0 || ihl < 20 {
        return None;
    }
    // Captures with segmentation offload record total length 0; trust the frame then.
    let end = if total >= ihl {
        total.min(ip.len())
    } else {
        ip.len()
    };
    let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    udp(src, dst, ip.get(ihl..end)?)
}

fn udp_in_ipv6(ip: &[u8]) -> Option<UdpDatagram<'_>> {
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let mut next = ip[6];
    let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?));
    let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?));
    let end = (40 + payload_len).min(ip.len());
    let mut offset = 40;
    // Hop-by-hop, routing, destination options; a fragment header ends it.
    loop {
        match next {
            17 => break,
            0 | 43 | 60 => {
                let h = ip.get(offset..offset + 2)?;
                next = h[0];
                offset += (usize::from(h[1]) + 1) * 8;
            }
            _ => return None,
        }
    }
    udp(src, dst, ip.get(offset..end)?)
}

fn udp(src: IpAddr, dst: IpAddr, seg: &[u8]) -> Option<UdpDatagram<'_>> {
    if seg.len() < 8 {
        return None;
    }
    let sport = u16::from_be_bytes([seg[0], seg[1]]);
    let dport = u16::from_be_bytes([seg[2], seg[3]]);
    let len = usize::from(u16::from_be_bytes([seg[4], seg[5]]));
    let end = if len >= 8 {
        len.min(seg.len())
    } else {
        seg.len()
    };
    Some(UdpDatagram {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        payload: &seg[8..end],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_vlan_ipv4_udp() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0, 1, 0x08, 0x00]);
        let ip_start = f.len();
        f.extend_from_slice(&[
            0x45, 0, 0, 31, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f.extend_from_slice(&[0x13, 0x88, 0x17, 0x70, 0, 11, 0, 0, 0xaa, 0xbb, 0xcc]);
        assert_eq!(f.len() - ip_start, 31);
        let d = udp_in_frame(1, &f).unwrap();
        assert_eq!(d.src, "10.0.0.1:5000".parse().unwrap());
        assert_eq!(d.dst, "10.0.0.2:6000".parse().unwrap());
        assert_eq!(d.payload, &[0xaa, 0xbb, 0xcc]);
        // Truncated frames are ignored, not a panic.
        for cut in 0..f.len() {
            let _ = udp_in_frame(1, &f[..cut]);
        }
    }
}
