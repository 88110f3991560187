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
//!
//! Descriptors: a store file is opened when it is used, not for the life of
//! the daemon. At most [`OPEN_FILES`] served files keep their pair of
//! descriptors open at once (the least recently used is closed first), and
//! an empty file has no store files at all, so a manifest of a million
//! entries runs under the default `ulimit -n` of 1024.

pub mod bitmap;
pub mod reqlog;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use feedfs_protocol::io::FrameReader;
use feedfs_protocol::{block_count, block_len, Entry, FileId, Manifest, ManifestBuilder, Message};

use crate::store::bitmap::{Bitmap, OutOfRange};

/// Magic at the start of every map file.
pub const MAP_MAGIC: [u8; 8] = *b"FDFSMAP\0";
/// Version of the map file format.
pub const MAP_VERSION: u32 = 1;
const FIXED_HEADER: usize = 56;

/// Most served files whose store files are open at once: two descriptors
/// each, so 512 of the 1024 a process gets by default.
pub const OPEN_FILES: usize = 256;

/// An open store directory, locked for this process.
pub struct Store {
    dir: PathBuf,
    _lock: File,
    open: Arc<OpenFiles>,
}

/// Raise this process's soft limit on open descriptors to its hard limit
/// (the default soft limit, 1024, is often a tenth of the hard one). The
/// store needs at most [`OPEN_FILES`] pairs whatever the limit; the rest is
/// room for readers' passthrough opens and the links.
pub fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own; setrlimit only reads it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return;
        }
        let soft = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            log::debug!(
                "open file limit left at {soft}: {}",
                io::Error::last_os_error()
            );
        }
    }
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
                "store {dir} is in use by another feedfs-device (pid {pid}): to feed that \
                 daemon from a new host, use `feedfs-device attach --store {dir} --stdio` as \
                 the device command; otherwise stop it (kill {pid}) or use another --store",
                dir = dir.display(),
                pid = pid.trim()
            );
        }
        lock.set_len(0)?;
        writeln!(lock, "{}", std::process::id())?;
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: lock,
            open: Arc::new(OpenFiles::new(OPEN_FILES)),
        })
    }

    /// Open and lock a store a daemon made earlier, creating nothing (for
    /// commands that work on an existing store, such as `verify`).
    pub fn open_existing(dir: &Path) -> anyhow::Result<Store> {
        must_exist(dir)?;
        if !dir.join("lock").is_file() {
            bail!(
                "{} is not a feedfs store (it has no lock file): name the directory given to `feedfs-device mount --store`",
                dir.display()
            );
        }
        Store::open(dir)
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
        let path = self.dir.join("manifest");
        // Synced before and after the rename: once this returns, the new
        // manifest is what a restart finds, even after a power cut, so the
        // store files of the old one may be pruned.
        File::create(&tmp)
            .and_then(|mut f| f.write_all(&buf).and_then(|()| f.sync_all()))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, &path)
            .and_then(|()| File::open(&self.dir)?.sync_all())
            .with_context(|| format!("cannot save the manifest as {}", path.display()))?;
        Ok(())
    }

    /// Remove the store files of every path `m` does not serve (files of an
    /// earlier manifest: renamed, deleted, or now empty), and anything else
    /// in `DIR/files` that is not a store file of `m`. Call it only once `m`
    /// is saved ([`Store::save_manifest`]): until then a restart would look
    /// for the old files. Returns how many files went and the bytes they
    /// took on disk.
    pub fn prune(&self, m: &Manifest) -> anyhow::Result<(u64, u64)> {
        use std::collections::HashSet;
        use std::os::unix::fs::MetadataExt;
        let keep: HashSet<String> = m
            .files()
            .filter(|e| e.size > 0)
            .flat_map(|e| {
                let key = key_of(&e.path);
                [format!("{key}.data"), format!("{key}.map")]
            })
            .collect();
        let files = self.dir.join("files");
        let list =
            fs::read_dir(&files).with_context(|| format!("cannot list {}", files.display()))?;
        let (mut count, mut bytes) = (0, 0);
        for item in list {
            let item = item.with_context(|| format!("cannot list {}", files.display()))?;
            if item.file_name().to_str().is_some_and(|n| keep.contains(n)) {
                continue;
            }
            let path = item.path();
            let size = item.metadata().map_or(0, |md| md.blocks() * 512);
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            count += 1;
            bytes += size;
        }
        Ok((count, bytes))
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
            base.with_extension("data"),
            base.with_extension("map"),
            entry,
            self.open.clone(),
        )
    }
}

/// The manifest saved in the store at `dir`, checked again as if it came
/// from the wire. Reads only: no lock is taken, so a running daemon may own
/// the store.
pub fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    must_exist(dir)?;
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

/// Refuse a store directory that is not there, before anything looks inside.
fn must_exist(dir: &Path) -> anyhow::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!("store {} is not a directory", dir.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("store {} does not exist", dir.display())
        }
        Err(e) => Err(e).with_context(|| format!("cannot use store {}", dir.display())),
    }
}

/// Bytes allocated on disk (`st_blocks × 512`) to everything in the store
/// at `dir`: the data files (sparse, so only the blocks present), maps,
/// manifest, logs and state.
pub fn disk_usage(dir: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for item in fs::read_dir(&d)? {
            let item = item?;
            let md = match item.metadata() {
                Ok(md) => md,
                // Renamed or removed by a running daemon meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            total += md.blocks() * 512;
            if md.is_dir() {
                stack.push(item.path());
            }
        }
    }
    Ok(total)
}

/// Bytes free for an unprivileged writer on the filesystem holding `dir`.
pub fn free_space(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs is plain data that the kernel fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a pointer to our struct.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Both are 32 bits wide on some targets.
    #[allow(clippy::useless_conversion)]
    let free = u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize));
    Ok(free)
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

/// Whether any of `len` bytes at `offset` of `f` is data rather than a
/// hole. A filesystem without SEEK_DATA says data everywhere.
fn holds_data(f: &File, offset: u64, len: u64) -> io::Result<bool> {
    let Ok(start) = libc::off_t::try_from(offset) else {
        return Ok(true);
    };
    // SAFETY: lseek on a descriptor we own; no memory is passed.
    let next = unsafe { libc::lseek(f.as_raw_fd(), start, libc::SEEK_DATA) };
    if next < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            // No data at or after `offset`.
            Some(libc::ENXIO) => Ok(false),
            Some(libc::EINVAL | libc::EOPNOTSUPP) => Ok(true),
            _ => Err(e),
        };
    }
    Ok((next as u64) < offset + len)
}

/// Make `len` bytes at `offset` of `f` a hole, keeping the file's size.
fn punch_hole(f: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(start), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    if unsafe { libc::fallocate(f.as_raw_fd(), mode, start, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A served file's two store files, open.
struct Pair {
    data: File,
    map: File,
}

/// The served files whose store files are open, at most `cap` of them; the
/// one used least recently is closed to make room. A caller holds its pair
/// while it reads or writes, so a pair closed meanwhile stays usable until
/// then: the descriptors in use are at most `cap` pairs plus one per
/// thread at work.
struct OpenFiles {
    cap: usize,
    next_slot: AtomicU64,
    lru: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    tick: u64,
    /// Slot of a served file: (last use, its pair).
    open: HashMap<u64, (u64, Arc<Pair>)>,
    /// The same slots by last use, oldest first.
    by_use: BTreeMap<u64, u64>,
}

impl Lru {
    /// Mark `slot` used now; its pair, if it is open.
    fn touch(&mut self, slot: u64) -> Option<Arc<Pair>> {
        self.tick += 1;
        let tick = self.tick;
        let (used, pair) = self.open.get_mut(&slot)?;
        self.by_use.remove(used);
        *used = tick;
        self.by_use.insert(tick, slot);
        Some(pair.clone())
    }

    fn remove(&mut self, slot: u64) {
        if let Some((used, _)) = self.open.remove(&slot) {
            self.by_use.remove(&used);
        }
    }
}

impl OpenFiles {
    fn new(cap: usize) -> OpenFiles {
        OpenFiles {
            cap: cap.max(1),
            next_slot: AtomicU64::new(0),
            lru: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(&self) -> u64 {
        self.next_slot.fetch_add(1, Ordering::Relaxed)
    }

    /// The pair of `slot`, opened with `open` when it is not open.
    fn get(&self, slot: u64, open: impl FnOnce() -> io::Result<Pair>) -> io::Result<Arc<Pair>> {
        let mut lru = self.lock();
        if let Some(pair) = lru.touch(slot) {
            return Ok(pair);
        }
        let pair = Arc::new(open()?);
        self.insert(&mut lru, slot, pair.clone());
        Ok(pair)
    }

    /// Keep `pair` open as `slot`'s, closing the least recently used if full.
    fn put(&self, slot: u64, pair: Pair) {
        let mut lru = self.lock();
        self.insert(&mut lru, slot, Arc::new(pair));
    }

    fn insert(&self, lru: &mut Lru, slot: u64, pair: Arc<Pair>) {
        lru.remove(slot);
        if lru.open.len() >= self.cap {
            if let Some((_, oldest)) = lru.by_use.pop_first() {
                lru.open.remove(&oldest);
            }
        }
        lru.tick += 1;
        let tick = lru.tick;
        lru.open.insert(slot, (tick, pair));
        lru.by_use.insert(tick, slot);
    }

    fn close(&self, slot: u64) {
        self.lock().remove(slot);
    }

    #[cfg(test)]
    fn open_count(&self) -> usize {
        self.lock().open.len()
    }
}

/// The data file of a stored file, open while this lives (for kernel
/// passthrough, which takes its own reference to it).
pub struct DataFile(Arc<Pair>);

impl AsFd for DataFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.data.as_fd()
    }
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
            log::warn!(
                "store: cannot write the block map {}: {e}",
                self.map_path.display()
            );
        }
        self.open.close(self.slot);
    }
}

/// Why a file's map is reset when it has none yet.
const NO_MAP: &str = "no map yet";

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
/// (see [`OPEN_FILES`]); an empty file has none.
pub struct StoredFile {
    data_path: PathBuf,
    map_path: PathBuf,
    open: Arc<OpenFiles>,
    slot: u64,
    layout: MapLayout,
    size: u64,
    block_size: u32,
    blocks: u64,
    state: Mutex<MapState>,
    /// Whether opening found no usable map and started the file afresh.
    afresh: bool,
}

impl StoredFile {
    fn open(
        data_path: PathBuf,
        map_path: PathBuf,
        entry: &Entry,
        open: Arc<OpenFiles>,
    ) -> anyhow::Result<StoredFile> {
        let blocks = block_count(entry.size, entry.block_size);
        let layout = MapLayout::new(entry.path.len(), blocks);
        let slot = open.slot();
        let mut sf = StoredFile {
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
            }),
            afresh: false,
        };
        if blocks == 0 {
            // Nothing to store: no files, no descriptors.
            return Ok(sf);
        }
        let pair = sf.open_pair().map_err(|e| {
            anyhow::anyhow!("cannot open store file {}: {e}", sf.data_path.display())
        })?;
        let header = header_for(entry);
        let pair = match sf.load(&pair, &header) {
            Ok(()) => pair,
            Err(reason) => {
                // One line per file: a count goes to info (see `Core::new`).
                log::debug!("store: {:?}: {reason}; starting it afresh", entry.path);
                sf.afresh = true;
                sf.reset(&header, pair)?
            }
        };
        sf.open.put(sf.slot, pair);
        Ok(sf)
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
    fn pair(&self) -> io::Result<Arc<Pair>> {
        self.open.get(self.slot, || {
            self.open_pair().map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open store file {}: {e}", self.data_path.display()),
                )
            })
        })
    }

    /// Read an existing map; any mismatch is the reason to reset.
    fn load(&mut self, pair: &Pair, header: &[u8]) -> Result<(), String> {
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
    fn reset(&mut self, header: &[u8], old: Pair) -> anyhow::Result<Pair> {
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
    pub fn data_file(&self) -> io::Result<DataFile> {
        self.pair().map(DataFile)
    }

    /// Where the data of this file is stored, for messages.
    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// Number of present blocks.
    pub fn present_count(&self) -> u64 {
        self.lock().present.count()
    }

    /// Bytes of the file not in the store yet.
    pub fn missing_bytes(&self) -> u64 {
        let st = self.lock();
        let bs = u64::from(self.block_size);
        let last_present = self
            .blocks
            .checked_sub(1)
            .is_some_and(|l| st.present.get(l).unwrap_or(false));
        let mut present = st.present.count() * bs;
        if last_present {
            present = present - bs + block_len(self.size, self.block_size, self.blocks - 1) as u64;
        }
        self.size.saturating_sub(present)
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
        self.pair()?
            .data
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
            self.pair()?
                .map
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
        self.pair()?
            .data
            .write_all_at(data, index * u64::from(self.block_size))?;
        self.set_present(index, crc)
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
        let len = block_len(self.size, self.block_size, index);
        let offset = index * u64::from(self.block_size);
        let pair = self.pair()?;
        if holds_data(&pair.data, offset, len as u64)? {
            if let Err(e) = punch_hole(&pair.data, offset, len as u64) {
                log::debug!("store: cannot punch a hole ({e}); writing zeros");
                pair.data.write_all_at(&vec![0; len], offset)?;
            }
        }
        self.set_present(index, crc)
    }

    /// Record a stored block: its CRC, its bit (in memory; on disk with the
    /// next map write). False when it was present already.
    fn set_present(&self, index: u64, crc: u32) -> io::Result<bool> {
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
        let pair = self.pair()?;
        pair.map.write_all_at(&crcs, self.layout.crc_off + 4 * lo)?;
        let bytes: Vec<u8> = (lo / 8..=hi / 8)
            .map(|b| st.present.byte_of(b * 8))
            .collect();
        pair.map
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
        if !buf.is_empty() {
            self.pair()?.data.read_exact_at(&mut buf, offset)?;
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
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

    fn tempdir(name: &str) -> TempDir {
        TempDir::new(&format!("store-{name}"))
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
    }

    #[test]
    fn a_map_that_cannot_be_written_does_not_lose_a_stored_block() {
        let dir = tempdir("mapfail");
        let blocks = MAP_BATCH + 1;
        let e = entry(blocks * 4096, 1);
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        // Writes to the map fail from now on (as on a full disk).
        let data = OpenOptions::new().write(true).open(&f.data_path).unwrap();
        let map = File::open(&f.map_path).unwrap();
        f.open.put(f.slot, Pair { data, map });
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
        f.open.close(f.slot);
        f.flush_map().unwrap();
        drop(f);
        let f = store.open_file(&e).unwrap();
        assert_eq!(f.present_ranges(), vec![(0, MAP_BATCH)]);
        drop(f);
    }

    #[test]
    fn open_descriptors_stay_bounded_and_empty_files_have_none() {
        let dir = tempdir("bounded");
        let mut store = Store::open(&dir).unwrap();
        store.open = Arc::new(OpenFiles::new(4));
        let files: Vec<(Entry, StoredFile)> = (0..10)
            .map(|i| {
                let mut e = entry(5000, 1);
                e.path = format!("f{i}");
                let f = store.open_file(&e).unwrap();
                (e, f)
            })
            .collect();
        assert_eq!(store.open.open_count(), 4);
        // Every file still works, each opened again on demand.
        for (i, (_, f)) in files.iter().enumerate() {
            let b = block(i as u64, 4096);
            assert!(f.write_block(0, &b, crc32fast::hash(&b)).unwrap());
            assert!(store.open.open_count() <= 4);
        }
        drop(files);
        assert_eq!(store.open.open_count(), 0, "a dropped file closes its pair");
        for i in 0..10u64 {
            let mut e = entry(5000, 1);
            e.path = format!("f{i}");
            let f = store.open_file(&e).unwrap();
            assert_eq!(f.present_ranges(), vec![(0, 1)], "f{i} kept its block");
            assert_eq!(f.read_at(0, 4096).unwrap(), block(i, 4096));
        }
        let mut empty = entry(0, 1);
        empty.path = "empty".into();
        let f = store.open_file(&empty).unwrap();
        assert!(f.all_verified());
        assert!(f.read_at(0, 10).unwrap().is_empty());
        let base = dir.join("files").join(key_of("empty"));
        assert!(!base.with_extension("data").exists() && !base.with_extension("map").exists());
        drop(f);
    }

    #[test]
    fn the_least_recently_used_pair_is_closed_first() {
        let null = || {
            Ok(Pair {
                data: File::open("/dev/null")?,
                map: File::open("/dev/null")?,
            })
        };
        let open = OpenFiles::new(3);
        let is_open = |slot| open.lock().open.contains_key(&slot);
        for slot in 0..3 {
            open.get(slot, null).unwrap();
        }
        open.get(0, || panic!("0 is open")).unwrap();
        open.get(3, null).unwrap();
        assert!(!is_open(1), "1 was used least recently");
        assert!(is_open(0) && is_open(2) && is_open(3));
        open.get(2, || panic!("2 is open")).unwrap();
        open.get(4, null).unwrap();
        assert!(!is_open(0) && is_open(2) && is_open(3) && is_open(4));
        open.close(3);
        assert_eq!(open.open_count(), 2);
        let lru = open.lock();
        assert_eq!(lru.by_use.len(), lru.open.len(), "both views agree");
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
    }

    #[test]
    fn a_zero_block_is_a_hole_and_passes_its_check() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempdir("zero");
        let e = entry(3 * 4096 + 100, 1);
        let zero_crc = crc32fast::hash(&[0; 4096]);
        let data_path = dir
            .join("files")
            .join(key_of(&e.path))
            .with_extension("data");
        let allocated = || fs::metadata(&data_path).unwrap().blocks();
        {
            let store = Store::open(&dir).unwrap();
            let f = store.open_file(&e).unwrap();
            assert!(f.write_zero_block(0, zero_crc).unwrap());
            assert!(!f.write_zero_block(0, zero_crc).unwrap(), "a duplicate");
            // The short last block too.
            assert!(f.write_zero_block(3, crc32fast::hash(&[0; 100])).unwrap());
            let b1 = block(1, 4096);
            f.write_block(1, &b1, crc32fast::hash(&b1)).unwrap();
            assert_eq!(f.present_ranges(), vec![(0, 2), (3, 1)]);
            assert_eq!(allocated(), 8, "one 4 KiB block written, the zeros not");
        }
        // A block that held data, then dropped: its zeros punch it out.
        let d = OpenOptions::new().write(true).open(&data_path).unwrap();
        d.write_all_at(&[0xff; 16], 4096 + 100).unwrap();
        drop(d);
        let store = Store::open(&dir).unwrap();
        let f = store.open_file(&e).unwrap();
        assert_eq!(
            f.check(0).unwrap(),
            BlockState::Ready,
            "a hole reads as its zeros"
        );
        assert_eq!(f.check(3).unwrap(), BlockState::Ready);
        assert_eq!(f.check(1).unwrap(), BlockState::Dropped);
        assert!(f.write_zero_block(1, zero_crc).unwrap());
        assert_eq!(allocated(), 0, "punched out");
        assert_eq!(f.read_at(0, 20_000).unwrap(), vec![0; 3 * 4096 + 100]);
        drop(f);
        let f = store.open_file(&e).unwrap();
        assert_eq!(f.present_ranges(), vec![(0, 2), (3, 1)]);
        assert_eq!(f.check(1).unwrap(), BlockState::Ready);
        drop(f);
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
    }

    #[test]
    fn prune_keeps_only_the_files_the_manifest_serves() {
        let dir = tempdir("prune");
        let store = Store::open(&dir).unwrap();
        let mut b = ManifestBuilder::new();
        b.push(
            FileId(0),
            EntryKind::File,
            "keep",
            5000,
            0o644,
            4096,
            [1; 16],
        )
        .unwrap();
        b.push(FileId(1), EntryKind::File, "empty", 0, 0o644, 4096, [2; 16])
            .unwrap();
        let m = b.finish(2, 5000).unwrap();
        let mut old = entry(8192, 3);
        old.path = "gone".into();
        let (kept, gone) = (
            store.open_file(m.get(FileId(0)).unwrap()).unwrap(),
            store.open_file(&old).unwrap(),
        );
        let b = block(0, 4096);
        gone.write_block(0, &b, crc32fast::hash(&b)).unwrap();
        drop((kept, gone));
        // An empty file's pair left by an older daemon, and a stray file.
        let empty = dir.join("files").join(key_of("empty"));
        fs::write(empty.with_extension("data"), b"").unwrap();
        fs::write(empty.with_extension("map"), b"").unwrap();
        fs::write(dir.join("files/stray.tmp"), b"x").unwrap();
        store.save_manifest(&m).unwrap();
        let (count, bytes) = store.prune(&m).unwrap();
        assert_eq!(count, 5);
        assert!(bytes >= 4096, "the dropped block's space: {bytes}");
        let mut left: Vec<String> = fs::read_dir(dir.join("files"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let key = key_of("keep");
        assert_eq!(left, [format!("{key}.data"), format!("{key}.map")]);
        let f = store.open_file(m.get(FileId(0)).unwrap()).unwrap();
        assert_eq!(f.blocks(), 2, "the kept file opens as before");
        drop(f);
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
    }
}
