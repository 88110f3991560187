//! What an older feedfs left in a store: maps of store format 1, built
//! byte by byte from that format's layout, converted on open when they
//! were written for the manifest's entry (good blocks kept as their pages,
//! a bad one dropped) and reset otherwise; a manifest of protocol 3,
//! refused with what to do.

use std::fs;
use std::os::unix::fs::FileExt;

use super::tests::{entry, map_path, page, tempdir};
use super::*;
use crate::testentry::file_entry;
use crate::testutil::TempDir;

/// The block size the format-1 store used: 4 pages.
const BS: u64 = 16_384;

fn align8(x: usize) -> usize {
    x.div_ceil(8) * 8
}

/// A format-1 map for `e` with blocks of [`BS`], the blocks `present`
/// marked present with the CRCs `crcs` (one per block).
fn v1_map(e: &Entry, present: &[u64], crcs: &[u32]) -> Vec<u8> {
    let blocks = e.size.div_ceil(BS);
    let mut h = Vec::new();
    h.extend_from_slice(b"FDFSMAP\0");
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&(BS as u32).to_le_bytes());
    h.extend_from_slice(&blocks.to_le_bytes());
    h.extend_from_slice(&e.size.to_le_bytes());
    h.extend_from_slice(&e.identity);
    h.extend_from_slice(&(e.path.len() as u16).to_le_bytes());
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    h.extend_from_slice(e.path.as_bytes());
    assert_eq!(h.len(), 56 + e.path.len());
    let crc = crc32fast::hash(&h);
    h[52..56].copy_from_slice(&crc.to_le_bytes());
    let bitmap_off = align8(h.len());
    let crc_off = bitmap_off + align8((blocks as usize).div_ceil(8));
    let mut map = h;
    map.resize(crc_off + 4 * blocks as usize, 0);
    for &b in present {
        map[bitmap_off + b as usize / 8] |= 1 << (b % 8);
    }
    for (b, c) in crcs.iter().enumerate() {
        map[crc_off + 4 * b..crc_off + 4 * b + 4].copy_from_slice(&c.to_le_bytes());
    }
    map
}

/// A store whose file `e` holds `data` in its data file and `map` as its map.
fn older_store(name: &str, e: &Entry, data: &[u8], map: &[u8]) -> TempDir {
    let dir = tempdir(name);
    fs::create_dir_all(dir.join("files")).unwrap();
    let base = dir.join("files").join(key_of(&e.path));
    let d = File::create(base.with_extension("data")).unwrap();
    d.set_len(e.size).unwrap();
    d.write_all_at(data, 0).unwrap();
    fs::write(base.with_extension("map"), map).unwrap();
    dir
}

#[test]
fn a_format_1_map_is_converted_keeping_good_blocks_as_pages_and_dropping_a_bad_one() {
    // Three blocks of 16 KiB, the last one short: 10 pages in all.
    let e = entry(2 * BS + 5000, 4);
    let data = page(0, e.size as usize);
    let block = |b: u64| &data[(b * BS) as usize..((b + 1) * BS).min(e.size) as usize];
    let crcs: Vec<u32> = (0..3).map(|b| crc32fast::hash(block(b))).collect();
    // Block 1 is damaged on disk (a torn write): its CRC no longer matches.
    let mut on_disk = data.clone();
    on_disk[(BS + 10) as usize] ^= 0xff;
    let map = v1_map(&e, &[0, 1, 2], &crcs);
    let dir = older_store("v1", &e, &on_disk, &map);
    let store = Store::open(&dir).unwrap();
    let f = store.open_file(&e).unwrap();
    assert_eq!(f.opened(), Opened::Converted { dropped: 1 });
    assert_eq!(f.pages(), 10);
    assert_eq!(f.present_ranges(), vec![(0, 4), (8, 2)]);
    assert_eq!(f.missing_ranges(), vec![(4, 4)]);
    // The good pages are served, checked already (a fresh group check has
    // nothing to drop), from the data as it was.
    assert_eq!(f.check_pages(0, 10).unwrap().missing, 4);
    assert_eq!(f.read_at(0, BS as usize).unwrap(), block(0));
    assert_eq!(f.read_at(2 * BS, 5000).unwrap(), block(2));
    // The map is of format 2 now, with a CRC per page: a new daemon reads
    // it as its own and checks every page it holds against those CRCs.
    let header = fs::read(map_path(&dir, &e)).unwrap();
    assert_eq!(u32::from_le_bytes(header[8..12].try_into().unwrap()), 2);
    assert!(!map_path(&dir, &e).with_extension("map.tmp").exists());
    drop(f);
    let f = store.open_file(&e).unwrap();
    assert_eq!(f.opened(), Opened::Kept);
    assert_eq!(f.check_all().unwrap(), Vec::<u64>::new());
    assert_eq!(f.present_count(), 6);
    // The dropped block's pages land again like any missing page.
    let pages1 = &data[BS as usize..2 * BS as usize];
    let page_crcs: Vec<u32> = pages1.chunks(4096).map(crc32fast::hash).collect();
    assert_eq!(f.write_run(4, Some(pages1), &page_crcs).unwrap(), 4);
    assert!(f.all_verified());
    assert_eq!(f.read_at(0, e.size as usize).unwrap(), data);
}

#[test]
fn a_format_1_map_of_another_file_is_reset_not_converted() {
    let e = entry(2 * BS, 4);
    let data = page(0, e.size as usize);
    let crcs: Vec<u32> = data.chunks(BS as usize).map(crc32fast::hash).collect();
    let good = v1_map(&e, &[0, 1], &crcs);
    let other_identity = v1_map(&entry(2 * BS, 5), &[0, 1], &crcs);
    let mut bad_crc = good.clone();
    bad_crc[50] ^= 1; // a reserved byte: only the header CRC tells
    let mut cut = good.clone();
    cut.pop();
    let mut odd_block = good.clone();
    odd_block[12..16].copy_from_slice(&6000u32.to_le_bytes());
    for (name, map) in [
        ("identity", other_identity),
        ("crc", bad_crc),
        ("cut", cut),
        ("odd", odd_block),
    ] {
        let dir = older_store(name, &e, &data, &map);
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        assert_eq!(f.opened(), Opened::Afresh, "{name}");
        assert_eq!(f.present_count(), 0, "{name}");
    }
    // And the right one converts, for contrast.
    let dir = older_store("right", &e, &data, &good);
    let f = Store::open(&dir).unwrap().open_file(&e).unwrap();
    assert_eq!(f.opened(), Opened::Converted { dropped: 0 });
    assert_eq!(f.present_count(), 8);
}

#[test]
fn a_manifest_of_an_older_protocol_is_refused_with_what_to_do_until_a_host_brings_one() {
    let dir = tempdir("manifest3");
    let store = Store::open(&dir).unwrap();
    let mut b = ManifestBuilder::new();
    b.push(file_entry(0, "f", 5000, [1; 16])).unwrap();
    let m = b.finish(1, 5000).unwrap();
    store.save_manifest(&m).unwrap();
    // What an older feedfs wrote: frames of protocol version 3.
    let mut bytes = fs::read(dir.join("manifest")).unwrap();
    assert_eq!(&bytes[..5], b"FDFS\x04");
    bytes[4] = 3;
    fs::write(dir.join("manifest"), &bytes).unwrap();
    let err = format!("{:#}", store.load_manifest().unwrap_err());
    assert!(
        err.contains(
            "the store's manifest was written by an older feedfs (protocol 3); mount it \
             once with a host to bring it to the new format"
        ),
        "{err}"
    );
    assert!(read_manifest(&dir).is_err(), "status reads it the same way");
    // A host's manifest replaces it.
    store.save_manifest(&m).unwrap();
    assert_eq!(store.load_manifest().unwrap().entries(), m.entries());
}
