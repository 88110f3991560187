//! A token bucket for `--rate`: limits the bytes per second the host sends,
//! so a pipe can stand in for a slower cable, and the run length a rate
//! allows. Pure: times are passed in.
//!
//! The bucket holds at most a burst of 20 ms of traffic (and never less than
//! one stream run), so the rate is smooth at the scale of a few runs. A run
//! may take more than the bucket holds (a long demand): the bucket then
//! goes below zero, and what follows waits until the link has carried it.

use std::time::{Duration, Instant};

use feedfs_protocol::{MAX_RUN_PAGES, PAGE_SIZE};

/// Under `--rate`, a stream run carries about this much of the link's time.
pub const RUN_TIME: Duration = Duration::from_millis(1);

/// Under `--rate`, the shortest stream run (16 KiB), so a slow link still
/// gets frames worth their headers.
pub const MIN_RATED_RUN: u32 = 16 << 10;

/// The most pages a readahead, plan or stream run carries: `run_size`
/// bytes, and under `rate` what the link carries in [`RUN_TIME`] (at least
/// [`MIN_RATED_RUN`]); whole pages, at least one.
pub fn stream_run_pages(run_size: u32, rate: Option<u64>) -> u32 {
    let mut bytes = u64::from(run_size);
    if let Some(rate) = rate {
        let per_run = (rate as f64 * RUN_TIME.as_secs_f64()) as u64;
        bytes = bytes.min(per_run.max(u64::from(MIN_RATED_RUN)));
    }
    ((bytes / u64::from(PAGE_SIZE)) as u32).clamp(1, MAX_RUN_PAGES)
}

/// The token bucket; see the module documentation.
#[derive(Debug, Clone)]
pub struct RateLimit {
    bytes_per_sec: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A bucket for `bytes_per_sec`, holding at least `least` bytes.
    pub fn new(bytes_per_sec: u64, least: u32, now: Instant) -> Self {
        let bps = bytes_per_sec.max(1) as f64;
        let capacity = (bps / 50.0).max(f64::from(least));
        RateLimit {
            bytes_per_sec: bps,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.bytes_per_sec).min(self.capacity);
        self.last = now;
    }

    /// How long to wait before `bytes` may go out; `None` when they may go now.
    pub fn delay(&mut self, now: Instant, bytes: u64) -> Option<Duration> {
        self.refill(now);
        let need = (bytes as f64).min(self.capacity);
        if self.tokens >= need {
            None
        } else {
            Some(Duration::from_secs_f64(
                (need - self.tokens) / self.bytes_per_sec,
            ))
        }
    }

    /// Account for `bytes` sent at `now`.
    pub fn consume(&mut self, now: Instant, bytes: u64) {
        self.refill(now);
        self.tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_rate_over_time() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(1_000_000, 65536, t0);
        // Simulate sending 64 KiB runs as fast as allowed for 10 simulated seconds.
        let mut now = t0;
        let mut sent = 0u64;
        while now < t0 + Duration::from_secs(10) {
            match r.delay(now, 65536) {
                Some(d) => now += d,
                None => {
                    r.consume(now, 65536);
                    sent += 65536;
                }
            }
        }
        let rate = sent as f64 / 10.0;
        assert!((rate - 1_000_000.0).abs() < 20_000.0, "rate {rate}");
    }

    #[test]
    fn a_burst_is_at_most_the_capacity() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(50_000_000, 65536, t0);
        // After a long idle time, only 20 ms worth (1 MB) goes out at once.
        let later = t0 + Duration::from_secs(60);
        let mut burst = 0;
        while r.delay(later, 65536).is_none() {
            r.consume(later, 65536);
            burst += 65536;
        }
        assert!(burst <= 1_000_000 + 65536, "burst {burst}");
    }
}
