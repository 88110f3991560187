//! The map file's format: its header, where the page bitmap and the CRC
//! table lie, the layout of the format-1 maps that are converted on open
//! ([`V1Layout`]), and a read-only look at a map on disk (for `status`).
//! See `docs/store.md`, `files/<key>.map`.
//!
//! Format 2, all little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `FDFSMAP\0` |
//! | 8 | 4 | version, 2 |
//! | 12 | 4 | page size, 4096 |
//! | 16 | 8 | page count |
//! | 24 | 8 | file size |
//! | 32 | 16 | content identity |
//! | 48 | 1 | hash kind, 1 = CRC-32 |
//! | 49 | 7 | reserved, zero |
//! | 56 | 32 | reserved for a Merkle root, zero |
//! | 88 | 2 | path length |
//! | 90 | 2 | reserved, zero |
//! | 92 | 4 | CRC-32 of the header and path, this field taken as zero |
//! | 96 | path length | the path |
//!
//! then the present-page bitmap at `align8(96 + path length)`, `align8(ceil(pages / 8))`
//! bytes (bit `i % 8` of byte `i / 8` is page `i`), then the CRC table, a
//! `u32` per page.
//!
//! Invariant: a map is trusted only if its header is byte for byte the one
//! [`header_for`] builds from the manifest's entry and its length is
//! [`MapLayout::total`].

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use feedfs_protocol::{Entry, PAGE_SIZE};

use super::bitmap::Bitmap;
use super::key_of;

/// Magic at the start of every map file.
pub const MAP_MAGIC: [u8; 8] = *b"FDFSMAP\0";
/// Version of the map file format.
pub const MAP_VERSION: u32 = 2;
/// The format converted on open.
pub(super) const MAP_VERSION_1: u32 = 1;
/// The `hash kind` byte of a map whose table holds one CRC-32 per page.
pub const HASH_CRC32: u8 = 1;
/// Bytes of the header before the path.
pub(super) const FIXED_HEADER: usize = 96;
/// Bytes of a bitmap read or written at once (a multiple of 8).
const BITMAP_CHUNK: u64 = 1 << 20;
/// Where the header CRC lies.
const HEADER_CRC: std::ops::Range<usize> = 92..96;

/// How many pages of `entry` the map file in the store at `dir` marks
/// present, and whether its last page is among them, reading only; `None`
/// when there is no map that matches the entry (the daemon resets or
/// converts such a file when it opens it). Up to a second behind a running
/// daemon, which writes its map in batches.
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
    let layout = MapLayout::new(entry.path.len(), entry.pages());
    if file.metadata()?.len() != layout.total {
        return Ok(None);
    }
    let mut on_disk = vec![0u8; header.len()];
    file.read_exact_at(&mut on_disk, 0)?;
    if on_disk != header {
        return Ok(None);
    }
    let bitmap = layout.read_bitmap(&file, entry.pages())?;
    let last = entry
        .pages()
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

pub(super) fn align8(x: u64) -> u64 {
    x.div_ceil(8) * 8
}

impl MapLayout {
    pub(super) fn new(path_len: usize, pages: u64) -> Self {
        Self::after_header((FIXED_HEADER + path_len) as u64, pages)
    }

    /// The layout of a map whose header takes `header_len` bytes, with one
    /// bit and one CRC per unit (a page; a block in format 1).
    fn after_header(header_len: u64, units: u64) -> Self {
        let bitmap_off = align8(header_len);
        let crc_off = bitmap_off + align8(units.div_ceil(8));
        MapLayout {
            bitmap_off,
            crc_off,
            total: crc_off + 4 * units,
        }
    }

    /// The bitmap of `units` bits stored in `file`, read in chunks.
    pub(super) fn read_bitmap(&self, file: &File, units: u64) -> io::Result<Bitmap> {
        let mut bitmap = Bitmap::new(units);
        let total = units.div_ceil(8);
        let mut buf = vec![0u8; BITMAP_CHUNK.min(total) as usize];
        let mut at = 0;
        while at < total {
            let n = BITMAP_CHUNK.min(total - at) as usize;
            file.read_exact_at(&mut buf[..n], self.bitmap_off + at)?;
            bitmap.or_bytes(at, &buf[..n]);
            at += n as u64;
        }
        Ok(bitmap)
    }

    /// Write bytes `first_byte..first_byte + n` of `bitmap` to `file`, in
    /// chunks taken by `snapshot` (which may lock), so a large bitmap is
    /// never copied whole.
    pub(super) fn write_bitmap(
        &self,
        file: &File,
        first_byte: u64,
        n: u64,
        snapshot: impl Fn(u64, u64) -> Vec<u8>,
    ) -> io::Result<()> {
        let mut at = first_byte;
        while at < first_byte + n {
            let len = BITMAP_CHUNK.min(first_byte + n - at);
            file.write_all_at(&snapshot(at, len), self.bitmap_off + at)?;
            at += len;
        }
        Ok(())
    }

    /// The CRCs of units `first..first + count`, read from `file`.
    pub(super) fn read_crcs(&self, file: &File, first: u64, count: u64) -> io::Result<Vec<u32>> {
        let mut raw = vec![0u8; 4 * count as usize];
        file.read_exact_at(&mut raw, self.crc_off + 4 * first)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }
}

/// The header a map file must have for `entry`.
pub(super) fn header_for(entry: &Entry) -> Vec<u8> {
    let mut h = Vec::with_capacity(FIXED_HEADER + entry.path.len());
    h.extend_from_slice(&MAP_MAGIC);
    h.extend_from_slice(&MAP_VERSION.to_le_bytes());
    h.extend_from_slice(&PAGE_SIZE.to_le_bytes());
    h.extend_from_slice(&entry.pages().to_le_bytes());
    h.extend_from_slice(&entry.size.to_le_bytes());
    h.extend_from_slice(&entry.identity);
    h.push(HASH_CRC32);
    h.extend_from_slice(&[0; 7]);
    h.extend_from_slice(&[0; 32]);
    h.extend_from_slice(&(entry.path.len() as u16).to_le_bytes());
    h.extend_from_slice(&[0; 2]);
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(entry.path.as_bytes());
    let crc = crc32fast::hash(&h);
    h[HEADER_CRC].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A map of format 1 (one bit and one CRC-32 per block of a fixed size),
/// as an older feedfs wrote it for an entry of the manifest: magic,
/// version 1 at 8, block size (`u32`) at 12, block count (`u64`) at 16,
/// file size (`u64`) at 24, identity at 32, path length (`u16`) at 48, 2
/// reserved bytes, header CRC at 52 (over the header and path with it
/// zero), the path at 56; the bitmap at `align8(56 + path length)`, then
/// the CRC table at that plus `align8(ceil(blocks / 8))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct V1Layout {
    pub(super) block_size: u32,
    pub(super) blocks: u64,
    pub(super) map: MapLayout,
}

/// Bytes of a format-1 header before the path.
const V1_FIXED_HEADER: usize = 56;

/// Largest block size a format-1 map could have (`--block-size` went up to 1 MiB).
const V1_MAX_BLOCK_SIZE: u32 = 1 << 20;

impl V1Layout {
    /// The format-1 layout of the map in `file`, if it is one written for
    /// `entry` (same path, size and identity, a valid header CRC, the
    /// length its block count gives, a block size of whole pages); `None`
    /// for anything else.
    pub(super) fn of(file: &File, entry: &Entry) -> io::Result<Option<V1Layout>> {
        let len = file.metadata()?.len();
        let header_len = V1_FIXED_HEADER + entry.path.len();
        if len < header_len as u64 {
            return Ok(None);
        }
        let mut h = vec![0u8; header_len];
        file.read_exact_at(&mut h, 0)?;
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().expect("8 bytes"));
        let block_size = u32_at(12);
        let blocks = u64_at(16);
        let matches = h[..8] == MAP_MAGIC
            && u32_at(8) == MAP_VERSION_1
            && (PAGE_SIZE..=V1_MAX_BLOCK_SIZE).contains(&block_size)
            && block_size.is_multiple_of(PAGE_SIZE)
            && u64_at(24) == entry.size
            && blocks == entry.size.div_ceil(u64::from(block_size))
            && h[32..48] == entry.identity
            && u16::from_le_bytes([h[48], h[49]]) as usize == entry.path.len()
            && &h[V1_FIXED_HEADER..] == entry.path.as_bytes();
        if !matches {
            return Ok(None);
        }
        let stored_crc = u32_at(52);
        h[52..56].fill(0);
        if crc32fast::hash(&h) != stored_crc {
            return Ok(None);
        }
        let map = MapLayout::after_header(header_len as u64, blocks);
        Ok((len == map.total).then_some(V1Layout {
            block_size,
            blocks,
            map,
        }))
    }
}
