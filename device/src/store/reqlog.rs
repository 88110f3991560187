//! The request log and the daemon's state file, written off the hot path.
//!
//! Readers only touch memory here: a read that had to wait adds one record
//! to a buffer when it ends; a read served at once from present blocks adds
//! to two per-file counters, and sets bits in a per-file "touched" bitset,
//! adding a record only for blocks read for the first time in this mount
//! (consecutive first reads of one file extend the last buffered record).
//! A writer thread turns the buffer into records of `feedfs-protocol`'s
//! [`reqlog`] format and appends them to `STORE/log/requests.log` once a
//! second, at once on a link event or a full buffer, and at shutdown.
//!
//! Bound: when the current file would pass [`MAX_LOG_FILE`] bytes it is
//! renamed to `requests.1.log` (replacing the older one) and a new file
//! starts with a `continued` mount record, so the log takes at most two
//! files of 1 MiB. The buffer holds at most [`MAX_BUFFERED`] records;
//! beyond that records are dropped and counted. The state file
//! (`STORE/state`) says which daemon runs, since when, and the link's state;
//! it is rewritten (write, then rename) when that changes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use feedfs_protocol::reqlog::{self, Outcome, Record, RECORD_LEN};
use feedfs_protocol::{FileId, Manifest};

/// Largest size of one log file; two of them are kept.
pub const MAX_LOG_FILE: u64 = 1 << 20;
/// Most records waiting in memory for the writer.
pub const MAX_BUFFERED: usize = 16 * 1024;
/// How often the writer appends what readers recorded.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
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

/// Where the daemon's state file lives in a store.
pub fn state_path(store: &Path) -> PathBuf {
    store.join("state")
}

/// First line of the state file.
pub const STATE_HEADER: &str = "# feedfs-device state v1";

/// A file of the manifest, as the log announces it.
struct LogFileInfo {
    size: u64,
    block_size: u32,
    identity: [u8; 16],
    path: String,
    touched: Vec<AtomicU64>,
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
    buffer: Mutex<Buffer>,
    wake: Condvar,
}

/// The daemon's request log; see the module documentation.
pub struct RequestLog {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl RequestLog {
    /// Start logging the reads of `manifest`'s files into the store at `dir`.
    pub fn start(dir: &Path, manifest: &Manifest) -> RequestLog {
        let files = (0..manifest.host_entries())
            .map(|i| {
                let e = manifest.get(FileId(i))?;
                (e.kind == feedfs_protocol::EntryKind::File).then(|| LogFileInfo {
                    size: e.size,
                    block_size: e.block_size,
                    identity: e.identity,
                    path: e.path.clone(),
                    touched: (0..e.blocks().div_ceil(64))
                        .map(|_| AtomicU64::new(0))
                        .collect(),
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

    /// A read of blocks `first..=last` of `file` was served at once from
    /// present blocks: count it, and record the blocks read for the first time.
    pub fn served(&self, file: FileId, first: u64, last: u64, bytes: u64) {
        let Some(f) = self.shared.file(file) else {
            return;
        };
        f.reads.fetch_add(1, Ordering::Relaxed);
        f.bytes.fetch_add(bytes, Ordering::Relaxed);
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for b in first..=last {
            if !f.touch(b) {
                continue;
            }
            match runs.last_mut() {
                Some((_, end)) if *end == b => *end = b + 1,
                _ => runs.push((b, b + 1)),
            }
        }
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

    /// Blocks `first..=last` of `file` are being waited for: not a first
    /// touch later on, since the wait record covers them.
    pub fn waiting(&self, file: FileId, first: u64, last: u64) {
        if let Some(f) = self.shared.file(file) {
            for b in first..=last {
                f.touch(b);
            }
        }
    }

    /// A read that waited has ended.
    #[allow(clippy::too_many_arguments)]
    pub fn waited(
        &self,
        file: FileId,
        first: u64,
        last: u64,
        since: Instant,
        pid: u32,
        outcome: Outcome,
        demanded: bool,
    ) {
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

impl LogFileInfo {
    /// Mark block `b` touched; true when it was not yet.
    fn touch(&self, b: u64) -> bool {
        let Some(word) = self.touched.get((b / 64) as usize) else {
            return false;
        };
        let bit = 1u64 << (b % 64);
        word.load(Ordering::Relaxed) & bit == 0 && word.fetch_or(bit, Ordering::Relaxed) & bit == 0
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

/// The writer's view of the current log file.
struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    len: u64,
    /// Host file ids announced in the current file.
    announced: std::collections::HashSet<u32>,
    /// Served counters as last written, per file id.
    served: Vec<(u64, u64)>,
    failed: bool,
}

fn write_loop(shared: &Shared) {
    let log_dir = shared.dir.join("log");
    let mut w = LogWriter {
        path: current_path(&shared.dir),
        file: None,
        len: 0,
        announced: Default::default(),
        served: vec![(0, 0); shared.files.len()],
        failed: false,
    };
    if let Err(e) = fs::create_dir_all(&log_dir).and_then(|()| w.open(shared)) {
        log::warn!("request log: cannot open {}: {e}", w.path.display());
        w.failed = true;
    }
    let mut next = Instant::now() + FLUSH_INTERVAL;
    loop {
        let (records, dropped, state, stop) = {
            let mut b = shared.buffer();
            while !b.stop && !b.state_dirty && b.records.len() < FLUSH_EARLY {
                let left = next.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                b = shared
                    .wake
                    .wait_timeout(b, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let state = (b.state_dirty, b.link_up);
            b.state_dirty = false;
            (
                std::mem::take(&mut b.records),
                std::mem::take(&mut b.dropped),
                state,
                b.stop,
            )
        };
        if dropped > 0 {
            log::warn!("request log: {dropped} records dropped (the writer fell behind)");
        }
        let mut records = records;
        records.extend(w.served_records(shared));
        if !w.failed && !records.is_empty() {
            if let Err(e) = w.append(shared, &records) {
                log::warn!("request log: cannot write {}: {e}", w.path.display());
                w.failed = true;
            }
        }
        let (dirty, link_up) = state;
        if stop {
            write_state(shared, false, link_up);
            return;
        }
        if dirty {
            write_state(shared, true, link_up);
        }
        if Instant::now() >= next {
            next = Instant::now() + FLUSH_INTERVAL;
        }
    }
}

impl LogWriter {
    /// Open the current file for appending: a file with another header is
    /// started afresh, a torn last record is cut off; then the mount record.
    fn open(&mut self, shared: &Shared) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)?;
        let mut head = [0u8; RECORD_LEN];
        let len = file.metadata()?.len();
        let good = len >= RECORD_LEN as u64
            && file.read_exact(&mut head).is_ok()
            && head == reqlog::header();
        if !good {
            file.set_len(0)?;
            file.write_all(&reqlog::header())?;
            self.len = RECORD_LEN as u64;
        } else {
            let whole = len - (len % RECORD_LEN as u64);
            if whole != len {
                file.set_len(whole)?;
            }
            self.len = whole;
        }
        self.file = Some(file);
        self.announced.clear();
        self.raw(&[Record::Mount {
            unix_us: shared.unix_us,
            pid: shared.pid,
            files: shared.files.iter().flatten().count() as u32,
            continued: false,
        }])
    }

    fn raw(&mut self, records: &[Record]) -> io::Result<()> {
        let bytes: Vec<u8> = records.iter().flat_map(|r| r.emit()).collect();
        if let Some(f) = &mut self.file {
            f.write_all(&bytes)?;
            self.len += bytes.len() as u64;
        }
        Ok(())
    }

    /// Running totals of reads served at once, for files that changed.
    fn served_records(&mut self, shared: &Shared) -> Vec<Record> {
        let t_us = micros(shared.start.elapsed());
        let mut out = Vec::new();
        for (i, f) in shared.files.iter().enumerate() {
            let Some(f) = f else { continue };
            let now = (
                f.reads.load(Ordering::Relaxed),
                f.bytes.load(Ordering::Relaxed),
            );
            if now != self.served[i] {
                self.served[i] = now;
                out.push(Record::Served {
                    t_us,
                    file: FileId(i as u32),
                    reads: now.0.min(u64::from(u32::MAX)) as u32,
                    bytes: now.1,
                });
            }
        }
        out
    }

    /// Append records, announcing files first, rotating when full.
    fn append(&mut self, shared: &Shared, records: &[Record]) -> io::Result<()> {
        let mut out: Vec<Record> = Vec::new();
        for rec in records {
            let file = match rec {
                Record::Wait { file, .. }
                | Record::Touch { file, .. }
                | Record::Served { file, .. } => Some(*file),
                _ => None,
            };
            let mut batch = Vec::new();
            if let Some(id) = file.filter(|id| !self.announced.contains(&id.0)) {
                let Some(f) = shared.file(id) else { continue };
                batch = reqlog::file_records(id, f.size, f.block_size, &f.identity, &f.path);
            }
            batch.push(*rec);
            let pending = (out.len() + batch.len()) * RECORD_LEN;
            if self.len + pending as u64 > MAX_LOG_FILE {
                self.raw(&out)?;
                out.clear();
                self.rotate(shared)?;
                if let Some(id) = file {
                    if let Some(f) = shared.file(id) {
                        batch =
                            reqlog::file_records(id, f.size, f.block_size, &f.identity, &f.path);
                        batch.push(*rec);
                    }
                }
            }
            if let Some(id) = file {
                self.announced.insert(id.0);
            }
            out.extend(batch);
        }
        self.raw(&out)
    }

    /// Keep the current file as the older one and start a new one.
    fn rotate(&mut self, shared: &Shared) -> io::Result<()> {
        self.file = None;
        fs::rename(&self.path, rotated_path(&shared.dir))?;
        let mut file = File::create(&self.path)?;
        file.write_all(&reqlog::header())?;
        self.file = Some(file);
        self.len = RECORD_LEN as u64;
        self.announced.clear();
        self.raw(&[Record::Mount {
            unix_us: shared.unix_us,
            pid: shared.pid,
            files: shared.files.iter().flatten().count() as u32,
            continued: true,
        }])
    }
}

/// Rewrite the state file: which daemon, since when, and the link.
fn write_state(shared: &Shared, running: bool, link_up: bool) {
    let text = format!(
        "{STATE_HEADER}\npid {}\nrunning {}\nmounted_unix_us {}\nlink {}\nupdated_unix_us {}\n",
        shared.pid,
        if running { "yes" } else { "no" },
        shared.unix_us,
        if link_up { "up" } else { "down" },
        unix_us(),
    );
    let path = state_path(&shared.dir);
    let tmp = path.with_extension("tmp");
    let Err(e) = fs::write(&tmp, &text).and_then(|()| fs::rename(&tmp, &path)) else {
        return;
    };
    let _ = fs::remove_file(&tmp);
    // A full disk has no block for a new file, but the state file's own
    // block is there: rewrite it in place (a reader may then see a mix for
    // a moment; status believes `running yes` only of a live daemon anyway).
    let in_place = OpenOptions::new().write(true).open(&path).and_then(|f| {
        use std::os::unix::fs::FileExt;
        f.write_all_at(text.as_bytes(), 0)?;
        f.set_len(text.len() as u64)
    });
    match in_place {
        Ok(()) => log::debug!("state file {} rewritten in place: {e}", path.display()),
        Err(e2) => log::warn!(
            "cannot write the state file {}: {e}; nor in place: {e2}",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use feedfs_protocol::reqlog::{decode, Event};
    use feedfs_protocol::{EntryKind, ManifestBuilder};

    fn manifest(blocks: u64) -> Manifest {
        let mut b = ManifestBuilder::new();
        b.push(FileId(0), EntryKind::Dir, "d", 0, 0o755, 0, [0; 16])
            .unwrap();
        b.push(
            FileId(1),
            EntryKind::File,
            "d/f",
            blocks * 4096,
            0o644,
            4096,
            [5; 16],
        )
        .unwrap();
        b.finish(2, blocks * 4096).unwrap()
    }

    fn tempdir(name: &str) -> TempDir {
        TempDir::new(&format!("reqlog-{name}"))
    }

    #[test]
    fn reads_become_records_and_first_touches_coalesce() {
        let dir = tempdir("records");
        let log = RequestLog::start(&dir, &manifest(100));
        log.link(true);
        log.served(FileId(1), 0, 1, 8192);
        log.served(FileId(1), 2, 3, 8192);
        log.served(FileId(1), 0, 3, 16384); // nothing new
        log.waiting(FileId(1), 10, 10);
        log.waited(FileId(1), 10, 10, Instant::now(), 99, Outcome::Served, true);
        log.served(FileId(1), 10, 11, 8192); // only 11 is new
        log.served(FileId(0), 0, 0, 1); // a directory: ignored
        log.close();
        let state = fs::read_to_string(state_path(&dir)).unwrap();
        assert!(
            state.contains("running no\n") && state.contains("link up\n"),
            "{state}"
        );
        let d = decode(&fs::read(current_path(&dir)).unwrap()).unwrap();
        assert_eq!(d.mounts.len(), 1);
        let m = &d.mounts[0];
        assert_eq!(m.files.len(), 1);
        assert_eq!(m.files[0].path, "d/f");
        let kinds: Vec<String> = m
            .events
            .iter()
            .map(|e| match e {
                Event::Link { up, .. } => format!("link {up}"),
                Event::Touch { first, count, .. } => format!("touch {first}+{count}"),
                Event::Wait {
                    first, count, pid, ..
                } => format!("wait {first}+{count} {pid}"),
                Event::Served { reads, bytes, .. } => format!("served {reads} {bytes}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "link true",
                "touch 0+4",
                "wait 10+1 99",
                "touch 11+1",
                "served 4 40960"
            ]
        );
        // A second daemon appends a new mount to the same file.
        let log = RequestLog::start(&dir, &manifest(100));
        log.served(FileId(1), 5, 5, 4096);
        drop(log);
        let d = decode(&fs::read(current_path(&dir)).unwrap()).unwrap();
        assert_eq!(d.mounts.len(), 2);
    }

    #[test]
    fn the_log_rotates_and_stays_bounded() {
        let dir = tempdir("rotate");
        let log = RequestLog::start(&dir, &manifest(1 << 20));
        // Scattered first touches: one record each, three files' worth.
        for round in 0..6 {
            for i in 0..10_000u64 {
                log.served(
                    FileId(1),
                    round * 100_000 + i * 2,
                    round * 100_000 + i * 2,
                    4096,
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        log.close();
        let cur = fs::metadata(current_path(&dir)).unwrap().len();
        let old = fs::metadata(rotated_path(&dir)).unwrap().len();
        assert!(cur <= MAX_LOG_FILE && old <= MAX_LOG_FILE, "{cur} {old}");
        // Both decode; the newer starts with a continued mount of the same daemon.
        let older = decode(&fs::read(rotated_path(&dir)).unwrap()).unwrap();
        let newer = decode(&fs::read(current_path(&dir)).unwrap()).unwrap();
        assert_eq!(older.mounts[0].pid, newer.mounts[0].pid);
        assert_eq!(
            newer.mounts[0].files.len(),
            1,
            "the file is announced again"
        );
        let both = feedfs_protocol::reqlog::join(older, newer);
        assert_eq!(both.mounts.len(), 1, "one daemon, one mount");
    }

    #[test]
    fn a_damaged_log_is_started_afresh_and_a_torn_one_cut() {
        let dir = tempdir("damaged");
        fs::create_dir_all(dir.join("log")).unwrap();
        fs::write(current_path(&dir), b"garbage that is no log at all, really").unwrap();
        drop(RequestLog::start(&dir, &manifest(10)));
        let mut bytes = fs::read(current_path(&dir)).unwrap();
        assert!(decode(&bytes).is_ok());
        bytes.extend_from_slice(&[1, 2, 3]);
        fs::write(current_path(&dir), &bytes).unwrap();
        drop(RequestLog::start(&dir, &manifest(10)));
        let d = decode(&fs::read(current_path(&dir)).unwrap()).unwrap();
        assert_eq!((d.torn_tail, d.mounts.len()), (0, 2));
    }
}
