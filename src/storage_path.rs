//! Recording paths from `storage.path_pattern`: placeholders filled with
//! sanitized values, so that whatever an id, tenant or label contains the
//! result stays inside the storage directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest;

const PLACEHOLDERS: [&str; 10] = [
    "yyyy",
    "mm",
    "dd",
    "hh",
    "recording_id",
    "call_id",
    "customer_id",
    "ext",
    "caller_label",
    "callee_label",
];

/// The `{customer_id}` of the admin's own recordings: customer ids start
/// with a letter or digit, so no customer can have it.
pub const ADMIN_CUSTOMER_SEGMENT: &str = "_admin";

/// Checks a pattern: known placeholders only, relative, no `..`, ends with
/// `.{ext}`, names `{customer_id}` and `{recording_id}` (recording ids are
/// per customer: without the customer two customers' `rec-1` would meet).
pub fn check_pattern(p: &str) -> Result<(), String> {
    if p.starts_with('/') || p.contains('\\') {
        return Err("must be a relative path with / separators".into());
    }
    if !p.ends_with(".{ext}") || !p.contains("{recording_id}") || !p.contains("{customer_id}") {
        return Err(
            "must contain {customer_id} and {recording_id} and end with .{ext} (recording ids are per customer), e.g. \"{customer_id}/{yyyy}/{mm}/{dd}/{recording_id}.{ext}\""
                .into(),
        );
    }
    if p.split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("must not contain empty, . or .. segments".into());
    }
    let mut rest = p;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').ok_or("has an unclosed {")? + open;
        let name = &rest[open + 1..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} (known: {})",
                PLACEHOLDERS.join(", ")
            ));
        }
        rest = &rest[close + 1..];
    }
    Ok(())
}

/// A value made safe for one path segment.
pub fn sanitize(v: &str) -> String {
    let mut s: String = v
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    while s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    if s.is_empty() {
        "_".into()
    } else {
        s.replace("..", "__")
    }
}

/// The file name part of a recording id: the id itself when it is a safe
/// path segment of at most 64 characters; otherwise its sanitized first 47
/// characters, `-`, and 16 hex digits of its SHA-256, so that two ids never
/// share a file however they differ (`aaa…a-acme` and `aaa…a-globex`, or
/// `a:b` and `a_b`).
pub fn unique_segment(id: &str) -> String {
    let safe = sanitize(id);
    if safe == id && id.len() <= 64 {
        return safe;
    }
    let digest = sha2::Sha256::digest(id.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let prefix: String = safe.chars().take(47).collect();
    format!("{prefix}-{hex}")
}

/// Fills the pattern; `start` is the recording's start (Unix time).
pub fn render(
    storage: &Path,
    pattern: &str,
    start: Duration,
    values: &HashMap<&str, String>,
) -> PathBuf {
    let (y, m, d) = crate::timefmt::civil_from_days((start.as_secs() / 86_400) as i64);
    let hh = start.as_secs() % 86_400 / 3600;
    let mut out = pattern.to_owned();
    let dates = [
        ("yyyy", format!("{y:04}")),
        ("mm", format!("{m:02}")),
        ("dd", format!("{d:02}")),
        ("hh", format!("{hh:02}")),
    ];
    for (k, v) in dates {
        out = out.replace(&format!("{{{k}}}"), &v);
    }
    for k in PLACEHOLDERS {
        let v = match values.get(k) {
            None => "_".to_owned(),
            Some(v) if k == "recording_id" => unique_segment(v),
            Some(v) => sanitize(v),
        };
        out = out.replace(&format!("{{{k}}}"), &v);
    }
    storage.join(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_ids_never_share_a_file_name() {
        let long = "X".repeat(64);
        let ids = [
            format!("{long}-acme"),
            format!("{long}-globex"),
            "a:b".to_owned(),
            "a_b".to_owned(),
            "rec-1".to_owned(),
        ];
        let names: std::collections::HashSet<String> =
            ids.iter().map(|i| unique_segment(i)).collect();
        assert_eq!(names.len(), ids.len(), "{names:?}");
        assert_eq!(unique_segment("rec-1"), "rec-1");
        assert!(names.iter().all(|n| n.len() <= 64 && sanitize(n) == *n));
    }

    #[test]
    fn patterns_are_checked() {
        assert!(check_pattern("{customer_id}/{yyyy}/{mm}/{dd}/{recording_id}.{ext}").is_ok());
        assert!(
            check_pattern("{customer_id}/{call_id}/{caller_label}-{recording_id}.{ext}").is_ok()
        );
        for bad in [
            "/abs/{recording_id}.{ext}",
            "{recording_id}.wav",
            "a/../{recording_id}.{ext}",
            "{nope}/{recording_id}.{ext}",
            "{call_id}.{ext}",
            "a//{recording_id}.{ext}",
            // Without the customer two customers' `rec-1` would meet.
            "{yyyy}/{mm}/{dd}/{recording_id}.{ext}",
        ] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_cannot_escape_the_directory() {
        let mut v = HashMap::new();
        v.insert("recording_id", "rec-1".to_owned());
        v.insert("ext", "wav".to_owned());
        v.insert("customer_id", "../../etc".to_owned());
        v.insert("caller_label", "Alice / Bob\n".to_owned());
        let p = render(
            Path::new("/store"),
            "{customer_id}/{caller_label}/{recording_id}.{ext}",
            Duration::ZERO,
            &v,
        );
        assert_eq!(p, PathBuf::from("/store/_.____etc/Alice___Bob_/rec-1.wav"));
        assert!(p.components().all(|c| matches!(
            c,
            std::path::Component::RootDir | std::path::Component::Normal(_)
        )));
        assert_eq!(p.components().count(), 5, "root, store, two segments, file");
        let p = render(
            Path::new("/s"),
            "{yyyy}/{mm}/{dd}/{hh}/{customer_id}/{callee_label}/{recording_id}.{ext}",
            Duration::from_secs(1_795_306_521),
            &v,
        );
        assert_eq!(p, PathBuf::from("/s/2026/11/22/00/_.____etc/_/rec-1.wav"));
    }
}
