//! The page cache several devices' sessions share: pages read from a source
//! once, kept in slabs of [`SLAB_PAGES`] pages, the least recently used
//! slab dropped when the cache is over its size.
//!
//! A slab is allocated whole on first use, as long as the file allows (a
//! small file's slab holds just its pages), and fills page by page (a
//! demand for one page puts one page in it). The size counts the slabs'
//! bytes. Each slab has its own lock:
//! a session holds the locks of the slabs a run covers while it reads
//! their missing pages from the source, so a second session wanting the
//! same pages waits for that read and then copies them, instead of reading
//! them again. Runs lock their slabs in ascending order (a run covers one
//! file), so two sessions never wait for each other in a circle. A slab
//! dropped while a session holds it lives until that session lets go, so
//! the cache may be over its size by the slabs of the runs in flight.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use feedfs_protocol::{FileId, PAGE_SIZE};

/// Pages in a slab: 256 KiB, the stream's default run.
pub const SLAB_PAGES: u64 = 64;

const PAGE: usize = PAGE_SIZE as usize;
/// Bytes of a slab.
pub const SLAB_BYTES: usize = SLAB_PAGES as usize * PAGE;

/// Where a slab sits: its file and its number in the file.
pub type SlabKey = (FileId, u64);

/// Up to [`SLAB_PAGES`] pages of one file, from page `key.1 * SLAB_PAGES`.
pub struct Slab {
    data: Box<[u8]>,
    /// Bit `i`: page `i` of the slab is held.
    present: u64,
}

impl Slab {
    fn new(bytes: usize) -> Slab {
        Slab {
            data: vec![0; bytes.min(SLAB_BYTES)].into_boxed_slice(),
            present: 0,
        }
    }

    /// Whether page `i` of the slab is held.
    pub fn has(&self, i: u64) -> bool {
        self.present & (1 << i) != 0
    }

    /// Page `i`'s bytes (the first `len` of them).
    pub fn page(&self, i: u64, len: usize) -> &[u8] {
        let at = i as usize * PAGE;
        &self.data[at..at + len]
    }

    /// Keep `bytes` (at most a page) as page `i`.
    pub fn put(&mut self, i: u64, bytes: &[u8]) {
        let at = i as usize * PAGE;
        self.data[at..at + bytes.len()].copy_from_slice(bytes);
        self.present |= 1 << i;
    }
}

/// A shared slab.
pub type Shared = Arc<Mutex<Slab>>;

/// Lock a slab; a session that panicked holding one left whole pages only.
pub fn lock(slab: &Shared) -> MutexGuard<'_, Slab> {
    slab.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The slabs, most recently used last.
struct Slabs {
    by_key: HashMap<SlabKey, (Shared, u64, usize)>,
    by_use: BTreeMap<u64, SlabKey>,
    tick: u64,
    /// Bytes of all the slabs.
    bytes: usize,
}

/// Counts of what the cache did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Slabs dropped to stay within the size.
    pub dropped: u64,
}

/// The cache; see the module documentation.
pub struct PageCache {
    slabs: Mutex<Slabs>,
    /// Most bytes kept.
    most: usize,
    dropped: std::sync::atomic::AtomicU64,
}

impl PageCache {
    /// A cache of at most `bytes` (at least one slab per run in flight is
    /// kept whatever the size).
    pub fn new(bytes: u64) -> PageCache {
        PageCache {
            slabs: Mutex::new(Slabs {
                by_key: HashMap::new(),
                by_use: BTreeMap::new(),
                tick: 0,
                bytes: 0,
            }),
            most: usize::try_from(bytes).unwrap_or(usize::MAX),
            dropped: Default::default(),
        }
    }

    /// The slabs `keys` (in ascending order) of a file of `size` bytes,
    /// made where missing and marked as just used; room is made by
    /// dropping the least recently used others (never one of `keys`).
    pub fn slabs(&self, size: u64, keys: impl IntoIterator<Item = SlabKey>) -> Vec<Shared> {
        let mut s = self.slabs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        let ours_from = s.tick + 1;
        for key in keys {
            s.tick += 1;
            let tick = s.tick;
            let slab = match s.by_key.get_mut(&key) {
                Some((slab, used, _)) => {
                    let old = std::mem::replace(used, tick);
                    let slab = slab.clone();
                    s.by_use.remove(&old);
                    slab
                }
                None => {
                    let start = key.1 * SLAB_BYTES as u64;
                    let bytes = size.saturating_sub(start).min(SLAB_BYTES as u64) as usize;
                    let reused = self.make_room(&mut s, bytes, ours_from);
                    let slab = Arc::new(Mutex::new(reused.unwrap_or_else(|| Slab::new(bytes))));
                    s.by_key.insert(key, (slab.clone(), tick, bytes));
                    s.bytes += bytes;
                    slab
                }
            };
            s.by_use.insert(tick, key);
            out.push(slab);
        }
        out
    }

    /// Drop the least recently used slabs used before tick `ours_from`
    /// until `bytes` more fit; the buffer of one of `bytes` that nobody
    /// holds any more comes back, emptied, to be used again (so a cache
    /// that is full allocates nothing, and the memory it frees does not
    /// pile up in the allocator's per-thread pools).
    fn make_room(&self, s: &mut Slabs, bytes: usize, ours_from: u64) -> Option<Slab> {
        let mut reused = None;
        while s.bytes + bytes > self.most {
            match s.by_use.first_key_value() {
                Some((&tick, _)) if tick < ours_from => {}
                _ => break,
            }
            let Some((_, key)) = s.by_use.pop_first() else {
                break;
            };
            let Some((slab, _, size)) = s.by_key.remove(&key) else {
                continue;
            };
            s.bytes -= size;
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if reused.is_none() && size == bytes {
                if let Ok(slab) = Arc::try_unwrap(slab) {
                    let mut slab = slab.into_inner().unwrap_or_else(PoisonError::into_inner);
                    slab.present = 0;
                    reused = Some(slab);
                }
            }
        }
        reused
    }

    /// Bytes of the slabs held now.
    pub fn bytes(&self) -> usize {
        self.slabs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }

    /// Slabs held now.
    pub fn len(&self) -> usize {
        self.slabs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_key
            .len()
    }

    /// Whether no slab is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> Stats {
        Stats {
            dropped: self.dropped.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file large enough for whole slabs.
    const BIG: u64 = 1 << 30;

    #[test]
    fn a_small_file_takes_a_small_slab() {
        let cache = PageCache::new(3 * 4096);
        cache.slabs(5000, [(FileId(0), 0)]);
        cache.slabs(4096, [(FileId(1), 0)]);
        assert_eq!(cache.bytes(), 5000 + 4096);
        // The third does not fit with both: the oldest goes.
        cache.slabs(8000, [(FileId(2), 0)]);
        assert_eq!(cache.bytes(), 4096 + 8000);
        assert_eq!(cache.stats().dropped, 1);
        // The last slab of a large file holds what is left of it.
        cache.slabs(SLAB_BYTES as u64 + 10, [(FileId(3), 1)]);
        assert!(cache.bytes() <= 3 * 4096 && !cache.is_empty());
    }

    #[test]
    fn slabs_fill_page_by_page() {
        let cache = PageCache::new(1 << 20);
        let s = cache.slabs(BIG, [(FileId(0), 0)]);
        assert!(!lock(&s[0]).has(3));
        lock(&s[0]).put(3, &[7; 100]);
        let again = cache.slabs(BIG, [(FileId(0), 0)]);
        let slab = lock(&again[0]);
        assert!(slab.has(3) && !slab.has(2) && !slab.has(4));
        assert_eq!(slab.page(3, 100), &[7; 100]);
    }

    #[test]
    fn the_least_recently_used_slab_goes_first() {
        // Room for two slabs.
        let cache = PageCache::new(2 * SLAB_BYTES as u64);
        let a = (FileId(0), 0);
        let b = (FileId(0), 1);
        let c = (FileId(1), 0);
        lock(&cache.slabs(BIG, [a])[0]).put(0, b"a");
        lock(&cache.slabs(BIG, [b])[0]).put(0, b"b");
        // a is used again, so b is the oldest when c comes.
        assert!(lock(&cache.slabs(BIG, [a])[0]).has(0));
        cache.slabs(BIG, [c]);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.stats().dropped, 1);
        assert!(lock(&cache.slabs(BIG, [a])[0]).has(0), "a was kept");
        assert!(!lock(&cache.slabs(BIG, [b])[0]).has(0), "b was dropped");
    }

    #[test]
    fn a_run_gets_all_its_slabs_even_past_the_size() {
        let cache = PageCache::new(1);
        let keys: Vec<_> = (0..3).map(|i| (FileId(0), i)).collect();
        let got = cache.slabs(BIG, keys.clone());
        assert_eq!(got.len(), 3);
        assert_eq!(cache.len(), 3);
        // The next run drops what the last one left.
        cache.slabs(BIG, [(FileId(2), 0)]);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_full_cache_uses_a_dropped_slab_again_emptied() {
        let cache = PageCache::new(SLAB_BYTES as u64);
        lock(&cache.slabs(BIG, [(FileId(0), 0)])[0]).put(5, b"old");
        let b = cache.slabs(BIG, [(FileId(0), 1)]);
        let slab = lock(&b[0]);
        assert!(
            (0..SLAB_PAGES).all(|i| !slab.has(i)),
            "nothing of a came along"
        );
        assert_eq!(cache.bytes(), SLAB_BYTES);
        assert_eq!(cache.stats().dropped, 1);
    }

    #[test]
    fn a_dropped_slab_held_by_a_session_stays_usable() {
        let cache = PageCache::new(SLAB_BYTES as u64);
        let held = cache.slabs(BIG, [(FileId(0), 0)]).remove(0);
        cache.slabs(BIG, [(FileId(0), 1)]);
        let mut slab = lock(&held);
        slab.put(0, b"still here");
        assert_eq!(slab.page(0, 10), b"still here");
    }
}
