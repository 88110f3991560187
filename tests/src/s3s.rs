//! A real S3-compatible server for the S3 source tests: `s3s-fs` (an S3
//! API over a directory, with real Signature Version 4 checking) on
//! 127.0.0.1 only, a child of the test, killed when dropped. Buckets are
//! the directories of its root. `.ci/run` installs it with `cargo install`;
//! a missing server fails the test, never skips it.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_for;

/// The key pair the server accepts.
pub const ACCESS_KEY: &str = "feedfs-test-key";
pub const SECRET_KEY: &str = "feedfs-test-SECRET";

/// A running s3s-fs; see the module documentation.
pub struct S3Server {
    root: PathBuf,
    child: Option<Child>,
    pub port: u16,
}

fn s3s_bin() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let candidates = [
        home.join(".cargo/bin/s3s-fs"),
        PathBuf::from("/usr/local/bin/s3s-fs"),
    ];
    let found = candidates.iter().find(|p| p.exists()).cloned().or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("s3s-fs"))
                .find(|p| p.exists())
        })
    });
    found.expect(
        "s3s-fs is not installed (cargo install s3s-fs@0.14.1 --locked --features binary): \
         the S3 source tests need it",
    )
}

impl S3Server {
    /// Start the server over `root`, with `buckets` made in it.
    pub fn start(root: &Path, buckets: &[&str]) -> S3Server {
        for b in buckets {
            fs::create_dir_all(root.join(b)).unwrap();
        }
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut s = S3Server {
            root: root.to_path_buf(),
            child: None,
            port,
        };
        s.resume();
        s
    }

    /// Start it again on the same port; wait until it accepts.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "s3s-fs is already running");
        let child = Command::new(s3s_bin())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        wait_for("s3s-fs to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Kill the server (connections drop at once) and wait for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `http://127.0.0.1:PORT`, for `--endpoint-url`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where object `key` of `bucket` lives on disk.
    pub fn object(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }

    /// The environment a push needs: the key pair, a region, and no
    /// profile files of the machine's.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".to_string()),
            ("AWS_CONFIG_FILE", "/nonexistent".to_string()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
