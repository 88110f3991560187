//! Fuzz target: a device request log, as `feedfs-host log` and `plan` read
//! one copied off a device.
//!
//! Input byte 0: bit 0 set keeps the records' CRCs as they are; clear, each
//! record's CRC is recomputed first, so mutated records reach the checks
//! behind it. Byte 1 picks a record at which the log is also cut in two
//! files (a rotated log and its successor) for `join`. The rest is the log.
//!
//! What runs: `reqlog::decode` (format 2 in pages, and format 1 in
//! blocks, given in pages) on the whole and on both halves, `join`;
//! `Record::parse` on every record; then the host's `trace::read_log` on
//! the log as a file, `Run::end_us`, and (when the log's events cover at
//! most [`MAX_EXPANDED`] pages, since both work page by page)
//! `summary::summarize` and `render`, `learn::learn`. Checked invariants:
//! nothing panics; a record that parses emits 32 bytes that parse back to
//! it; a decoded log only names announced files, with valid paths, and
//! page ranges inside them; a learned plan encodes to bytes that
//! `Plan::decode` accepts and gives back the same plan. The log file lives
//! in a scratch directory under /dev/shm (or the temp dir) named after the
//! process.
#![no_main]

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use feedfs_host::prefetch::plan::Plan;
use feedfs_host::logs::{summary, trace};
use feedfs_host::prefetch::learn;
use feedfs_protocol::reqlog::{self, Decoded, Event, Record, RECORD_LEN};
use libfuzzer_sys::fuzz_target;

/// Most pages the log's events may cover for the page-by-page passes.
const MAX_EXPANDED: u64 = 1 << 12;

fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("feedfs-fuzz-reqlog-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("scratch directory");
        dir.join("requests.log")
    })
}

fuzz_target!(|data: &[u8]| {
    let [flags, cut, log @ ..] = data else {
        return;
    };
    let mut log = log.to_vec();
    if flags & 1 == 0 && log.len() > RECORD_LEN {
        for rec in log[RECORD_LEN..].chunks_exact_mut(RECORD_LEN) {
            let crc = crc32fast::hash(&rec[..28]);
            rec[28..].copy_from_slice(&crc.to_le_bytes());
        }
    }

    if log.len() > RECORD_LEN {
        for raw in log[RECORD_LEN..].chunks_exact(RECORD_LEN) {
            let raw: &[u8; RECORD_LEN] = raw.try_into().expect("chunks_exact");
            if let Ok(rec) = Record::parse(raw) {
                assert_eq!(Record::parse(&rec.emit()), Ok(rec), "{rec:?} emitted");
            }
        }
    }

    let whole = reqlog::decode(&log);
    if let Ok(d) = &whole {
        check(d);
    }
    if log.len() > RECORD_LEN {
        let records = (log.len() - RECORD_LEN) / RECORD_LEN;
        let at = RECORD_LEN * (1 + usize::from(*cut) % (records + 1));
        let older = reqlog::decode(&log[..at]);
        let mut newer = log[..RECORD_LEN].to_vec();
        newer.extend_from_slice(&log[at..]);
        if let (Ok(a), Ok(b)) = (older, reqlog::decode(&newer)) {
            check(&a);
            check(&b);
            check(&reqlog::join(a, b));
        }
    }

    let path = scratch();
    fs::write(path, &log).expect("scratch log");
    let Ok(runs) = trace::read_log(path) else {
        assert!(
            whole.is_err() || !log.starts_with(&reqlog::LOG_MAGIC),
            "a log that decodes is read"
        );
        return;
    };
    let mut expanded = 0u64;
    for run in &runs {
        let _ = run.end_us();
        expanded += run.demands.iter().map(|d| d.count).sum::<u64>();
        expanded += run.touches.iter().map(|t| t.count).sum::<u64>();
    }
    if expanded > MAX_EXPANDED {
        return;
    }
    for run in &runs {
        let _ = summary::render(&summary::summarize(run), 20);
    }
    let window = u64::from(*cut >> 4);
    let (plan, _warnings) = learn::learn(&runs, window);
    let bytes = plan.encode();
    assert_eq!(
        Plan::decode(&bytes).as_ref(),
        Ok(&plan),
        "a learned plan decodes to itself"
    );
});

/// What a decoded log promises its readers.
fn check(d: &Decoded) {
    for m in &d.mounts {
        let mut ids = std::collections::HashSet::new();
        for f in &m.files {
            assert!(ids.insert(f.id), "{} listed twice", f.id);
            assert!(feedfs_protocol::manifest::check_path(&f.path).is_ok());
            assert!(f.size <= feedfs_protocol::manifest::MAX_FILE_SIZE);
        }
        for e in &m.events {
            let (file, range) = match *e {
                Event::Link { .. } => continue,
                Event::Wait {
                    file, first, count, ..
                }
                | Event::Touch {
                    file, first, count, ..
                } => (file, Some((first, count))),
                Event::Served { file, .. } => (file, None),
            };
            assert!(file < m.files.len(), "event names file {file}");
            if let Some((first, count)) = range {
                assert!(count > 0 && first + count <= m.files[file].pages());
            }
        }
    }
}
