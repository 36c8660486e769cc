//! Parser + jitter buffer + decoders, driven by operation sequences (see
//! `recengine::testkit::drive_leg_ops` for the input format). Invariants: no
//! panic, bounded memory, and contiguous output to the sink.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    recengine::testkit::drive_leg_ops(data);
});
