//! The thin shells around the core that own files, sockets, threads and the
//! clock.

pub mod clock;
pub mod legs;
pub mod ports;
pub mod receive;
pub mod recovery;
pub mod sink;
pub mod udp;
#[cfg(target_os = "linux")]
pub mod uring;
pub mod worker;
pub mod writer;

use std::path::{Path, PathBuf};

/// A file step that failed: what was being done, to which file, and the
/// system's error.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct FileError {
    pub what: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl FileError {
    /// For `map_err`: `what` failed on `path`.
    pub fn at(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
        let path = path.to_owned();
        move |source| FileError { what, path, source }
    }
}
