//! pcap/pcapng reader, link/IP/UDP decoding and the stream finder on
//! arbitrary files: errors are fine, panics are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recengine::capture::net::udp_in_frame;
use recengine::capture::reader::CaptureReader;
use recengine::capture::streams::StreamFinder;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = CaptureReader::new(data) else {
        return;
    };
    let mut finder = StreamFinder::new(vec![5004], false);
    for _ in 0..10_000 {
        match reader.next_record() {
            Ok(Some(rec)) => {
                if let Some(udp) = udp_in_frame(rec.linktype, rec.data) {
                    finder.observe(rec.time, udp.src, udp.dst, udp.payload);
                }
            }
            _ => break,
        }
    }
    for s in finder.streams() {
        let _ = finder.payload_map(&s, &[]);
    }
});
