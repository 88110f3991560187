//! The writes' unit tests: what a reopen finds after a write, after a
//! crash at each step of one, and after a torn page; a landing run never
//! overwrites a written page; discarding makes the pages missing again.

use std::os::unix::fs::FileExt;

use super::super::tests::{entry, page, tempdir};
use super::super::Store;
use super::{writes_path, Before, Slot, Writes};

const SIZE: u64 = 4 * 4096 + 100;

fn land(f: &crate::store::StoredFile, first: u64, data: &[u8]) {
    let crcs: Vec<u32> = data.chunks(4096).map(crc32fast::hash).collect();
    f.write_run(first, Some(data), &crcs).unwrap();
}

fn read(f: &crate::store::StoredFile, offset: u64, len: usize) -> Vec<u8> {
    f.check_pages(0, f.pages()).unwrap();
    f.read_at(offset, len).unwrap()
}

#[test]
fn a_write_over_missing_and_present_pages_survives_a_reopen() {
    let dir = tempdir("writes-reopen");
    let e = entry(SIZE, 1);
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        land(&f, 0, &page(0, 4096));
        // Part of page 0 (present) and the whole of page 1 (missing).
        assert_eq!(f.write(4000, &[9; 4192], None).unwrap(), 1);
        assert_eq!(f.written_bytes(), 2 * 4096);
        // Part of a missing page needs its content.
        assert!(matches!(
            f.write(3 * 4096 + 10, b"x", None),
            Err(super::WriteError::Missing { page: 3 })
        ));
        assert_eq!(f.write_needs(3 * 4096 + 10, 1), Some((3, 1)));
        f.sync_writes().unwrap();
    }
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&e).unwrap();
    let mut want = page(0, 4096);
    want[4000..].fill(9);
    assert_eq!(read(&f, 0, 4096), want);
    assert_eq!(read(&f, 4096, 4096), vec![9; 4096]);
    assert_eq!(f.present_count(), 2);
    assert_eq!(f.written_bytes(), 2 * 4096);
}

#[test]
fn a_landing_run_leaves_written_pages_alone() {
    let dir = tempdir("writes-land");
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&entry(SIZE, 1)).unwrap();
    f.write(4096, &[5; 4096], None).unwrap();
    let run: Vec<u8> = (0..3).flat_map(|i| page(i, 4096)).collect();
    land(&f, 0, &run);
    assert_eq!(read(&f, 4096, 4096), vec![5; 4096]);
    assert_eq!(read(&f, 0, 4096), page(0, 4096));
}

/// Mark page `page` written in the writes file of the store at `dir` with
/// `slot`, as a write does before its data.
fn crash_after_the_slot_of(
    dir: &std::path::Path,
    e: &feedfs_protocol::Entry,
    page: u64,
    slot: Slot,
) {
    let data = dir
        .join("files")
        .join(super::super::key_of(&e.path))
        .with_extension("data");
    let path = writes_path(&data);
    let mut w = Writes::open(&path).unwrap().unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    w.write_slots(&file, page, &[slot]).unwrap();
    w.mark(&file, page, page, true).unwrap();
}

fn crash_after_the_slot(dir: &std::path::Path, e: &feedfs_protocol::Entry, slot: Slot) {
    crash_after_the_slot_of(dir, e, 1, slot)
}

#[test]
fn a_write_cut_before_its_data_leaves_the_page_as_it_was() {
    let dir = tempdir("writes-cut");
    let e = entry(SIZE, 1);
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        land(&f, 0, &page(0, 4096));
        land(&f, 1, &page(1, 4096));
        f.write(0, &[1; 10], None).unwrap();
        f.sync_map().unwrap();
    }
    // Over the host's page 1: its bytes are still the host's.
    let host = crc32fast::hash(&page(1, 4096));
    crash_after_the_slot(
        &dir,
        &e,
        Slot {
            crc: 77,
            before_crc: host,
            before: Before::Host,
        },
    );
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        assert_eq!(read(&f, 4096, 4096), page(1, 4096), "as it was: the host's");
        assert_eq!(f.written_bytes(), 4096, "only page 0 is written");
    }
    // Over a missing page (a hole in the data file): missing again.
    crash_after_the_slot_of(
        &dir,
        &e,
        3,
        Slot {
            crc: 77,
            before_crc: crc32fast::hash(&[0; 4096]),
            before: Before::Missing,
        },
    );
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        let scan = f.check_pages(3, 1).unwrap();
        assert_eq!((scan.missing, f.written_bytes()), (1, 4096));
    }
    // Bytes that match neither (a power cut reordered the disk's writes):
    // torn, even over the host's page, never taken for it.
    crash_after_the_slot(
        &dir,
        &e,
        Slot {
            crc: 77,
            before_crc: 78,
            before: Before::Host,
        },
    );
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&e).unwrap();
    f.check_pages(1, 1).unwrap();
    assert!(f.torn_in(1, 1));
}

#[test]
fn a_page_matching_neither_write_is_torn_and_never_served() {
    let dir = tempdir("writes-torn");
    let e = entry(SIZE, 1);
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        f.write(4096, &[1; 4096], None).unwrap();
        f.write(4096, &[2; 4096], None).unwrap();
        f.sync_map().unwrap();
    }
    // Half of the second write reached the disk.
    let data = dir
        .join("files")
        .join(super::super::key_of(&e.path))
        .with_extension("data");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .write_all_at(&[1; 2048], 4096)
        .unwrap();
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&e).unwrap();
    f.check_pages(1, 1).unwrap();
    assert!(f.torn_in(1, 1));
    assert!(matches!(
        f.write(4100, b"x", None),
        Err(super::WriteError::Torn { page: 1 })
    ));
    // A whole-page write heals it.
    f.write(4096, &[3; 4096], None).unwrap();
    assert!(!f.torn_in(1, 1));
    assert_eq!(read(&f, 4096, 4096), vec![3; 4096]);
}

#[test]
fn a_rewrite_cut_before_its_data_keeps_the_earlier_write() {
    let dir = tempdir("writes-older");
    let e = entry(SIZE, 1);
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        f.write(4096, &[1; 4096], None).unwrap();
    }
    let first = crc32fast::hash(&[1; 4096]);
    crash_after_the_slot(
        &dir,
        &e,
        Slot {
            crc: 99,
            before_crc: first,
            before: Before::Own,
        },
    );
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&e).unwrap();
    assert_eq!(read(&f, 4096, 4096), vec![1; 4096]);
    assert!(!f.torn_in(1, 1));
}

#[test]
fn discarding_makes_written_pages_missing_and_removes_the_writes_file() {
    let dir = tempdir("writes-discard");
    let e = entry(SIZE, 1);
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&e).unwrap();
    land(&f, 0, &page(0, 4096));
    f.write(0, &[4; 8192], None).unwrap();
    assert_eq!(f.discard_writes().unwrap(), 8192);
    assert_eq!(f.present_count(), 0);
    assert_eq!(f.written_bytes(), 0);
    drop(f);
    let f = store.open_file(&e).unwrap();
    assert_eq!(
        f.present_count(),
        0,
        "discarded pages stay missing after a reopen"
    );
}

#[test]
fn writes_to_an_older_version_hold_the_new_one_even_when_it_is_empty() {
    let dir = tempdir("writes-held");
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&entry(SIZE, 1)).unwrap();
        f.write(0, &[3; 4096], None).unwrap();
        f.sync_writes().unwrap();
    }
    let store = Store::open(&dir).unwrap();
    for new in [entry(SIZE, 2), entry(0, 2), entry(SIZE + 4096, 1)] {
        let f = store.open_file(&new).unwrap();
        let why = f.held().expect("held");
        assert!(why.contains("another version"), "{why}");
        drop(f);
    }
    // The writes are still there for the version they were made to.
    let f = store.open_file(&entry(SIZE, 1)).unwrap();
    assert!(f.held().is_none());
    assert_eq!(read(&f, 0, 4096), vec![3; 4096]);
}
