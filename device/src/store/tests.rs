//! The store's unit tests: blocks surviving a reopen, batched map writes,
//! bounded descriptors, damaged and zero blocks, the manifest and pruning.

use super::*;
use std::os::unix::fs::FileExt;

use feedfs_protocol::{EntryKind, FileId};

use super::layout::MapLayout;
use super::open::{OpenFiles, Pair};
use crate::testutil::TempDir;

fn entry(size: u64, identity: u8) -> Entry {
    Entry {
        id: Some(FileId(0)),
        kind: EntryKind::File,
        path: "dir/file.bin".into(),
        size,
        mode: 0o644,
        block_size: 4096,
        identity: [identity; 16],
    }
}

fn tempdir(name: &str) -> TempDir {
    TempDir::new(&format!("store-{name}"))
}

fn block(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
}

#[test]
fn blocks_survive_a_reopen_and_a_changed_identity_resets() {
    let dir = tempdir("reopen");
    let e = entry(10_000, 1);
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        assert_eq!(f.blocks(), 3);
        let b2 = block(2, 10_000 - 8192);
        assert!(f.write_block(2, &b2, crc32fast::hash(&b2)).unwrap());
        assert!(!f.write_block(2, &b2, crc32fast::hash(&b2)).unwrap());
        assert!(
            f.write_block(0, &[1; 10], 0).is_err(),
            "short block refused"
        );
    }
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        assert_eq!(f.present_ranges(), vec![(2, 1)]);
        assert_eq!(f.check(2).unwrap(), BlockState::Ready);
        assert_eq!(f.read_at(8192, 4096).unwrap(), block(2, 10_000 - 8192));
    }
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&entry(10_000, 2)).unwrap();
        assert_eq!(f.present_count(), 0, "identity changed: nothing trusted");
    }
}

#[test]
fn the_map_is_written_in_batches_crcs_before_bits() {
    let dir = tempdir("batch");
    let e = entry(20 * 4096, 1);
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&e).unwrap();
    let map_path = dir
        .join("files")
        .join(key_of(&e.path))
        .with_extension("map");
    let on_disk = || {
        let bytes = fs::read(&map_path).unwrap();
        let layout = MapLayout::new(e.path.len(), 20);
        let bits = bytes[layout.bitmap_off as usize];
        let crc3 = &bytes[(layout.crc_off + 12) as usize..(layout.crc_off + 16) as usize];
        (bits, u32::from_le_bytes(crc3.try_into().unwrap()))
    };
    let b3 = block(3, 4096);
    f.write_block(3, &b3, crc32fast::hash(&b3)).unwrap();
    assert_eq!(f.present_count(), 1, "present in memory at once");
    assert_eq!(on_disk(), (0, 0), "not on disk before a flush");
    f.flush_map().unwrap();
    assert_eq!(on_disk(), (0b1000, crc32fast::hash(&b3)));
    // A sync writes the pending entries too, and leaves nothing unsynced.
    let b4 = block(4, 4096);
    f.write_block(4, &b4, crc32fast::hash(&b4)).unwrap();
    f.sync_map().unwrap();
    assert_eq!(on_disk().0, 0b1_1000);
    let st = f.f.lock();
    assert!(st.dirty.is_none() && !st.data_unsynced && !st.map_unsynced);
    drop(st);
    drop(f);
}

#[test]
fn a_map_that_cannot_be_written_does_not_lose_a_stored_block() {
    let dir = tempdir("mapfail");
    let blocks = MAP_BATCH + 1;
    let e = entry(blocks * 4096, 1);
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&e).unwrap();
    // Writes to the map fail from now on (as on a full disk).
    let data = OpenOptions::new().write(true).open(&f.f.data_path).unwrap();
    let map = File::open(&f.f.map_path).unwrap();
    f.f.open.put(f.f.slot, Pair { data, map });
    for i in 0..MAP_BATCH {
        let b = block(i, 4096);
        assert!(
            f.write_block(i, &b, crc32fast::hash(&b)).unwrap(),
            "block {i}: stored, its map entry pending"
        );
    }
    assert_eq!(f.present_count(), MAP_BATCH);
    assert!(f.flush_map().is_err());
    assert!(f.sync_map().is_err());
    // Once the map can be written again, the pending entries reach it.
    f.f.open.close(f.f.slot);
    f.sync_map().unwrap();
    drop(f);
    let f = store.open_file(&e).unwrap();
    assert_eq!(f.present_ranges(), vec![(0, MAP_BATCH)]);
    drop(f);
}

#[test]
fn open_descriptors_stay_bounded_and_empty_files_have_none() {
    let dir = tempdir("bounded");
    let mut store = Store::open(&dir).unwrap();
    store.open = Arc::new(OpenFiles::new(4));
    let files: Vec<(Entry, StoredFile)> = (0..10)
        .map(|i| {
            let mut e = entry(5000, 1);
            e.path = format!("f{i}");
            let f = store.open_file(&e).unwrap();
            (e, f)
        })
        .collect();
    assert_eq!(store.open.open_count(), 4);
    // Every file still works, each opened again on demand.
    for (i, (_, f)) in files.iter().enumerate() {
        let b = block(i as u64, 4096);
        assert!(f.write_block(0, &b, crc32fast::hash(&b)).unwrap());
        assert!(store.open.open_count() <= 4);
    }
    drop(files);
    assert_eq!(store.open.open_count(), 0, "a dropped file closes its pair");
    for i in 0..10u64 {
        let mut e = entry(5000, 1);
        e.path = format!("f{i}");
        let f = store.open_file(&e).unwrap();
        assert_eq!(f.present_ranges(), vec![(0, 1)], "f{i} kept its block");
        assert_eq!(f.read_at(0, 4096).unwrap(), block(i, 4096));
    }
    let mut empty = entry(0, 1);
    empty.path = "empty".into();
    let f = store.open_file(&empty).unwrap();
    assert!(f.all_verified());
    assert!(f.read_at(0, 10).unwrap().is_empty());
    let base = dir.join("files").join(key_of("empty"));
    assert!(!base.with_extension("data").exists() && !base.with_extension("map").exists());
    drop(f);
}

#[test]
fn the_least_recently_used_pair_is_closed_first() {
    let null = || {
        Ok(Pair {
            data: File::open("/dev/null")?,
            map: File::open("/dev/null")?,
        })
    };
    let open = OpenFiles::new(3);
    let is_open = |slot| open.lock().open.contains_key(&slot);
    for slot in 0..3 {
        open.get(slot, null).unwrap();
    }
    open.get(0, || panic!("0 is open")).unwrap();
    open.get(3, null).unwrap();
    assert!(!is_open(1), "1 was used least recently");
    assert!(is_open(0) && is_open(2) && is_open(3));
    open.get(2, || panic!("2 is open")).unwrap();
    open.get(4, null).unwrap();
    assert!(!is_open(0) && is_open(2) && is_open(3) && is_open(4));
    open.close(3);
    assert_eq!(open.open_count(), 2);
    let lru = open.lock();
    assert_eq!(lru.by_use.len(), lru.open.len(), "both views agree");
}

#[test]
fn a_damaged_block_is_dropped_not_served() {
    let dir = tempdir("damaged");
    let e = entry(8192, 1);
    let data_path;
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        let b = block(0, 4096);
        f.write_block(0, &b, crc32fast::hash(&b)).unwrap();
        data_path = dir
            .join("files")
            .join(key_of(&e.path))
            .with_extension("data");
    }
    // A torn write: the map says present, the data is wrong.
    let d = OpenOptions::new().write(true).open(&data_path).unwrap();
    d.write_all_at(&[0xff; 16], 100).unwrap();
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&e).unwrap();
    assert_eq!(f.present_count(), 1);
    assert_eq!(f.check(0).unwrap(), BlockState::Dropped);
    assert_eq!(f.check(0).unwrap(), BlockState::Missing);
    assert_eq!(f.present_count(), 0);
    drop(f);
    // The drop was persisted.
    let f = store.open_file(&e).unwrap();
    assert_eq!(f.present_count(), 0);
}

#[test]
fn a_zero_block_is_a_hole_and_passes_its_check() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempdir("zero");
    let e = entry(3 * 4096 + 100, 1);
    let zero_crc = crc32fast::hash(&[0; 4096]);
    let data_path = dir
        .join("files")
        .join(key_of(&e.path))
        .with_extension("data");
    let allocated = || fs::metadata(&data_path).unwrap().blocks();
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        assert!(f.write_zero_block(0, zero_crc).unwrap());
        assert!(!f.write_zero_block(0, zero_crc).unwrap(), "a duplicate");
        // The short last block too.
        assert!(f.write_zero_block(3, crc32fast::hash(&[0; 100])).unwrap());
        let b1 = block(1, 4096);
        f.write_block(1, &b1, crc32fast::hash(&b1)).unwrap();
        assert_eq!(f.present_ranges(), vec![(0, 2), (3, 1)]);
        assert_eq!(allocated(), 8, "one 4 KiB block written, the zeros not");
    }
    // A block that held data, then dropped: its zeros punch it out.
    let d = OpenOptions::new().write(true).open(&data_path).unwrap();
    d.write_all_at(&[0xff; 16], 4096 + 100).unwrap();
    drop(d);
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&e).unwrap();
    assert_eq!(
        f.check(0).unwrap(),
        BlockState::Ready,
        "a hole reads as its zeros"
    );
    assert_eq!(f.check(3).unwrap(), BlockState::Ready);
    assert_eq!(f.check(1).unwrap(), BlockState::Dropped);
    assert!(f.write_zero_block(1, zero_crc).unwrap());
    assert_eq!(allocated(), 0, "punched out");
    assert_eq!(f.read_at(0, 20_000).unwrap(), vec![0; 3 * 4096 + 100]);
    drop(f);
    let f = store.open_file(&e).unwrap();
    assert_eq!(f.present_ranges(), vec![(0, 2), (3, 1)]);
    assert_eq!(f.check(1).unwrap(), BlockState::Ready);
    drop(f);
}

#[test]
fn manifest_round_trips_through_the_store() {
    let dir = tempdir("manifest");
    let store = Store::open(&dir).unwrap();
    assert!(store
        .load_manifest()
        .unwrap_err()
        .to_string()
        .contains("holds no manifest"));
    let mut b = ManifestBuilder::new();
    b.push(
        FileId(0),
        EntryKind::File,
        "a/b.bin",
        5000,
        0o640,
        4096,
        [3; 16],
    )
    .unwrap();
    b.push(FileId(1), EntryKind::Dir, "a", 0, 0o700, 0, [0; 16])
        .unwrap();
    let m = b.finish(2, 5000).unwrap();
    store.save_manifest(&m).unwrap();
    let back = store.load_manifest().unwrap();
    assert_eq!(back.entries(), m.entries());
    fs::write(dir.join("manifest"), b"FDFS garbage").unwrap();
    assert!(store
        .load_manifest()
        .unwrap_err()
        .to_string()
        .contains("damaged"));
}

#[test]
fn prune_keeps_only_the_files_the_manifest_serves() {
    let dir = tempdir("prune");
    let store = Store::open(&dir).unwrap();
    let mut b = ManifestBuilder::new();
    b.push(
        FileId(0),
        EntryKind::File,
        "keep",
        5000,
        0o644,
        4096,
        [1; 16],
    )
    .unwrap();
    b.push(FileId(1), EntryKind::File, "empty", 0, 0o644, 4096, [2; 16])
        .unwrap();
    let m = b.finish(2, 5000).unwrap();
    let mut old = entry(8192, 3);
    old.path = "gone".into();
    let (kept, gone) = (
        store.open_file(m.get(FileId(0)).unwrap()).unwrap(),
        store.open_file(&old).unwrap(),
    );
    let b = block(0, 4096);
    gone.write_block(0, &b, crc32fast::hash(&b)).unwrap();
    drop((kept, gone));
    // An empty file's pair left by an older daemon, and a stray file.
    let empty = dir.join("files").join(key_of("empty"));
    fs::write(empty.with_extension("data"), b"").unwrap();
    fs::write(empty.with_extension("map"), b"").unwrap();
    fs::write(dir.join("files/stray.tmp"), b"x").unwrap();
    store.save_manifest(&m).unwrap();
    let (count, bytes) = store.prune(&m).unwrap();
    assert_eq!(count, 5);
    assert!(bytes >= 4096, "the dropped block's space: {bytes}");
    let mut left: Vec<String> = fs::read_dir(dir.join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let key = key_of("keep");
    assert_eq!(left, [format!("{key}.data"), format!("{key}.map")]);
    let f = store.open_file(m.get(FileId(0)).unwrap()).unwrap();
    assert_eq!(f.blocks(), 2, "the kept file opens as before");
    drop(f);
}

#[test]
fn truncated_map_resets_and_second_daemon_is_refused() {
    let dir = tempdir("trunc");
    let e = entry(8192, 1);
    let store = Store::open(&dir).unwrap();
    let err = Store::open(&dir).err().unwrap().to_string();
    assert!(err.contains("in use by another feedfs-device"), "{err}");
    let f = store.open_file(&e).unwrap();
    let b = block(1, 4096);
    f.write_block(1, &b, crc32fast::hash(&b)).unwrap();
    drop(f);
    let map_path = dir
        .join("files")
        .join(key_of(&e.path))
        .with_extension("map");
    let m = OpenOptions::new().write(true).open(&map_path).unwrap();
    m.set_len(60).unwrap();
    let f = store.open_file(&e).unwrap();
    assert_eq!(f.present_count(), 0);
}
