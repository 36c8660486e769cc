//! Identifiers: one pattern for every id that comes from outside (call,
//! leg, recording, customer), so none can escape a directory or inject a
//! header; and random ids for what the engine names itself.

/// [`is_valid_id`] as a regular expression (for the OpenAPI document; it
/// cannot say "no `..`").
pub const ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$";

/// `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`: no slashes, no leading dot, no
/// control characters, so an id is safe in a path, a URL and a header.
pub fn is_valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && !id.contains("..")
}

/// A random id: `prefix` and 24 hex digits from the OS's random source.
pub fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    fill_random(&mut bytes);
    format!("{prefix}{}", crate::crypto::hex(&bytes))
}

/// Fills `buf` from /dev/urandom, falling back to a time-and-counter mix if
/// it cannot be read (ids stay unique, just not unpredictable).
pub fn fill_random(buf: &mut [u8]) {
    use std::io::Read;
    if let Ok(mut f) = std::fs::File::open("/dev/urandom")
        && f.read_exact(buf).is_ok()
    {
        return;
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut x = crate::timefmt::unix_now().as_nanos() as u64
        ^ COUNTER.fetch_add(0x9e37_79b9, Ordering::Relaxed);
    for b in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_pattern() {
        for ok in ["a", "call-1", "A.b_c-9", &"x".repeat(128)] {
            assert!(is_valid_id(ok), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "../etc",
            "a/b",
            "a..b",
            "a b",
            "a\\r\\nX: y",
            "é",
            &"x".repeat(129),
            "-a",
        ] {
            assert!(!is_valid_id(bad), "{bad}");
        }
        assert_ne!(random_id("c-"), random_id("c-"));
        assert!(is_valid_id(&random_id("rec-")));
    }
}
