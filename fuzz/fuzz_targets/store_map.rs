//! Fuzz target: the bytes a store holds on disk, as a restarted daemon
//! finds them after a crash, a torn write or a hostile hand.
//!
//! Input byte 0 picks what the rest is:
//! - even: a page map file for a file of up to 64 pages (four check
//!   groups) whose size comes from bytes 1..4; byte 4 may make the data
//!   file the wrong size, damage one page of it, or, with bit 2, make the
//!   map a format-1 block map (header, bitmap and CRC table as that format
//!   has them, blocks of 4 KiB << (bits 5..7 % 3)) built from the rest of
//!   the input, so the conversion is fuzzed too. The real store opens it
//!   (`Store::open_file`), checks every page and writes one more (or a
//!   page of zeros).
//! - odd: the store's saved `manifest` file, loaded as a daemon started
//!   with `--offline` loads it.
//!
//! Checked invariants: nothing panics; a map whose header differs from the
//! one the entry implies is never kept (it is converted, if it is a good
//! format-1 map of the entry, or started afresh with nothing present); a
//! page is served (checked, nothing missing) only if its bytes match the
//! CRC its map now records; a page past the end is an error; a page written
//! and flushed is present and good after a reopen, and so is every page
//! present before; a loaded manifest saves and loads back the same. The
//! files live in a scratch directory under /dev/shm (or the temp dir)
//! named after the process.
#![no_main]

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use feedfs_device::store::{key_of, zero_crc, Opened, Store};
use feedfs_protocol::{page_len, Entry, EntryKind, FileId, Mtime, PAGE_SIZE};
use libfuzzer_sys::fuzz_target;

const PATH: &str = "dir/file.bin";
const MAX_PAGES: u64 = 64;
const PAGE: u64 = PAGE_SIZE as u64;
const IDENTITY: [u8; 16] = [7; 16];

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

/// The content of page `i` that the data file holds.
fn page(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i as usize * 131 + k * 7) as u8).collect()
}

fn entry(size: u64) -> Entry {
    Entry {
        id: Some(FileId(0)),
        kind: EntryKind::File,
        path: PATH.into(),
        size,
        mode: 0o644,
        mtime: Mtime {
            sec: 1_700_000_000,
            nsec: 0,
        },
        identity: IDENTITY,
        target: String::new(),
    }
}

fn align8(x: u64) -> u64 {
    x.div_ceil(8) * 8
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
            if e.kind == EntryKind::Symlink {
                assert!(feedfs_protocol::manifest::check_target(&e.path, &e.target).is_ok());
            }
        }
    }
}

/// A format-1 map for `size` bytes in blocks of `block`: the header as
/// that format has it (its CRC right, so it is a map of this entry), then
/// the bitmap and CRC table taken from `body` (zero-padded).
fn v1_map(size: u64, block: u32, body: &[u8]) -> Vec<u8> {
    let blocks = size.div_ceil(u64::from(block));
    let mut m = b"FDFSMAP\0".to_vec();
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&block.to_le_bytes());
    m.extend_from_slice(&blocks.to_le_bytes());
    m.extend_from_slice(&size.to_le_bytes());
    m.extend_from_slice(&IDENTITY);
    m.extend_from_slice(&(PATH.len() as u16).to_le_bytes());
    m.extend_from_slice(&[0; 6]);
    m.extend_from_slice(PATH.as_bytes());
    let crc = crc32fast::hash(&m);
    m[52..56].copy_from_slice(&crc.to_le_bytes());
    let total = align8(56 + PATH.len() as u64) + align8(blocks.div_ceil(8)) + 4 * blocks;
    let header = m.len();
    m.resize(align8(header as u64) as usize, 0);
    m.extend_from_slice(body);
    m.resize(total as usize, 0);
    m
}

fn map(input: &[u8]) {
    let [p0, t0, t1, flags, rest @ ..] = input else {
        return;
    };
    let pages = u64::from(*p0) % (MAX_PAGES + 1);
    let short = u64::from(u16::from_le_bytes([*t0, *t1])) % PAGE;
    let size = (pages * PAGE).saturating_sub(if pages > 0 { short } else { 0 });
    let e = entry(size);
    let pages = e.pages();
    let s = stores();
    let base = s.under_test.dir().join("files").join(key_of(PATH));
    let (data_path, map_path) = (base.with_extension("data"), base.with_extension("map"));

    // The data file holds every page's true content, one page damaged on request.
    let mut content = Vec::with_capacity(size as usize);
    for i in 0..pages {
        content.extend(page(i, page_len(size, i)));
    }
    let damaged = (flags & 2 != 0 && pages > 0).then(|| u64::from(flags >> 3) % pages);
    if let Some(d) = damaged {
        content[(d * PAGE) as usize] ^= 0x5a;
    }
    if flags & 1 != 0 {
        content.push(0);
    }
    let old_format = flags & 4 != 0 && size > 0;
    let on_disk = if old_format {
        v1_map(size, (PAGE_SIZE) << ((flags >> 5) % 3), rest)
    } else {
        rest.to_vec()
    };
    fs::write(&data_path, &content).unwrap();
    fs::write(&map_path, &on_disk).unwrap();

    // What a map for this entry starts with: the store writes it on a reset.
    drop(s.reference.open_file(&e).expect("fresh map"));
    let ref_map = fs::read(
        s.reference
            .dir()
            .join("files")
            .join(key_of(PATH))
            .with_extension("map"),
    )
    .unwrap_or_default();
    let header_len = 96 + PATH.len();
    let bitmap_off = align8(header_len as u64);
    let crc_off = bitmap_off + align8(pages.div_ceil(8));

    let f = s
        .under_test
        .open_file(&e)
        .expect("a store file always opens");
    match f.opened() {
        Opened::Kept if f.present_count() > 0 => {
            assert_eq!(
                &on_disk[..header_len],
                &ref_map[..header_len],
                "pages kept from a map whose header does not match"
            );
            assert_eq!(on_disk.len(), ref_map.len(), "pages kept from a map of the wrong length");
            assert_eq!(content.len() as u64, size, "pages kept with a data file of the wrong size");
        }
        Opened::Kept => {}
        Opened::Afresh => assert_eq!(f.present_count(), 0, "a map started afresh holds nothing"),
        Opened::Converted { .. } => {
            assert!(
                on_disk.starts_with(b"FDFSMAP\0") && on_disk[8..12] == 1u32.to_le_bytes(),
                "converted a map that is not of format 1"
            );
            assert_eq!(content.len() as u64, size, "converted with a data file of the wrong size");
        }
    }
    assert!(f.present_count() <= pages);
    for i in 0..pages {
        let checked = f.check_pages(i, 1).expect("check on a good disk");
        if checked.missing == 0 {
            // Served: its bytes match the CRC its map records now.
            let now = fs::read(&map_path).unwrap();
            let at = (crc_off + 4 * i) as usize;
            let recorded = u32::from_le_bytes(now[at..at + 4].try_into().unwrap());
            let bytes = f.read_at(i * PAGE, page_len(size, i)).unwrap();
            assert_eq!(crc32fast::hash(&bytes), recorded, "page {i} served against its CRC");
            assert!(f.is_present(i).unwrap());
        } else {
            assert!(!f.is_present(i).unwrap(), "page {i} missing yet present");
        }
    }
    assert!(f.check_pages(pages, 1).is_err(), "a page past the end is an error");
    assert!(f.is_present(pages).is_err(), "a page past the end is an error");

    // One more page lands (zeros on request), is flushed, and survives a reopen.
    let missing = (0..pages).find(|&i| !f.is_present(i).unwrap());
    let kept: Vec<u64> = (0..pages).filter(|&i| f.is_present(i).unwrap()).collect();
    if let Some(i) = missing {
        let len = page_len(size, i);
        let landed = if flags & 0x80 != 0 {
            f.write_run(i, None, &[zero_crc(len)]).unwrap()
        } else {
            let b = page(i, len);
            f.write_run(i, Some(&b), &[crc32fast::hash(&b)]).unwrap()
        };
        assert_eq!(landed, 1, "page {i} landed");
        f.flush_map().unwrap();
    }
    drop(f);
    let f = s.under_test.open_file(&e).expect("reopen");
    if pages > 0 {
        assert_eq!(f.opened(), Opened::Kept, "a map this store wrote is kept");
    }
    if let Some(i) = missing {
        let c = f.check_pages(i, 1).unwrap();
        assert_eq!((c.missing, c.dropped), (0, 0), "page {i} written before the reopen");
    }
    for i in kept {
        assert!(
            f.is_present(i).unwrap(),
            "page {i} was kept, then lost on a clean reopen"
        );
    }
}
