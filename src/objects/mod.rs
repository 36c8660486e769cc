//! Recordings in S3-compatible object storage (`storage.backend = "s3"`):
//! the client (the `object_store` crate's S3 client, SigV4, a SHA-256
//! checksum on every upload that the server verifies), object keys
//! (`<prefix><path under storage.dir>`), pre-signed download URLs, and
//! [`uploader`], which empties the catalog's upload queue.
//!
//! Every request runs on this module's own small runtime, so callers on
//! any thread (the blocking pool, the uploader's thread) share one
//! connection pool.

pub mod uploader;

use std::path::Path as FsPath;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use thiserror::Error;
use tokio::io::AsyncReadExt;

use crate::config::S3Section;

#[derive(Debug, Error)]
pub enum ObjectsError {
    #[error("storage.s3: {0}")]
    Config(String),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("{what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("object {key}: the store holds {stored} bytes, the file has {local}")]
    SizeMismatch {
        key: String,
        stored: u64,
        local: u64,
    },
    #[error("object store runtime: {0}")]
    Runtime(String),
}

/// The object store recordings go to.
pub struct Objects {
    store: AmazonS3,
    bucket: String,
    prefix: String,
    part_size: usize,
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// `KEY=value` lines of a credentials file (mode 0600 or stricter).
fn credentials_from_file(path: &str) -> Result<Vec<(String, String)>, ObjectsError> {
    use std::os::unix::fs::PermissionsExt;
    let file_err = |source| ObjectsError::File {
        what: "storage.s3.credentials_file",
        path: path.into(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(file_err)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(ObjectsError::Config(format!(
            "credentials_file {path} is readable by group or others (mode {:o}); chmod 600 it",
            mode & 0o777
        )));
    }
    let text = std::fs::read_to_string(path).map_err(file_err)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(ObjectsError::Config(format!(
                "credentials_file {path} line {}: not KEY=value",
                i + 1
            )));
        };
        out.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok(out)
}

impl Objects {
    /// A client for `cfg`'s bucket, with credentials from its file or the
    /// environment.
    pub fn new(cfg: &S3Section) -> Result<Self, ObjectsError> {
        // TLS to the store is rustls with ring, as the webhook client's
        // (an error only says another provider was installed first).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let creds: Vec<(String, String)> = if cfg.credentials_file.is_empty() {
            [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
            ]
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
            .collect()
        } else {
            credentials_from_file(&cfg.credentials_file)?
        };
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_virtual_hosted_style_request(!cfg.path_style)
            .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(20),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120))
                    .with_allow_http(cfg.endpoint.starts_with("http://")),
            );
        if !cfg.endpoint.is_empty() {
            b = b.with_endpoint(&cfg.endpoint);
        }
        for (k, v) in creds {
            b = match k.as_str() {
                "AWS_ACCESS_KEY_ID" => b.with_access_key_id(v),
                "AWS_SECRET_ACCESS_KEY" => b.with_secret_access_key(v),
                "AWS_SESSION_TOKEN" => b.with_token(v),
                other => {
                    return Err(ObjectsError::Config(format!(
                        "credentials_file: unknown key {other} (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)"
                    )));
                }
            };
        }
        let store = b.build()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("recengine-s3")
            .enable_all()
            .build()
            .map_err(|e| ObjectsError::Runtime(e.to_string()))?;
        Ok(Self {
            store,
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.clone(),
            part_size: cfg.part_size_mib as usize * 1024 * 1024,
            rt: Some(rt),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, ObjectsError> {
        self.rt
            .as_ref()
            .ok_or_else(|| ObjectsError::Runtime("stopped".into()))
    }

    /// Runs `fut` on this module's runtime and waits for it (from any
    /// thread that may block).
    fn block<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, ObjectsError>> + Send + 'static,
    ) -> Result<T, ObjectsError> {
        let rt = self.runtime()?;
        let handle = rt.spawn(fut);
        crate::offload::off_async(|| {
            rt.block_on(handle)
                .map_err(|e| ObjectsError::Runtime(e.to_string()))?
        })
    }

    /// Runs `fut` on this module's runtime; awaitable from another one.
    async fn spawn<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, ObjectsError>> + Send + 'static,
    ) -> Result<T, ObjectsError> {
        self.runtime()?
            .spawn(fut)
            .await
            .map_err(|e| ObjectsError::Runtime(e.to_string()))?
    }

    /// The key of the file at `local` (under `storage`): the prefix and
    /// its relative path.
    pub fn key_for(&self, storage: &FsPath, local: &FsPath) -> String {
        let rel = local.strip_prefix(storage).unwrap_or(local);
        let rel: Vec<String> = rel
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        format!("{}{}", self.prefix, rel.join("/"))
    }

    /// The sidecar's key beside the audio's.
    pub fn sidecar_key(key: &str) -> String {
        match key.rsplit_once('.') {
            Some((stem, ext)) if !ext.contains('/') => format!("{stem}.json"),
            _ => format!("{key}.json"),
        }
    }

    /// Uploads the file at `local` to `key` (in parts when large), then
    /// checks the store holds as many bytes; answers the size.
    pub async fn upload_file(&self, local: &FsPath, key: &str) -> Result<u64, ObjectsError> {
        let store = self.store.clone();
        let (local, key, part) = (local.to_path_buf(), key.to_owned(), self.part_size);
        self.spawn(async move {
            let file_err = |source| ObjectsError::File {
                what: "reading",
                path: local.clone(),
                source,
            };
            let mut file = tokio::fs::File::open(&local).await.map_err(file_err)?;
            let size = file.metadata().await.map_err(file_err)?.len();
            let path = Path::from(key.as_str());
            if size as usize <= part {
                let mut buf = Vec::with_capacity(size as usize);
                file.read_to_end(&mut buf).await.map_err(file_err)?;
                store.put(&path, PutPayload::from(buf)).await?;
            } else {
                let upload = store.put_multipart(&path).await?;
                let mut w = WriteMultipart::new_with_chunk_size(upload, part);
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = file.read(&mut buf).await.map_err(file_err)?;
                    if n == 0 {
                        break;
                    }
                    // At most two parts in flight: memory stays bounded.
                    w.wait_for_capacity(2).await?;
                    w.write(&buf[..n]);
                }
                w.finish().await?;
            }
            let stored = store.head(&path).await?.size;
            if stored != size {
                return Err(ObjectsError::SizeMismatch {
                    key,
                    stored,
                    local: size,
                });
            }
            Ok(size)
        })
        .await
    }

    /// A pre-signed GET URL of `key`, valid for `ttl`.
    pub fn presigned_get(&self, key: &str, ttl: Duration) -> Result<String, ObjectsError> {
        let store = self.store.clone();
        let path = Path::from(key);
        self.block(async move {
            Ok(store
                .signed_url(object_store::signer::Method::GET, &path, ttl)
                .await?
                .to_string())
        })
    }

    /// Copies `key` into the file `dest`.
    pub fn fetch_to(&self, key: &str, dest: &FsPath) -> Result<u64, ObjectsError> {
        let store = self.store.clone();
        let (path, dest) = (Path::from(key), dest.to_path_buf());
        self.block(async move {
            use futures_util::StreamExt;
            use tokio::io::AsyncWriteExt;
            let file_err = |source| ObjectsError::File {
                what: "writing",
                path: dest.clone(),
                source,
            };
            let mut out = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&dest)
                .await
                .map_err(file_err)?;
            let mut stream = store.get(&path).await?.into_stream();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                n += chunk.len() as u64;
                out.write_all(&chunk).await.map_err(file_err)?;
            }
            out.flush().await.map_err(file_err)?;
            Ok(n)
        })
    }

    /// Deletes `key` (a missing object is not an error).
    pub fn delete(&self, key: &str) -> Result<(), ObjectsError> {
        let store = self.store.clone();
        let path = Path::from(key);
        self.block(async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Whether the bucket answers (for `recengine check --connect`).
    pub fn check(&self) -> Result<String, ObjectsError> {
        let store = self.store.clone();
        let prefix = self.prefix.clone();
        let bucket = self.bucket.clone();
        self.block(async move {
            use futures_util::StreamExt;
            let p = Path::from(prefix.as_str());
            let mut list = store.list(Some(&p));
            match list.next().await {
                None | Some(Ok(_)) => Ok(format!("bucket {bucket} answers (listing {prefix:?})")),
                Some(Err(e)) => Err(e.into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_mirror_the_storage_tree_and_sidecars_sit_beside() {
        let cfg = S3Section {
            bucket: "b".into(),
            prefix: "rec/".into(),
            endpoint: "http://127.0.0.1:9".into(),
            ..S3Section::default()
        };
        let o = Objects::new(&cfg).unwrap();
        let key = o.key_for(
            FsPath::new("/var/rec"),
            FsPath::new("/var/rec/acme/2026/11/30/r1.wav"),
        );
        assert_eq!(key, "rec/acme/2026/11/30/r1.wav");
        assert_eq!(Objects::sidecar_key(&key), "rec/acme/2026/11/30/r1.json");
        assert_eq!(Objects::sidecar_key("a/b"), "a/b.json");
    }
}
