//! Keeping the store on disk while the daemon runs: the reaper thread
//! writes the page maps' pending entries at least every second, syncs the
//! store's files to the disk every 30 s, once every page is present, when
//! a link ends and at stop (data before map, see docs/store.md), and fails
//! parked reads whose deadline has passed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fuser::Errno;

use super::Core;
use crate::serve::pending::{Reply, REAPER_NAP};
use feedfs_protocol::reqlog::Outcome;

/// Longest time a landed page's bit stays in memory only (a daemon crash
/// loses at most this much of the map).
const MAP_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Longest time between two syncs of the store's files to the disk while a
/// stream runs (a power cut loses at most this much; what it loses is
/// fetched again, never served wrong: see docs/store.md). Also synced: once
/// every page is present, when a link ends, and at stop.
const SYNC_INTERVAL: Duration = Duration::from_secs(30);

impl<R: Reply> Core<R> {
    /// Ask the reaper to sync the store's files at its next look (off the
    /// threads that store pages and answer reads).
    pub(super) fn want_sync(&self) {
        self.sync_wanted.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Write every file's pending map entries (see `store::MAP_BATCH`).
    pub fn flush_maps(&self) {
        for f in self.files.iter().flatten() {
            if let Err(e) = f.flush_map() {
                log::warn!("store: cannot write a page map: {e}");
            }
        }
    }

    /// Write every file's pending map entries and make the files durable,
    /// data before map (see `StoredFile::sync_map`).
    pub fn sync_maps(&self) {
        for f in self.files.iter().flatten() {
            if let Err(e) = f.sync_map() {
                log::warn!("store: cannot sync a page map: {e}");
            }
        }
    }

    /// Run until `stop` is set: fail parked reads whose deadline has passed,
    /// have those still waiting ask again for their pages (`Pending::ask_again`),
    /// write the page maps' pending bits at least every second, and
    /// sync the store to the disk every [`SYNC_INTERVAL`] and when asked.
    pub fn reap(&self, stop: &AtomicBool) {
        let (mut last_flush, mut last_sync) = (Instant::now(), Instant::now());
        let mut p = self.pending();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let sync = self.sync_wanted.swap(false, Ordering::SeqCst)
                || now.duration_since(last_sync) >= SYNC_INTERVAL;
            if sync || now.duration_since(last_flush) >= MAP_FLUSH_INTERVAL {
                drop(p);
                if sync {
                    self.sync_maps();
                    last_sync = now;
                } else {
                    self.flush_maps();
                }
                last_flush = now;
                p = self.pending();
            }
            let expired = p.table.expire(now, |f, b| {
                self.file(f).is_none_or(|f| f.is_present(b).unwrap_or(true))
            });
            if !expired.is_empty() {
                let timeout = p.table.timeout();
                drop(p);
                for r in expired {
                    log::warn!(
                        "read of {} at {} not served within {timeout:?}: EIO",
                        self.path_of(r.read.file),
                        r.read.offset,
                    );
                    self.ended(&r, Outcome::TimedOut);
                    r.reply.error(Errno::EIO);
                }
                p = self.pending();
                continue;
            }
            let asks = p.table.ask_again(now);
            if !asks.is_empty() {
                log::debug!(
                    "asking again for {} runs of pages still missing",
                    asks.len()
                );
                let outbox = p.outbox.clone();
                drop(p);
                super::send_demands(outbox.as_ref(), &asks);
                p = self.pending();
            }
            let wait = p
                .table
                .next_deadline()
                .map_or(REAPER_NAP, |d| d.saturating_duration_since(now))
                .min(REAPER_NAP);
            p = self
                .wake_reaper
                .wait_timeout(p, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wake the reaper (used to stop it).
    pub fn wake(&self) {
        self.wake_reaper.notify_all();
    }
}
