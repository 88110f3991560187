//! The map file's format: its header, where the bitmap and the CRC table
//! lie, and a read-only look at a map on disk (for `status`). See
//! `docs/store.md`, `files/<key>.map`.
//!
//! Invariant: a map is trusted only if its header is byte for byte the one
//! [`header_for`] builds from the manifest's entry and its length is
//! [`MapLayout::total`].

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use feedfs_protocol::Entry;

use super::bitmap::Bitmap;
use super::key_of;

/// Magic at the start of every map file.
pub const MAP_MAGIC: [u8; 8] = *b"FDFSMAP\0";
/// Version of the map file format.
pub const MAP_VERSION: u32 = 1;
pub(super) const FIXED_HEADER: usize = 56;

/// How many blocks of `entry` the map file in the store at `dir` marks
/// present, and whether its last block is among them, reading only; `None`
/// when there is no map that matches the entry (the daemon resets such a
/// file when it opens it). Up to a second behind a running daemon, which
/// writes its map in batches.
pub fn present_on_disk(dir: &Path, entry: &Entry) -> io::Result<Option<(u64, bool)>> {
    let map = dir
        .join("files")
        .join(key_of(&entry.path))
        .with_extension("map");
    let file = match File::open(&map) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let header = header_for(entry);
    let layout = MapLayout::new(entry.path.len(), entry.blocks());
    if file.metadata()?.len() != layout.total {
        return Ok(None);
    }
    let mut on_disk = vec![0u8; header.len()];
    file.read_exact_at(&mut on_disk, 0)?;
    if on_disk != header {
        return Ok(None);
    }
    let mut bits = vec![0u8; entry.blocks().div_ceil(8) as usize];
    file.read_exact_at(&mut bits, layout.bitmap_off)?;
    let bitmap = Bitmap::from_bytes(&bits, entry.blocks());
    let last = entry
        .blocks()
        .checked_sub(1)
        .is_some_and(|l| bitmap.get(l).unwrap_or(false));
    Ok(Some((bitmap.count(), last)))
}

/// Where each part of a map file lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MapLayout {
    pub(super) bitmap_off: u64,
    pub(super) crc_off: u64,
    pub(super) total: u64,
}

fn align8(x: u64) -> u64 {
    x.div_ceil(8) * 8
}

impl MapLayout {
    pub(super) fn new(path_len: usize, blocks: u64) -> Self {
        let bitmap_off = align8((FIXED_HEADER + path_len) as u64);
        let crc_off = bitmap_off + align8(blocks.div_ceil(8));
        MapLayout {
            bitmap_off,
            crc_off,
            total: crc_off + 4 * blocks,
        }
    }
}

/// The header a map file must have for `entry`.
pub(super) fn header_for(entry: &Entry) -> Vec<u8> {
    let mut h = Vec::with_capacity(FIXED_HEADER + entry.path.len());
    h.extend_from_slice(&MAP_MAGIC);
    h.extend_from_slice(&MAP_VERSION.to_le_bytes());
    h.extend_from_slice(&entry.block_size.to_le_bytes());
    h.extend_from_slice(&entry.blocks().to_le_bytes());
    h.extend_from_slice(&entry.size.to_le_bytes());
    h.extend_from_slice(&entry.identity);
    h.extend_from_slice(&(entry.path.len() as u16).to_le_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(entry.path.as_bytes());
    let crc = crc32fast::hash(&h);
    h[52..56].copy_from_slice(&crc.to_le_bytes());
    h
}
