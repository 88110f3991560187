//! Runs on their way to the device: what was sent in the last
//! [`IN_FLIGHT`], so that a demand for those pages is not answered by
//! sending them again.
//!
//! A reader that goes forward asks for pages the host's readahead already
//! sent: they are in the link's buffers, not yet landed, and the device,
//! which cannot see them, demands them. Sending them again cost the link
//! as much again and made the read wait for the second copy (a record of a
//! demand-only sequential read showed 8 to 13 % of the pages sent twice).
//! A page really lost on the way (a frame damaged on the link) is asked for
//! again by the device after its own, longer, interval, which this one
//! stays under.
//!
//! Pure: the caller passes `now`. Runs that continue the last one are
//! joined to it (with the later time), so a stream or a sequential reader
//! keeps a handful of entries; memory is bounded by the runs one
//! [`IN_FLIGHT`] holds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use feedfs_protocol::FileId;

/// How long a sent run counts as on its way. Well above the time the
/// link's buffers take to drain on a fast link (a 1 MiB pipe at 1 GB/s is
/// 1 ms; 2 MiB of USB transfers at 40 MB/s is 50 ms), and below the
/// device's interval for asking again for a page that never came.
pub const IN_FLIGHT: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    file: FileId,
    first: u64,
    end: u64,
}

/// The runs sent within [`IN_FLIGHT`] of the last call.
#[derive(Debug, Default)]
pub struct InFlight {
    runs: VecDeque<Sent>,
}

impl InFlight {
    /// Pages `[first, end)` of `file` went on the link at `now`.
    pub fn sent(&mut self, now: Instant, file: FileId, first: u64, end: u64) {
        self.forget(now);
        match self.runs.back_mut() {
            Some(b) if b.file == file && b.end == first => {
                b.end = end;
                b.at = now;
            }
            _ => self.runs.push_back(Sent {
                at: now,
                file,
                first,
                end,
            }),
        }
    }

    /// The parts of `[first, end)` of `file` sent within [`IN_FLIGHT`] of
    /// `now`, as sorted, disjoint `(first, end)` ranges.
    pub fn covered(&mut self, now: Instant, file: FileId, first: u64, end: u64) -> Vec<(u64, u64)> {
        self.forget(now);
        let mut out: Vec<(u64, u64)> = self
            .runs
            .iter()
            .filter(|r| r.file == file && r.first < end && first < r.end)
            .map(|r| (r.first.max(first), r.end.min(end)))
            .collect();
        out.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(out.len());
        for (a, e) in out {
            match merged.last_mut() {
                Some(m) if a <= m.1 => m.1 = m.1.max(e),
                _ => merged.push((a, e)),
            }
        }
        merged
    }

    /// Runs held now (for tests and the memory bound).
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether no run is on its way.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    fn forget(&mut self, now: Instant) {
        while self
            .runs
            .front()
            .is_some_and(|r| now.saturating_duration_since(r.at) >= IN_FLIGHT)
        {
            self.runs.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn pages_sent_lately_are_on_their_way_and_older_ones_are_not() {
        let t0 = Instant::now();
        let mut f = InFlight::default();
        f.sent(t0, FileId(1), 0, 64);
        f.sent(t0 + 10 * MS, FileId(1), 100, 164);
        f.sent(t0 + 20 * MS, FileId(2), 0, 8);
        // A demand of 32..132 of file 1: its parts sent lately, clipped.
        assert_eq!(
            f.covered(t0 + 30 * MS, FileId(1), 32, 132),
            [(32, 64), (100, 132)]
        );
        assert_eq!(f.covered(t0 + 30 * MS, FileId(3), 0, 100), []);
        // Past the window the first run is forgotten, the second not yet.
        assert_eq!(
            f.covered(t0 + IN_FLIGHT + 5 * MS, FileId(1), 0, 200),
            [(100, 164)]
        );
        assert_eq!(f.covered(t0 + IN_FLIGHT + 30 * MS, FileId(1), 0, 200), []);
        assert!(f.is_empty());
    }

    #[test]
    fn a_forward_run_keeps_one_entry_with_its_last_time() {
        let t0 = Instant::now();
        let mut f = InFlight::default();
        for i in 0..1000u64 {
            f.sent(
                t0 + Duration::from_micros(i * 100),
                FileId(0),
                i * 64,
                (i + 1) * 64,
            );
        }
        assert_eq!(f.len(), 1);
        // Joined runs count from the latest send: still on their way.
        let late = t0 + Duration::from_micros(99_900) + IN_FLIGHT - MS;
        assert_eq!(f.covered(late, FileId(0), 0, 64_000), [(0, 64_000)]);
        // Overlapping and touching parts merge.
        f.sent(late, FileId(0), 10, 20);
        assert_eq!(f.covered(late, FileId(0), 0, 100), [(0, 100)]);
    }
}
