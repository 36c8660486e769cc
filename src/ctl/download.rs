//! `recengine ctl download`: follows the signed redirect, writes a `.part`
//! file (or stdout), checks the sha256 against the catalog's, then renames
//! it into place; a progress line on a terminal.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use serde_json::Value;

use super::client::{Api, CALL_TIMEOUT, api_error};
use super::render::enc;
use super::{CtlError, table};
use crate::http_client::HttpError;

/// Downloads a recording to `output` (or `<id>.<ext>`), writing `.part`
/// first and renaming once its sha256 matches the catalog's. Returns
/// (path, bytes, sha256).
pub(super) async fn download(
    api: &Api,
    id: &str,
    output: Option<PathBuf>,
    quiet: bool,
) -> Result<(String, u64, String), CtlError> {
    let detail = api
        .call("GET", &format!("/v1/recordings/{}", enc(id)), None)
        .await?;
    let expected = detail["checksum"]["value"].as_str().map(str::to_owned);
    let ext = match detail["format"].as_str() {
        Some("mp3") => "mp3",
        Some("opus") => "opus",
        _ => "wav",
    };
    // The download endpoint answers with a redirect to a signed URL.
    let url = api.url(&format!("/v1/recordings/{}/download", enc(id)));
    let redirect = api
        .client
        .call(
            hyper::Method::GET,
            &url,
            &api.headers(),
            Bytes::new(),
            CALL_TIMEOUT,
        )
        .await
        .map_err(|source| CtlError::Http {
            url: url.clone(),
            source,
        })?;
    if !(300..400).contains(&redirect.status) {
        let v: Value = serde_json::from_slice(&redirect.body).unwrap_or(Value::Null);
        return Err(api_error(redirect.status, &v));
    }
    let location = redirect
        .headers
        .get("location")
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| CtlError::Verify("the download answer has no Location".into()))?;
    let file_url = if location.contains("://") {
        location.to_owned()
    } else {
        api.url(location)
    };
    let resp = api
        .client
        .send(
            hyper::Method::GET,
            &file_url,
            &[],
            Bytes::new(),
            CALL_TIMEOUT,
        )
        .await
        .map_err(|source| CtlError::Http {
            url: file_url.clone(),
            source,
        })?;
    if resp.status().as_u16() != 200 {
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(api_error(
            status,
            &serde_json::from_slice(&body).unwrap_or(Value::Null),
        ));
    }
    let total: Option<u64> = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let to_stdout = output.as_deref() == Some(Path::new("-"));
    let path = output.unwrap_or_else(|| PathBuf::from(format!("{id}.{ext}")));
    let part = PathBuf::from(format!("{}.part", path.display()));
    let io_err = |what: String| move |source| CtlError::Io { what, source };
    let mut sink: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(&part).map_err(io_err(format!("creating {}", part.display())))?,
        ))
    };
    let mut progress = Progress::new(
        total,
        !quiet && !to_stdout && std::io::stderr().is_terminal(),
    );
    let mut hash = Sha256::new();
    let mut written = 0u64;
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CtlError::Http {
            url: file_url.clone(),
            source: HttpError::Body(e.to_string()),
        })?;
        if let Ok(data) = frame.into_data() {
            sink.write_all(&data)
                .map_err(io_err(format!("writing {}", part.display())))?;
            hash.update(&data);
            written += data.len() as u64;
            progress.update(written);
        }
    }
    sink.flush()
        .map_err(io_err(format!("writing {}", part.display())))?;
    drop(sink);
    progress.finish();
    let got = crate::crypto::hex(&hash.finalize());
    if let Some(total) = total
        && total != written
    {
        let _ = std::fs::remove_file(&part);
        return Err(CtlError::Verify(format!(
            "the download stopped at {written} of {total} bytes"
        )));
    }
    if let Some(expected) = &expected
        && *expected != got
    {
        let _ = std::fs::remove_file(&part);
        return Err(CtlError::Verify(format!(
            "sha256 mismatch: catalog {expected}, downloaded {got}; nothing was saved"
        )));
    }
    if to_stdout {
        return Ok(("-".into(), written, got));
    }
    std::fs::rename(&part, &path).map_err(io_err(format!("renaming to {}", path.display())))?;
    Ok((path.display().to_string(), written, got))
}

/// A one-line progress display on stderr (only on a terminal).
struct Progress {
    total: Option<u64>,
    enabled: bool,
    started: Instant,
    last_draw: Option<Instant>,
}

impl Progress {
    fn new(total: Option<u64>, enabled: bool) -> Self {
        Self {
            total,
            enabled,
            started: Instant::now(),
            last_draw: None,
        }
    }

    fn update(&mut self, done: u64) {
        if !self.enabled
            || self
                .last_draw
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let line = match self.total {
            Some(t) if t > 0 => {
                let pct = done as f64 * 100.0 / t as f64;
                let width = 30;
                let filled = ((pct / 100.0) * width as f64) as usize;
                format!(
                    "[{}{}] {:>5.1}%  {} / {}  {}/s",
                    "#".repeat(filled.min(width)),
                    " ".repeat(width - filled.min(width)),
                    pct,
                    table::bytes(done),
                    table::bytes(t),
                    table::bytes(rate as u64)
                )
            }
            _ => format!("{}  {}/s", table::bytes(done), table::bytes(rate as u64)),
        };
        eprint!("\r{line}\x1b[K");
    }

    fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            eprintln!();
        }
    }
}
