//! An S3 server for tests and benchmarks: `s3s-fs` (objects as files under
//! `root/<bucket>/`, SigV4 checked against one access key, SHA-256
//! checksums verified) on 127.0.0.1, in this process, so a test can stop
//! it and start it again on the same port. Included with `#[path]` by
//! `tests/fleet.rs` and `benches/e2e.rs`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "recengine-test";
pub const SECRET_KEY: &str = "recengine-test-secret-key";

/// A running (or stopped) server.
pub struct S3Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Server {
    /// A fresh server over an empty `root` holding `bucket`.
    pub fn start(root: &Path, bucket: &str) -> Self {
        let _ = std::fs::remove_dir_all(root);
        std::fs::create_dir_all(root.join(bucket)).expect("S3 root");
        Self::serve(root.to_path_buf(), "127.0.0.1:0".parse().expect("address"))
    }

    fn serve(root: PathBuf, addr: SocketAddr) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let fs_root = root.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("S3 runtime");
            rt.block_on(async move {
                let fs = s3s_fs::FileSystem::new(&fs_root).expect("s3s-fs root");
                let mut b = s3s::service::S3ServiceBuilder::new(fs);
                b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
                let service = b.build();
                let listener = tokio::net::TcpListener::bind(addr).await.expect("S3 bind");
                addr_tx
                    .send(listener.local_addr().expect("S3 address"))
                    .expect("S3 address sent");
                let mut rx = rx;
                loop {
                    let (socket, _) = tokio::select! {
                        r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                        _ = &mut rx => break,
                    };
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone());
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
            });
            // Dropping the runtime drops every open connection too: the
            // server is gone, as if its process had died.
            drop(rt);
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("S3 server started");
        Self {
            addr,
            root,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Serves again on the same port, over the same objects.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpListener::bind(self.addr).is_err() {
            assert!(Instant::now() < deadline, "port {} stays taken", self.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
        *self = Self::serve(self.root.clone(), self.addr);
    }

    /// The object's bytes as the server stores them, if it has it.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(bucket).join(key)).ok()
    }

    /// A credentials file for the daemon (mode 0600) in `dir`, and the
    /// `[storage]` settings that put its recordings in `bucket`.
    pub fn storage_toml(&self, dir: &Path, bucket: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).expect("secrets dir");
        let creds = dir.join("s3.credentials");
        std::fs::write(
            &creds,
            format!("AWS_ACCESS_KEY_ID={ACCESS_KEY}\nAWS_SECRET_ACCESS_KEY={SECRET_KEY}\n"),
        )
        .expect("credentials file");
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600))
            .expect("chmod 600");
        format!(
            "[storage]\nbackend = \"s3\"\n\n[storage.s3]\nendpoint = \"http://{}\"\nbucket = \"{bucket}\"\nprefix = \"fleet/\"\ncredentials_file = \"{}\"\n",
            self.addr,
            creds.display()
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
