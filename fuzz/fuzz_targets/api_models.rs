//! The control API's request models on arbitrary JSON bytes: parsing and
//! the engine's validation must never panic, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recengine::engine::model::{ActionRequest, CreateCallRequest, LegRequest, RecordingRequest};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = serde_json::from_str::<CreateCallRequest>(text);
    let _ = serde_json::from_str::<LegRequest>(text);
    let _ = serde_json::from_str::<RecordingRequest>(text);
    let _ = serde_json::from_str::<ActionRequest>(text);
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = serde_path_to_error::deserialize::<_, CreateCallRequest>(v);
    }
    let _ = recengine::ids::is_valid_id(text);
    let _ = recengine::timefmt::parse_rfc3339(text);
    let _ = recengine::storage_path::check_pattern(text);
});
