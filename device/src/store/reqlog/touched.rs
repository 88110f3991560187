//! Which pages each file had read in this mount, for the request log's
//! first-touch records: a bit per page, kept in chunks of [`CHUNK_PAGES`]
//! pages allocated when a page of theirs is first read, at most
//! [`MAX_CHUNKS`] of them (8 MiB) for all files together.
//!
//! Memory follows what readers read, not what is served: a mount that
//! reads a few files of a large manifest costs a few chunks. When the
//! bound is reached every chunk is forgotten and tracking starts over: a
//! page read again after that is recorded again (a repeated first touch,
//! which a plan reads as the same page), never left out.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use feedfs_protocol::FileId;

/// Pages one chunk covers (256 MiB of a file, 8 KiB of bits).
pub const CHUNK_PAGES: u64 = 1 << 16;
/// Most chunks held at once.
pub const MAX_CHUNKS: usize = 1024;

const WORDS: usize = (CHUNK_PAGES / 64) as usize;

/// The chunks held, by file and chunk index.
type Chunks = HashMap<(FileId, u64), Box<[u64; WORDS]>>;

/// The pages read so far, per file.
#[derive(Default)]
pub(super) struct Touched {
    chunks: Mutex<Chunks>,
}

/// The touched pages, locked for a run of marks.
pub(super) struct Marking<'a>(MutexGuard<'a, Chunks>);

impl Touched {
    /// Lock the set to mark the pages of one read.
    pub(super) fn lock(&self) -> Marking<'_> {
        Marking(self.chunks.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Marking<'_> {
    /// Mark page `page` of `file` read; true when it was not yet.
    pub(super) fn touch(&mut self, file: FileId, page: u64) -> bool {
        let key = (file, page / CHUNK_PAGES);
        if !self.0.contains_key(&key) && self.0.len() >= MAX_CHUNKS {
            self.0.clear();
        }
        let chunk = self.0.entry(key).or_insert_with(|| Box::new([0; WORDS]));
        let at = page % CHUNK_PAGES;
        let (word, bit) = (&mut chunk[(at / 64) as usize], 1u64 << (at % 64));
        let fresh = *word & bit == 0;
        *word |= bit;
        fresh
    }

    #[cfg(test)]
    pub(super) fn chunks(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_touched_once_per_file_and_chunks_come_as_pages_are_read() {
        let t = Touched::default();
        let mut m = t.lock();
        assert!(m.touch(FileId(1), 5));
        assert!(!m.touch(FileId(1), 5));
        assert!(m.touch(FileId(2), 5), "another file");
        assert!(m.touch(FileId(1), 6));
        assert_eq!(m.chunks(), 2);
        assert!(m.touch(FileId(1), 5 + CHUNK_PAGES));
        assert_eq!(m.chunks(), 3);
    }

    #[test]
    fn past_the_bound_everything_is_forgotten_and_pages_are_first_touches_again() {
        let t = Touched::default();
        let mut m = t.lock();
        for c in 0..MAX_CHUNKS as u64 {
            assert!(m.touch(FileId(0), c * CHUNK_PAGES));
        }
        assert_eq!(m.chunks(), MAX_CHUNKS);
        assert!(!m.touch(FileId(0), 0), "within the bound: remembered");
        assert!(m.touch(FileId(0), MAX_CHUNKS as u64 * CHUNK_PAGES));
        assert_eq!(m.chunks(), 1, "started over");
        assert!(m.touch(FileId(0), 0), "recorded again, never left out");
    }
}
