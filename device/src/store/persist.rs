//! How a stored file's map reaches the disk: read and checked when the file
//! is opened, reset when it does not match, written in batches, and made
//! durable (data first, then the map) by [`StoredFile::sync_map`].
//!
//! Invariants: a map whose header does not match the manifest's entry
//! (identity, size, block size, path, length) is reset, never trusted; a
//! bit is written after its CRC and its data; a sync makes the data
//! durable before the map entries that mark it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::Context;

use super::bitmap::Bitmap;
use super::file::{MapFile, StoredFile};
use super::layout::MAP_MAGIC;
use super::open::Pair;

/// Blocks landed between two writes of a map file. Writing a map entry per
/// block made the link thread wait on the map's page while the kernel wrote
/// it back (strace: single 4-byte writes of 11 ms). A crash loses at most
/// this many recent bits (plus what arrived in the last second, see
/// `Core::flush_maps`), and those blocks are fetched again: never trusted
/// without their bit.
pub const MAP_BATCH: u64 = 256;

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

    /// Write the map entries set since the last write: the CRCs first, then
    /// the bitmap bytes that hold their bits, so a bit never reaches the
    /// file before its CRC (and the data before either, as it was written
    /// first). That order holds in the page cache, so across a crash of the
    /// daemon.
    ///
    /// With `sync`, then make everything written so far durable:
    /// `fdatasync` of the data file (when blocks were written to it since
    /// its last sync), then of the map file. After that, every bit written
    /// before the sync began is on the disk with its data and CRC.
    ///
    /// The state lock is held only to take a snapshot and to hand back what
    /// could not be written; the writes run outside it, so readers of this
    /// file never wait on the disk. Map writes of one file are serialized by
    /// `map_writer`; the syncs run outside it too, so a map write (before a
    /// waiting read is answered, or of the stream's batch) never waits for
    /// a sync.
    pub(super) fn write_map(&self, sync: bool) -> io::Result<()> {
        self.write_pending()?;
        if sync {
            self.sync_files()
        } else {
            Ok(())
        }
    }

    /// Write the pending map entries to the map file (page cache only).
    fn write_pending(&self) -> io::Result<()> {
        let _writer = self.map_writer.lock().unwrap_or_else(|p| p.into_inner());
        let pending = {
            let mut st = self.lock();
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
            (lo, hi, crcs, bits)
        };
        let (lo, hi, crcs, bits) = &pending;
        let written = self.pair().and_then(|pair| {
            pair.map.write_all_at(crcs, self.layout.crc_off + 4 * lo)?;
            pair.map.write_all_at(bits, self.layout.bitmap_off + lo / 8)
        });
        let mut st = self.lock();
        match &written {
            Ok(()) => st.map_unsynced = true,
            Err(_) => {
                // Pending again, for the next write.
                st.dirty = Some(match st.dirty {
                    Some((a, b)) => (a.min(*lo), b.max(*hi)),
                    None => (*lo, *hi),
                });
                st.dirty_count += hi - lo + 1;
            }
        }
        written
    }

    /// `fdatasync` the data file, then the map file, each if written since
    /// its last sync.
    fn sync_files(&self) -> io::Result<()> {
        let (data, map) = {
            let mut st = self.lock();
            (
                std::mem::take(&mut st.data_unsynced),
                std::mem::take(&mut st.map_unsynced),
            )
        };
        if !data && !map {
            return Ok(());
        }
        let synced = self.pair().and_then(|pair| {
            if data {
                pair.data.sync_data()?;
            }
            if map {
                pair.map.sync_data()?;
            }
            Ok(())
        });
        if synced.is_err() {
            let mut st = self.lock();
            st.data_unsynced |= data;
            st.map_unsynced |= map;
        }
        synced
    }
}

impl StoredFile {
    /// Write what the map gained in memory to the map file, without a sync
    /// (see [`MapFile::write_map`]).
    pub fn flush_map(&self) -> io::Result<()> {
        self.f.write_map(false)
    }

    /// Write what the map gained in memory to the map file and make this
    /// file's data and map durable (see [`MapFile::write_map`]).
    pub fn sync_map(&self) -> io::Result<()> {
        self.f.write_map(true)
    }
}
