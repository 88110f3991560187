//! `feedfs-device status`: what a store holds and what its readers waited
//! for, read from outside the daemon, while it runs or after.
//!
//! It only reads: the saved manifest, each file's page map, the request
//! log and the state file, taking no lock, so it never disturbs a running
//! daemon. Present pages come from the maps (a running daemon writes them
//! at least once a second) and waits from the log (written once a second),
//! so a running daemon's figures may be a second behind. Waits are those of
//! the last mount in the log: the running daemon's, or the last one's. The
//! store's size on disk is the allocated blocks of every file in it.

use std::fs;
use std::path::Path;

use anyhow::Context;
use feedfs_protocol::reqlog::{self, Event, Outcome};
use feedfs_protocol::{page_len, EntryKind, FileId, PAGE_SIZE};
use serde::Serialize;

use crate::store::reqlog::{current_path, rotated_path, state_path, STATE_HEADER};
use crate::store::writes::{writes_path, Writes};
use crate::store::{disk_usage, present_on_disk, read_manifest};

/// One served file.
#[derive(Debug, Clone, Serialize)]
pub struct FileStatus {
    pub path: String,
    pub size: u64,
    pub present_bytes: u64,
    pub pages: u64,
    pub present_pages: u64,
    /// Reads that had to wait for missing pages (in the last mount).
    pub demand_requests: u64,
    pub median_wait_us: Option<u64>,
    pub p99_wait_us: Option<u64>,
    /// Of those, reads that failed or timed out.
    pub failed: u64,
    pub timed_out: u64,
    /// Reads served at once from present pages (last mount, as last logged).
    pub served_at_once: u64,
    /// Bytes written on the device (`mount --writable`).
    pub written_bytes: u64,
    /// The writes were made over another version of the file than the one
    /// the host serves now: it is not served until they are exported or
    /// discarded (`feedfs-device overlay`).
    pub held: bool,
}

/// The daemon that uses (or last used) the store.
#[derive(Debug, Clone, Serialize)]
pub struct Daemon {
    pub pid: u32,
    /// Whether that daemon is running now.
    pub running: bool,
    /// `up`, `down`, or `none` when no daemon runs.
    pub link: String,
    pub mounted_unix_us: u64,
}

/// Everything `status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub store: String,
    /// `None` when no daemon has left a state file in this store.
    pub daemon: Option<Daemon>,
    pub files: Vec<FileStatus>,
    /// Bytes the served files hold (the manifest's total).
    pub served_bytes: u64,
    /// Bytes the store takes on disk (allocated blocks of all its files).
    pub disk_bytes: u64,
    /// Problems met on the way (a damaged log), reported, not fatal.
    pub notes: Vec<String>,
}

/// Read the status of the store at `dir`.
pub fn status(dir: &Path) -> anyhow::Result<Status> {
    let manifest = read_manifest(dir)?;
    let mut notes = Vec::new();
    let daemon = match read_state(dir) {
        Ok(d) => d,
        Err(e) => {
            notes.push(format!("state file: {e:#}"));
            None
        }
    };
    let last = match read_log(dir) {
        Ok((log, torn)) => {
            if torn > 0 {
                notes.push(format!(
                    "request log: {torn} bytes of a record cut short left out"
                ));
            }
            log.mounts.into_iter().last()
        }
        Err(e) => {
            notes.push(format!("request log: {e:#}"));
            None
        }
    };
    let mut files = Vec::new();
    for i in 0..manifest.host_entries() {
        let Some(e) = manifest
            .get(FileId(i))
            .filter(|e| e.kind == EntryKind::File)
        else {
            continue;
        };
        let present = present_on_disk(dir, e)
            .with_context(|| format!("cannot read the page map of {}", e.path))?;
        let (present_pages, last_present) = present.unwrap_or((0, false));
        let ps = u64::from(PAGE_SIZE);
        let mut present_bytes = present_pages * ps;
        if last_present {
            present_bytes = present_bytes - ps + page_len(e.size, e.pages() - 1) as u64;
        }
        let mut waits = Vec::new();
        let (mut failed, mut timed_out, mut served_at_once) = (0, 0, 0);
        if let Some(m) = &last {
            let idx = m
                .files
                .iter()
                .position(|f| f.path == e.path && f.size == e.size && f.identity == e.identity);
            for ev in m.events.iter().filter(|_| idx.is_some()) {
                match *ev {
                    Event::Wait {
                        file,
                        wait_us,
                        outcome,
                        ..
                    } if Some(file) == idx => {
                        waits.push(u64::from(wait_us));
                        match outcome {
                            Outcome::Served => {}
                            Outcome::Failed => failed += 1,
                            Outcome::TimedOut => timed_out += 1,
                        }
                    }
                    Event::Served { file, reads, .. } if Some(file) == idx => {
                        served_at_once = u64::from(reads)
                    }
                    _ => {}
                }
            }
        }
        waits.sort_unstable();
        let key = crate::store::key_of(&e.path);
        let writes = writes_path(&dir.join("files").join(key).with_extension("data"));
        let (written_bytes, held) = match Writes::open(&writes) {
            Ok(Some(w)) => (
                w.written_bytes(),
                w.header.identity != e.identity || w.header.size != e.size,
            ),
            Ok(None) => (0, false),
            Err(why) => {
                notes.push(format!("the writes of {} cannot be read: {why}", e.path));
                (0, true)
            }
        };
        files.push(FileStatus {
            path: e.path.clone(),
            size: e.size,
            present_bytes,
            pages: e.pages(),
            present_pages,
            demand_requests: waits.len() as u64,
            median_wait_us: percentile(&waits, 50),
            p99_wait_us: percentile(&waits, 99),
            failed,
            timed_out,
            served_at_once,
            written_bytes,
            held,
        });
    }
    let disk_bytes =
        disk_usage(dir).with_context(|| format!("cannot measure the store {}", dir.display()))?;
    Ok(Status {
        store: dir.display().to_string(),
        daemon,
        files,
        served_bytes: manifest.total_bytes(),
        disk_bytes,
        notes,
    })
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: u32) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p as usize).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

/// Both log files of a store, older first, joined.
fn read_log(dir: &Path) -> anyhow::Result<(reqlog::Decoded, usize)> {
    let mut out = reqlog::Decoded::default();
    for path in [rotated_path(dir), current_path(dir)] {
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let d = reqlog::decode(&bytes).with_context(|| format!("{}", path.display()))?;
        out = reqlog::join(out, d);
    }
    let torn = out.torn_tail;
    Ok((out, torn))
}

/// The state file, and whether its daemon is alive.
fn read_state(dir: &Path) -> anyhow::Result<Option<Daemon>> {
    let path = state_path(dir);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut lines = text.lines();
    anyhow::ensure!(
        lines.next() == Some(STATE_HEADER),
        "{} does not start with {STATE_HEADER:?}",
        path.display()
    );
    let mut pid = None;
    let mut running = None;
    let mut link = None;
    let mut mounted = None;
    for line in lines {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "pid" => pid = value.parse::<u32>().ok(),
            "running" => running = Some(value == "yes"),
            "link" => link = Some(value.to_string()),
            "mounted_unix_us" => mounted = value.parse::<u64>().ok(),
            _ => {}
        }
    }
    let (Some(pid), Some(running), Some(link), Some(mounted)) = (pid, running, link, mounted)
    else {
        anyhow::bail!(
            "{} lacks one of pid, running, link, mounted_unix_us",
            path.display()
        );
    };
    let running = running && is_daemon(pid);
    Ok(Some(Daemon {
        pid,
        running,
        link: if running { link } else { "none".into() },
        mounted_unix_us: mounted,
    }))
}

/// Whether `pid` is a live feedfs-device process (not a zombie, not a
/// reused pid of another program).
fn is_daemon(pid: u32) -> bool {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    comm.trim_end() == "feedfs-device" && !matches!(state, Some("Z" | "X") | None)
}

/// A size in the unit that fits it: bytes below 1 KiB, then KiB, MiB, GiB
/// and TiB with one decimal (`512 B`, `4.0 KiB`, `1.5 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Move up while the value would print as 1024.0 or more.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn ms(us: Option<u64>) -> String {
    us.map_or("-".into(), |u| format!("{:.1} ms", u as f64 / 1000.0))
}

/// The status as a table for people.
pub fn render_text(s: &Status) -> String {
    let mut out = format!("store {}\n", s.store);
    out += &match &s.daemon {
        Some(d) if d.running => format!("daemon: pid {}, running, link {}\n", d.pid, d.link),
        Some(d) => format!("daemon: none (the last one, pid {}, has stopped)\n", d.pid),
        None => "daemon: none has run on this store with logging\n".into(),
    };
    out += &format!(
        "on disk: {} for {} served\n",
        human_bytes(s.disk_bytes),
        human_bytes(s.served_bytes)
    );
    let width = s
        .files
        .iter()
        .map(|f| f.path.len())
        .max()
        .unwrap_or(4)
        .max(4);
    out += &format!(
        "{:width$}  {:>23}  {:>7}  {:>10}  {:>10}\n",
        "file", "present / total", "demands", "median", "p99"
    );
    for f in &s.files {
        let present = format!("{} / {}", human_bytes(f.present_bytes), human_bytes(f.size));
        out += &format!(
            "{:width$}  {:>23}  {:>7}  {:>10}  {:>10}",
            f.path,
            present,
            f.demand_requests,
            ms(f.median_wait_us),
            ms(f.p99_wait_us)
        );
        if f.written_bytes > 0 {
            out += &format!("  ({} written)", human_bytes(f.written_bytes));
        }
        if f.held {
            out += "  (held: written over another version; see `feedfs-device overlay list`)";
        }
        if f.failed + f.timed_out > 0 {
            out += &format!(
                "  ({} failed, {} {})",
                f.failed,
                f.timed_out,
                Outcome::TimedOut.as_str()
            );
        }
        out.push('\n');
    }
    for n in &s.notes {
        out += &format!("note: {n}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::reqlog::{RequestLog, Waited};
    use crate::store::Store;
    use crate::testutil::TempDir;
    use feedfs_protocol::ManifestBuilder;
    use std::time::{Duration, Instant};

    #[test]
    fn a_store_with_pages_and_waits_is_reported() {
        let dir = TempDir::new("status");
        let mut b = ManifestBuilder::new();
        b.push(crate::testentry::file_entry(0, "a.bin", 10_000, [1; 16]))
            .unwrap();
        b.push(crate::testentry::file_entry(1, "b.bin", 4096, [2; 16]))
            .unwrap();
        let m = b.finish(2, 14_096).unwrap();
        let store = Store::open(&dir).unwrap();
        store.save_manifest(&m).unwrap();
        let a = store.open_file(m.get(FileId(0)).unwrap()).unwrap();
        let last = vec![7u8; 10_000 - 8192];
        assert_eq!(
            a.write_run(2, Some(&last), &[crc32fast::hash(&last)])
                .unwrap(),
            1
        );
        a.flush_map().unwrap();
        let log = RequestLog::start(&dir, &m);
        let t = Instant::now() - Duration::from_millis(30);
        for (pid, outcome) in [
            (5, Outcome::Served),
            (6, Outcome::TimedOut),
            (7, Outcome::Served),
        ] {
            log.waited(Waited {
                file: FileId(0),
                first: 2,
                last: 2,
                since: t,
                pid,
                outcome,
                demanded: true,
            });
        }
        log.close();
        let s = status(&dir).unwrap();
        assert!(s.notes.is_empty(), "{:?}", s.notes);
        let d = s.daemon.as_ref().unwrap();
        assert!(!d.running, "the log was closed: the daemon stopped");
        assert_eq!(d.link, "none");
        let f = &s.files[0];
        assert_eq!((f.present_pages, f.present_bytes), (1, 10_000 - 8192));
        assert_eq!((f.demand_requests, f.timed_out, f.failed), (3, 1, 0));
        assert!(f.median_wait_us.unwrap() >= 30_000);
        assert_eq!(s.files[1].demand_requests, 0);
        assert_eq!(s.files[1].median_wait_us, None);
        let text = render_text(&s);
        assert!(text.contains("daemon: none (the last one"), "{text}");
        assert!(text.contains("(0 failed, 1 timed out)"), "{text}");
        assert!(text.contains("1.8 KiB / 9.8 KiB"), "{text}");
        assert!(text.contains("0 B / 4.0 KiB"), "{text}");
        assert!(s.disk_bytes > 0 && text.contains("on disk: "), "{text}");
        assert!(text.contains(" for 13.8 KiB served\n"), "{text}");
        // A damaged log is a note, not a failure.
        fs::write(
            crate::store::reqlog::current_path(&dir),
            b"FDFSRLOG garbage",
        )
        .unwrap();
        let s = status(&dir).unwrap();
        assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
        assert_eq!(s.files[0].demand_requests, 0);
    }

    #[test]
    fn sizes_are_shown_in_the_unit_that_fits() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1), "1 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(10_000 - 8192), "1.8 KiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_bytes(65 << 20), "65.0 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(5 << 40), "5.0 TiB");
        assert_eq!(human_bytes(u64::MAX), "16777216.0 TiB");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 99), Some(7));
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 99), Some(99));
        assert_eq!(percentile(&[1, 2, 3], 50), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 50), Some(2));
    }
}
