//! One served file's stored copy: its store files, how they are opened
//! (a file held for its writes included), and its present pages in memory.
//! How a run from the host lands is [`super::land`], a write on the device
//! [`super::writes`].
//!
//! In memory a file costs a bit per page (present) and a bit per group of
//! [`GROUP_PAGES`] pages (checked); the CRC table stays in the map file,
//! written with each run and read back when a group is checked
//! ([`super::check`]).
//!
//! Invariants: a page's bit is set only after its data and its CRC have
//! been written (its data was checked against that CRC by the caller); a
//! group is *checked* when each of its present pages was checked against
//! its CRC, or landed, in this daemon's life, and a page is served only
//! from a checked group. How the map reaches the disk is [`super::persist`].
//! A page written on the device is present too, and never landed over.
//!
//! Lock order within a file: `io` (pages' data being written), then
//! `checking`, then `writes`, then `map_writer`, then `state`; none of them
//! is held while the core's pending lock is taken.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use feedfs_protocol::{page_count, page_len, Entry, PAGE_SIZE};

use super::bitmap::{Bitmap, OutOfRange};
use super::layout::{header_for, MapLayout};
use super::open::{DataFile, OpenFiles, Pair};
use super::writes::{writes_path, Writes, WritesHeader};

/// Pages landed between two writes of a map file's bits (16 MiB of data).
/// Writing the bits with every run made the link thread wait on the map's
/// page while the kernel wrote it back. A crash loses at most this many
/// recent bits (plus what arrived in the last second, see
/// `Core::flush_maps`), and those pages are fetched again: never trusted
/// without their bit.
pub const MAP_BATCH: u64 = 4096;

/// Pages per group of the *checked* bitmap (64 KiB): the unit in which
/// pages stored by an earlier daemon are read back and checked.
pub const GROUP_PAGES: u64 = 16;

/// The CRC-32 of a page of `len` zeros (the 4096-byte one computed once).
pub fn zero_crc(len: usize) -> u32 {
    static FULL: OnceLock<u32> = OnceLock::new();
    if len == PAGE_SIZE as usize {
        *FULL.get_or_init(|| crc32fast::hash(&[0; PAGE_SIZE as usize]))
    } else {
        crc32fast::hash(&vec![0; len])
    }
}

/// One served file's stored copy. Its store files are opened when needed
/// (see [`super::OPEN_FILES`]); an empty file has none.
pub struct StoredFile {
    pub(super) f: Arc<MapFile>,
    /// How opening found the map.
    pub(super) opened: Opened,
    /// Why this file is not served (the device holds writes to another
    /// version of it), in words.
    pub(super) held: Option<String>,
}

/// What opening a stored file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// A map of this format that matches the entry.
    Kept,
    /// No usable map (a new or changed file): started afresh.
    Afresh,
    /// A map of store format 1, converted; `dropped` blocks failed their
    /// check and are missing now.
    Converted { dropped: u64 },
}

/// A stored file's store files, its pages in memory and how its map is
/// written.
pub(super) struct MapFile {
    pub(super) data_path: PathBuf,
    pub(super) map_path: PathBuf,
    pub(super) open: Arc<OpenFiles>,
    pub(super) slot: u64,
    pub(super) layout: MapLayout,
    pub(super) size: u64,
    pub(super) pages: u64,
    pub(super) state: Mutex<MapState>,
    /// Held while the map's bits are written, so map writes never overlap.
    pub(super) map_writer: Mutex<()>,
    /// Held while a group is checked, so only one checker drops pages.
    pub(super) checking: Mutex<()>,
    /// Held while pages' data is written (a landing run, a write), so a
    /// run never lands over a page written meanwhile.
    pub(super) io: Mutex<()>,
    /// What a writes file of this file must say (size, identity, path).
    pub(super) own: WritesHeader,
    /// Its written pages, once it has any (see [`super::writes`]).
    pub(super) writes: Mutex<Option<Writes>>,
}

/// Present pages, and which groups were checked in this daemon's life.
pub(super) struct MapState {
    pub(super) present: Bitmap,
    /// One bit per [`GROUP_PAGES`] pages.
    pub(super) checked: Bitmap,
    /// Pages whose bit changed in memory since the map was last written: (first, last).
    pub(super) dirty: Option<(u64, u64)>,
    pub(super) dirty_count: u64,
    /// Pages were written to the data file since it was last synced.
    pub(super) data_unsynced: bool,
    /// CRCs or bits were written to the map file since it was last synced.
    pub(super) map_unsynced: bool,
    /// Written pages whose bytes match neither what was written nor what
    /// they replaced (a write cut by a power failure): read as EIO until
    /// written whole again or discarded.
    pub(super) torn: std::collections::BTreeSet<u64>,
}

impl MapState {
    pub(super) fn new(pages: u64) -> MapState {
        MapState {
            present: Bitmap::new(pages),
            checked: Bitmap::full(pages.div_ceil(GROUP_PAGES)),
            dirty: None,
            dirty_count: 0,
            data_unsynced: false,
            map_unsynced: false,
            torn: Default::default(),
        }
    }

    /// Pages `first..=last` changed in memory: pending for the map.
    pub(super) fn mark_dirty(&mut self, first: u64, last: u64) {
        self.dirty = Some(match self.dirty {
            Some((lo, hi)) => (lo.min(first), hi.max(last)),
            None => (first, last),
        });
        self.dirty_count += last - first + 1;
    }

    /// The state of a file that is not served: every page counts as
    /// present, so none is asked for and none lands.
    pub(super) fn held(pages: u64) -> MapState {
        let mut st = MapState::new(pages);
        st.present = Bitmap::full(pages);
        st
    }

    /// Every group that holds a present page is unchecked (a map just read
    /// from the disk); the others are checked.
    pub(super) fn uncheck_present_groups(&mut self) {
        self.checked = Bitmap::full(self.present.len().div_ceil(GROUP_PAGES));
        let mut from = 0;
        while let Some(p) = self.present.next(from, true) {
            let g = p / GROUP_PAGES;
            let _ = self.checked.set(g, false);
            from = (g + 1) * GROUP_PAGES;
        }
    }
}

impl StoredFile {
    pub(super) fn open(
        data_path: PathBuf,
        map_path: PathBuf,
        entry: &Entry,
        open: Arc<OpenFiles>,
    ) -> anyhow::Result<StoredFile> {
        let pages = page_count(entry.size);
        let slot = open.slot();
        let mut sf = MapFile {
            data_path,
            map_path,
            open,
            slot,
            layout: MapLayout::new(entry.path.len(), pages),
            size: entry.size,
            pages,
            state: Mutex::new(MapState::new(pages)),
            map_writer: Mutex::new(()),
            checking: Mutex::new(()),
            io: Mutex::new(()),
            own: WritesHeader {
                size: entry.size,
                identity: entry.identity,
                path: entry.path.clone(),
            },
            writes: Mutex::new(None),
        };
        let mut opened = Opened::Kept;
        let mut held = None;
        // Writes to an older version hold even an empty new one.
        match sf.open_writes() {
            // An empty file has nothing to store: no files, no descriptors.
            Ok(_) if pages == 0 => {}
            Ok(writes) => {
                let keep_data = writes.is_some();
                opened = sf.open_checked(entry, keep_data)?;
                if let Some(w) = writes {
                    sf.add_written(w);
                }
            }
            Err(why) => {
                // Nothing of it is touched: the store keeps the old
                // version's pages and writes until the user decides.
                log::warn!("store: {:?} is not served: {why}", entry.path);
                *sf.state.get_mut().expect("fresh mutex") = MapState::held(pages);
                held = Some(why);
            }
        }
        Ok(StoredFile {
            f: Arc::new(sf),
            opened,
            held,
        })
    }
}

impl MapFile {
    /// This file's writes, if it has any: an error (in words, with what to
    /// do) when they cannot be read or were made over another version of
    /// the file than the one served now.
    fn open_writes(&self) -> Result<Option<Writes>, String> {
        let path = writes_path(&self.data_path);
        let what = |why: String| {
            format!(
                "its writes file {} cannot be used ({why}); the written pages stay in the \
                 store until `feedfs-device overlay --store DIR discard {path:?}` drops them",
                path.display(),
                path = self.own.path
            )
        };
        let Some(w) = Writes::open(&path).map_err(what)? else {
            return Ok(None);
        };
        if w.header != self.own && w.written.count() == 0 {
            // Made by an open for writing that wrote nothing: nothing to keep.
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        if w.header != self.own {
            return Err(format!(
                "the host serves another version of it (its {}), and the device holds {} \
                 bytes written to the old one; export them (`feedfs-device overlay --store \
                 DIR export {path:?} -o FILE`) or discard them (`feedfs-device overlay \
                 --store DIR discard {path:?}`), then mount again",
                if w.header.size != self.own.size {
                    "size"
                } else {
                    "identity"
                },
                w.written_bytes(),
                path = self.own.path
            ));
        }
        Ok(Some(w))
    }

    /// Add the written pages of `w` to the present ones: they are served
    /// from the data file, never fetched, and checked, like any page an
    /// earlier daemon stored, before they are served.
    fn add_written(&mut self, w: Writes) {
        let st = self.state.get_mut().expect("fresh mutex");
        let mut from = 0;
        while let Some(p) = w.written.next(from, true) {
            let _ = st.present.set(p, true);
            from = p + 1;
        }
        st.uncheck_present_groups();
        *self.writes.get_mut().expect("fresh mutex") = Some(w);
    }

    /// Open the pair of a file with pages: keep a map that matches `entry`,
    /// convert one of format 1 written for it, reset anything else (its
    /// data too unless `keep_data`: the file has written pages).
    fn open_checked(&mut self, entry: &Entry, keep_data: bool) -> anyhow::Result<Opened> {
        let pair = self.open_pair().map_err(|e| {
            anyhow::anyhow!("cannot open store file {}: {e}", self.data_path.display())
        })?;
        let header = header_for(entry);
        let (pair, opened) = match self.load(&pair, &header) {
            Ok(()) => (pair, Opened::Kept),
            Err(reason) => match self.convert(entry, &header, pair) {
                Ok((pair, dropped)) => (pair, Opened::Converted { dropped }),
                Err(pair) => {
                    // One line per file: a count goes to info (see `Core::new`).
                    log::debug!("store: {:?}: {reason}; starting it afresh", entry.path);
                    (self.reset(&header, pair, keep_data)?, Opened::Afresh)
                }
            },
        };
        self.open.put(self.slot, pair);
        Ok(opened)
    }

    pub(super) fn open_pair(&self) -> io::Result<Pair> {
        let rw = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
        };
        let writes = match OpenOptions::new()
            .read(true)
            .write(true)
            .open(writes_path(&self.data_path))
        {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(Pair {
            data: rw(&self.data_path)?,
            map: rw(&self.map_path)?,
            writes,
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

    /// Pages `first..first + count` as an error unless they are all pages of this file.
    pub(super) fn in_range(&self, first: u64, count: u64) -> io::Result<()> {
        if count == 0 || first.checked_add(count).is_none_or(|end| end > self.pages) {
            return Err(io::Error::other(OutOfRange {
                index: first.saturating_add(count).saturating_sub(1),
                len: self.pages,
            }));
        }
        Ok(())
    }
}

impl StoredFile {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, MapState> {
        self.f.lock()
    }

    pub fn size(&self) -> u64 {
        self.f.size
    }

    pub fn pages(&self) -> u64 {
        self.f.pages
    }

    /// How opening found the map (kept, started afresh, converted).
    pub fn opened(&self) -> Opened {
        self.opened
    }

    /// Why this file is not served (the store holds writes to another
    /// version of it), if it is not.
    pub fn held(&self) -> Option<&str> {
        self.held.as_deref()
    }

    /// Whether every page is present and every group was checked in this
    /// daemon's life: only then may reads bypass the checks (kernel
    /// passthrough).
    pub fn all_verified(&self) -> bool {
        let st = self.lock();
        st.present.is_full() && st.checked.is_full() && st.torn.is_empty()
    }

    /// The backing data file (for kernel passthrough of a verified file).
    pub fn data_file(&self) -> io::Result<DataFile> {
        self.f.pair().map(DataFile)
    }

    /// Where the data of this file is stored, for messages.
    pub fn data_path(&self) -> &Path {
        &self.f.data_path
    }

    /// Number of present pages.
    pub fn present_count(&self) -> u64 {
        self.lock().present.count()
    }

    /// Bytes of the file not in the store yet.
    pub fn missing_bytes(&self) -> u64 {
        let st = self.lock();
        let mut present = st.present.count() * u64::from(PAGE_SIZE);
        if let Some(last) = self.f.pages.checked_sub(1) {
            if st.present.get(last).unwrap_or(false) {
                present = present - u64::from(PAGE_SIZE) + page_len(self.f.size, last) as u64;
            }
        }
        self.f.size.saturating_sub(present)
    }

    /// Runs of present pages, as (first, count).
    pub fn present_ranges(&self) -> Vec<(u64, u64)> {
        self.lock().present.ranges(true)
    }

    /// Runs of missing pages, as (first, count).
    pub fn missing_ranges(&self) -> Vec<(u64, u64)> {
        self.lock().present.ranges(false)
    }

    pub fn is_present(&self, page: u64) -> Result<bool, OutOfRange> {
        self.lock().present.get(page)
    }

    /// Whether each of pages `first..first + count` is present, under one
    /// lock (a run's landing asks for all its pages at once; a lock per
    /// page made the link thread spin on the store writer's).
    pub fn present_in(&self, first: u64, count: u64) -> Vec<bool> {
        let st = self.lock();
        (first..first.saturating_add(count))
            .map(|p| st.present.get(p).unwrap_or(true))
            .collect()
    }

    /// Read `len` bytes at `offset` (clamped to the file's end).
    pub fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        let n = self.read_into(offset, len, &mut buf)?.len();
        buf.truncate(n);
        Ok(buf)
    }

    /// Read `len` bytes at `offset` (clamped to the file's end) into `buf`,
    /// which only grows, so a reader's buffer is zeroed once, not per read.
    pub fn read_into<'b>(
        &self,
        offset: u64,
        len: usize,
        buf: &'b mut Vec<u8>,
    ) -> io::Result<&'b [u8]> {
        let end = self.f.size.min(offset.saturating_add(len as u64));
        let n = end.saturating_sub(offset) as usize;
        if buf.len() < n {
            buf.resize(n, 0);
        }
        let out = &mut buf[..n];
        if n > 0 {
            self.f.pair()?.data.read_exact_at(out, offset)?;
        }
        Ok(out)
    }
}

impl Drop for StoredFile {
    fn drop(&mut self) {
        if let Err(e) = self.sync_map() {
            log::warn!(
                "store: cannot write the page map {}: {e}",
                self.f.map_path.display()
            );
        }
        self.f.open.close(self.f.slot);
    }
}
