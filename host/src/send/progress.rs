//! The progress line on stderr, drawn only when stderr is a terminal.
//!
//! One line rewritten in place with `\r`, at most every
//! [`REDRAW_INTERVAL`]: bytes sent of bytes to send, the rate, and how many
//! demand requests were served. When stderr is not a terminal nothing is
//! drawn. Either way a successful push ends with one [`summary`] line.
//! Times are passed in by the caller; [`line`](fn@line) and [`summary`] are pure so
//! tests can pin the text down.

use std::io::Write;
use std::time::{Duration, Instant};

use feedfs_protocol::units::format_bytes;

/// Shortest time between two redraws.
pub const REDRAW_INTERVAL: Duration = Duration::from_millis(200);

/// Numbers shown on the progress line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Page data bytes sent so far.
    pub bytes_sent: u64,
    /// Bytes the device lacks (the manifest's total until the device has said what it holds).
    pub bytes_total: u64,
    /// Demand messages answered.
    pub demands: u64,
}

/// MiB per second, 0 for an empty interval.
fn rate(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        bytes as f64 / secs / (1024.0 * 1024.0)
    } else {
        0.0
    }
}

/// The progress line's text.
pub fn line(s: &Snapshot, elapsed: Duration) -> String {
    format!(
        "sent {} of {} at {:.1} MiB/s, {} demand{} served",
        format_bytes(s.bytes_sent),
        format_bytes(s.bytes_total),
        rate(s.bytes_sent, elapsed),
        s.demands,
        if s.demands == 1 { "" } else { "s" }
    )
}

/// What a finished push did, for its summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Files served.
    pub files: u64,
    /// Page data bytes sent.
    pub bytes_sent: u64,
    /// Pages the device already held.
    pub pages_had: u64,
    /// Demand messages answered.
    pub demands: u64,
    /// What the walk left out (`left out 1 symlink`), if anything.
    pub left_out: Option<String>,
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The closing one-line summary:
/// `pushed 3 files, 64.0 MiB sent in 1.2 s (53.3 MiB/s), 12 pages already on the device, 2 demands served`.
pub fn summary(o: &Outcome, elapsed: Duration) -> String {
    let mut text = format!(
        "pushed {}, {} sent in {:.1} s ({:.1} MiB/s), {} already on the device, {} served",
        plural(o.files, "file", "files"),
        format_bytes(o.bytes_sent),
        elapsed.as_secs_f64(),
        rate(o.bytes_sent, elapsed),
        plural(o.pages_had, "page", "pages"),
        plural(o.demands, "demand", "demands"),
    );
    if let Some(left_out) = &o.left_out {
        text.push_str("; ");
        text.push_str(left_out);
    }
    text
}

/// Where a session shows its progress: the one line of a push to one
/// device ([`Progress`]), or its row among several
/// ([`crate::fleet::board`]).
pub trait Show: Send {
    /// New figures; redrawn when due.
    fn update(&mut self, now: Instant, s: &Snapshot);
    /// Take what is drawn off the terminal (before a message).
    fn clear(&mut self);
}

impl Show for Progress {
    fn update(&mut self, now: Instant, s: &Snapshot) {
        Progress::update(self, now, s)
    }
    fn clear(&mut self) {
        Progress::clear(self)
    }
}

/// Draws the progress line when enabled.
pub struct Progress {
    enabled: bool,
    start: Instant,
    last: Option<Instant>,
    /// Width of the last line drawn, to blank it out when the new one is shorter.
    drawn: usize,
}

impl Progress {
    /// `enabled` should be whether stderr is a terminal.
    pub fn new(enabled: bool, start: Instant) -> Self {
        Progress {
            enabled,
            start,
            last: None,
            drawn: 0,
        }
    }

    /// Redraw if enabled and the last redraw is old enough.
    pub fn update(&mut self, now: Instant, s: &Snapshot) {
        if !self.enabled
            || self
                .last
                .is_some_and(|t| now.duration_since(t) < REDRAW_INTERVAL)
        {
            return;
        }
        self.last = Some(now);
        let text = line(s, now.duration_since(self.start));
        let pad = self.drawn.saturating_sub(text.len());
        self.drawn = text.len();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{text}{:pad$}", "");
        let _ = err.flush();
    }

    /// End the line in place (before an error message or the summary).
    pub fn clear(&mut self) {
        if self.enabled && self.drawn > 0 {
            let _ = write!(std::io::stderr(), "\r{:w$}\r", "", w = self.drawn);
            self.drawn = 0;
        }
    }

    /// Replace the line with the summary, terminal or not.
    pub fn finish(&mut self, now: Instant, o: &Outcome) {
        self.clear();
        let _ = writeln!(
            std::io::stderr(),
            "feedfs-host: {}",
            summary(o, now.duration_since(self.start))
        );
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text() {
        let s = Snapshot {
            bytes_sent: 3 << 20,
            bytes_total: 10 << 20,
            demands: 1,
        };
        assert_eq!(
            line(&s, Duration::from_secs(2)),
            "sent 3.0 MiB of 10.0 MiB at 1.5 MiB/s, 1 demand served"
        );
        let mut o = Outcome {
            files: 3,
            bytes_sent: 3 << 20,
            pages_had: 12,
            demands: 1,
            left_out: None,
        };
        assert_eq!(
            summary(&o, Duration::from_millis(1500)),
            "pushed 3 files, 3.0 MiB sent in 1.5 s (2.0 MiB/s), 12 pages already on the device, 1 demand served"
        );
        o.files = 1;
        o.pages_had = 1;
        o.left_out = Some("left out 2 FIFOs".into());
        assert_eq!(
            summary(&o, Duration::from_secs(1)),
            "pushed 1 file, 3.0 MiB sent in 1.0 s (3.0 MiB/s), 1 page already on the device, 1 demand served; left out 2 FIFOs"
        );
        let none = Snapshot::default();
        assert_eq!(
            line(&none, Duration::ZERO),
            "sent 0 B of 0 B at 0.0 MiB/s, 0 demands served"
        );
    }

    #[test]
    fn disabled_draws_nothing() {
        let start = Instant::now();
        let mut p = Progress::new(false, start);
        p.update(start, &Snapshot::default());
        assert_eq!(p.last, None);
        p.clear();
    }
}
