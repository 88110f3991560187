//! The progress of several devices on a terminal: one line per device
//! being fed, redrawn in place at most every [`REDRAW_INTERVAL`] with the
//! terminal's line wrap off (a long row is cut at the edge, never wrapped
//! into the lines below), and each device's closing line printed above
//! the rows when it finishes, its row gone. Other lines (logs, what device
//! commands print) go above the rows too ([`crate::term`]). When stderr
//! is not a terminal nothing is drawn: a device's changes of state (waiting
//! for it, it went away) and its closing line are written as lines.
//!
//! The text of a frame is pure ([`frame`], [`wipe`]) so tests can pin it
//! down; the rows are shared by the devices' threads behind one lock.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::send::progress::{line, Show, Snapshot, REDRAW_INTERVAL};
use crate::term::Drawn;

/// The rows drawn now, by row number: `label: text` each.
#[derive(Debug, Default)]
struct Rows {
    rows: Vec<(u64, String, String)>,
    next: u64,
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

/// Line wrap off, then on again.
const NO_WRAP: &str = "\x1b[?7l";
const WRAP: &str = "\x1b[?7h";

/// The terminal text that replaces `drawn` lines with `rows` (label, text).
pub fn frame<'a>(rows: impl IntoIterator<Item = (&'a str, &'a str)>, drawn: usize) -> String {
    let mut out = wipe(drawn);
    out.push_str(NO_WRAP);
    for (label, text) in rows {
        out.push_str(&format!("{label}: {text}\n"));
    }
    out.push_str(WRAP);
    out
}

impl Rows {
    fn frame(&self, drawn: usize) -> String {
        frame(
            self.rows
                .iter()
                .map(|(_, label, text)| (label.as_str(), text.as_str())),
            drawn,
        )
    }

    fn text_of(&mut self, id: u64) -> Option<&mut (u64, String, String)> {
        self.rows.iter_mut().find(|r| r.0 == id)
    }
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
        rows.next += 1;
        let id = rows.next;
        rows.rows.push((id, label.to_string(), text.to_string()));
        drop(rows);
        self.redraw(true);
        Row {
            board: self.clone(),
            id,
            label: label.to_string(),
        }
    }

    /// Write `text` as a line of its own above the rows, terminal or not.
    pub fn say(&self, text: &str) {
        self.write_above(format!("feedfs-host: {text}\n").as_bytes());
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
        let text = rows.frame(rows.drawn);
        rows.drawn = rows.rows.len();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }
}

impl Drawn for Board {
    fn write_above(&self, bytes: &[u8]) {
        // The rows' lock first, then stderr's: the order redraw keeps.
        let mut rows = self.lock();
        let mut err = std::io::stderr().lock();
        if self.enabled {
            let _ = err.write_all(wipe(rows.drawn).as_bytes());
        }
        let _ = err.write_all(bytes);
        if self.enabled {
            let _ = err.write_all(rows.frame(0).as_bytes());
            rows.drawn = rows.rows.len();
        }
        let _ = err.flush();
    }
}

/// One device's row of a [`Board`].
#[derive(Clone)]
pub struct Row {
    board: Board,
    id: u64,
    label: String,
}

impl Row {
    /// Show `text` on the row (a state: waiting, reconnecting); off a
    /// terminal, write it as a line.
    pub fn set(&self, text: &str) {
        if let Some(row) = self.board.lock().text_of(self.id) {
            row.2 = text.to_string();
        }
        match self.board.enabled {
            true => self.board.redraw(true),
            false => self.board.say(&format!("{}: {text}", self.label)),
        }
    }

    /// The device is done: its row goes, `line` is written above the others.
    pub fn finish(&self, line: &str) {
        self.board.lock().rows.retain(|r| r.0 != self.id);
        self.board.say(line);
    }
}

impl Show for Row {
    fn update(&mut self, now: Instant, s: &Snapshot) {
        if !self.board.enabled {
            return;
        }
        let text = line(s, now.duration_since(self.board.start));
        if let Some(row) = self.board.lock().text_of(self.id) {
            row.2 = text;
        }
        self.board.redraw(false);
    }

    /// The row stays until the device is done ([`Row::finish`]).
    fn clear(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_replaces_the_lines_drawn_before() {
        let rows = [
            ("R58M", "sent 1.0 MiB of 4.0 MiB"),
            ("device 2", "waiting for the device"),
        ];
        assert_eq!(
            frame(rows, 0),
            "\x1b[?7lR58M: sent 1.0 MiB of 4.0 MiB\ndevice 2: waiting for the device\n\x1b[?7h"
        );
        // Up two lines, to the start of the line, erase to the end, redraw.
        assert!(frame(rows, 2).starts_with("\x1b[2A\r\x1b[J"));
        assert_eq!(wipe(0), "");
    }

    #[test]
    fn rows_keep_their_place_and_go_when_done() {
        // Off a terminal (the states are written as lines): only the rows.
        let board = Board::new(false, Instant::now());
        let a = board.row("a", "starting");
        let b = board.row("b", "starting");
        let c = board.row("c", "starting");
        b.set("waiting");
        a.finish("a: pushed");
        let rows = board.lock();
        let texts: Vec<_> = rows
            .rows
            .iter()
            .map(|(_, l, t)| (l.as_str(), t.as_str()))
            .collect();
        assert_eq!(texts, vec![("b", "waiting"), ("c", "starting")]);
        assert_eq!(rows.drawn, 0, "nothing is drawn off a terminal");
        drop(rows);
        drop(c);
    }
}
