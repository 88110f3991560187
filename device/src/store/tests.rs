//! The store's unit tests: pages surviving a reopen, batched map writes,
//! bounded descriptors, damaged and zero pages, the manifest and pruning.
//! What older versions left in a store is `tests_v1`.

use super::*;
use std::os::unix::fs::FileExt;

use feedfs_protocol::FileId;

use super::layout::MapLayout;
use super::open::{OpenFiles, Pair};
use crate::testentry::{dir_entry, file_entry};
use crate::testutil::TempDir;

pub(super) fn entry(size: u64, identity: u8) -> Entry {
    file_entry(0, "dir/file.bin", size, [identity; 16])
}

pub(super) fn tempdir(name: &str) -> TempDir {
    TempDir::new(&format!("store-{name}"))
}

/// Page `i` of a file, `len` bytes that are not zero.
pub(super) fn page(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i as usize * 31 + k) as u8 | 1).collect()
}

/// Write pages `first..` of `f`, whose bytes are `data`, with their CRCs.
fn put(f: &StoredFile, first: u64, data: &[u8]) -> u64 {
    let crcs: Vec<u32> = data.chunks(4096).map(crc32fast::hash).collect();
    f.write_run(first, Some(data), &crcs).unwrap()
}

pub(super) fn map_path(dir: &Path, e: &Entry) -> PathBuf {
    dir.join("files")
        .join(key_of(&e.path))
        .with_extension("map")
}

fn data_path(dir: &Path, e: &Entry) -> PathBuf {
    dir.join("files")
        .join(key_of(&e.path))
        .with_extension("data")
}

#[test]
fn the_map_header_is_laid_out_as_documented() {
    let e = entry(10_000, 1);
    let h = layout::header_for(&e);
    assert_eq!(h.len(), 96 + e.path.len());
    assert_eq!(&h[..8], b"FDFSMAP\0");
    assert_eq!(u32::from_le_bytes(h[8..12].try_into().unwrap()), 2);
    assert_eq!(u32::from_le_bytes(h[12..16].try_into().unwrap()), 4096);
    assert_eq!(u64::from_le_bytes(h[16..24].try_into().unwrap()), 3);
    assert_eq!(u64::from_le_bytes(h[24..32].try_into().unwrap()), 10_000);
    assert_eq!(&h[32..48], &[1; 16]);
    assert_eq!(h[48], 1, "hash kind: CRC-32");
    assert!(
        h[49..88].iter().all(|&b| b == 0),
        "reserved, and the Merkle root"
    );
    assert_eq!(u16::from_le_bytes([h[88], h[89]]) as usize, e.path.len());
    assert_eq!(&h[90..92], &[0, 0]);
    let mut zeroed = h.clone();
    zeroed[92..96].fill(0);
    assert_eq!(
        u32::from_le_bytes(h[92..96].try_into().unwrap()),
        crc32fast::hash(&zeroed)
    );
    assert_eq!(&h[96..], e.path.as_bytes());
    // Bitmap at align8(96 + 12) = 112, 8 bytes; CRCs at 120, 4 per page.
    let l = MapLayout::new(e.path.len(), 3);
    assert_eq!((l.bitmap_off, l.crc_off, l.total), (112, 120, 132));
    let l = MapLayout::new(e.path.len(), 65);
    assert_eq!((l.bitmap_off, l.crc_off, l.total), (112, 128, 128 + 260));
}

#[test]
fn pages_survive_a_reopen_and_a_changed_identity_resets() {
    let dir = tempdir("reopen");
    let e = entry(10_000, 1);
    let p2 = page(2, 10_000 - 8192);
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        assert_eq!((f.pages(), f.opened()), (3, Opened::Afresh));
        assert_eq!(put(&f, 2, &p2), 1);
        assert_eq!(put(&f, 2, &p2), 0, "a duplicate");
        assert!(
            f.write_run(0, Some(&[1; 10]), &[0]).is_err(),
            "a short page refused"
        );
        assert!(f.write_run(2, Some(&p2), &[0, 0]).is_err(), "past the end");
    }
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        assert_eq!(f.opened(), Opened::Kept);
        assert_eq!(f.present_ranges(), vec![(2, 1)]);
        assert_eq!(f.check_pages(2, 1).unwrap(), RangeCheck::default());
        assert_eq!(f.read_at(8192, 4096).unwrap(), p2);
        assert_eq!(f.missing_bytes(), 8192);
    }
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&entry(10_000, 2)).unwrap();
        assert_eq!(f.present_count(), 0, "identity changed: nothing trusted");
    }
}

#[test]
fn a_run_is_one_write_of_its_data_and_crcs_and_its_bits_come_in_batches() {
    let dir = tempdir("batch");
    let e = entry(20 * 4096, 1);
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&e).unwrap();
    let layout = MapLayout::new(e.path.len(), 20);
    let on_disk = || {
        let bytes = fs::read(map_path(&dir, &e)).unwrap();
        let bits = bytes[layout.bitmap_off as usize];
        let crc = |p: u64| {
            let at = (layout.crc_off + 4 * p) as usize;
            u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
        };
        (bits, crc(3), crc(4))
    };
    let run: Vec<u8> = [page(3, 4096), page(4, 4096)].concat();
    let (c3, c4) = (crc32fast::hash(&run[..4096]), crc32fast::hash(&run[4096..]));
    assert_eq!(put(&f, 3, &run), 2);
    assert_eq!(f.present_count(), 2, "present in memory at once");
    assert_eq!(
        on_disk(),
        (0, c3, c4),
        "CRCs on disk with the data, bits not yet"
    );
    f.flush_map().unwrap();
    assert_eq!(on_disk(), (0b1_1000, c3, c4));
    // A sync writes the pending bits too, and leaves nothing unsynced.
    put(&f, 5, &page(5, 4096));
    f.sync_map().unwrap();
    assert_eq!(on_disk().0, 0b11_1000);
    let st = f.f.lock();
    assert!(st.dirty.is_none() && !st.data_unsynced && !st.map_unsynced);
    drop(st);
    drop(f);
}

#[test]
fn the_bits_are_written_once_a_batch_of_pages_landed() {
    let dir = tempdir("fullbatch");
    let e = entry(MAP_BATCH * 4096 + 4096, 1);
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&e).unwrap();
    let run = page(0, 256 * 4096);
    for k in 0..MAP_BATCH / 256 - 1 {
        put(&f, k * 256, &run);
    }
    assert_eq!(present_on_disk(&dir, &e).unwrap(), Some((0, false)));
    put(&f, MAP_BATCH - 256, &run);
    assert_eq!(present_on_disk(&dir, &e).unwrap(), Some((MAP_BATCH, false)));
    drop(f);
}

#[test]
fn a_map_that_cannot_be_written_does_not_lose_a_stored_page() {
    let dir = tempdir("mapfail");
    let pages = MAP_BATCH + 1;
    let e = entry(pages * 4096, 1);
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&e).unwrap();
    // Writes to the map fail from now on (as on a full disk).
    let data = OpenOptions::new().write(true).open(&f.f.data_path).unwrap();
    let map = File::open(&f.f.map_path).unwrap();
    f.f.open.put(
        f.f.slot,
        Pair {
            data,
            map,
            writes: None,
        },
    );
    assert!(
        put_err(&f, 0),
        "the CRCs cannot be written: the run is not stored"
    );
    assert_eq!(f.present_count(), 0);
    // The map can take CRCs again, but not the bits (as their batch fails).
    f.f.open.close(f.f.slot);
    for i in 0..MAP_BATCH {
        assert_eq!(put(&f, i, &page(i, 4096)), 1);
    }
    assert_eq!(f.present_count(), MAP_BATCH);
    f.sync_map().unwrap();
    drop(f);
    let f = store.open_file(&e).unwrap();
    assert_eq!(f.present_ranges(), vec![(0, MAP_BATCH)]);
    drop(f);
}

/// Whether writing page `i` of `f` fails.
fn put_err(f: &StoredFile, i: u64) -> bool {
    let p = page(i, 4096);
    f.write_run(i, Some(&p), &[crc32fast::hash(&p)]).is_err()
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
        assert_eq!(put(f, 0, &page(i as u64, 4096)), 1);
        assert!(store.open.open_count() <= 4);
    }
    drop(files);
    assert_eq!(store.open.open_count(), 0, "a dropped file closes its pair");
    for i in 0..10u64 {
        let mut e = entry(5000, 1);
        e.path = format!("f{i}");
        let f = store.open_file(&e).unwrap();
        assert_eq!(f.present_ranges(), vec![(0, 1)], "f{i} kept its page");
        assert_eq!(f.read_at(0, 4096).unwrap(), page(i, 4096));
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
            writes: None,
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
fn a_damaged_page_is_dropped_when_its_group_is_first_read_and_only_it() {
    let dir = tempdir("damaged");
    // 40 pages: groups 0 (0..16), 1 (16..32), 2 (32..40).
    let e = entry(40 * 4096, 1);
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        put(&f, 0, &page(0, 20 * 4096));
        put(&f, 33, &page(33, 4096));
        // Landed in this daemon's life: checked, served without reading back.
        assert!(f.f.lock().checked.is_full());
    }
    // A torn write: the map says present, the data of pages 3 and 17 is wrong.
    let d = OpenOptions::new()
        .write(true)
        .open(data_path(&dir, &e))
        .unwrap();
    d.write_all_at(&[0xee; 16], 3 * 4096 + 100).unwrap();
    d.write_all_at(&[0xee; 16], 17 * 4096).unwrap();
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&e).unwrap();
    assert_eq!(f.present_count(), 21);
    assert!(!f.all_verified());
    {
        let st = f.f.lock();
        assert_eq!(
            st.checked.ranges(false),
            vec![(0, 3)],
            "groups with a present page"
        );
    }
    // A read of page 5 checks group 0: page 3 goes, the read's page stays.
    assert_eq!(
        f.check_pages(5, 1).unwrap(),
        RangeCheck {
            missing: 0,
            dropped: 1
        }
    );
    assert_eq!(f.present_count(), 20);
    assert_eq!(
        f.check_pages(3, 2).unwrap(),
        RangeCheck {
            missing: 1,
            dropped: 0
        }
    );
    // Pages 15 to 17 touch groups 0 and 1: page 17 is dropped now.
    assert_eq!(
        f.check_pages(15, 3).unwrap(),
        RangeCheck {
            missing: 1,
            dropped: 1
        }
    );
    assert_eq!(f.check_all().unwrap(), Vec::<u64>::new(), "group 2 is good");
    assert_eq!(f.present_ranges(), vec![(0, 3), (4, 13), (18, 2), (33, 1)]);
    drop(f);
    // The drops were persisted.
    let f = store.open_file(&e).unwrap();
    assert_eq!(f.present_count(), 19);
    // Every page back and every group checked (in this daemon's life):
    // verified for passthrough.
    let missing = f.missing_ranges();
    for (first, count) in missing {
        put(&f, first, &page(first, (count * 4096) as usize));
    }
    assert!(
        !f.all_verified(),
        "what the earlier daemon stored is unchecked"
    );
    assert_eq!(f.check_all().unwrap(), Vec::<u64>::new());
    assert!(f.all_verified());
}

#[test]
fn zero_pages_are_holes_and_pass_their_check() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempdir("zero");
    let e = entry(3 * 4096 + 100, 1);
    let zero_crcs = [
        zero_crc(4096),
        zero_crc(4096),
        zero_crc(4096),
        zero_crc(100),
    ];
    let allocated = || fs::metadata(data_path(&dir, &e)).unwrap().blocks();
    {
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        assert_eq!(f.write_run(0, None, &zero_crcs[..1]).unwrap(), 1);
        assert_eq!(
            f.write_run(0, None, &zero_crcs[..1]).unwrap(),
            0,
            "a duplicate"
        );
        // Raw zeros are holes too, the short last page included; page 1 is data.
        let mut run = vec![0u8; 2 * 4096 + 100];
        run[..4096].copy_from_slice(&page(1, 4096));
        let crcs = [crc32fast::hash(&run[..4096]), zero_crc(4096), zero_crc(100)];
        assert_eq!(f.write_run(1, Some(&run), &crcs).unwrap(), 3);
        assert_eq!(f.present_ranges(), vec![(0, 4)]);
        assert_eq!(allocated(), 8, "one 4 KiB page written, the zeros not");
    }
    // A page that held data, then dropped: its zeros punch it out.
    let d = OpenOptions::new()
        .write(true)
        .open(data_path(&dir, &e))
        .unwrap();
    d.write_all_at(&[0xff; 16], 4096 + 100).unwrap();
    drop(d);
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&e).unwrap();
    assert_eq!(
        f.check_pages(0, 4).unwrap(),
        RangeCheck {
            missing: 1,
            dropped: 1
        },
        "holes read as their zeros; page 1 is bad"
    );
    assert_eq!(f.write_run(1, None, &zero_crcs[1..2]).unwrap(), 1);
    assert_eq!(allocated(), 0, "punched out");
    assert_eq!(f.read_at(0, 20_000).unwrap(), vec![0; 3 * 4096 + 100]);
    drop(f);
    let f = store.open_file(&e).unwrap();
    assert_eq!(f.present_ranges(), vec![(0, 4)]);
    assert_eq!(f.check_pages(0, 4).unwrap(), RangeCheck::default());
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
    let mut file = file_entry(0, "a/b.bin", 5000, [3; 16]);
    file.mode = 0o640;
    b.push(file).unwrap();
    let mut dir_a = dir_entry(1, "a");
    dir_a.mode = 0o700;
    b.push(dir_a).unwrap();
    let mut link = file_entry(2, "a/link", 0, [0; 16]);
    link.kind = feedfs_protocol::EntryKind::Symlink;
    link.mode = 0o777;
    link.target = "b.bin".into();
    b.push(link).unwrap();
    let m = b.finish(3, 5000).unwrap();
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
    b.push(file_entry(0, "keep", 5000, [1; 16])).unwrap();
    b.push(file_entry(1, "empty", 0, [2; 16])).unwrap();
    let m = b.finish(2, 5000).unwrap();
    let mut old = entry(8192, 3);
    old.path = "gone".into();
    let (kept, gone) = (
        store.open_file(m.get(FileId(0)).unwrap()).unwrap(),
        store.open_file(&old).unwrap(),
    );
    put(&gone, 0, &page(0, 4096));
    drop((kept, gone));
    // An empty file's pair left by an older daemon, and a stray file.
    let empty = dir.join("files").join(key_of("empty"));
    fs::write(empty.with_extension("data"), b"").unwrap();
    fs::write(empty.with_extension("map"), b"").unwrap();
    fs::write(dir.join("files/stray.tmp"), b"x").unwrap();
    store.save_manifest(&m).unwrap();
    let (count, bytes) = store.prune(&m).unwrap();
    assert_eq!(count, 5);
    assert!(bytes >= 4096, "the dropped page's space: {bytes}");
    let mut left: Vec<String> = fs::read_dir(dir.join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let key = key_of("keep");
    assert_eq!(left, [format!("{key}.data"), format!("{key}.map")]);
    let f = store.open_file(m.get(FileId(0)).unwrap()).unwrap();
    assert_eq!(f.pages(), 2, "the kept file opens as before");
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
    put(&f, 1, &page(1, 4096));
    drop(f);
    let m = OpenOptions::new()
        .write(true)
        .open(map_path(&dir, &e))
        .unwrap();
    m.set_len(60).unwrap();
    let f = store.open_file(&e).unwrap();
    assert_eq!(f.present_count(), 0);
}
