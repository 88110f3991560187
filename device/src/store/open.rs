//! The store files open at once: a bounded set of (data, map, and for a
//! file written on the device its writes file) descriptors, the least
//! recently used closed first, and the process's limit on open descriptors.
//!
//! Invariant: at most `cap` pairs are kept open; a caller holding a pair
//! (an `Arc`) keeps it usable even if it is closed meanwhile, so the
//! descriptors in use are at most `cap` pairs plus one per thread at work.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most served files whose store files are open at once: two descriptors
/// each, so 512 of the 1024 a process gets by default.
pub const OPEN_FILES: usize = 256;

/// Raise this process's soft limit on open descriptors to its hard limit
/// (the default soft limit, 1024, is often a tenth of the hard one). The
/// store needs at most [`OPEN_FILES`] pairs whatever the limit; the rest is
/// room for readers' passthrough opens and the links.
pub fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= hard {
        return;
    }
    if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        log::debug!("open file limit left at {soft}: {e}");
    }
}

/// A served file's store files, open: its data and map, and its writes
/// file if it has one.
pub(super) struct Pair {
    pub(super) data: File,
    pub(super) map: File,
    pub(super) writes: Option<File>,
}

impl Pair {
    /// The writes file, which the caller knows exists.
    pub(super) fn writes(&self) -> io::Result<&File> {
        self.writes
            .as_ref()
            .ok_or_else(|| io::Error::other("the writes file is not open"))
    }
}

/// The served files whose store files are open, at most `cap` of them; the
/// one used least recently is closed to make room. A caller holds its pair
/// while it reads or writes, so a pair closed meanwhile stays usable until
/// then: the descriptors in use are at most `cap` pairs plus one per
/// thread at work.
pub(super) struct OpenFiles {
    cap: usize,
    next_slot: AtomicU64,
    lru: Mutex<Lru>,
}

#[derive(Default)]
pub(super) struct Lru {
    tick: u64,
    /// Slot of a served file: (last use, its pair).
    pub(super) open: HashMap<u64, (u64, Arc<Pair>)>,
    /// The same slots by last use, oldest first.
    pub(super) by_use: BTreeMap<u64, u64>,
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
    pub(super) fn new(cap: usize) -> OpenFiles {
        OpenFiles {
            cap: cap.max(1),
            next_slot: AtomicU64::new(0),
            lru: Mutex::default(),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn slot(&self) -> u64 {
        self.next_slot.fetch_add(1, Ordering::Relaxed)
    }

    /// The pair of `slot`, opened with `open` when it is not open.
    pub(super) fn get(
        &self,
        slot: u64,
        open: impl FnOnce() -> io::Result<Pair>,
    ) -> io::Result<Arc<Pair>> {
        let mut lru = self.lock();
        if let Some(pair) = lru.touch(slot) {
            return Ok(pair);
        }
        let pair = Arc::new(open()?);
        self.insert(&mut lru, slot, pair.clone());
        Ok(pair)
    }

    /// Keep `pair` open as `slot`'s, closing the least recently used if full.
    pub(super) fn put(&self, slot: u64, pair: Pair) {
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

    pub(super) fn close(&self, slot: u64) {
        self.lock().remove(slot);
    }

    #[cfg(test)]
    pub(super) fn open_count(&self) -> usize {
        self.lock().open.len()
    }
}

/// The data file of a stored file, open while this lives (for kernel
/// passthrough, which takes its own reference to it).
pub struct DataFile(pub(super) Arc<Pair>);

impl AsFd for DataFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.data.as_fd()
    }
}
