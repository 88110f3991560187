//! One source for the sessions of several devices: one set of open
//! backends and one [`PageCache`] for all, so devices streaming the same
//! files read each page from its source about once.
//!
//! A run is served from the cache's slabs where they hold its pages; the
//! span from its first missing page to its last is read in one read (a run
//! no session read before: exactly its bytes, as for a single device, so a
//! source that fetches ahead sees one session's offsets and lengths), and
//! its pages are kept in the slabs. The slabs' locks are held
//! across that read, so sessions asking for the same pages at once wait
//! for one read (see [`crate::files::cache`]). A backend is shared too,
//! behind a lock of its own, for the runs of the stream: an HTTP source's
//! fetches ahead serve whichever session reads next. A demand is read
//! through its session's own backend, so it never waits behind another
//! session's read of the same file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use feedfs_protocol::{page_offset, FileId, PAGE_SIZE};

use crate::files::backend::{Backend, SourceError};
use crate::files::cache::{lock, PageCache, Slab, SLAB_PAGES};
use crate::files::kinds::open;
use crate::files::manifest::ServedEntry;

/// Most files kept open at once.
const OPEN_FILES: usize = 16;

const PAGE: usize = PAGE_SIZE as usize;

type Opened = Arc<Mutex<Box<dyn Backend>>>;

/// See the module documentation.
pub struct SharedSource {
    cache: PageCache,
    /// Most recently used first.
    open: Mutex<Vec<(FileId, Opened)>>,
    read: AtomicU64,
}

impl SharedSource {
    /// A shared source whose cache holds at most `cache_bytes`.
    pub fn new(cache_bytes: u64) -> SharedSource {
        SharedSource {
            cache: PageCache::new(cache_bytes),
            open: Mutex::new(Vec::new()),
            read: AtomicU64::new(0),
        }
    }

    /// Bytes read from the sources so far, by every session.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    pub fn cache(&self) -> &PageCache {
        &self.cache
    }

    fn backend(&self, entry: &ServedEntry) -> Result<Opened, SourceError> {
        let mut open_now = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = open_now.iter().position(|(id, _)| *id == entry.id) {
            let item = open_now.remove(p);
            let backend = item.1.clone();
            open_now.insert(0, item);
            return Ok(backend);
        }
        // Opening checks the file; another session's reads of other files
        // wait for it, as a single session's would.
        let backend: Opened = Arc::new(Mutex::new(open(entry)?));
        open_now.truncate(OPEN_FILES - 1);
        open_now.insert(0, (entry.id, backend.clone()));
        Ok(backend)
    }

    /// Fill `out` with the bytes of `entry` from page `first` (`out` is a
    /// run's bytes: whole pages but the file's last); returns the bytes
    /// this call read from the source. The pages the cache holds are
    /// copied from it; the span from the first page it lacks to the last is
    /// read in one read, through `own` if given (a session's own backend, for a
    /// demand: it waits for no other session's read) else through the
    /// shared one. `wanted` is the calling session's
    /// ([`Backend::read_exact_at`]).
    pub fn read_run(
        &self,
        entry: &ServedEntry,
        first: u64,
        out: &mut [u8],
        wanted: &dyn Fn(u64, u64) -> bool,
        own: Option<&mut dyn Backend>,
    ) -> Result<u64, SourceError> {
        if out.is_empty() {
            return Ok(0);
        }
        let count = out.len().div_ceil(PAGE) as u64;
        let last = first + count - 1;
        let keys = (first / SLAB_PAGES..=last / SLAB_PAGES).map(|n| (entry.id, n));
        let slabs = self.cache.slabs(entry.size, keys);
        let mut held: Vec<_> = slabs.iter().map(lock).collect();
        let base = first / SLAB_PAGES;
        let len_all = out.len();
        let page_len = |page: u64| (len_all - (page - first) as usize * PAGE).min(PAGE);
        let slab_of = |page: u64| (page / SLAB_PAGES - base) as usize;
        let has = |held: &[MutexGuard<'_, Slab>], p: u64| held[slab_of(p)].has(p % SLAB_PAGES);
        // Copy what the slabs hold; the pages they lack lie in one span.
        let mut span: Option<(u64, u64)> = None;
        for page in first..=last {
            if has(&held, page) {
                let at = (page - first) as usize * PAGE;
                let len = page_len(page);
                out[at..at + len].copy_from_slice(held[slab_of(page)].page(page % SLAB_PAGES, len));
            } else {
                span = Some((span.map_or(page, |s| s.0), page));
            }
        }
        let Some((from, to)) = span else {
            return Ok(0);
        };
        let at = (from - first) as usize * PAGE;
        let end = (to - first) as usize * PAGE + page_len(to);
        let bytes = &mut out[at..end];
        match own {
            Some(backend) => backend.read_exact_at(bytes, page_offset(from), wanted)?,
            None => {
                let backend = self.backend(entry)?;
                let mut backend = backend.lock().unwrap_or_else(PoisonError::into_inner);
                backend.read_exact_at(bytes, page_offset(from), wanted)?;
            }
        }
        for page in from..=to {
            if !has(&held, page) {
                let at = (page - first) as usize * PAGE;
                held[slab_of(page)].put(page % SLAB_PAGES, &out[at..at + page_len(page)]);
            }
        }
        let read = (end - at) as u64;
        self.read.fetch_add(read, Ordering::Relaxed);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::backend::nothing_ahead;
    use crate::files::cache::SLAB_BYTES;
    use crate::files::manifest::walk;
    use crate::testutil::TempDir;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[test]
    fn pages_are_read_once_and_served_from_the_cache() {
        let t = TempDir::new("shared");
        let bytes = data(3 * SLAB_BYTES + 1000);
        let set = walk(&[t.write("f", &bytes)]).unwrap();
        let entry = set.get(FileId(0)).unwrap();
        let shared = SharedSource::new(1 << 30);
        let mut out = vec![0; 10 * PAGE];
        // A demand of one page reads one page.
        assert_eq!(
            shared
                .read_run(entry, 70, &mut out[..PAGE], &nothing_ahead, None)
                .unwrap(),
            PAGE as u64
        );
        assert_eq!(&out[..PAGE], &bytes[70 * PAGE..71 * PAGE]);
        // A run across two slabs around it is read in one read, from its
        // first missing page to its last (here all of it).
        let got = shared
            .read_run(entry, 62, &mut out, &nothing_ahead, None)
            .unwrap();
        assert_eq!(got, 10 * PAGE as u64);
        assert_eq!(&out[..], &bytes[62 * PAGE..72 * PAGE]);
        // Again: nothing read.
        let mut again = vec![0; 10 * PAGE];
        assert_eq!(
            shared
                .read_run(entry, 62, &mut again, &nothing_ahead, None)
                .unwrap(),
            0
        );
        assert_eq!(again, out);
        // Only the span the cache lacks is read: pages 58..62 of 58..72.
        let mut wider = vec![0; 14 * PAGE];
        assert_eq!(
            shared
                .read_run(entry, 58, &mut wider, &nothing_ahead, None)
                .unwrap(),
            4 * PAGE as u64
        );
        assert_eq!(&wider[..], &bytes[58 * PAGE..72 * PAGE]);
        // The short last page.
        let tail = bytes.len() - 3 * SLAB_BYTES;
        let mut last = vec![0; tail];
        shared
            .read_run(entry, 3 * SLAB_PAGES, &mut last, &nothing_ahead, None)
            .unwrap();
        assert_eq!(&last[..], &bytes[3 * SLAB_BYTES..]);
        assert_eq!(shared.bytes_read(), (15 * PAGE + tail) as u64);
    }

    #[test]
    fn a_demand_read_through_its_own_backend_fills_the_cache_for_all() {
        let t = TempDir::new("shared-own");
        let bytes = data(2 * SLAB_BYTES);
        let set = walk(&[t.write("f", &bytes)]).unwrap();
        let entry = set.get(FileId(0)).unwrap();
        let shared = SharedSource::new(1 << 30);
        let mut own = open(entry).unwrap();
        let mut out = vec![0; 2 * PAGE];
        let read = shared
            .read_run(entry, 90, &mut out, &nothing_ahead, Some(own.as_mut()))
            .unwrap();
        assert_eq!(read, 2 * PAGE as u64);
        assert_eq!(&out[..], &bytes[90 * PAGE..92 * PAGE]);
        let mut again = vec![0; 2 * PAGE];
        assert_eq!(
            shared
                .read_run(entry, 90, &mut again, &nothing_ahead, None)
                .unwrap(),
            0,
            "another session finds the pages in the cache"
        );
        assert_eq!(again, out);
    }

    #[test]
    fn sessions_at_the_same_pages_read_them_once() {
        let t = TempDir::new("shared-threads");
        let bytes = data(64 * SLAB_BYTES);
        let set = walk(&[t.write("f", &bytes)]).unwrap();
        let entry = set.get(FileId(0)).unwrap();
        let shared = SharedSource::new(1 << 30);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let mut out = vec![0; SLAB_BYTES];
                    for n in 0..64 {
                        shared
                            .read_run(entry, n * SLAB_PAGES, &mut out, &nothing_ahead, None)
                            .unwrap();
                        assert_eq!(&out[..], &bytes[n as usize * SLAB_BYTES..][..SLAB_BYTES]);
                    }
                });
            }
        });
        assert_eq!(shared.bytes_read(), bytes.len() as u64);
    }

    #[test]
    fn a_small_cache_reads_again_what_it_dropped() {
        let t = TempDir::new("shared-small");
        let bytes = data(4 * SLAB_BYTES);
        let set = walk(&[t.write("f", &bytes)]).unwrap();
        let entry = set.get(FileId(0)).unwrap();
        let shared = SharedSource::new(SLAB_BYTES as u64);
        let mut out = vec![0; SLAB_BYTES];
        for n in [0, 1, 0] {
            shared
                .read_run(entry, n * SLAB_PAGES, &mut out, &nothing_ahead, None)
                .unwrap();
            assert_eq!(&out[..], &bytes[n as usize * SLAB_BYTES..][..SLAB_BYTES]);
        }
        assert_eq!(shared.bytes_read(), 3 * SLAB_BYTES as u64);
    }

    #[test]
    fn a_changed_file_is_refused_through_the_cache_too() {
        let t = TempDir::new("shared-changed");
        let p = t.write("f", b"before");
        let set = walk(std::slice::from_ref(&p)).unwrap();
        std::fs::write(&p, b"after, longer").unwrap();
        let shared = SharedSource::new(1 << 20);
        let mut out = vec![0; 6];
        let err = shared
            .read_run(
                set.get(FileId(0)).unwrap(),
                0,
                &mut out,
                &nothing_ahead,
                None,
            )
            .unwrap_err();
        assert!(matches!(err, SourceError::Changed { .. }), "{err}");
        // Nothing was kept: a later read checks again.
        assert!(shared
            .read_run(
                set.get(FileId(0)).unwrap(),
                0,
                &mut out,
                &nothing_ahead,
                None
            )
            .is_err());
    }
}
