//! Where the control API is and which token to use: flags, then
//! `RECENGINE_*` environment, then the daemon's configuration
//! (`<storage.dir>/api.addr` or `api.listen`, `<storage.dir>/admin.token`).

use std::path::{Path, PathBuf};

use super::{CtlArgs, CtlError};
use crate::config::Config;

/// Where the API is and which token to use.
pub(super) struct Target {
    pub(super) base: String,
    pub(super) token: String,
}

impl Target {
    pub(super) fn resolve(args: &CtlArgs) -> Result<Self, CtlError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let config_path = args
            .config
            .clone()
            .or_else(|| env("RECENGINE_CONFIG").map(PathBuf::from));
        let cfg = match &config_path {
            Some(p) => Config::load(p).map_err(|e| CtlError::Config(e.to_string()))?,
            None => Config::default(),
        };
        let storage = Path::new(&cfg.storage.dir);
        let api = args
            .api
            .clone()
            .or_else(|| env("RECENGINE_API"))
            .unwrap_or_else(|| {
                // The running daemon writes its real address (port 0 resolved).
                std::fs::read_to_string(storage.join("api.addr"))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|_| cfg.api.listen.clone())
            });
        let base = if api.contains("://") {
            api.trim_end_matches('/').to_owned()
        } else {
            let addr = api
                .replace("0.0.0.0:", "127.0.0.1:")
                .replace("[::]:", "[::1]:");
            format!("http://{addr}")
        };
        let token_file = args
            .token_file
            .clone()
            .or_else(|| env("RECENGINE_TOKEN_FILE").map(PathBuf::from));
        let token = match (
            args.token.clone().or_else(|| env("RECENGINE_TOKEN")),
            token_file,
        ) {
            (Some(t), _) => t,
            (None, Some(f)) => std::fs::read_to_string(&f)
                .map_err(|e| CtlError::Io {
                    what: format!("reading the token file {}", f.display()),
                    source: e,
                })?
                .trim()
                .to_owned(),
            (None, None) => std::fs::read_to_string(storage.join("admin.token"))
                .map(|t| t.trim().to_owned())
                .map_err(|_| {
                    CtlError::Usage(format!(
                        "no API token: give --token, RECENGINE_TOKEN, --token-file or -c CONFIG \
                         (a daemon without [[api.tokens]] writes one to {})",
                        storage.join("admin.token").display()
                    ))
                })?,
        };
        Ok(Self { base, token })
    }
}
