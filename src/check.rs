//! `recengine check --connect`: beyond the configuration's own checks,
//! tries what it names outside the file: the key-encryption key files
//! (read and checked as at start), the PostgreSQL catalog (connected,
//! schema version) and the NATS server (connected, JetStream answering). Each outcome is one line an operator can act on.

use std::time::Duration;

use crate::config::Config;

/// One backend tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What was tried (`encryption keys`, `nats nats://…`).
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// Tries every backend `cfg` turns on.
pub fn backends(cfg: &Config) -> Vec<Outcome> {
    let mut out = Vec::new();
    let enc = &cfg.storage.encryption;
    if enc.enabled || !enc.keys.is_empty() {
        out.push(match crate::encryption::Keyring::load(enc) {
            Ok(k) => Outcome {
                what: "encryption keys".into(),
                ok: true,
                detail: format!(
                    "{} key(s) read; new recordings wrapped with {}",
                    k.ids().len(),
                    k.current_id().unwrap_or("none (encryption is off)")
                ),
            },
            Err(e) => Outcome {
                what: "encryption keys".into(),
                ok: false,
                detail: e.to_string(),
            },
        });
    }
    if cfg.catalog.backend == crate::config::CatalogBackend::Postgres {
        let what = format!("catalog postgres {}", redact(&cfg.catalog.url));
        let storage = std::path::Path::new(&cfg.storage.dir);
        out.push(
            match crate::catalog::Catalog::open_configured(&cfg.catalog, storage)
                .and_then(|c| c.schema_version())
            {
                Ok(v) => Outcome {
                    what,
                    ok: true,
                    detail: format!("connected; schema {v} (in {})", cfg.catalog.schema),
                },
                Err(e) => Outcome {
                    what,
                    ok: false,
                    detail: e.to_string(),
                },
            },
        );
    }
    if cfg.storage.backend == crate::config::StorageBackend::S3 {
        let s3 = &cfg.storage.s3;
        let what = format!(
            "object store {} bucket {}",
            if s3.endpoint.is_empty() {
                "aws"
            } else {
                &s3.endpoint
            },
            s3.bucket
        );
        out.push(
            match crate::objects::Objects::new(s3).and_then(|o| o.check()) {
                Ok(detail) => Outcome {
                    what,
                    ok: true,
                    detail,
                },
                Err(e) => Outcome {
                    what,
                    ok: false,
                    detail: e.to_string(),
                },
            },
        );
    }
    let nats = &cfg.events.nats;
    if !nats.url.is_empty() {
        let what = format!("nats {}", nats.url);
        let tried = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(nats_reachable(&nats.url)));
        out.push(match tried {
            Ok(detail) => Outcome {
                what,
                ok: true,
                detail,
            },
            Err(detail) => Outcome {
                what,
                ok: false,
                detail,
            },
        });
    }
    out
}

async fn nats_reachable(url: &str) -> Result<String, String> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let js = async_nats::jetstream::new(client);
    use futures_util::StreamExt;
    let mut names = js.stream_names();
    let mut count = 0usize;
    let listed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(name) = names.next().await {
            name.map_err(|e| format!("connected, but JetStream is not available: {e}"))?;
            count += 1;
        }
        Ok::<(), String>(())
    })
    .await
    .map_err(|_| "connected, but JetStream did not answer within 5 s".to_owned())?;
    listed?;
    Ok(format!("reachable; JetStream answers ({count} stream(s))"))
}

/// A URL with any password in it replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_do_not_reach_the_output() {
        assert_eq!(
            super::redact("postgres://rec:s3cret@db:5432/x"),
            "postgres://rec:***@db:5432/x"
        );
        assert_eq!(super::redact("postgres://rec@db/x"), "postgres://rec@db/x");
    }
}
