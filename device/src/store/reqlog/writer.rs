//! The request log's writer thread: appends what readers buffered as
//! records of the `feedfs-protocol` reqlog format, announcing each file
//! before its first record in a log file, and rotates the file before it
//! would pass [`MAX_LOG_FILE`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use feedfs_protocol::reqlog::{self, Record, RECORD_LEN};
use feedfs_protocol::FileId;

use super::state::write_state;
use super::{current_path, micros, rotated_path, Shared, FLUSH_EARLY};

/// Largest size of one log file; two of them are kept.
pub const MAX_LOG_FILE: u64 = 1 << 20;

/// How often the writer appends what readers recorded.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

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

pub(super) fn write_loop(shared: &Shared) {
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
    /// Open the current file for appending: a torn last record is cut off;
    /// a file with another header is started afresh, and one of an older
    /// format that `feedfs-host log` still reads (format 1, in blocks) is
    /// first kept as `requests.1.log`, as a rotation would; then the mount
    /// record.
    fn open(&mut self, shared: &Shared) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)?;
        let mut head = [0u8; RECORD_LEN];
        let len = file.metadata()?.len();
        let read = len >= RECORD_LEN as u64 && file.read_exact(&mut head).is_ok();
        let good = read && head == reqlog::header();
        if read && !good && reqlog::decode(&head).is_ok() {
            drop(file);
            fs::rename(&self.path, rotated_path(&shared.dir))?;
            log::info!(
                "request log: kept the log of an older format as {}",
                rotated_path(&shared.dir).display()
            );
            file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&self.path)?;
        }
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
                batch = reqlog::file_records(id, f.size, &f.identity, &f.path);
            }
            batch.push(*rec);
            let pending = (out.len() + batch.len()) * RECORD_LEN;
            if self.len + pending as u64 > MAX_LOG_FILE {
                self.raw(&out)?;
                out.clear();
                self.rotate(shared)?;
                if let Some(id) = file {
                    if let Some(f) = shared.file(id) {
                        batch = reqlog::file_records(id, f.size, &f.identity, &f.path);
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
