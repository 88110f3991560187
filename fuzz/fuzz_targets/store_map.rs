//! Fuzz target: the bytes a store holds on disk, as a restarted daemon
//! finds them after a crash, a torn write or a hostile hand.
//!
//! Input byte 0 picks what the rest is:
//! - even: a block map file (header, bitmap, CRC table) for a file of up to
//!   32 blocks of 4 KiB whose size comes from bytes 1..4; byte 4 may make
//!   the data file the wrong size or damage one block of it. The real store
//!   opens it (`Store::open_file`), checks every block and writes one more.
//! - odd: the store's saved `manifest` file, loaded as a daemon started
//!   with `--offline` loads it.
//!
//! Checked invariants: nothing panics; a map whose header differs from the
//! one the entry implies is never trusted (nothing present); a block is
//! served (`Ready`) only if its data matches the CRC the map records; a
//! block written and flushed is present and good after a reopen; a loaded
//! manifest saves and loads back the same. The files live in a scratch
//! directory under /dev/shm (or the temp dir) named after the process.
#![no_main]

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use feedfs_device::store::{key_of, BlockState, Store};
use feedfs_protocol::{Entry, EntryKind, FileId};
use libfuzzer_sys::fuzz_target;

const BS: u32 = 4096;
const PATH: &str = "dir/file.bin";
const MAX_BLOCKS: u64 = 32;

struct Stores {
    under_test: Store,
    reference: Store,
}

fn stores() -> &'static Stores {
    static S: OnceLock<Stores> = OnceLock::new();
    S.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let root = base.join(format!("feedfs-fuzz-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        Stores {
            under_test: Store::open(&root.join("t")).expect("scratch store"),
            reference: Store::open(&root.join("r")).expect("reference store"),
        }
    })
}

/// The content of block `i` that the data file holds.
fn block(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i as usize * 131 + k * 7) as u8).collect()
}

fn entry(size: u64) -> Entry {
    Entry {
        id: Some(FileId(0)),
        kind: EntryKind::File,
        path: PATH.into(),
        size,
        mode: 0o644,
        block_size: BS,
        identity: [7; 16],
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        manifest(rest);
    } else {
        map(rest);
    }
});

fn manifest(bytes: &[u8]) {
    let s = &stores().under_test;
    fs::write(s.dir().join("manifest"), bytes).unwrap();
    if let Ok(m) = s.load_manifest() {
        s.save_manifest(&m).unwrap();
        let back = s.load_manifest().expect("a saved manifest loads");
        assert_eq!(back.entries(), m.entries());
        for e in m.entries() {
            assert!(feedfs_protocol::manifest::check_path(&e.path).is_ok());
        }
    }
}

fn map(input: &[u8]) {
    let [b0, t0, t1, flags, rest @ ..] = input else {
        return;
    };
    let blocks = u64::from(*b0) % (MAX_BLOCKS + 1);
    let short = u64::from(u16::from_le_bytes([*t0, *t1])) % u64::from(BS);
    let size = (blocks * u64::from(BS)).saturating_sub(if blocks > 0 { short } else { 0 });
    let e = entry(size);
    let blocks = e.blocks();
    let s = stores();
    let files = s.under_test.dir().join("files");
    let base = files.join(key_of(PATH));
    let (data_path, map_path) = (base.with_extension("data"), base.with_extension("map"));

    // The data file holds every block's true content, one block damaged on request.
    let mut content = Vec::with_capacity(size as usize);
    for i in 0..blocks {
        content.extend(block(i, feedfs_protocol::block_len(size, BS, i)));
    }
    let damaged = (flags & 2 != 0 && blocks > 0).then(|| u64::from(flags >> 3) % blocks);
    if let Some(d) = damaged {
        content[(d * u64::from(BS)) as usize] ^= 0x5a;
    }
    if flags & 1 != 0 {
        content.push(0);
    }
    fs::write(&data_path, &content).unwrap();
    fs::write(&map_path, rest).unwrap();

    // What a map for this entry starts with: the store writes it on a reset.
    let reference = s.reference.open_file(&e).expect("fresh map");
    drop(reference);
    let ref_map = fs::read(
        s.reference
            .dir()
            .join("files")
            .join(key_of(PATH))
            .with_extension("map"),
    )
    .unwrap();
    let header_len = 56 + PATH.len();
    let bitmap_off = (header_len as u64).div_ceil(8) * 8;
    let crc_off = bitmap_off + blocks.div_ceil(8).div_ceil(8) * 8;

    let f = s
        .under_test
        .open_file(&e)
        .expect("a store file always opens");
    let present = f.present_ranges();
    if f.present_count() > 0 {
        assert_eq!(
            &rest[..header_len],
            &ref_map[..header_len],
            "blocks trusted from a map whose header does not match"
        );
        assert_eq!(
            rest.len(),
            ref_map.len(),
            "blocks trusted from a map of the wrong length"
        );
        assert_eq!(
            content.len() as u64,
            size,
            "blocks trusted with a data file of the wrong size"
        );
    }
    assert!(f.present_count() <= blocks);
    for i in 0..blocks {
        let state = f.check(i).expect("check on a good disk");
        let len = feedfs_protocol::block_len(size, BS, i);
        match state {
            BlockState::Ready => {
                let at = (crc_off + 4 * i) as usize;
                let recorded = u32::from_le_bytes(rest[at..at + 4].try_into().unwrap());
                let on_disk = f.read_at(i * u64::from(BS), len).unwrap();
                assert_eq!(
                    crc32fast::hash(&on_disk),
                    recorded,
                    "block {i} served against its CRC"
                );
            }
            BlockState::Dropped => assert!(!f.is_present(i).unwrap()),
            BlockState::Missing => {
                assert!(!present.iter().any(|&(a, n)| (a..a + n).contains(&i)))
            }
        }
    }
    assert!(f.check(blocks).is_err(), "a block past the end is an error");

    // One more block lands, is flushed, and survives a reopen.
    let missing = (0..blocks).find(|&i| !f.is_present(i).unwrap());
    let kept: Vec<u64> = (0..blocks).filter(|&i| f.is_present(i).unwrap()).collect();
    if let Some(i) = missing {
        let b = block(i, feedfs_protocol::block_len(size, BS, i));
        assert!(f.write_block(i, &b, crc32fast::hash(&b)).unwrap());
        f.flush_map().unwrap();
    }
    drop(f);
    let f = s.under_test.open_file(&e).expect("reopen");
    if let Some(i) = missing {
        assert_eq!(
            f.check(i).unwrap(),
            BlockState::Ready,
            "block {i} written before the reopen"
        );
    }
    for i in kept {
        assert!(
            f.is_present(i).unwrap(),
            "block {i} was kept, then lost on a clean reopen"
        );
    }
}
