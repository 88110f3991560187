//! A limit on repeated warnings, with no clock of its own: the caller
//! passes the time in, so tests pin the behaviour down.
//!
//! At most `burst` warnings of one kind are printed per `interval`; the
//! ones past that are counted, and the next one printed says how many were
//! held back. A link that turns to garbage then costs a few lines a second,
//! not tens of thousands.

use std::time::{Duration, Instant};

/// The limit for one kind of warning.
#[derive(Debug, Clone)]
pub struct WarnLimit {
    burst: u32,
    interval: Duration,
    window_start: Option<Instant>,
    in_window: u32,
    held_back: u64,
}

impl WarnLimit {
    /// At most `burst` warnings per `interval`.
    pub fn new(burst: u32, interval: Duration) -> Self {
        WarnLimit {
            burst: burst.max(1),
            interval,
            window_start: None,
            in_window: 0,
            held_back: 0,
        }
    }

    /// Whether a warning happening at `now` is to be printed. `Some(n)`:
    /// print it, and say that `n` like it were held back before it; `None`:
    /// hold it back (it is counted).
    pub fn check(&mut self, now: Instant) -> Option<u64> {
        let fresh = match self.window_start {
            Some(t) => now.saturating_duration_since(t) >= self.interval,
            None => true,
        };
        if fresh {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window < self.burst {
            self.in_window += 1;
            Some(std::mem::take(&mut self.held_back))
        } else {
            self.held_back += 1;
            None
        }
    }

    /// Warnings held back and not yet reported; reading them resets the count.
    pub fn take_held_back(&mut self) -> u64 {
        std::mem::take(&mut self.held_back)
    }
}

/// `""`, or ` (and N more like it)` after a warning's text.
pub fn held_back_note(n: u64) -> String {
    match n {
        0 => String::new(),
        1 => " (and 1 more like it)".to_string(),
        n => format!(" (and {n} more like it)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_burst_passes_then_the_rest_of_the_interval_is_counted() {
        let t0 = Instant::now();
        let mut l = WarnLimit::new(3, SEC);
        assert_eq!(l.check(t0), Some(0));
        assert_eq!(l.check(t0), Some(0));
        assert_eq!(l.check(t0 + SEC / 2), Some(0));
        assert_eq!(l.check(t0 + SEC / 2), None);
        assert_eq!(l.check(t0 + SEC * 9 / 10), None);
        // A new interval: the first warning says how many were held back.
        assert_eq!(l.check(t0 + SEC), Some(2));
        assert_eq!(l.check(t0 + SEC), Some(0));
    }

    #[test]
    fn held_back_warnings_can_be_reported_at_the_end() {
        let t0 = Instant::now();
        let mut l = WarnLimit::new(1, SEC);
        assert_eq!(l.check(t0), Some(0));
        for _ in 0..1000 {
            assert_eq!(l.check(t0), None);
        }
        assert_eq!(l.take_held_back(), 1000);
        assert_eq!(l.take_held_back(), 0);
        assert_eq!(l.check(t0 + 2 * SEC), Some(0));
    }

    #[test]
    fn a_zero_burst_still_lets_one_through_and_time_going_back_is_harmless() {
        let t0 = Instant::now() + SEC;
        let mut l = WarnLimit::new(0, SEC);
        assert_eq!(l.check(t0), Some(0));
        assert_eq!(l.check(t0 - SEC / 2), None);
        assert_eq!(l.check(t0 + SEC), Some(1));
    }

    #[test]
    fn notes() {
        assert_eq!(held_back_note(0), "");
        assert_eq!(held_back_note(1), " (and 1 more like it)");
        assert_eq!(held_back_note(7), " (and 7 more like it)");
    }
}
