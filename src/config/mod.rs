//! `engine.toml`: the schema, the defaults embedded in the binary, and
//! validation that reports every problem with its key and line.
//!
//! Every key has a default, so the daemon runs with no file at all. A file
//! only needs the keys it changes. Loading goes in three steps, each adding
//! its problems to one list so an operator sees all of them at once:
//! 1. syntax (toml_edit, with spans);
//! 2. shape: every key must exist in the schema (the serialized defaults)
//!    and have the same TOML type;
//! 3. values: ranges and allowed choices ([`Config::validate`]).

pub mod schema;

use std::path::Path;

use thiserror::Error;

pub use schema::{
    ApiSection, AuditSection, CatalogBackend, CatalogConfig, Channels, Config, EncryptionSection,
    EventsSection, Format, FormatDefaults, JitterSection, KekEntry, LogFormat, LogSection,
    NatsSection, NoticesSection, PauseBehavior, ReceivePathSetting, RecordingSection, Relatch,
    RtpSection, S3Section, SiprecSection, SiprecSourceEntry, StorageBackend, StorageSection,
    TenantEntry, TokenEntry, WebhookEntry, WorkersSection,
};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path (`rtp.port_min`), empty for syntax errors.
    pub key: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.key.is_empty()) {
            (Some(l), false) => write!(f, "line {l}: {}: {}", self.key, self.message),
            (Some(l), true) => write!(f, "line {l}: {}", self.message),
            (None, false) => write!(f, "{}: {}", self.key, self.message),
            (None, true) => write!(f, "{}", self.message),
        }
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} has {} problem(s):\n{}", .problems.len(), .problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: String,
        problems: Vec<Problem>,
    },
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|problems| ConfigError::Invalid {
            path: path.display().to_string(),
            problems,
        })
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Self, Vec<Problem>> {
        let lines = LineIndex::new(text);
        let doc = match toml_edit::Document::parse(text) {
            Ok(d) => d,
            Err(e) => {
                return Err(vec![Problem {
                    key: String::new(),
                    line: e.span().map(|s| lines.line_of(s.start)),
                    message: e.message().trim().to_owned(),
                }]);
            }
        };
        let mut problems = Vec::new();
        let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
        check_shape(doc.as_table(), &defaults, "", &lines, &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        let config: Config = match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => {
                return Err(vec![Problem {
                    key: String::new(),
                    line: e.span().map(|s| lines.line_of(s.start)),
                    message: e.message().trim().to_owned(),
                }]);
            }
        };
        for (key, message) in config.validate() {
            let line = find_key_line(doc.as_table(), &key, &lines);
            problems.push(Problem { key, line, message });
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }
}

fn type_name(item: &toml_edit::Item) -> &'static str {
    match item {
        toml_edit::Item::None => "nothing",
        toml_edit::Item::Table(_) => "a table",
        toml_edit::Item::ArrayOfTables(_) => "an array of tables",
        toml_edit::Item::Value(v) => match v {
            toml_edit::Value::String(_) => "a string",
            toml_edit::Value::Integer(_) => "an integer",
            toml_edit::Value::Float(_) => "a float",
            toml_edit::Value::Boolean(_) => "a boolean",
            toml_edit::Value::Datetime(_) => "a datetime",
            toml_edit::Value::Array(_) => "an array",
            toml_edit::Value::InlineTable(_) => "a table",
        },
    }
}

fn value_type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// Every key of `table` must exist in `schema` with the same type.
fn check_shape(
    table: &toml_edit::Table,
    schema: &toml::Table,
    prefix: &str,
    lines: &LineIndex,
    problems: &mut Vec<Problem>,
) {
    for (key, item) in table.iter() {
        let path = if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        };
        let line = table
            .key(key)
            .and_then(toml_edit::Key::span)
            .or_else(|| item.span())
            .map(|s| lines.line_of(s.start));
        let Some(expected) = schema.get(key) else {
            let known: Vec<&str> = schema.keys().map(String::as_str).collect();
            problems.push(Problem {
                key: path,
                line,
                message: format!("unknown key (expected one of: {})", known.join(", ")),
            });
            continue;
        };
        match (item, expected) {
            (toml_edit::Item::Table(t), toml::Value::Table(s)) => {
                check_shape(t, s, &path, lines, problems)
            }
            (toml_edit::Item::ArrayOfTables(arr), toml::Value::Array(_)) => {
                // Arrays of tables get their element schema from the
                // element type's defaults.
                let element = element_schema(&path);
                for (i, t) in arr.iter().enumerate() {
                    check_shape(t, &element, &format!("{path}.{i}"), lines, problems);
                }
            }
            (toml_edit::Item::Value(toml_edit::Value::InlineTable(t)), toml::Value::Table(s)) => {
                let t = t.clone().into_table();
                check_shape(&t, s, &path, lines, problems);
            }
            (item, expected) => {
                let got = type_name(item);
                let want = value_type_name(expected);
                // Integers are accepted where floats are expected.
                if got != want && !(got == "an integer" && want == "a float") {
                    problems.push(Problem {
                        key: path,
                        line,
                        message: format!("expected {want}, found {got}"),
                    });
                }
            }
        }
    }
}

/// The schema of one element of an array-of-tables key.
fn element_schema(path: &str) -> toml::Table {
    match path {
        "api.tokens" => toml::Table::try_from(TokenEntry::default()).unwrap_or_default(),
        "webhooks" => toml::Table::try_from(WebhookEntry::default()).unwrap_or_default(),
        "tenants" => toml::Table::try_from(TenantEntry::default()).unwrap_or_default(),
        "storage.encryption.keys" => toml::Table::try_from(KekEntry::default()).unwrap_or_default(),
        "siprec.sources" => toml::Table::try_from(SiprecSourceEntry::default()).unwrap_or_default(),
        _ => toml::Table::new(),
    }
}

fn find_key_line(root: &toml_edit::Table, dotted: &str, lines: &LineIndex) -> Option<usize> {
    let mut table = root;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        let (key, item) = table.get_key_value(part)?;
        if parts.peek().is_none() {
            return key
                .span()
                .or_else(|| item.span())
                .map(|s| lines.line_of(s.start));
        }
        table = match item {
            toml_edit::Item::ArrayOfTables(arr) => {
                // "webhooks.0.url": the next part indexes the array.
                let index: usize = parts.next()?.parse().ok()?;
                let element = arr.get(index)?;
                if parts.peek().is_none() {
                    return element.span().map(|s| lines.line_of(s.start));
                }
                element
            }
            other => other.as_table()?,
        };
    }
    None
}

/// Byte offset → 1-based line.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    fn line_of(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn every_problem_is_reported_with_key_and_line() {
        let text = "\
[rtp]
port_min = 70000
port_max = 10
colour = \"blue\"

[recording]
sample_rate = 11025
bitrate_kbps = \"fast\"
";
        let problems = Config::parse(text).unwrap_err();
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert!(
            shown[0].starts_with("line 4: rtp.colour: unknown key"),
            "{shown:#?}"
        );
        assert!(
            shown[1].starts_with("line 8: recording.bitrate_kbps: expected an integer"),
            "{shown:#?}"
        );

        let text = "[rtp]\nport_min = 70000\nport_max = 10\n[recording]\nsample_rate = 44000\n";
        let problems = Config::parse(text).unwrap_err();
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            shown.iter().any(|p| p.starts_with("line 2: rtp.port_min:")),
            "{shown:#?}"
        );
        assert!(
            shown.iter().any(|p| p.starts_with("line 3: rtp.port_max:")),
            "{shown:#?}"
        );
        assert!(
            shown
                .iter()
                .any(|p| p.starts_with("line 5: recording.sample_rate:")),
            "{shown:#?}"
        );
    }

    #[test]
    fn public_url_must_be_an_http_url() {
        let ok = Config::parse("[api]\npublic_url = \"https://rec.example.com\"\n").unwrap();
        assert_eq!(ok.api.public_url, "https://rec.example.com");
        let problems = Config::parse("[api]\npublic_url = \"rec.example.com\"\n").unwrap_err();
        assert_eq!(problems[0].key, "api.public_url");
        assert_eq!(problems[0].line, Some(2));
    }

    #[test]
    fn syntax_errors_have_lines() {
        let problems = Config::parse("[rtp]\nport_min = \n").unwrap_err();
        assert_eq!(problems[0].line, Some(2), "{problems:?}");
    }

    #[test]
    fn unknown_section_is_named() {
        let problems = Config::parse("[rpt]\nport_min = 1\n").unwrap_err();
        assert_eq!(problems[0].key, "rpt");
        assert_eq!(problems[0].line, Some(1));
    }

    #[test]
    fn shipped_engine_toml_documents_exactly_the_defaults() {
        let text = include_str!("../../engine.toml");
        let parsed = Config::parse(text).unwrap_or_else(|p| panic!("{p:#?}"));
        assert_eq!(
            parsed,
            Config::default(),
            "engine.toml must state the embedded defaults"
        );
        // Every schema key appears in engine.toml (so the docs cannot drift).
        let doc: toml::Table = toml::from_str(text).unwrap();
        let schema = toml::Table::try_from(Config::default()).unwrap();
        fn keys(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
            for (k, v) in t {
                let p = format!("{prefix}{k}");
                match v {
                    toml::Value::Table(sub) => keys(sub, &format!("{p}."), out),
                    _ => out.push(p),
                }
            }
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        keys(&doc, "", &mut a);
        keys(&schema, "", &mut b);
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    /// The commented `[[section]]` example in engine.toml, uncommented.
    fn commented_example(text: &str, header: &str) -> String {
        let mut out = String::new();
        let mut inside = false;
        for line in text.lines() {
            if line == format!("#   [[{header}]]") {
                inside = true;
            } else if inside {
                match line.strip_prefix("#   ") {
                    Some(l) => {
                        out.push_str(l);
                        out.push('\n');
                    }
                    None => break,
                }
            }
        }
        out
    }

    #[test]
    fn engine_toml_examples_show_every_field_of_array_entries() {
        let text = include_str!("../../engine.toml");
        /// (keys the example shows, keys the entry type has); the example
        /// must also deserialize (known keys, right types).
        fn fields<T: serde::Serialize + serde::de::DeserializeOwned>(
            example: &str,
            default: T,
        ) -> (Vec<String>, Vec<String>) {
            toml::from_str::<T>(example).unwrap_or_else(|e| panic!("{e}\n{example}"));
            let sorted = |t: toml::Table| -> Vec<String> {
                let mut k: Vec<String> = t.keys().cloned().collect();
                k.sort();
                k
            };
            (
                sorted(toml::from_str(example).unwrap()),
                sorted(toml::Table::try_from(default).unwrap()),
            )
        }
        let tokens = commented_example(text, "api.tokens");
        let (shown, all) = fields(&tokens, TokenEntry::default());
        assert_eq!(shown, all, "[[api.tokens]] example in engine.toml");
        let hooks = commented_example(text, "webhooks");
        let (shown, all) = fields(&hooks, WebhookEntry::default());
        assert_eq!(shown, all, "[[webhooks]] example in engine.toml");
        let tenants = commented_example(text, "tenants");
        let (shown, all) = fields(&tenants, TenantEntry::default());
        assert_eq!(shown, all, "[[tenants]] example in engine.toml");
        let sources = commented_example(text, "siprec.sources");
        let (shown, all) = fields(&sources, SiprecSourceEntry::default());
        assert_eq!(shown, all, "[[siprec.sources]] example in engine.toml");
        let keys = commented_example(text, "storage.encryption.keys");
        let (shown, all) = fields(&keys, KekEntry::default());
        assert_eq!(
            shown, all,
            "[[storage.encryption.keys]] example in engine.toml"
        );
    }
}
