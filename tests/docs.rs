//! The documentation cannot drift from the code: the README's configuration
//! reference is generated from engine.toml (run with
//! `RECENGINE_BLESS_DOCS=1` to rewrite it), every API route has a curl
//! example, every event the engine emits is documented, and every command
//! and option of the CLI has help text.

use std::process::Command;

const README: &str = "README.md";
const BEGIN: &str = "<!-- config-reference: generated from engine.toml by tests/docs.rs -->\n";
const END: &str = "<!-- end of config-reference -->\n";

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The reference: per section, each key with its default and the comment
/// above it; indented comment lines (examples) become TOML code blocks.
fn config_reference(engine_toml: &str) -> String {
    let mut out = String::new();
    let mut section = String::new();
    let mut comment: Vec<&str> = Vec::new();
    let mut previous_key = String::new();
    let mut seen_key = false;
    for line in engine_toml.lines() {
        if let Some(c) = line.strip_prefix('#') {
            comment.push(c.strip_prefix(' ').unwrap_or(c));
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            if !seen_key {
                comment.clear(); // the file's preamble
            }
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            out.push_str(&format!("\n**`[{section}]`**\n\n"));
            continue;
        }
        let Some((key, value)) = line.split_once(" = ") else {
            panic!("engine.toml line {line:?} is neither a comment, a section nor key = value");
        };
        seen_key = true;
        let full = if section.is_empty() {
            key.to_owned()
        } else {
            format!("{section}.{key}")
        };
        let (text, example): (Vec<&str>, Vec<&str>) = {
            let mut text = Vec::new();
            let mut example = Vec::new();
            for c in comment.drain(..) {
                match c.strip_prefix("  ") {
                    Some(e) => example.push(e),
                    None => text.push(c),
                }
            }
            (text, example)
        };
        let about = if text.is_empty() {
            format!("See `{previous_key}`.")
        } else {
            text.join(" ")
        };
        out.push_str(&format!("- `{full}` = `{value}`: {about}\n"));
        if !example.is_empty() {
            out.push_str("  ```toml\n");
            for e in example {
                out.push_str(&format!("  {e}\n"));
            }
            out.push_str("  ```\n");
        }
        previous_key = full;
    }
    out
}

#[test]
fn readme_configuration_reference_is_generated_from_engine_toml() {
    let engine = std::fs::read_to_string(root().join("engine.toml")).unwrap();
    let readme = std::fs::read_to_string(root().join(README)).unwrap();
    let generated = config_reference(&engine);
    let start = readme
        .find(BEGIN)
        .expect("README has the config-reference marker")
        + BEGIN.len();
    let end = readme[start..]
        .find(END)
        .expect("README has the end marker")
        + start;
    if readme[start..end] != generated {
        if std::env::var_os("RECENGINE_BLESS_DOCS").is_some() {
            let updated = format!("{}{generated}{}", &readme[..start], &readme[end..]);
            std::fs::write(root().join(README), updated).unwrap();
        } else {
            panic!(
                "README's configuration reference is out of date with engine.toml; \
                 rerun with RECENGINE_BLESS_DOCS=1 to regenerate it"
            );
        }
    }
    // Every key of the schema is in the reference (engine.toml itself is
    // checked against the schema by the config module's tests).
    let schema = toml::Table::try_from(recengine::config::Config::default()).unwrap();
    fn every_key(prefix: &str, table: &toml::Table, generated: &str) {
        for (key, v) in table {
            let full = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match v {
                toml::Value::Table(t) => every_key(&full, t, generated),
                _ => assert!(
                    generated.contains(&format!("- `{full}` = ")),
                    "{full} missing from the reference"
                ),
            }
        }
    }
    every_key("", &schema, &generated);
}

/// `(method, path)` of every route in the API router.
fn routes() -> Vec<(String, String)> {
    let src = std::fs::read_to_string(root().join("src/api/mod.rs")).unwrap();
    let mut out = Vec::new();
    let mut rest = src.as_str();
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + 7..];
        let close = rest.find(")\n").unwrap_or(rest.len());
        let call = &rest[..close + 1];
        let path = call.split('"').nth(1).expect("route path").to_owned();
        for (method, marker) in [
            ("GET", "get("),
            ("POST", "post("),
            ("DELETE", "delete("),
            ("HEAD", "head("),
            ("PATCH", "patch("),
        ] {
            if call.contains(marker) {
                out.push((method.to_owned(), path.clone()));
            }
        }
    }
    assert!(out.len() > 15, "found only {out:?}");
    out
}

/// Whether a curl line calls `method path` (path segments in braces match
/// any value).
fn curl_matches(line: &str, method: &str, path: &str) -> bool {
    let Some(at) = line.find("$API/") else {
        return false;
    };
    let url: String = line[at + 4..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '?')
        .collect();
    let (want, got): (Vec<&str>, Vec<&str>) = (path.split('/').collect(), url.split('/').collect());
    let same_path = want.len() == got.len()
        && want
            .iter()
            .zip(&got)
            .all(|(w, g)| w.starts_with('{') || w == g);
    let same_method = match method {
        "GET" => !line.contains(" -X ") && !line.contains(" -d ") && !line.contains(" -I"),
        "HEAD" => line.contains(" -I"),
        "POST" => line.contains("-X POST") || (line.contains(" -d ") && !line.contains(" -X ")),
        m => line.contains(&format!("-X {m}")),
    };
    same_path && same_method
}

#[test]
fn every_api_route_has_a_curl_example_in_the_readme() {
    let readme = std::fs::read_to_string(root().join(README)).unwrap();
    let curls: Vec<&str> = readme
        .lines()
        .filter(|l| l.trim_start().starts_with("curl "))
        .collect();
    let missing: Vec<String> = routes()
        .into_iter()
        .filter(|(m, p)| !curls.iter().any(|l| curl_matches(l, m, p)))
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        missing.is_empty(),
        "no curl example in README for {missing:#?}"
    );
}

#[test]
fn every_emitted_event_is_known_and_documented() {
    let readme = std::fs::read_to_string(root().join(README)).unwrap();
    let known = recengine::config::schema::EVENT_NAMES;
    for name in known {
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} not in README"
        );
    }
    // Event names as the typed events name them.
    let mut emitted = Vec::new();
    for file in ["src/events/event.rs"] {
        let src = std::fs::read_to_string(root().join(file)).unwrap();
        for piece in src.split('"').skip(1).step_by(2) {
            let is_event = ["call.", "leg.", "recording."]
                .iter()
                .any(|p| piece.starts_with(p))
                && piece
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_');
            if is_event {
                emitted.push(piece.to_owned());
            }
        }
    }
    assert!(emitted.len() >= 10, "{emitted:?}");
    for e in emitted {
        assert!(
            known.contains(&e.as_str()),
            "{e} is emitted but not in EVENT_NAMES"
        );
    }
}

/// Options and arguments listed in a `--help` without a description.
fn undocumented(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_list = false;
    let lines: Vec<&str> = help.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.ends_with(':') && !line.starts_with(' ') {
            in_list = matches!(*line, "Options:" | "Arguments:" | "Commands:");
            continue;
        }
        // An entry starts at column 2: "  -c, --config <FILE>  Text", or,
        // when clap puts long texts below, the name alone with the text on
        // the next, more indented line.
        let is_entry = line.starts_with("  ") && !line[2..].starts_with(' ');
        if in_list && is_entry {
            let body = line.trim_start();
            let text_below = lines
                .get(i + 1)
                .is_some_and(|next| next.starts_with("      ") && !next.trim().is_empty());
            if !body.contains("  ") && !text_below {
                out.push(body.to_owned());
            }
        }
    }
    out
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_recengine"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} --help");
    String::from_utf8(out.stdout).unwrap()
}

fn subcommands(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line == "Commands:" {
            inside = true;
        } else if inside && line.starts_with("  ") {
            let name = line.split_whitespace().next().unwrap_or_default();
            if name != "help" {
                out.push(name.to_owned());
            }
        } else if inside {
            break;
        }
    }
    out
}

#[test]
fn every_command_and_option_has_help() {
    let top = help(&[]);
    let mut pages = vec![(Vec::<String>::new(), top.clone())];
    for sub in subcommands(&top) {
        let page = help(&[&sub]);
        for inner in subcommands(&page) {
            let inner_page = help(&[&sub, &inner]);
            pages.push((vec![sub.clone(), inner], inner_page));
        }
        pages.push((vec![sub], page));
    }
    assert!(pages.len() > 15, "{} help pages", pages.len());
    for (cmd, page) in pages {
        let missing = undocumented(&page);
        assert!(
            missing.is_empty(),
            "recengine {cmd:?} --help lacks text for {missing:?}"
        );
    }
}

/// The OpenAPI document describes exactly the routes the router serves.
#[test]
fn the_openapi_document_describes_every_route_and_no_other() {
    let doc: serde_json::Value = serde_json::from_str(recengine::api::openapi::document()).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "head", "post", "delete", "put", "patch"] {
            if item.get(method).is_some() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    let mut served = routes();
    served.sort();
    documented.sort();
    assert_eq!(served, documented);
}

/// Every error code the API can answer with is in the README.
#[test]
fn every_error_code_is_documented() {
    let readme = std::fs::read_to_string(root().join(README)).unwrap();
    for code in recengine::api::ErrorCode::ALL {
        assert!(
            readme.contains(&format!("`{}`", code.as_str())),
            "{} not in README",
            code.as_str()
        );
    }
}
