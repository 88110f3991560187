//! The progress of several devices on a terminal: one line per device,
//! redrawn in place at most every [`REDRAW_INTERVAL`], and each device's
//! closing line printed above them when it finishes. When stderr is not a
//! terminal nothing is drawn and only the closing lines are written.
//!
//! The text of a frame is pure ([`frame`], [`wipe`]) so tests can pin it
//! down; the rows are shared by the devices' threads behind one lock.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::send::progress::{line, Show, Snapshot, REDRAW_INTERVAL};

/// The lines drawn now: `label: text` each.
#[derive(Debug, Default)]
struct Rows {
    rows: Vec<(String, String)>,
    /// Lines on the terminal from the last frame.
    drawn: usize,
    last: Option<Instant>,
}

/// Every device's row; see the module documentation.
#[derive(Clone)]
pub struct Board {
    enabled: bool,
    start: Instant,
    rows: Arc<Mutex<Rows>>,
}

/// Erase `drawn` lines drawn by [`frame`] (the cursor below them).
pub fn wipe(drawn: usize) -> String {
    match drawn {
        0 => String::new(),
        n => format!("\x1b[{n}A\r\x1b[J"),
    }
}

/// The terminal text that replaces `drawn` lines with `rows`.
pub fn frame(rows: &[(String, String)], drawn: usize) -> String {
    let mut out = wipe(drawn);
    for (label, text) in rows {
        out.push_str(&format!("{label}: {text}\n"));
    }
    out
}

impl Board {
    /// `enabled` should be whether stderr is a terminal.
    pub fn new(enabled: bool, start: Instant) -> Board {
        Board {
            enabled,
            start,
            rows: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A row for a device, showing `text` until its session reports.
    pub fn row(&self, label: &str, text: &str) -> Row {
        let mut rows = self.lock();
        rows.rows.push((label.to_string(), text.to_string()));
        let index = rows.rows.len() - 1;
        drop(rows);
        self.redraw(true);
        Row {
            board: self.clone(),
            index,
        }
    }

    /// Write `text` as a line of its own above the rows (a device's
    /// closing line), terminal or not.
    pub fn say(&self, text: &str) {
        let mut rows = self.lock();
        let mut err = std::io::stderr().lock();
        let wiped = if self.enabled {
            wipe(rows.drawn)
        } else {
            String::new()
        };
        let _ = writeln!(err, "{wiped}feedfs-host: {text}");
        rows.drawn = 0;
        if self.enabled {
            let drawn = frame(&rows.rows, 0);
            let _ = err.write_all(drawn.as_bytes());
            rows.drawn = rows.rows.len();
        }
        let _ = err.flush();
    }

    /// Take the rows off the terminal (at the end).
    pub fn clear(&self) {
        let mut rows = self.lock();
        if self.enabled && rows.drawn > 0 {
            let _ = std::io::stderr().write_all(wipe(rows.drawn).as_bytes());
            rows.drawn = 0;
        }
        rows.rows.clear();
    }

    /// Draw the rows if enabled and due (`now`: whatever the interval).
    fn redraw(&self, now: bool) {
        if !self.enabled {
            return;
        }
        let mut rows = self.lock();
        let t = Instant::now();
        let due = rows
            .last
            .is_none_or(|last| t.duration_since(last) >= REDRAW_INTERVAL);
        if !now && !due {
            return;
        }
        rows.last = Some(t);
        let text = frame(&rows.rows, rows.drawn);
        rows.drawn = rows.rows.len();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }
}

/// One device's row of a [`Board`].
#[derive(Clone)]
pub struct Row {
    board: Board,
    index: usize,
}

impl Row {
    /// Show `text` on the row (a state: waiting, reconnecting).
    pub fn set(&self, text: &str) {
        if let Some(row) = self.board.lock().rows.get_mut(self.index) {
            row.1 = text.to_string();
        }
        self.board.redraw(true);
    }
}

impl Show for Row {
    fn update(&mut self, now: Instant, s: &Snapshot) {
        let text = line(s, now.duration_since(self.board.start));
        if let Some(row) = self.board.lock().rows.get_mut(self.index) {
            row.1 = text;
        }
        self.board.redraw(false);
    }

    /// The row stays until the push ends: the board is cleared as a whole.
    fn clear(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_replaces_the_lines_drawn_before() {
        let rows = vec![
            ("R58M".to_string(), "sent 1.0 MiB of 4.0 MiB".to_string()),
            ("device 2".to_string(), "waiting for the device".to_string()),
        ];
        assert_eq!(
            frame(&rows, 0),
            "R58M: sent 1.0 MiB of 4.0 MiB\ndevice 2: waiting for the device\n"
        );
        // Up two lines, to the start of the line, erase to the end, redraw.
        assert!(frame(&rows, 2).starts_with("\x1b[2A\r\x1b[J"));
        assert_eq!(wipe(0), "");
    }

    #[test]
    fn rows_keep_their_place() {
        let board = Board::new(false, Instant::now());
        let a = board.row("a", "starting");
        let b = board.row("b", "starting");
        b.set("waiting");
        a.set("done");
        let rows = board.lock();
        assert_eq!(
            rows.rows,
            vec![("a".into(), "done".into()), ("b".into(), "waiting".into())]
        );
        assert_eq!(rows.drawn, 0, "nothing is drawn off a terminal");
    }
}
