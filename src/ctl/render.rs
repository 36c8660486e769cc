//! How `recengine ctl` shows the API's answers as text: tables, a
//! recording's detail, and the value helpers they share.

use serde_json::Value;

use super::table;

/// A JSON value as table text (strings without quotes, null as empty).
pub(super) fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

pub(super) fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// Percent-encodes a path segment or query value.
pub(super) fn enc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn call_tables(v: &Value) -> String {
    let legs: Vec<Vec<String>> = list(&v["legs"])
        .iter()
        .map(|l| {
            vec![
                s(&l["leg_id"]),
                s(&l["role"]),
                s(&l["label"]),
                format!("{}:{}", s(&l["rtp"]["host"]), s(&l["rtp"]["port"])),
                s(&l["ingest"]["datagrams"]),
            ]
        })
        .collect();
    let mut out = table::render(&["leg", "role", "label", "rtp", "datagrams"], &legs);
    let recs: Vec<Vec<String>> = list(&v["recordings"])
        .iter()
        .map(|r| {
            vec![
                s(&r["recording_id"]),
                s(&r["status"]),
                s(&r["format"]),
                table::duration(r["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0),
            ]
        })
        .collect();
    if !recs.is_empty() {
        out.push('\n');
        out.push_str(&table::render(
            &["recording", "status", "format", "duration"],
            &recs,
        ));
    }
    out
}

pub(super) fn recording_detail(v: &Value) -> String {
    let mut rows = vec![
        ("recording", s(&v["recording_id"])),
        ("call", s(&v["call_id"])),
        ("status", s(&v["status"])),
        (
            "format",
            format!(
                "{} {} Hz {} {}",
                s(&v["format"]),
                s(&v["sample_rate"]),
                s(&v["channels"]),
                match v["bitrate_kbps"].as_u64() {
                    Some(b) if b > 0 => format!("{b} kbit/s"),
                    _ => String::new(),
                }
            )
            .trim_end()
            .to_owned(),
        ),
        ("participant", s(&v["participant"])),
        (
            "duration",
            table::duration(v["duration_seconds"].as_f64().unwrap_or(0.0)),
        ),
        (
            "size",
            v["file_size_bytes"]
                .as_u64()
                .map(table::bytes)
                .unwrap_or_default(),
        ),
        ("sha256", s(&v["checksum"]["value"])),
        ("started", s(&v["started_at"])),
        ("stopped", s(&v["stopped_at"])),
        ("completed", s(&v["completed_at"])),
    ];
    if let Some(r) = v["failure_reason"].as_str() {
        rows.push(("failure", r.to_owned()));
    }
    if v["recovered"] == true {
        rows.push(("recovered", "yes (repaired after a crash)".into()));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .filter(|(_, val)| !val.is_empty())
        .map(|(k, val)| format!("{k:<width$}  {val}\n"))
        .collect()
}

/// `calls`: one row per call.
pub(super) fn calls_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(&v["data"])
        .iter()
        .map(|c| {
            vec![
                s(&c["call_id"]),
                s(&c["status"]),
                s(&c["from"]),
                s(&c["to"]),
                list(&c["legs"]).len().to_string(),
                list(&c["recordings"]).len().to_string(),
                s(&c["created_at"]),
            ]
        })
        .collect();
    table::render(
        &[
            "call",
            "status",
            "from",
            "to",
            "legs",
            "recordings",
            "created",
        ],
        &rows,
    )
}

/// `list`: one row per recording, and the total.
pub(super) fn recordings_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(&v["data"])
        .iter()
        .map(|r| {
            vec![
                s(&r["recording_id"]),
                s(&r["call_id"]),
                s(&r["status"]),
                s(&r["format"]),
                table::duration(r["duration_seconds"].as_f64().unwrap_or(0.0)),
                r["file_size_bytes"]
                    .as_u64()
                    .map(table::bytes)
                    .unwrap_or_default(),
                s(&r["started_at"]),
            ]
        })
        .collect();
    let p = &v["pagination"];
    format!(
        "{}{} of {} recordings\n",
        table::render(
            &[
                "recording",
                "call",
                "status",
                "format",
                "duration",
                "size",
                "started"
            ],
            &rows
        ),
        rows.len(),
        s(&p["total"])
    )
}

/// `deliveries`: one row per webhook delivery.
/// `audit`: one row per record.
pub(super) fn audit_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(&v["data"])
        .iter()
        .map(|a| {
            vec![
                s(&a["seq"]),
                s(&a["at"]),
                s(&a["actor"]),
                s(&a["customer_id"]),
                s(&a["action"]),
                s(&a["call_id"]),
                s(&a["recording_id"]),
                s(&a["status"]),
                s(&a["peer"]),
                s(&a["detail"]),
            ]
        })
        .collect();
    table::render(
        &[
            "seq",
            "at",
            "actor",
            "customer",
            "action",
            "call",
            "recording",
            "status",
            "peer",
            "detail",
        ],
        &rows,
    )
}

/// `flows`: one row per call flow.
pub(super) fn flows_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(&v["data"])
        .iter()
        .map(|f| {
            let r = &f["recording"];
            vec![
                s(&f["call_flow_id"]),
                s(&f["name"]),
                s(&f["phone_number"]),
                s(&f["direction"]),
                if f["enabled"] == true { "yes" } else { "no" }.to_owned(),
                if r["format"].is_null() {
                    "default".to_owned()
                } else {
                    s(&r["format"])
                },
                s(&f["version"]),
            ]
        })
        .collect();
    table::render(
        &[
            "call_flow",
            "name",
            "number",
            "direction",
            "enabled",
            "format",
            "version",
        ],
        &rows,
    )
}

pub(super) fn deliveries_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(&v["data"])
        .iter()
        .map(|d| {
            vec![
                s(&d["delivery_id"]),
                s(&d["endpoint"]),
                s(&d["event"]),
                s(&d["event_id"]),
                s(&d["status"]),
                s(&d["attempts"]),
                s(&d["last_error"]).chars().take(60).collect(),
            ]
        })
        .collect();
    table::render(
        &[
            "delivery",
            "endpoint",
            "event",
            "event_id",
            "status",
            "attempts",
            "last_error",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_values_are_percent_encoded() {
        assert_eq!(enc("call-1.a_b~"), "call-1.a_b~");
        assert_eq!(enc("a/b c"), "a%2Fb%20c");
        assert_eq!(
            enc("2026-01-01T00:00:00+01:00"),
            "2026-01-01T00%3A00%3A00%2B01%3A00"
        );
    }
}
