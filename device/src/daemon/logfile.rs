//! Where the daemon's own messages go: its stderr while whoever started it
//! is there to read them, then `STORE/log/daemon.log`.
//!
//! A daemon started by `feedfs-host push --exec` (or by `adb shell`,
//! `ssh`) outlives its starter. Keeping the starter's descriptors would
//! keep its pipes open (a `push 2>&1 | wc -l` that never ends, an `ssh`
//! session that never closes) or write to a terminal that is gone. So when
//! its stdin/stdout link ends, the mounted daemon points fds 0 and 1 at
//! `/dev/null` and fd 2 at the log file ([`leave_starter`]); and a message
//! that cannot be written to stderr (EPIPE: the reader went away; EIO: the
//! terminal hung up) moves stderr to the log file the same way, and is
//! written there.
//!
//! The log file is bounded: before a write would take it past
//! [`LOG_LIMIT`] bytes it is renamed to `daemon.1.log` (replacing the older
//! one) and a new one starts, so the two take at most twice that.
//! Everything written to fd 2 lands in it, panics included.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Bytes the log file may grow to before it is rotated.
pub const LOG_LIMIT: u64 = 1 << 20;

/// The log file's path below a store.
pub fn log_path(store: &Path) -> PathBuf {
    store.join("log").join("daemon.log")
}

/// Where fd 2 points now.
struct Sink {
    /// The store whose log takes over from stderr, once known.
    store: Option<PathBuf>,
    /// Bytes in the log file, once fd 2 points at it.
    in_file: Option<u64>,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    store: None,
    in_file: None,
});

fn sink() -> MutexGuard<'static, Sink> {
    SINK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The logger's target: fd 2, moved to the store's log when it fails.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sink().write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// From now on, a failed write to stderr moves it to `store`'s log.
pub fn use_store(store: &Path) {
    sink().store = Some(store.to_path_buf());
}

/// Let go of the descriptors the daemon was started with: fds 0 and 1 to
/// `/dev/null`, fd 2 to the store's log (see [`use_store`]).
pub fn leave_starter() -> io::Result<()> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    let mut s = sink();
    if s.in_file.is_none() {
        s.open_file()?;
    }
    Ok(())
}

impl Sink {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.in_file.is_none() {
            match io::stderr().write_all(buf) {
                Ok(()) => return Ok(()),
                Err(e) if gone(&e) && self.store.is_some() => self.open_file()?,
                Err(e) => return Err(e),
            }
        }
        let len = buf.len() as u64;
        if self.in_file.is_some_and(|n| must_rotate(n, len)) {
            self.rotate()?;
        }
        io::stderr().write_all(buf)?;
        self.in_file = self.in_file.map(|n| n + len);
        Ok(())
    }

    /// Point fd 2 at the log file, appending.
    fn open_file(&mut self) -> io::Result<()> {
        let Some(store) = &self.store else {
            return Err(io::Error::other("no store to log to yet"));
        };
        let path = log_path(store);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        nix::unistd::dup2_stderr(&file)?;
        self.in_file = Some(len);
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let path = log_path(store);
        fs::rename(&path, path.with_file_name("daemon.1.log"))?;
        self.open_file()
    }
}

/// Whether a write of `len` bytes to a log file holding `held` starts a new
/// file first: when it would pass [`LOG_LIMIT`], unless the file is empty
/// (a message larger than the limit goes whole into a file of its own).
fn must_rotate(held: u64, len: u64) -> bool {
    held > 0 && held + len > LOG_LIMIT
}

/// Whether a write failed because nobody reads stderr any more.
fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe || e.raw_os_error() == Some(libc::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_before_it_would_pass_its_limit() {
        assert!(!must_rotate(0, 10));
        assert!(!must_rotate(LOG_LIMIT - 10, 10), "exactly at the limit");
        assert!(must_rotate(LOG_LIMIT - 10, 11));
        assert!(
            !must_rotate(0, LOG_LIMIT + 1),
            "an empty file takes any message"
        );
        assert!(must_rotate(1, LOG_LIMIT));
    }

    #[test]
    fn a_reader_gone_or_a_hung_up_terminal_moves_the_log() {
        assert!(gone(&io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(gone(&io::Error::from_raw_os_error(libc::EIO)));
        assert!(!gone(&io::Error::from_raw_os_error(libc::ENOSPC)));
    }
}
