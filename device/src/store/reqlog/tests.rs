//! The request log's unit tests: records and coalesced first touches,
//! rotation within the bound, damaged and torn logs.

use std::fs;
use std::time::{Duration, Instant};

use super::*;
use feedfs_protocol::reqlog::{decode, Event};
use feedfs_protocol::ManifestBuilder;

use crate::testentry::{dir_entry, file_entry};
use crate::testutil::TempDir;

/// A directory "d" and a file "d/f" of `pages` pages.
fn manifest(pages: u64) -> Manifest {
    let mut b = ManifestBuilder::new();
    b.push(dir_entry(0, "d")).unwrap();
    b.push(file_entry(1, "d/f", pages * 4096, [5; 16])).unwrap();
    b.finish(2, pages * 4096).unwrap()
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
    log.served(FileId(1), 2, 3, 8192); // extends the record
    log.served(FileId(1), 0, 3, 16384); // nothing new
    log.waiting(FileId(1), 40, 40);
    log.waited(Waited {
        file: FileId(1),
        first: 40,
        last: 40,
        since: Instant::now(),
        pid: 99,
        outcome: Outcome::Served,
        demanded: true,
    });
    log.served(FileId(1), 40, 41, 8192); // only 41 is new
    log.served(FileId(1), 99, 99, 4096);
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
            "wait 40+1 99",
            "touch 41+1",
            "touch 99+1",
            "served 5 45056"
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
            let page = round * 100_000 + i * 2;
            log.served(FileId(1), page, page, 4096);
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

#[test]
fn a_log_of_the_older_format_is_kept_as_the_previous_file() {
    let dir = tempdir("older");
    fs::create_dir_all(dir.join("log")).unwrap();
    // A format-1 log: its header, then one mount record.
    let mut old = feedfs_protocol::reqlog::header().to_vec();
    old[8] = 1;
    old.extend_from_slice(
        &feedfs_protocol::reqlog::Record::Mount {
            unix_us: 5,
            pid: 6,
            files: 0,
            continued: false,
        }
        .emit(),
    );
    fs::write(current_path(&dir), &old).unwrap();
    drop(RequestLog::start(&dir, &manifest(10)));
    // Kept whole, still readable; the current log starts afresh.
    assert_eq!(fs::read(rotated_path(&dir)).unwrap(), old);
    assert_eq!(decode(&old).unwrap().mounts[0].pid, 6);
    let now = decode(&fs::read(current_path(&dir)).unwrap()).unwrap();
    assert_eq!(now.mounts.len(), 1);
    assert_ne!(now.mounts[0].pid, 6);
}
