//! The request log and the daemon's state file, written off the hot path.
//!
//! Readers only touch memory here: a read that had to wait adds one record
//! to a buffer when it ends; a read served at once from present pages adds
//! to two per-file counters, and marks its pages in the set of pages read
//! ([`touched`], bounded), adding a record only for pages read for the
//! first time in this mount (consecutive first reads of one file extend
//! the last buffered record).
//! A writer thread turns the buffer into records of `feedfs-protocol`'s
//! [`reqlog`](feedfs_protocol::reqlog) format and appends them to `STORE/log/requests.log` once a
//! second, at once on a link event or a full buffer, and at shutdown.
//!
//! Bound: when the current file would pass [`MAX_LOG_FILE`] bytes it is
//! renamed to `requests.1.log` (replacing the older one) and a new file
//! starts with a `continued` mount record, so the log takes at most two
//! files of 1 MiB. The buffer holds at most [`MAX_BUFFERED`] records;
//! beyond that records are dropped and counted. The state file
//! (`STORE/state`) says which daemon runs, since when, and the link's state;
//! it is rewritten (write, then rename) when that changes.
//!
//! The writer thread and the file format's bound live in [`writer`], the
//! state file in [`state`], the pages read so far in [`touched`].

mod state;
#[cfg(test)]
mod tests;
mod touched;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use feedfs_protocol::reqlog::{Outcome, Record};
use feedfs_protocol::{FileId, Manifest};

use touched::Touched;

pub use state::{state_path, STATE_HEADER};
use writer::write_loop;
pub use writer::MAX_LOG_FILE;

/// Most records waiting in memory for the writer.
pub const MAX_BUFFERED: usize = 16 * 1024;

/// Buffered records that wake the writer before its interval.
const FLUSH_EARLY: usize = 2048;

/// Where the current log file lives in a store.
pub fn current_path(store: &Path) -> PathBuf {
    store.join("log").join("requests.log")
}

/// Where the previous log file lives in a store.
pub fn rotated_path(store: &Path) -> PathBuf {
    store.join("log").join("requests.1.log")
}

/// A file of the manifest, as the log announces it.
struct LogFileInfo {
    size: u64,
    identity: [u8; 16],
    path: String,
    reads: AtomicU64,
    bytes: AtomicU64,
}

#[derive(Default)]
struct Buffer {
    records: Vec<Record>,
    dropped: u64,
    /// The state file needs rewriting.
    state_dirty: bool,
    link_up: bool,
    stop: bool,
}

struct Shared {
    start: Instant,
    unix_us: u64,
    pid: u32,
    dir: PathBuf,
    /// Indexed by host file id; `None` for directories.
    files: Vec<Option<LogFileInfo>>,
    /// The pages read so far in this mount.
    touched: Touched,
    buffer: Mutex<Buffer>,
    wake: Condvar,
}

/// The daemon's request log; see the module documentation.
pub struct RequestLog {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// A read that waited, as [`RequestLog::waited`] records it: pages
/// `first..=last` of `file`, parked at `since` by process `pid` (0 if
/// unknown), ended with `outcome`; `demanded` if it asked the host itself.
#[derive(Debug, Clone, Copy)]
pub struct Waited {
    pub file: FileId,
    pub first: u64,
    pub last: u64,
    pub since: Instant,
    pub pid: u32,
    pub outcome: Outcome,
    pub demanded: bool,
}

impl RequestLog {
    /// Start logging the reads of `manifest`'s files into the store at `dir`.
    pub fn start(dir: &Path, manifest: &Manifest) -> RequestLog {
        let files = (0..manifest.host_entries())
            .map(|i| {
                let e = manifest.get(FileId(i))?;
                (e.kind == feedfs_protocol::EntryKind::File).then(|| LogFileInfo {
                    size: e.size,
                    identity: e.identity,
                    path: e.path.clone(),
                    reads: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                })
            })
            .collect();
        let shared = Arc::new(Shared {
            start: Instant::now(),
            unix_us: unix_us(),
            pid: std::process::id(),
            dir: dir.to_path_buf(),
            files,
            touched: Touched::default(),
            buffer: Mutex::new(Buffer {
                state_dirty: true,
                ..Buffer::default()
            }),
            wake: Condvar::new(),
        });
        let for_writer = shared.clone();
        let writer = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_loop(&for_writer))
            .map_err(|e| log::warn!("request log disabled: cannot start its writer: {e}"))
            .ok();
        RequestLog {
            shared,
            writer: Mutex::new(writer),
        }
    }

    fn t_us(&self) -> u64 {
        micros(self.shared.start.elapsed())
    }

    fn push(&self, rec: Record) {
        let mut b = self.shared.buffer();
        if b.records.len() >= MAX_BUFFERED {
            b.dropped += 1;
            return;
        }
        b.records.push(rec);
        if b.records.len() == FLUSH_EARLY {
            self.shared.wake.notify_one();
        }
    }

    /// A read of pages `first..=last` of `file` was served at once from
    /// present pages: count it, and record the pages read for the first time.
    pub fn served(&self, file: FileId, first: u64, last: u64, bytes: u64) {
        let Some(f) = self.shared.file(file) else {
            return;
        };
        f.reads.fetch_add(1, Ordering::Relaxed);
        f.bytes.fetch_add(bytes, Ordering::Relaxed);
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut touched = self.shared.touched.lock();
        for p in first..=last {
            if !touched.touch(file, p) {
                continue;
            }
            match runs.last_mut() {
                Some((_, end)) if *end == p => *end = p + 1,
                _ => runs.push((p, p + 1)),
            }
        }
        drop(touched);
        if runs.is_empty() {
            return;
        }
        let t_us = self.t_us();
        let mut b = self.shared.buffer();
        for (first, end) in runs {
            // A reader going forward extends the record it left last.
            if let Some(Record::Touch {
                file: lf,
                first: lfirst,
                count,
                ..
            }) = b.records.last_mut()
            {
                if *lf == file && u64::from(*lfirst) + u64::from(*count) == first {
                    *count = count.saturating_add((end - first) as u32);
                    continue;
                }
            }
            if b.records.len() >= MAX_BUFFERED {
                b.dropped += 1;
                continue;
            }
            b.records.push(Record::Touch {
                t_us,
                file,
                first: first as u32,
                count: (end - first) as u32,
            });
            if b.records.len() == FLUSH_EARLY {
                self.shared.wake.notify_one();
            }
        }
    }

    /// Pages `first..=last` of `file` are being waited for: not a first
    /// touch later on, since the wait record covers them.
    pub fn waiting(&self, file: FileId, first: u64, last: u64) {
        if self.shared.file(file).is_some() {
            let mut touched = self.shared.touched.lock();
            for p in first..=last {
                touched.touch(file, p);
            }
        }
    }

    /// A read that waited has ended.
    pub fn waited(&self, w: Waited) {
        let Waited {
            file,
            first,
            last,
            since,
            pid,
            outcome,
            demanded,
        } = w;
        let t_us = micros(since.saturating_duration_since(self.shared.start));
        let wait_us = micros(since.elapsed()).min(u64::from(u32::MAX)) as u32;
        self.push(Record::Wait {
            t_us,
            file,
            first: first as u32,
            count: (last - first + 1).min(u64::from(u16::MAX)) as u16,
            wait_us,
            pid,
            outcome,
            demanded,
        });
    }

    /// The link came up or went down: recorded, and written out at once.
    pub fn link(&self, up: bool) {
        let t_us = self.t_us();
        let mut b = self.shared.buffer();
        if b.records.len() < MAX_BUFFERED {
            b.records.push(Record::Link { t_us, up });
        }
        b.link_up = up;
        b.state_dirty = true;
        self.shared.wake.notify_one();
    }

    /// Write everything out, mark the daemon stopped in the state file and
    /// stop the writer. Later calls do nothing.
    pub fn close(&self) {
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(handle) = handle else { return };
        self.shared.buffer().stop = true;
        self.shared.wake.notify_one();
        let _ = handle.join();
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn buffer(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn file(&self, id: FileId) -> Option<&LogFileInfo> {
        self.files.get(id.0 as usize)?.as_ref()
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().try_into().unwrap_or(u64::MAX)
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(micros)
        .unwrap_or(0)
}
