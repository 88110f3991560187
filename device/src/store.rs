//! The on-device store: backing data plus a persisted map of present blocks
//! and the CRC-32 of each, one pair of files per served file.
//!
//! Layout (see `docs/store.md`): `DIR/lock` is held with an exclusive lock by
//! the one daemon using the store and holds its pid; `DIR/files/<key>.data`
//! is the file's content (sparse, full size) and `DIR/files/<key>.map` its
//! map, where `<key>` is a hash of the relative path, so no name from the
//! wire ever becomes a path on the device.
//!
//! Invariants: a block's bit is set only after its data has been written and
//! checked against its CRC, and its CRC recorded; a map whose header does
//! not match the manifest (identity, size, block size, path, length) is
//! reset, never trusted; a present block read back for the first time in a
//! daemon's life is checked against its recorded CRC before it is served,
//! and dropped (refetched) if it does not match.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context};
use feedfs_protocol::io::FrameReader;
use feedfs_protocol::{block_count, block_len, Entry, FileId, Manifest, ManifestBuilder, Message};

use crate::bitmap::{Bitmap, OutOfRange};

/// Magic at the start of every map file.
pub const MAP_MAGIC: [u8; 8] = *b"FDFSMAP\0";
/// Version of the map file format.
pub const MAP_VERSION: u32 = 1;
const FIXED_HEADER: usize = 56;

/// An open store directory, locked for this process.
pub struct Store {
    dir: PathBuf,
    _lock: File,
}

impl Store {
    /// Open (creating if needed) and lock a store directory.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        fs::create_dir_all(dir.join("files"))
            .with_context(|| format!("cannot create store directory {}", dir.display()))?;
        let lock_path = dir.join("lock");
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            let pid = fs::read_to_string(&lock_path).unwrap_or_default();
            bail!(
                "store {} is in use by another feedfs-device (pid {}); stop it or use another --store",
                dir.display(),
                pid.trim()
            );
        }
        lock.set_len(0)?;
        writeln!(lock, "{}", std::process::id())?;
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Remember the manifest, so a daemon restarted without a link can mount it.
    /// Written in the wire format (Entry frames, then ManifestEnd) to a
    /// temporary file, then renamed over the old one.
    pub fn save_manifest(&self, m: &Manifest) -> anyhow::Result<()> {
        let mut buf = Vec::new();
        for i in 0..m.host_entries() {
            let e = m.get(FileId(i)).expect("ids are dense");
            Message::Entry {
                id: FileId(i),
                kind: e.kind,
                size: e.size,
                mode: e.mode,
                block_size: e.block_size,
                identity: e.identity,
                path: &e.path,
            }
            .emit(&mut buf);
        }
        Message::ManifestEnd {
            entries: m.host_entries(),
            total_bytes: m.total_bytes(),
        }
        .emit(&mut buf);
        let tmp = self.dir.join("manifest.tmp");
        fs::write(&tmp, &buf).with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, self.dir.join("manifest")).context("cannot save the manifest")?;
        Ok(())
    }

    /// The manifest saved by the last daemon, checked again as if it came from the wire.
    pub fn load_manifest(&self) -> anyhow::Result<Manifest> {
        read_manifest(&self.dir)
    }

    /// Open the stored copy of a manifest file entry, resetting it if it
    /// does not match the entry.
    pub fn open_file(&self, entry: &Entry) -> anyhow::Result<StoredFile> {
        let key = key_of(&entry.path);
        let base = self.dir.join("files").join(key);
        StoredFile::open(
            &base.with_extension("data"),
            &base.with_extension("map"),
            entry,
        )
    }
}

/// The manifest saved in the store at `dir`, checked again as if it came
/// from the wire. Reads only: no lock is taken, so a running daemon may own
/// the store.
pub fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join("manifest");
    let file = File::open(&path).with_context(|| {
        format!(
            "store {} holds no manifest yet: connect a host first",
            dir.display()
        )
    })?;
    let mut reader = FrameReader::new(file);
    let mut builder = ManifestBuilder::new();
    loop {
        let frame = reader
            .next_frame()
            .with_context(|| format!("{} is damaged", path.display()))?
            .with_context(|| format!("{} ends before its ManifestEnd", path.display()))?;
        match Message::parse(frame).with_context(|| format!("{} is damaged", path.display()))? {
            Message::ManifestEnd {
                entries,
                total_bytes,
            } => {
                return Ok(builder.finish(entries, total_bytes)?);
            }
            msg => builder.push_message(&msg)?,
        }
    }
}

/// How many blocks of `entry` the map file in the store at `dir` marks
/// present, and whether its last block is among them, reading only; `None` when there is no map that matches the
/// entry (the daemon resets such a file when it opens it). Up to a second
/// behind a running daemon, which writes its map in batches.
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

/// The store's file name for a relative path: 32 hex digits.
pub fn key_of(path: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(path.as_bytes()))
}

/// Where each part of a map file lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MapLayout {
    bitmap_off: u64,
    crc_off: u64,
    total: u64,
}

fn align8(x: u64) -> u64 {
    x.div_ceil(8) * 8
}

impl MapLayout {
    fn new(path_len: usize, blocks: u64) -> Self {
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
fn header_for(entry: &Entry) -> Vec<u8> {
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

/// Blocks landed between two writes of a map file. Writing a map entry per
/// block made the link thread wait on the map's page while the kernel wrote
/// it back (strace: single 4-byte writes of 11 ms). A crash loses at most
/// this many recent bits (plus what arrived in the last second, see
/// `Core::flush_maps`), and those blocks are fetched again: never trusted
/// without their bit.
pub const MAP_BATCH: u64 = 256;

/// An empty file of `len` bytes at `path`. A file that holds old bytes is
/// replaced by a new one rather than truncated: ext4 flushes a file that was
/// truncated to zero and written again when it is closed, which made a
/// daemon take seconds to exit after a large first push.
fn recreate(path: &Path, len: u64) -> anyhow::Result<File> {
    if fs::metadata(path).is_ok_and(|m| m.len() > 0) {
        fs::remove_file(path).with_context(|| format!("cannot replace {}", path.display()))?;
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot create store file {}", path.display()))?;
    f.set_len(len)
        .with_context(|| format!("cannot size store file {}", path.display()))?;
    Ok(f)
}

/// Present blocks, which of them were checked in this daemon's life, and their CRCs.
struct MapState {
    present: Bitmap,
    verified: Bitmap,
    crcs: Vec<u32>,
    /// Blocks set in memory since the map was last written: (first, last).
    dirty: Option<(u64, u64)>,
    dirty_count: u64,
}

impl Drop for StoredFile {
    fn drop(&mut self) {
        if let Err(e) = self.flush_map() {
            log::warn!("store: cannot write the block map: {e}");
        }
    }
}

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

/// One served file's stored copy.
pub struct StoredFile {
    data: File,
    map: File,
    layout: MapLayout,
    size: u64,
    block_size: u32,
    blocks: u64,
    state: Mutex<MapState>,
    /// Whether opening found no usable map and started the file afresh.
    afresh: bool,
}

impl StoredFile {
    fn open(data_path: &Path, map_path: &Path, entry: &Entry) -> anyhow::Result<StoredFile> {
        let blocks = block_count(entry.size, entry.block_size);
        let layout = MapLayout::new(entry.path.len(), blocks);
        let header = header_for(entry);
        let rw = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
                .with_context(|| format!("cannot open store file {}", p.display()))
        };
        let data = rw(data_path)?;
        let map = rw(map_path)?;
        let mut sf = StoredFile {
            data,
            map,
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
            }),
            afresh: false,
        };
        if let Err(reason) = sf.load(&header) {
            // One line per file: a count goes to info (see `Core::new`).
            log::debug!("store: {:?}: {reason}; starting it afresh", entry.path);
            sf.reset(&header, data_path, map_path)?;
            sf.afresh = true;
        }
        Ok(sf)
    }

    /// Read an existing map; any mismatch is the reason to reset.
    fn load(&mut self, header: &[u8]) -> Result<(), String> {
        let map_len = self.map.metadata().map_err(|e| e.to_string())?.len();
        if map_len == 0 {
            return Err("no map yet".into());
        }
        if map_len != self.layout.total {
            return Err(format!(
                "map is {map_len} bytes, expected {}",
                self.layout.total
            ));
        }
        let mut on_disk = vec![0u8; header.len()];
        self.map
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
        let data_len = self.data.metadata().map_err(|e| e.to_string())?.len();
        if data_len != self.size {
            return Err(format!(
                "data file is {data_len} bytes, expected {}",
                self.size
            ));
        }
        let mut bits = vec![0u8; self.blocks.div_ceil(8) as usize];
        self.map
            .read_exact_at(&mut bits, self.layout.bitmap_off)
            .map_err(|e| e.to_string())?;
        let mut raw = vec![0u8; 4 * self.blocks as usize];
        self.map
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
    fn reset(&mut self, header: &[u8], data_path: &Path, map_path: &Path) -> anyhow::Result<()> {
        // The map first, so that a crash during the reset leaves no map that
        // trusts the old data.
        self.map = recreate(map_path, self.layout.total)?;
        self.data = recreate(data_path, self.size)?;
        self.map
            .write_all_at(header, 0)
            .context("cannot write the store's map")?;
        let st = self.state.get_mut().expect("fresh mutex");
        st.present = Bitmap::new(self.blocks);
        st.verified = Bitmap::new(self.blocks);
        st.crcs = vec![0; self.blocks as usize];
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn block_size(&self) -> u32 {
        self.block_size
    }
    /// Whether opening found no usable map (a new or changed file) and
    /// started the stored copy afresh.
    pub fn started_afresh(&self) -> bool {
        self.afresh
    }

    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MapState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether every block is present and was checked in this daemon's life:
    /// only then may reads bypass the checks (kernel passthrough).
    pub fn all_verified(&self) -> bool {
        self.lock().verified.is_full()
    }

    /// The backing data file (for kernel passthrough of a verified file).
    pub fn data_file(&self) -> &File {
        &self.data
    }

    /// Number of present blocks.
    pub fn present_count(&self) -> u64 {
        self.lock().present.count()
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
        let mut buf = vec![0u8; block_len(self.size, self.block_size, index)];
        self.data
            .read_exact_at(&mut buf, index * u64::from(self.block_size))?;
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
        // Pending entries first, so this byte carries no bit ahead of its CRC.
        let byte = st.present.byte_of(index);
        if let Err(e) = self.write_map(&mut st).and_then(|()| {
            self.map
                .write_all_at(&[byte], self.layout.bitmap_off + index / 8)
        }) {
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
        let expected = block_len(self.size, self.block_size, index);
        if data.len() != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "block {index} has {} bytes, expected {expected}",
                    data.len()
                ),
            ));
        }
        self.data
            .write_all_at(data, index * u64::from(self.block_size))?;
        let mut st = self.lock();
        if st.present.get(index).map_err(io::Error::other)? {
            return Ok(false);
        }
        st.crcs[index as usize] = crc;
        let _ = st.present.set(index, true);
        let _ = st.verified.set(index, true);
        st.dirty = Some(match st.dirty {
            Some((lo, hi)) => (lo.min(index), hi.max(index)),
            None => (index, index),
        });
        st.dirty_count += 1;
        if st.dirty_count >= MAP_BATCH {
            // The block is stored and present either way: a map that cannot
            // be written now (a full disk) keeps its entries pending for the
            // next write. Failing here would leave a block present in memory
            // that the caller counts as lost, and Complete never sent.
            if let Err(e) = self.write_map(&mut st) {
                log::warn!("store: cannot write the block map yet: {e}");
            }
        }
        Ok(true)
    }

    /// Write the map entries set since the last write: the CRCs first, then
    /// the bitmap bytes that hold their bits, so a bit never reaches the
    /// disk before its CRC (and the data before either, as it was written
    /// first).
    fn write_map(&self, st: &mut MapState) -> io::Result<()> {
        let Some((lo, hi)) = st.dirty else {
            return Ok(());
        };
        let crcs: Vec<u8> = st.crcs[lo as usize..=hi as usize]
            .iter()
            .flat_map(|c| c.to_le_bytes())
            .collect();
        self.map.write_all_at(&crcs, self.layout.crc_off + 4 * lo)?;
        let bytes: Vec<u8> = (lo / 8..=hi / 8)
            .map(|b| st.present.byte_of(b * 8))
            .collect();
        self.map
            .write_all_at(&bytes, self.layout.bitmap_off + lo / 8)?;
        st.dirty = None;
        st.dirty_count = 0;
        Ok(())
    }

    /// Write what the map gained in memory to the map file.
    pub fn flush_map(&self) -> io::Result<()> {
        let mut st = self.lock();
        self.write_map(&mut st)
    }

    /// Read `len` bytes at `offset` (clamped to the file's end).
    pub fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = self.size.min(offset.saturating_add(len as u64));
        let mut buf = vec![0u8; end.saturating_sub(offset) as usize];
        self.data.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feedfs_protocol::{EntryKind, FileId};

    fn entry(size: u64, identity: u8) -> Entry {
        Entry {
            id: Some(FileId(0)),
            kind: EntryKind::File,
            path: "dir/file.bin".into(),
            size,
            mode: 0o644,
            block_size: 4096,
            identity: [identity; 16],
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("feedfs-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn block(i: u64, len: usize) -> Vec<u8> {
        (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
    }

    #[test]
    fn blocks_survive_a_reopen_and_a_changed_identity_resets() {
        let dir = tempdir("reopen");
        let e = entry(10_000, 1);
        {
            let store = Store::open(&dir).unwrap();
            let f = store.open_file(&e).unwrap();
            assert_eq!(f.blocks(), 3);
            let b2 = block(2, 10_000 - 8192);
            assert!(f.write_block(2, &b2, crc32fast::hash(&b2)).unwrap());
            assert!(!f.write_block(2, &b2, crc32fast::hash(&b2)).unwrap());
            assert!(
                f.write_block(0, &[1; 10], 0).is_err(),
                "short block refused"
            );
        }
        {
            let store = Store::open(&dir).unwrap();
            let f = store.open_file(&e).unwrap();
            assert_eq!(f.present_ranges(), vec![(2, 1)]);
            assert_eq!(f.check(2).unwrap(), BlockState::Ready);
            assert_eq!(f.read_at(8192, 4096).unwrap(), block(2, 10_000 - 8192));
        }
        {
            let store = Store::open(&dir).unwrap();
            let f = store.open_file(&entry(10_000, 2)).unwrap();
            assert_eq!(f.present_count(), 0, "identity changed: nothing trusted");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_map_is_written_in_batches_crcs_before_bits() {
        let dir = tempdir("batch");
        let e = entry(20 * 4096, 1);
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        let map_path = dir
            .join("files")
            .join(key_of(&e.path))
            .with_extension("map");
        let on_disk = || {
            let bytes = fs::read(&map_path).unwrap();
            let layout = MapLayout::new(e.path.len(), 20);
            let bits = bytes[layout.bitmap_off as usize];
            let crc3 = &bytes[(layout.crc_off + 12) as usize..(layout.crc_off + 16) as usize];
            (bits, u32::from_le_bytes(crc3.try_into().unwrap()))
        };
        let b3 = block(3, 4096);
        f.write_block(3, &b3, crc32fast::hash(&b3)).unwrap();
        assert_eq!(f.present_count(), 1, "present in memory at once");
        assert_eq!(on_disk(), (0, 0), "not on disk before a flush");
        f.flush_map().unwrap();
        assert_eq!(on_disk(), (0b1000, crc32fast::hash(&b3)));
        drop(f);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_map_that_cannot_be_written_does_not_lose_a_stored_block() {
        let dir = tempdir("mapfail");
        let blocks = MAP_BATCH + 1;
        let e = entry(blocks * 4096, 1);
        let store = Store::open(&dir).unwrap();
        let mut f = store.open_file(&e).unwrap();
        let map_path = dir
            .join("files")
            .join(key_of(&e.path))
            .with_extension("map");
        // Writes to the map fail from now on (as on a full disk).
        let writable = std::mem::replace(&mut f.map, File::open(&map_path).unwrap());
        for i in 0..MAP_BATCH {
            let b = block(i, 4096);
            assert!(
                f.write_block(i, &b, crc32fast::hash(&b)).unwrap(),
                "block {i}: stored, its map entry pending"
            );
        }
        assert_eq!(f.present_count(), MAP_BATCH);
        assert!(f.flush_map().is_err());
        // Once the map can be written again, the pending entries reach it.
        f.map = writable;
        f.flush_map().unwrap();
        drop(f);
        let f = store.open_file(&e).unwrap();
        assert_eq!(f.present_ranges(), vec![(0, MAP_BATCH)]);
        drop(f);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_block_is_dropped_not_served() {
        let dir = tempdir("damaged");
        let e = entry(8192, 1);
        let data_path;
        {
            let store = Store::open(&dir).unwrap();
            let f = store.open_file(&e).unwrap();
            let b = block(0, 4096);
            f.write_block(0, &b, crc32fast::hash(&b)).unwrap();
            data_path = dir
                .join("files")
                .join(key_of(&e.path))
                .with_extension("data");
        }
        // A torn write: the map says present, the data is wrong.
        let d = OpenOptions::new().write(true).open(&data_path).unwrap();
        d.write_all_at(&[0xff; 16], 100).unwrap();
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        assert_eq!(f.present_count(), 1);
        assert_eq!(f.check(0).unwrap(), BlockState::Dropped);
        assert_eq!(f.check(0).unwrap(), BlockState::Missing);
        assert_eq!(f.present_count(), 0);
        drop(f);
        // The drop was persisted.
        let f = store.open_file(&e).unwrap();
        assert_eq!(f.present_count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn manifest_round_trips_through_the_store() {
        let dir = tempdir("manifest");
        let store = Store::open(&dir).unwrap();
        assert!(store
            .load_manifest()
            .unwrap_err()
            .to_string()
            .contains("holds no manifest"));
        let mut b = ManifestBuilder::new();
        b.push(
            FileId(0),
            EntryKind::File,
            "a/b.bin",
            5000,
            0o640,
            4096,
            [3; 16],
        )
        .unwrap();
        b.push(FileId(1), EntryKind::Dir, "a", 0, 0o700, 0, [0; 16])
            .unwrap();
        let m = b.finish(2, 5000).unwrap();
        store.save_manifest(&m).unwrap();
        let back = store.load_manifest().unwrap();
        assert_eq!(back.entries(), m.entries());
        fs::write(dir.join("manifest"), b"FDFS garbage").unwrap();
        assert!(store
            .load_manifest()
            .unwrap_err()
            .to_string()
            .contains("damaged"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncated_map_resets_and_second_daemon_is_refused() {
        let dir = tempdir("trunc");
        let e = entry(8192, 1);
        let store = Store::open(&dir).unwrap();
        let err = Store::open(&dir).err().unwrap().to_string();
        assert!(err.contains("in use by another feedfs-device"), "{err}");
        let f = store.open_file(&e).unwrap();
        let b = block(1, 4096);
        f.write_block(1, &b, crc32fast::hash(&b)).unwrap();
        drop(f);
        let map_path = dir
            .join("files")
            .join(key_of(&e.path))
            .with_extension("map");
        let m = OpenOptions::new().write(true).open(&map_path).unwrap();
        m.set_len(60).unwrap();
        let f = store.open_file(&e).unwrap();
        assert_eq!(f.present_count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
