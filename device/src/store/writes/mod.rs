//! A served file's written pages (`mount --writable`): the file
//! `files/<key>.writes` that marks which pages are the device's own and
//! holds, for each, the CRC-32 of its content and of the content it
//! replaced, so a crash mid-write leaves the page as it was or as written.
//! See `docs/store.md`, `files/<key>.writes`.
//!
//! Format 1, all little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `FDFSWRT\0` |
//! | 8 | 4 | version, 1 |
//! | 12 | 4 | page size, 4096 |
//! | 16 | 8 | page count |
//! | 24 | 8 | file size |
//! | 32 | 16 | identity of the host's file the writes were made over |
//! | 48 | 8 | reserved, zero |
//! | 56 | 2 | path length |
//! | 58 | 2 | reserved, zero |
//! | 60 | 4 | CRC-32 of the header and path, this field taken as zero |
//! | 64 | path length | the path |
//!
//! then the written-page bitmap at `align8(64 + path length)`,
//! `align8(ceil(pages / 8))` bytes, then a 16-byte [`Slot`] per page.
//!
//! Invariant: a page's bit reaches the file after its slot and before its
//! data, so whatever a crash leaves, the page's bytes match the slot's
//! `crc` (as written), its `before` (as it was), or neither (torn, and
//! detected).

mod apply;
mod discard;
#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use byteorder::{ByteOrder, LE};
use feedfs_protocol::{page_count, PAGE_SIZE};

use super::bitmap::Bitmap;
use super::layout::align8;

pub use apply::{WriteError, WriteTarget};

/// Magic at the start of every writes file.
pub const WRITES_MAGIC: [u8; 8] = *b"FDFSWRT\0";
/// Version of the writes file format.
pub const WRITES_VERSION: u32 = 1;
/// Bytes of the header before the path.
const FIXED_HEADER: usize = 64;
const HEADER_CRC: std::ops::Range<usize> = 60..64;
/// Bytes of one page's slot.
pub const SLOT_LEN: u64 = 16;

/// What a written page replaced, so a crash before its data landed can
/// be told from one after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    /// The page was missing: a write that did not land leaves it missing.
    Missing = 0,
    /// The host's content, whose CRC is also in the map's table.
    Host = 1,
    /// An earlier write of the device's own.
    Own = 2,
}

/// One page's slot: the CRC of its content and of what it replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub crc: u32,
    pub before_crc: u32,
    pub before: Before,
}

impl Slot {
    fn encode(&self, b: &mut [u8]) {
        LE::write_u32(&mut b[0..4], self.crc);
        LE::write_u32(&mut b[4..8], self.before_crc);
        b[8] = self.before as u8;
        b[9..16].fill(0);
    }

    fn decode(b: &[u8]) -> Slot {
        Slot {
            crc: LE::read_u32(&b[0..4]),
            before_crc: LE::read_u32(&b[4..8]),
            before: match b[8] {
                1 => Before::Host,
                2 => Before::Own,
                _ => Before::Missing,
            },
        }
    }
}

/// The header of a writes file: what it was written over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritesHeader {
    pub size: u64,
    pub identity: [u8; 16],
    pub path: String,
}

impl WritesHeader {
    pub fn pages(&self) -> u64 {
        page_count(self.size)
    }

    fn encode(&self) -> Vec<u8> {
        let mut h = vec![0u8; FIXED_HEADER];
        h[..8].copy_from_slice(&WRITES_MAGIC);
        LE::write_u32(&mut h[8..12], WRITES_VERSION);
        LE::write_u32(&mut h[12..16], PAGE_SIZE);
        LE::write_u64(&mut h[16..24], self.pages());
        LE::write_u64(&mut h[24..32], self.size);
        h[32..48].copy_from_slice(&self.identity);
        LE::write_u16(&mut h[56..58], self.path.len() as u16);
        h.extend_from_slice(self.path.as_bytes());
        let crc = crc32fast::hash(&h);
        h[HEADER_CRC].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Read and check the header of the writes file `file`.
    fn read(file: &File) -> Result<WritesHeader, String> {
        let mut h = vec![0u8; FIXED_HEADER];
        file.read_exact_at(&mut h, 0)
            .map_err(|e| format!("cannot read its header: {e}"))?;
        if h[..8] != WRITES_MAGIC {
            return Err("it has a bad magic".into());
        }
        let version = LE::read_u32(&h[8..12]);
        if version != WRITES_VERSION {
            return Err(format!(
                "it is of format {version}, this feedfs reads {WRITES_VERSION}"
            ));
        }
        let path_len = LE::read_u16(&h[56..58]) as usize;
        let mut path = vec![0u8; path_len];
        file.read_exact_at(&mut path, FIXED_HEADER as u64)
            .map_err(|e| format!("cannot read its header: {e}"))?;
        let stored = LE::read_u32(&h[HEADER_CRC]);
        h[HEADER_CRC].fill(0);
        h.extend_from_slice(&path);
        if crc32fast::hash(&h) != stored {
            return Err("its header does not match its CRC".into());
        }
        let header = WritesHeader {
            size: LE::read_u64(&h[24..32]),
            identity: h[32..48].try_into().expect("16 bytes"),
            path: String::from_utf8(path).map_err(|_| "its path is not UTF-8".to_string())?,
        };
        if LE::read_u32(&h[12..16]) != PAGE_SIZE || LE::read_u64(&h[16..24]) != header.pages() {
            return Err("its page size or page count is wrong".into());
        }
        Ok(header)
    }
}

/// Where each part of a writes file lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    bitmap_off: u64,
    slots_off: u64,
    total: u64,
}

impl Layout {
    fn new(path_len: usize, pages: u64) -> Layout {
        let bitmap_off = align8((FIXED_HEADER + path_len) as u64);
        let slots_off = bitmap_off + align8(pages.div_ceil(8));
        Layout {
            bitmap_off,
            slots_off,
            total: slots_off + SLOT_LEN * pages,
        }
    }
}

/// A writes file's header and written pages, in memory. Its descriptor is
/// the caller's (the store keeps it with the file's data and map, bounded
/// like them); each method that reads or writes takes it.
pub struct Writes {
    path: PathBuf,
    layout: Layout,
    pub header: WritesHeader,
    pub written: Bitmap,
    /// Written or changed since the last sync.
    pub unsynced: bool,
}

/// The writes file of a store file whose data is `data_path`.
pub fn writes_path(data_path: &Path) -> PathBuf {
    data_path.with_extension("writes")
}

impl Writes {
    /// Open the writes file at `path`, if there is one; an error says why it
    /// cannot be read (a damaged header), in words.
    pub fn open(path: &Path) -> Result<Option<Writes>, String> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open it: {e}")),
        };
        let header = WritesHeader::read(&file)?;
        let layout = Layout::new(header.path.len(), header.pages());
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        if len != layout.total {
            return Err(format!("it is {len} bytes, expected {}", layout.total));
        }
        let mut bits = vec![0u8; header.pages().div_ceil(8) as usize];
        file.read_exact_at(&mut bits, layout.bitmap_off)
            .map_err(|e| format!("cannot read its bitmap: {e}"))?;
        let written = Bitmap::from_bytes(&bits, header.pages());
        Ok(Some(Writes {
            path: path.to_path_buf(),
            layout,
            header,
            written,
            unsynced: false,
        }))
    }

    /// Create an empty writes file at `path` for `header`: made whole in
    /// `<path>.tmp`, synced, then renamed, so a crash never leaves a
    /// half-made one.
    pub fn create(path: &Path, header: WritesHeader) -> io::Result<Writes> {
        let layout = Layout::new(header.path.len(), header.pages());
        let tmp = path.with_extension("writes.tmp");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.set_len(layout.total)?;
        file.write_all_at(&header.encode(), 0)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        drop(file);
        let pages = header.pages();
        Ok(Writes {
            path: path.to_path_buf(),
            layout,
            header,
            written: Bitmap::new(pages),
            unsynced: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Slots of pages `first..first + count`, read from `file`.
    pub fn read_slots(&self, file: &File, first: u64, count: u64) -> io::Result<Vec<Slot>> {
        let mut raw = vec![0u8; (SLOT_LEN * count) as usize];
        file.read_exact_at(&mut raw, self.layout.slots_off + SLOT_LEN * first)?;
        Ok(raw
            .chunks_exact(SLOT_LEN as usize)
            .map(Slot::decode)
            .collect())
    }

    /// Write the slots of pages `first..first + slots.len()` to `file`.
    pub fn write_slots(&mut self, file: &File, first: u64, slots: &[Slot]) -> io::Result<()> {
        let mut raw = vec![0u8; SLOT_LEN as usize * slots.len()];
        for (s, b) in slots.iter().zip(raw.chunks_exact_mut(SLOT_LEN as usize)) {
            s.encode(b);
        }
        self.unsynced = true;
        file.write_all_at(&raw, self.layout.slots_off + SLOT_LEN * first)
    }

    /// Set (or clear) the bits of pages `first..=last` in memory and write
    /// the bytes of the bitmap that hold them to `file`.
    pub fn mark(&mut self, file: &File, first: u64, last: u64, written: bool) -> io::Result<()> {
        let was: Vec<bool> = (first..=last)
            .map(|p| self.written.set(p, written).unwrap_or(written))
            .collect();
        let wrote = self.write_bits(file, first, last);
        if wrote.is_err() {
            // Not on the disk: nor in memory, so the next write tries again.
            for (p, w) in (first..=last).zip(was) {
                let _ = self.written.set(p, w);
            }
        }
        wrote
    }

    /// Write the bytes of the bitmap that hold pages `first..=last` to `file`.
    pub fn write_bits(&mut self, file: &File, first: u64, last: u64) -> io::Result<()> {
        let bytes = self.written.bytes(first / 8, last / 8 - first / 8 + 1);
        self.unsynced = true;
        file.write_all_at(&bytes, self.layout.bitmap_off + first / 8)
    }

    /// Make everything written to `file` so far durable.
    pub fn sync(&mut self, file: &File) -> io::Result<()> {
        if std::mem::take(&mut self.unsynced) {
            if let Err(e) = file.sync_data() {
                self.unsynced = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Bytes of the file written on the device.
    pub fn written_bytes(&self) -> u64 {
        let mut n = self.written.count() * u64::from(PAGE_SIZE);
        if let Some(last) = self.header.pages().checked_sub(1) {
            if self.written.get(last).unwrap_or(false) {
                n = n - u64::from(PAGE_SIZE)
                    + feedfs_protocol::page_len(self.header.size, last) as u64;
            }
        }
        n
    }
}
