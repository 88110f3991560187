//! One served file's stored copy: its data file, its present blocks and
//! their CRCs in memory, and the checks a block passes before it is served.
//!
//! Invariants: a block's bit is set only after its data has been written
//! and checked against its CRC; a present block read back for the first
//! time in a daemon's life is checked against its recorded CRC before it
//! is served, and dropped (refetched) if it does not match. How the map
//! reaches the disk is in [`super::persist`].

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use feedfs_protocol::{block_count, block_len, Entry};

use super::bitmap::{Bitmap, OutOfRange};
use super::holes::{holds_data, punch_hole};
use super::layout::{header_for, MapLayout};
use super::open::{DataFile, OpenFiles, Pair};
use super::persist::MAP_BATCH;

/// Outcome of asking for a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    /// Present and checked: it may be served.
    Ready,
    /// Not in the store.
    Missing,
    /// Was present, failed its CRC check and has just been dropped.
    Dropped,
}

/// One served file's stored copy. Its store files are opened when needed
/// (see [`super::OPEN_FILES`]); an empty file has none.
pub struct StoredFile {
    pub(super) f: Arc<MapFile>,
    /// Whether opening found no usable map and started the file afresh.
    afresh: bool,
}

/// A stored file's store files, its blocks in memory and how its map is
/// written.
pub(super) struct MapFile {
    pub(super) data_path: PathBuf,
    pub(super) map_path: PathBuf,
    pub(super) open: Arc<OpenFiles>,
    pub(super) slot: u64,
    pub(super) layout: MapLayout,
    pub(super) size: u64,
    pub(super) block_size: u32,
    pub(super) blocks: u64,
    pub(super) state: Mutex<MapState>,
    /// Held while the map is written, so map writes of a file never overlap.
    pub(super) map_writer: Mutex<()>,
}

/// Present blocks, which of them were checked in this daemon's life, and their CRCs.
pub(super) struct MapState {
    pub(super) present: Bitmap,
    pub(super) verified: Bitmap,
    pub(super) crcs: Vec<u32>,
    /// Blocks set in memory since the map was last written: (first, last).
    pub(super) dirty: Option<(u64, u64)>,
    pub(super) dirty_count: u64,
    /// Blocks were written to the data file since it was last synced.
    pub(super) data_unsynced: bool,
    /// Entries were written to the map file since it was last synced.
    pub(super) map_unsynced: bool,
}

impl MapState {
    /// Block `index` changed in memory: its entry is pending for the map.
    fn mark_dirty(&mut self, index: u64) {
        self.dirty = Some(match self.dirty {
            Some((lo, hi)) => (lo.min(index), hi.max(index)),
            None => (index, index),
        });
        self.dirty_count += 1;
    }
}

impl StoredFile {
    pub(super) fn open(
        data_path: PathBuf,
        map_path: PathBuf,
        entry: &Entry,
        open: Arc<OpenFiles>,
    ) -> anyhow::Result<StoredFile> {
        let blocks = block_count(entry.size, entry.block_size);
        let layout = MapLayout::new(entry.path.len(), blocks);
        let slot = open.slot();
        let mut sf = MapFile {
            data_path,
            map_path,
            open,
            slot,
            layout,
            size: entry.size,
            block_size: entry.block_size,
            blocks,
            state: Mutex::new(MapState {
                present: Bitmap::new(blocks),
                verified: Bitmap::new(blocks),
                crcs: vec![0; blocks as usize],
                dirty: None,
                dirty_count: 0,
                data_unsynced: false,
                map_unsynced: false,
            }),
            map_writer: Mutex::new(()),
        };
        let mut afresh = false;
        if blocks > 0 {
            // Otherwise nothing to store: no files, no descriptors.
            afresh = sf.open_checked(entry)?;
        }
        Ok(StoredFile {
            f: Arc::new(sf),
            afresh,
        })
    }
}

impl MapFile {
    /// Open the pair of a file with blocks, resetting a map that does not
    /// match `entry`; whether it was reset.
    fn open_checked(&mut self, entry: &Entry) -> anyhow::Result<bool> {
        let sf = self;
        let mut afresh = false;
        let pair = sf.open_pair().map_err(|e| {
            anyhow::anyhow!("cannot open store file {}: {e}", sf.data_path.display())
        })?;
        let header = header_for(entry);
        let pair = match sf.load(&pair, &header) {
            Ok(()) => pair,
            Err(reason) => {
                // One line per file: a count goes to info (see `Core::new`).
                log::debug!("store: {:?}: {reason}; starting it afresh", entry.path);
                afresh = true;
                sf.reset(&header, pair)?
            }
        };
        sf.open.put(sf.slot, pair);
        Ok(afresh)
    }

    fn open_pair(&self) -> io::Result<Pair> {
        let rw = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
        };
        Ok(Pair {
            data: rw(&self.data_path)?,
            map: rw(&self.map_path)?,
        })
    }

    /// This file's open pair, opening it if it was closed.
    pub(super) fn pair(&self) -> io::Result<Arc<Pair>> {
        self.open.get(self.slot, || {
            self.open_pair().map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open store file {}: {e}", self.data_path.display()),
                )
            })
        })
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, MapState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StoredFile {
    fn lock(&self) -> std::sync::MutexGuard<'_, MapState> {
        self.f.lock()
    }

    pub fn size(&self) -> u64 {
        self.f.size
    }
    pub fn block_size(&self) -> u32 {
        self.f.block_size
    }
    /// Whether opening found no usable map (a new or changed file) and
    /// started the stored copy afresh.
    pub fn started_afresh(&self) -> bool {
        self.afresh
    }

    pub fn blocks(&self) -> u64 {
        self.f.blocks
    }

    /// Whether every block is present and was checked in this daemon's life:
    /// only then may reads bypass the checks (kernel passthrough).
    pub fn all_verified(&self) -> bool {
        self.lock().verified.is_full()
    }

    /// The backing data file (for kernel passthrough of a verified file).
    pub fn data_file(&self) -> io::Result<DataFile> {
        self.f.pair().map(DataFile)
    }

    /// Where the data of this file is stored, for messages.
    pub fn data_path(&self) -> &Path {
        &self.f.data_path
    }

    /// Number of present blocks.
    pub fn present_count(&self) -> u64 {
        self.lock().present.count()
    }

    /// Bytes of the file not in the store yet.
    pub fn missing_bytes(&self) -> u64 {
        let st = self.lock();
        let bs = u64::from(self.f.block_size);
        let last_present = self
            .f
            .blocks
            .checked_sub(1)
            .is_some_and(|l| st.present.get(l).unwrap_or(false));
        let mut present = st.present.count() * bs;
        if last_present {
            present =
                present - bs + block_len(self.f.size, self.f.block_size, self.f.blocks - 1) as u64;
        }
        self.f.size.saturating_sub(present)
    }

    /// Runs of present blocks, as (first, count).
    pub fn present_ranges(&self) -> Vec<(u64, u64)> {
        self.lock().present.ranges(true)
    }

    /// Runs of missing blocks, as (first, count).
    pub fn missing_ranges(&self) -> Vec<(u64, u64)> {
        self.lock().present.ranges(false)
    }

    pub fn is_present(&self, index: u64) -> Result<bool, OutOfRange> {
        self.lock().present.get(index)
    }

    /// Whether a block may be served, checking a block stored by an earlier
    /// daemon against its CRC the first time it is asked for.
    pub fn check(&self, index: u64) -> io::Result<BlockState> {
        let (present, verified, crc) = {
            let st = self.lock();
            let present = st.present.get(index).map_err(io::Error::other)?;
            (
                present,
                st.verified.get(index).unwrap_or(false),
                st.crcs[index as usize],
            )
        };
        if !present {
            return Ok(BlockState::Missing);
        }
        if verified {
            return Ok(BlockState::Ready);
        }
        let mut buf = vec![0u8; block_len(self.f.size, self.f.block_size, index)];
        self.f
            .pair()?
            .data
            .read_exact_at(&mut buf, index * u64::from(self.f.block_size))?;
        let good = crc32fast::hash(&buf) == crc;
        let mut st = self.lock();
        // Decide under the lock: another reader, or a landing, may have
        // changed this block since the snapshot above.
        let still_same = st.present.get(index).unwrap_or(false)
            && !st.verified.get(index).unwrap_or(false)
            && st.crcs[index as usize] == crc;
        if !still_same {
            return Ok(if st.present.get(index).unwrap_or(false) {
                BlockState::Ready
            } else {
                BlockState::Missing
            });
        }
        if good {
            let _ = st.verified.set(index, true);
            return Ok(BlockState::Ready);
        }
        log::warn!("store: block {index} does not match its recorded CRC; dropping it");
        let _ = st.present.set(index, false);
        // Its cleared bit goes to the map with the pending entries.
        st.mark_dirty(index);
        drop(st);
        if let Err(e) = self.f.write_map(false) {
            // Not on disk yet, but never served: it is missing in memory.
            log::warn!("store: cannot record the dropped block {index}: {e}");
        }
        Ok(BlockState::Dropped)
    }

    /// Store a block whose data the caller has checked against `crc`.
    /// Returns false when it was already present (a duplicate).
    pub fn write_block(&self, index: u64, data: &[u8], crc: u32) -> io::Result<bool> {
        if self.lock().present.get(index).map_err(io::Error::other)? {
            return Ok(false);
        }
        let expected = block_len(self.f.size, self.f.block_size, index);
        if data.len() != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "block {index} has {} bytes, expected {expected}",
                    data.len()
                ),
            ));
        }
        self.f
            .pair()?
            .data
            .write_all_at(data, index * u64::from(self.f.block_size))?;
        self.set_present(index, crc, true)
    }

    /// Store block `index`, every byte of which is zero (`crc` is the CRC
    /// of its zeros), as a hole: nothing is written where the data file has
    /// no data there (every block of a new file); a region that holds old
    /// data (a block dropped after a failed check) is punched out, or
    /// overwritten with zeros where the filesystem cannot punch holes.
    /// Returns false when it was already present.
    pub fn write_zero_block(&self, index: u64, crc: u32) -> io::Result<bool> {
        if self.lock().present.get(index).map_err(io::Error::other)? {
            return Ok(false);
        }
        let len = block_len(self.f.size, self.f.block_size, index);
        let offset = index * u64::from(self.f.block_size);
        let pair = self.f.pair()?;
        let changed = holds_data(&pair.data, offset, len as u64)?;
        if changed {
            if let Err(e) = punch_hole(&pair.data, offset, len as u64) {
                log::debug!("store: cannot punch a hole ({e}); writing zeros");
                pair.data.write_all_at(&vec![0; len], offset)?;
            }
        }
        self.set_present(index, crc, changed)
    }

    /// Record a stored block: its CRC, its bit (in memory; on disk with the
    /// next map write, after its data if `wrote_data`). False when it was
    /// present already.
    fn set_present(&self, index: u64, crc: u32, wrote_data: bool) -> io::Result<bool> {
        let mut st = self.lock();
        if st.present.get(index).map_err(io::Error::other)? {
            return Ok(false);
        }
        st.crcs[index as usize] = crc;
        let _ = st.present.set(index, true);
        let _ = st.verified.set(index, true);
        st.data_unsynced |= wrote_data;
        st.mark_dirty(index);
        if st.dirty_count >= MAP_BATCH {
            drop(st);
            // The block is stored and present either way: a map that cannot
            // be written now (a full disk) keeps its entries pending for the
            // next write. Failing here would leave a block present in memory
            // that the caller counts as lost, and Complete never sent.
            if let Err(e) = self.flush_map() {
                log::warn!("store: cannot write the block map yet: {e}");
            }
        }
        Ok(true)
    }

    /// Read `len` bytes at `offset` (clamped to the file's end).
    pub fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = self.f.size.min(offset.saturating_add(len as u64));
        let mut buf = vec![0u8; end.saturating_sub(offset) as usize];
        if !buf.is_empty() {
            self.f.pair()?.data.read_exact_at(&mut buf, offset)?;
        }
        Ok(buf)
    }
}

impl Drop for StoredFile {
    fn drop(&mut self) {
        if let Err(e) = self.sync_map() {
            log::warn!(
                "store: cannot write the block map {}: {e}",
                self.f.map_path.display()
            );
        }
        self.f.open.close(self.f.slot);
    }
}
