//! How a stored file's map reaches the disk: read and checked when the file
//! is opened, reset when it does not match, and written in batches (by the
//! store's syncer, [`super::sync`], off the thread that stores blocks, or
//! at once by [`StoredFile::sync_map`]).
//!
//! Invariants: a map whose header does not match the manifest's entry
//! (identity, size, block size, path, length) is reset, never trusted; a
//! bit is written only after its block's data and CRC were synced, so even
//! a power cut leaves no set bit without them.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::bitmap::Bitmap;
use super::file::{MapFile, StoredFile};
use super::layout::MAP_MAGIC;
use super::open::Pair;

/// Entries pending that have a file's map written without waiting for
/// [`SYNC_INTERVAL`]. Writing a map entry per block made the link thread
/// wait on the map's page while the kernel wrote it back (strace: single
/// 4-byte writes of 11 ms), and each write now syncs. A crash loses the
/// entries not yet written (about a second's worth, more while the disk is
/// slower than the stream), and those blocks are fetched again: never
/// trusted without their bit.
pub const MAP_BATCH: u64 = 256;

/// Shortest time between two map writes of one file, each of which syncs
/// its data first, unless [`MAP_BATCH`] entries wait (see
/// [`StoredFile::flush_map`]).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// An empty file of `len` bytes at `path`, where `file` is open. A file
/// that holds old bytes is replaced by a new one rather than truncated:
/// ext4 flushes a file that was truncated to zero and written again when
/// it is closed, which made a daemon take seconds to exit after a large
/// first push. An empty one (just created) is only sized.
fn recreate(path: &Path, file: File, len: u64) -> anyhow::Result<File> {
    let f = if file.metadata().is_ok_and(|m| m.len() > 0) {
        drop(file);
        fs::remove_file(path).with_context(|| format!("cannot replace {}", path.display()))?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot create store file {}", path.display()))?
    } else {
        file
    };
    f.set_len(len)
        .with_context(|| format!("cannot size store file {}", path.display()))?;
    Ok(f)
}

/// Why a file's map is reset when it has none yet.
const NO_MAP: &str = "no map yet";

impl MapFile {
    /// Read an existing map; any mismatch is the reason to reset.
    pub(super) fn load(&mut self, pair: &Pair, header: &[u8]) -> Result<(), String> {
        let map_len = pair.map.metadata().map_err(|e| e.to_string())?.len();
        if map_len == 0 {
            return Err(NO_MAP.into());
        }
        if map_len != self.layout.total {
            return Err(format!(
                "map is {map_len} bytes, expected {}",
                self.layout.total
            ));
        }
        let mut on_disk = vec![0u8; header.len()];
        pair.map
            .read_exact_at(&mut on_disk, 0)
            .map_err(|e| e.to_string())?;
        if on_disk[..8] != MAP_MAGIC {
            return Err("map has a bad magic".into());
        }
        if on_disk[8..12] != header[8..12] {
            return Err("map has another format version".into());
        }
        if on_disk != header {
            return Err("content identity, size or block size changed".into());
        }
        let data_len = pair.data.metadata().map_err(|e| e.to_string())?.len();
        if data_len != self.size {
            return Err(format!(
                "data file is {data_len} bytes, expected {}",
                self.size
            ));
        }
        let mut bits = vec![0u8; self.blocks.div_ceil(8) as usize];
        pair.map
            .read_exact_at(&mut bits, self.layout.bitmap_off)
            .map_err(|e| e.to_string())?;
        let mut raw = vec![0u8; 4 * self.blocks as usize];
        pair.map
            .read_exact_at(&mut raw, self.layout.crc_off)
            .map_err(|e| e.to_string())?;
        let st = self.state.get_mut().expect("fresh mutex");
        st.present = Bitmap::from_bytes(&bits, self.blocks);
        st.crcs = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        Ok(())
    }

    /// Drop everything and write an empty map with the right header.
    pub(super) fn reset(&mut self, header: &[u8], old: Pair) -> anyhow::Result<Pair> {
        // The map first, so that a crash during the reset leaves no map that
        // trusts the old data.
        let map = recreate(&self.map_path, old.map, self.layout.total)?;
        let data = recreate(&self.data_path, old.data, self.size)?;
        map.write_all_at(header, 0)
            .with_context(|| format!("cannot write store file {}", self.map_path.display()))?;
        let st = self.state.get_mut().expect("fresh mutex");
        st.present = Bitmap::new(self.blocks);
        st.verified = Bitmap::new(self.blocks);
        st.crcs = vec![0; self.blocks as usize];
        Ok(Pair { data, map })
    }

    /// Write the map entries set since the last write, in three steps: the
    /// CRCs; then `fdatasync` of the data file (when blocks were written to
    /// it since the last sync) and of the map; then the bitmap bytes that
    /// hold their bits. So a bit never reaches the disk before its CRC and
    /// its data, even across a power cut; the bits themselves are not
    /// synced (a power cut may lose them: those blocks are fetched again).
    ///
    /// The state lock is held only to take a snapshot and to hand back a
    /// range that could not be written; the syncs run outside it, so readers
    /// of this file never wait on the disk. Map writes of one file are
    /// serialized by `map_writer`.
    ///
    /// Unless `now` is set, nothing is written while fewer than
    /// [`MAP_BATCH`] entries wait and this file's map was written less than
    /// [`SYNC_INTERVAL`] ago: the entries stay pending for a later write, so
    /// a stream syncs each file about once a second, not once a block.
    pub(super) fn write_map(&self, now: bool) -> io::Result<()> {
        let mut last = self.map_writer.lock().unwrap_or_else(|p| p.into_inner());
        let (lo, hi, crcs, bits, data_unsynced) = {
            let mut st = self.lock();
            let recent = last.is_some_and(|t| t.elapsed() < SYNC_INTERVAL);
            if !now && recent && st.dirty_count < MAP_BATCH {
                return Ok(());
            }
            let Some((lo, hi)) = st.dirty.take() else {
                return Ok(());
            };
            let crcs: Vec<u8> = st.crcs[lo as usize..=hi as usize]
                .iter()
                .flat_map(|c| c.to_le_bytes())
                .collect();
            let bits: Vec<u8> = (lo / 8..=hi / 8)
                .map(|b| st.present.byte_of(b * 8))
                .collect();
            st.dirty_count = 0;
            (lo, hi, crcs, bits, std::mem::take(&mut st.data_unsynced))
        };
        let written = self.pair().and_then(|pair| {
            pair.map.write_all_at(&crcs, self.layout.crc_off + 4 * lo)?;
            if data_unsynced {
                pair.data.sync_data()?;
            }
            pair.map.sync_data()?;
            pair.map
                .write_all_at(&bits, self.layout.bitmap_off + lo / 8)
        });
        if written.is_ok() {
            *last = Some(Instant::now());
        } else {
            // Pending again, for the next write.
            let mut st = self.lock();
            st.dirty = Some(match st.dirty {
                Some((a, b)) => (a.min(lo), b.max(hi)),
                None => (lo, hi),
            });
            st.dirty_count += hi - lo + 1;
            st.data_unsynced |= data_unsynced;
        }
        written
    }
}

impl StoredFile {
    /// Have what the map gained in memory written to the map file, off the
    /// caller's thread: the store's syncer writes it (see
    /// [`MapFile::write_map`] for the order, the syncs and the pace), so a
    /// stream never waits on a sync. Written here when the syncer has
    /// stopped; an error is then this write's.
    pub fn flush_map(&self) -> io::Result<()> {
        if self.f.dirty_count() == 0 || self.syncer().ask(&self.f) {
            return Ok(());
        }
        self.f.write_map(false)
    }

    /// Write every pending entry to the map file now, on this thread, with
    /// its syncs (at close, and where a caller needs it on disk).
    pub fn sync_map(&self) -> io::Result<()> {
        self.f.write_map(true)
    }
}
