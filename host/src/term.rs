//! The host's stderr, shared between what is drawn in place on a terminal
//! (the rows of several devices, [`crate::fleet::board`]) and every other
//! line: log records and the lines device commands print. While something
//! is drawn, a line is written between a wipe and a redraw, so it stays
//! on the terminal above the rows instead of being drawn over.
//!
//! The thread that feeds one of several devices is named after it
//! ([`device_thread`]): log lines written on it, and the lines its device
//! command prints, start with the device's name ([`device_here`]).

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

/// What draws in place on stderr.
pub trait Drawn: Send + Sync {
    /// Write `bytes` (whole lines) to stderr above what is drawn, keeping
    /// it drawn below them.
    fn write_above(&self, bytes: &[u8]);
}

static DRAWN: Mutex<Option<Arc<dyn Drawn>>> = Mutex::new(None);

/// Route lines around `drawn` from now on (`None`: straight to stderr).
pub fn set_drawn(drawn: Option<Arc<dyn Drawn>>) {
    *DRAWN.lock().unwrap_or_else(PoisonError::into_inner) = drawn;
}

/// Write whole lines to stderr, around whatever is drawn.
pub fn write_lines(bytes: &[u8]) {
    let drawn = DRAWN.lock().unwrap_or_else(PoisonError::into_inner).clone();
    match drawn {
        Some(d) => d.write_above(bytes),
        None => {
            let mut err = io::stderr().lock();
            let _ = err.write_all(bytes);
            let _ = err.flush();
        }
    }
}

/// stderr for the logger: each record goes through [`write_lines`].
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_lines(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const FEEDS: &str = "feed:";

/// The name of the thread that feeds the device `label`.
pub fn device_thread(label: &str) -> String {
    format!("{FEEDS}{label}")
}

/// `LABEL: ` on the thread feeding device `label` among several, else
/// nothing.
pub fn device_here() -> String {
    std::thread::current()
        .name()
        .and_then(|n| n.strip_prefix(FEEDS))
        .map(|label| format!("{label}: "))
        .unwrap_or_default()
}
