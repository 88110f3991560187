//! A token bucket for `--rate`: limits the bytes per second the host sends,
//! so a pipe can stand in for a slower cable. Pure: times are passed in.
//!
//! The bucket holds at most a burst of 20 ms of traffic (and never less than
//! one stream run), so the rate is smooth at the scale of a few runs. A run
//! may take more than the bucket holds (a long demand): the bucket then
//! goes below zero, and what follows waits until the link has carried it.

use std::time::{Duration, Instant};

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
