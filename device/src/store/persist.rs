//! How a stored file's map reaches the disk: read and checked when the file
//! is opened, reset when it does not match, its bits written in batches,
//! and made durable (data first, then the map) by [`StoredFile::sync_map`].
//!
//! Invariants: a map whose header does not match the manifest's entry
//! (format, identity, size, path, length) is reset or converted, never
//! trusted; a bit is written after its CRC and its data; a sync makes the
//! data durable before the map entries that mark it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::Context;

use super::file::{MapFile, MapState, StoredFile};
use super::layout::MAP_MAGIC;
use super::open::Pair;

/// An empty file of `len` bytes at `path`, where `file` is open. A file
/// that holds old bytes is replaced by a new one rather than truncated:
/// ext4 flushes a file that was truncated to zero and written again when
/// it is closed, which made a daemon take seconds to exit after a large
/// first push. An empty one (just created) is only sized.
pub(super) fn recreate(path: &Path, file: File, len: u64) -> anyhow::Result<File> {
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
    /// Read an existing map; any mismatch is the reason to reset (or to
    /// convert a map of format 1).
    pub(super) fn load(&mut self, pair: &Pair, header: &[u8]) -> Result<(), String> {
        let map_len = pair.map.metadata().map_err(|e| e.to_string())?.len();
        if map_len == 0 {
            return Err(NO_MAP.into());
        }
        let mut on_disk = vec![0u8; header.len().min(map_len as usize)];
        pair.map
            .read_exact_at(&mut on_disk, 0)
            .map_err(|e| e.to_string())?;
        if on_disk.get(..8) != Some(&MAP_MAGIC[..]) {
            return Err("map has a bad magic".into());
        }
        if on_disk.get(8..12) != Some(&header[8..12]) {
            return Err("map has another format version".into());
        }
        if map_len != self.layout.total {
            return Err(format!(
                "map is {map_len} bytes, expected {}",
                self.layout.total
            ));
        }
        if on_disk != header {
            return Err("content identity, size or path changed".into());
        }
        let data_len = pair.data.metadata().map_err(|e| e.to_string())?.len();
        if data_len != self.size {
            return Err(format!(
                "data file is {data_len} bytes, expected {}",
                self.size
            ));
        }
        let present = self
            .layout
            .read_bitmap(&pair.map, self.pages)
            .map_err(|e| e.to_string())?;
        let st = self.state.get_mut().expect("fresh mutex");
        st.present = present;
        st.uncheck_present_groups();
        Ok(())
    }

    /// Drop everything and write an empty map with the right header; the
    /// data file too, unless `keep_data` (it holds written pages, which
    /// are not the map's).
    pub(super) fn reset(
        &mut self,
        header: &[u8],
        old: Pair,
        keep_data: bool,
    ) -> anyhow::Result<Pair> {
        // The map first, so that a crash during the reset leaves no map that
        // trusts the old data.
        let map = recreate(&self.map_path, old.map, self.layout.total)?;
        let data = if keep_data {
            if old.data.metadata()?.len() != self.size {
                old.data.set_len(self.size)?;
            }
            old.data
        } else {
            recreate(&self.data_path, old.data, self.size)?
        };
        map.write_all_at(header, 0)
            .with_context(|| format!("cannot write store file {}", self.map_path.display()))?;
        *self.state.get_mut().expect("fresh mutex") = MapState::new(self.pages);
        Ok(Pair {
            data,
            map,
            writes: old.writes,
        })
    }

    /// Write the bits set or cleared since the last write to the map file.
    /// A page's CRC went to the map file with its data (see
    /// [`StoredFile::write_run`]), so its bit never reaches the file before
    /// its CRC and its data. That order holds in the page cache, so across
    /// a crash of the daemon.
    ///
    /// With `sync`, then make everything written so far durable:
    /// `fdatasync` of the data file (when pages were written to it since
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

    /// Write the pending bits to the map file (page cache only).
    fn write_pending(&self) -> io::Result<()> {
        let _writer = self.map_writer.lock().unwrap_or_else(|p| p.into_inner());
        let (lo, hi, bits) = {
            let mut st = self.lock();
            let Some((lo, hi)) = st.dirty.take() else {
                return Ok(());
            };
            st.dirty_count = 0;
            (lo, hi, st.present.bytes(lo / 8, hi / 8 - lo / 8 + 1))
        };
        let written = self.pair().and_then(|pair| {
            pair.map
                .write_all_at(&bits, self.layout.bitmap_off + lo / 8)
        });
        let mut st = self.lock();
        match &written {
            Ok(()) => st.map_unsynced = true,
            // Pending again, for the next write.
            Err(_) => st.mark_dirty(lo, hi),
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
    /// file's data and map durable (see [`MapFile::write_map`]), and its
    /// writes (see [`StoredFile::sync_writes`]).
    pub fn sync_map(&self) -> io::Result<()> {
        self.f.write_map(true)?;
        self.sync_writes()
    }
}
