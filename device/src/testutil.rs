//! Scratch directories for the device's tests, unit and command-line alike
//! (`tests/cli.rs` includes this file): each is removed when its guard is
//! dropped, so also when the test panics. None of these tests mounts
//! anything below one; the end-to-end tests' `Scratch` (in `tests/`)
//! unmounts first.

use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// An empty directory under the system's temp dir, removed with all it
/// holds on drop. It derefs to its path.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory named after `tag`, this process and a counter,
    /// so tests running at once never share one.
    pub(crate) fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "feedfs-device-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
        TempDir(p)
    }
}

impl Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
