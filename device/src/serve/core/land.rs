//! Landing a run of pages from the host, in two steps: the link thread has
//! checked each page against its CRC, and [`Core::accept`] answers from the
//! run's bytes the parked reads that lie wholly within its good pages and
//! hands the pages on; the store writer writes them, their CRCs and their
//! bits, writes the map when a read needs it and serves the reads it
//! completes ([`Core::store`]).

use std::sync::atomic::Ordering;

use feedfs_protocol::reqlog::Outcome;
use feedfs_protocol::{page_offset, run_len, FileId};
use fuser::Errno;

use super::Core;
use crate::serve::demand;
use crate::serve::pending::Reply;

/// A run of pages the link thread checked, page by page, against the CRCs
/// it came with.
#[derive(Debug, Clone, Copy)]
pub struct CheckedRun<'a> {
    pub file: FileId,
    pub first: u64,
    /// The CRC-32 of each page (for a run of zeros, that of its zeros).
    pub crcs: &'a [u32],
    /// The run's bytes, decoded; `None` for a run of zeros.
    pub data: Option<&'a [u8]>,
    /// Whether each page matched its CRC; the others are demanded again.
    pub good: &'a [bool],
}

/// Checked pages on their way from the link thread to the store writer.
pub struct Landing {
    file: FileId,
    first: u64,
    crcs: Vec<u32>,
    /// `None`: every byte is zero.
    data: Option<Vec<u8>>,
}

impl Landing {
    /// The bytes it holds in memory while it waits for the store writer.
    pub fn bytes(&self) -> usize {
        self.data.as_ref().map_or(0, Vec::len) + 4 * self.crcs.len()
    }
}

/// Why a run from the host was refused, or could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum LandError {
    #[error("run for {0}, which is not a file of the manifest")]
    NoSuchFile(FileId),
    #[error("run of {count} pages from page {first} of {file} is past its end ({pages} pages)")]
    PastEnd {
        file: FileId,
        first: u64,
        count: u64,
        pages: u64,
    },
    #[error("run from page {first} of {file} has {got} bytes, expected {expected}")]
    BadLength {
        file: FileId,
        first: u64,
        got: usize,
        expected: usize,
    },
    #[error("cannot store pages {first}..{} of {file}: {source}", first + count)]
    Store {
        file: FileId,
        first: u64,
        count: u64,
        source: std::io::Error,
    },
}

impl<R: Reply> Core<R> {
    /// The length in bytes of pages `first..first + count` of file `id`, or
    /// why they are not pages of the manifest.
    pub fn run_len(&self, id: FileId, first: u64, count: u64) -> Result<usize, LandError> {
        let file = self.file(id).ok_or(LandError::NoSuchFile(id))?;
        if count == 0
            || first
                .checked_add(count)
                .is_none_or(|end| end > file.pages())
        {
            return Err(LandError::PastEnd {
                file: id,
                first,
                count,
                pages: file.pages(),
            });
        }
        Ok(run_len(file.size(), first, count))
    }

    /// The link thread's half of landing a run: check it against the
    /// manifest, answer at once, from memory, every parked read that lies
    /// wholly within a stretch of its good pages, and hand on for
    /// [`Core::store`] the good pages that are neither present nor on their
    /// way already.
    pub fn accept(&self, run: &CheckedRun) -> Result<Vec<Landing>, LandError> {
        let CheckedRun {
            file: id,
            first,
            crcs,
            data,
            good,
        } = *run;
        let count = crcs.len() as u64;
        let expected = self.run_len(id, first, count)?;
        if let Some(got) = data.map(<[u8]>::len).filter(|&n| n != expected) {
            return Err(LandError::BadLength {
                file: id,
                first,
                got,
                expected,
            });
        }
        let file = self.file(id).ok_or(LandError::NoSuchFile(id))?;
        let good_pages: Vec<u64> = (first..first + count)
            .filter(|&p| good.get((p - first) as usize).copied().unwrap_or(false))
            .collect();
        let run_start = page_offset(first);
        // One look at the map for the whole run, before the pending lock
        // (never held with it). A page that lands meanwhile, from a copy
        // of it already queued, is skipped by the store writer.
        let present = file.present_in(first, count);
        let mut landings = Vec::new();
        for (a, n) in demand::runs(&good_pages) {
            let begun = self
                .pending()
                .table
                .begin_landing(id, a, n, |p| present[(p - first) as usize]);
            for r in begun.early {
                // Checked against their CRCs; the read lies within these pages.
                self.ended(&r, Outcome::Served);
                let span = r.reply.writes_pages();
                match data {
                    Some(d) => r.reply.data(r.read.slice(run_start, d)),
                    None => r.reply.data(&vec![0; r.read.bytes(file.size()) as usize]),
                }
                if let Some(span) = span {
                    self.written(file, id, span);
                }
            }
            for (f, c) in begun.fresh {
                let (from, to) = ((f - first) as usize, (f - first + c) as usize);
                let data = data.map(|d| {
                    let at = (page_offset(f) - run_start) as usize;
                    d[at..at + run_len(file.size(), f, c)].to_vec()
                });
                landings.push(Landing {
                    file: id,
                    first: f,
                    crcs: crcs[from..to].to_vec(),
                    data,
                });
            }
        }
        Ok(landings)
    }

    /// The store writer's half: write checked pages, their CRCs and their
    /// bits, answer the reads they complete, and tell the host when every
    /// page is here.
    ///
    /// The page map is written before any read is answered from the store
    /// here (so a page such a reader saw is recorded), and whenever `idle`
    /// says nothing else is waiting to be written; otherwise in batches.
    pub fn store(&self, l: Landing, idle: bool) -> Result<(), LandError> {
        let Landing {
            file: id,
            first,
            crcs,
            data,
        } = l;
        let count = crcs.len() as u64;
        let file = self.file(id).ok_or(LandError::NoSuchFile(id))?;
        let written = file.write_run(first, data.as_deref(), &crcs);
        let done = {
            let mut p = self.pending();
            match written {
                Ok(fresh) => {
                    self.present_pages.fetch_add(fresh, Ordering::Relaxed);
                    p.table.landed(id, first, count)
                }
                // Not stored: the caller fails its waiters.
                Err(source) => {
                    p.table.landing_failed(id, first, count);
                    return Err(LandError::Store {
                        file: id,
                        first,
                        count,
                        source,
                    });
                }
            }
        };
        if idle || !done.is_empty() {
            if let Err(e) = file.flush_map() {
                log::warn!("store: cannot write the page map: {e}");
            }
        }
        self.serve_all(file, done);
        self.maybe_complete();
        Ok(())
    }

    /// Fail every read waiting for one of these pages (the store cannot hold them).
    pub fn fail_waiters(&self, id: FileId, first: u64, count: u64, errno: Errno) {
        let failed = self.pending().table.fail_waiters(id, first, count);
        for r in failed {
            self.ended(&r, Outcome::Failed);
            r.reply.error(errno);
        }
    }
}
