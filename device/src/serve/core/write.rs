//! Writes to served files (`mount --writable`), as wiring: a write lands
//! at once when every page it covers only in part is present; otherwise
//! it is parked in the table, as a read of those pages would be, and lands
//! when they arrive (from the run's checked bytes or the store), whichever
//! thread brings them. What a write does to the store is
//! [`crate::store::writes`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use feedfs_protocol::{page_offset, run_len, FileId};
use fuser::{Errno, ReplyWrite};

use crate::serve::pending::{ReadAt, Reply, Taken};
use crate::store::StoredFile;
use crate::store::{WriteError, WriteTarget};
use feedfs_protocol::reqlog::Outcome;

use super::{serve, Core};

/// How a write is answered: fuser's `ReplyWrite`, or a test's double.
pub trait WriteReply: Send {
    /// `n` bytes were written.
    fn written(self: Box<Self>, n: u32);
    fn error(self: Box<Self>, errno: Errno);
}

impl WriteReply for ReplyWrite {
    fn written(self: Box<Self>, n: u32) {
        ReplyWrite::written(*self, n)
    }
    fn error(self: Box<Self>, errno: Errno) {
        ReplyWrite::error(*self, errno)
    }
}

/// What waits in the table: a read, or a write waiting for the pages it
/// covers only in part.
pub enum Waiter<R> {
    Read(R),
    Write(Box<ParkedWrite>),
}

impl<R> Waiter<R> {
    /// The pages a write makes present once it is answered: `(first,
    /// count)`; `None` for a read.
    pub fn writes_pages(&self) -> Option<(u64, u64)> {
        match self {
            Waiter::Read(_) => None,
            Waiter::Write(w) => Some(feedfs_protocol::pages_of(w.offset, w.data.len() as u64)),
        }
    }
}

impl<R: Reply> Reply for Waiter<R> {
    fn data(self, bytes: &[u8]) {
        match self {
            Waiter::Read(r) => r.data(bytes),
            Waiter::Write(w) => w.land(bytes),
        }
    }
    fn error(self, errno: Errno) {
        match self {
            Waiter::Read(r) => r.error(errno),
            Waiter::Write(w) => w.reply.error(errno),
        }
    }
}

/// A write waiting for pages: what it writes, and the bytes its wait
/// starts at (the first page it waits for).
pub struct ParkedWrite {
    target: WriteTarget,
    offset: u64,
    data: Vec<u8>,
    wait_start: u64,
    reply: Box<dyn WriteReply>,
    present_pages: Arc<AtomicU64>,
    /// The core's: cleared when the write drops pages, so the host is told
    /// Complete again once they are back.
    complete_sent: Arc<AtomicBool>,
}

impl ParkedWrite {
    /// Its pages arrived: `bytes` are those it waited for.
    fn land(self, bytes: &[u8]) {
        let base = Some((self.wait_start, bytes));
        match self.target.write(self.offset, &self.data, base) {
            Ok(fresh) => {
                self.present_pages.fetch_add(fresh, Ordering::Relaxed);
                self.reply.written(self.data.len() as u32);
            }
            Err(e) => {
                log::error!("write at {} failed: {e}", self.offset);
                if e.dropped() > 0 {
                    self.present_pages.fetch_sub(e.dropped(), Ordering::Relaxed);
                    self.complete_sent.store(false, Ordering::SeqCst);
                }
                self.reply.error(errno_of(&e));
            }
        }
    }
}

/// The errno a refused write answers.
fn errno_of(e: &WriteError) -> Errno {
    match e {
        WriteError::PastEnd => Errno::EFBIG,
        // The store's disk is full: the writer is told so.
        e if e.io().and_then(std::io::Error::raw_os_error) == Some(libc::ENOSPC) => Errno::ENOSPC,
        _ => Errno::EIO,
    }
}

impl<R: Reply> Core<R> {
    /// Serve a FUSE write of `data` at `offset` of file `id` by process
    /// `pid`: at once, or parked until the pages it covers only in part
    /// are present.
    pub fn write(
        &self,
        id: FileId,
        offset: u64,
        data: &[u8],
        pid: u32,
        reply: Box<dyn WriteReply>,
    ) {
        let Some(file) = self.file(id) else {
            return reply.error(Errno::EISDIR);
        };
        if self.held(id).is_some() {
            return reply.error(Errno::EIO);
        }
        if data.is_empty() {
            return reply.written(0);
        }
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > file.size())
        {
            return reply.error(Errno::EFBIG);
        }
        let (first, count) = feedfs_protocol::pages_of(offset, data.len() as u64);
        // Pages an earlier daemon stored are checked before they are merged.
        match file.check_pages(first, count) {
            Ok(scan) => self.lost(scan.dropped),
            Err(e) => {
                log::error!("store read of {} failed: {e}", self.path_of(id));
                return reply.error(Errno::EIO);
            }
        }
        let Some((wait_first, wait_count)) = file.write_needs(offset, data.len() as u64) else {
            return match file.write(offset, data, None) {
                Ok(fresh) => {
                    self.present_pages.fetch_add(fresh, Ordering::Relaxed);
                    reply.written(data.len() as u32);
                    if fresh > 0 {
                        self.written(file, id, (first, count));
                        self.maybe_complete();
                    }
                }
                Err(e) => {
                    log::error!("write to {} at {offset} failed: {e}", self.path_of(id));
                    self.lost(e.dropped());
                    reply.error(errno_of(&e))
                }
            };
        };
        let wait_start = page_offset(wait_first);
        let wait_len = run_len(file.size(), wait_first, wait_count) as u32;
        let Some(read) = ReadAt::new(id, wait_start, wait_len, pid, file.size()) else {
            return reply.error(Errno::EIO);
        };
        let parked = ParkedWrite {
            target: file.write_target(),
            offset,
            data: data.to_vec(),
            wait_start,
            reply,
            present_pages: self.present_pages.clone(),
            complete_sent: self.complete_sent.clone(),
        };
        self.park(file, read, Waiter::Write(Box::new(parked)));
    }

    /// Pages `first..first + count` of file `id` became present by a write:
    /// reads (and writes) parked for them are answered from the store now,
    /// since no run will land them.
    pub(super) fn written(&self, file: &StoredFile, id: FileId, (first, count): (u64, u64)) {
        let done = self.landed_by_write(file, id, first, count);
        self.serve_all(file, done);
    }

    /// Hand the table the pages of `first..first + count` a write made
    /// present (a write that failed made none: they stay waited for), and
    /// take back the reads they complete.
    fn landed_by_write(
        &self,
        file: &StoredFile,
        id: FileId,
        first: u64,
        count: u64,
    ) -> Vec<Taken<Waiter<R>>> {
        let present = file.present_in(first, count);
        let pages: Vec<u64> = (first..first + count)
            .filter(|&p| present[(p - first) as usize])
            .collect();
        let mut p = self.pending();
        crate::serve::demand::runs(&pages)
            .into_iter()
            .flat_map(|(a, n)| p.table.landed(id, a, n))
            .collect()
    }

    /// Answer parked reads and writes from the store, and what the writes
    /// among them complete in turn.
    pub(super) fn serve_all(&self, file: &StoredFile, done: Vec<Taken<Waiter<R>>>) {
        let mut todo = done;
        while let Some(r) = todo.pop() {
            let span = r.reply.writes_pages();
            self.ended(&r, Outcome::Served);
            let id = r.read.file;
            serve(file, &r.read, r.reply);
            if let Some((first, count)) = span {
                todo.extend(self.landed_by_write(file, id, first, count));
            }
        }
    }

    /// Make the writes to file `id` durable (fsync, fdatasync).
    pub fn fsync(&self, id: FileId) -> Result<(), Errno> {
        let Some(file) = self.file(id) else {
            return Err(Errno::EISDIR);
        };
        file.sync_writes().map_err(|e| {
            log::error!("fsync of {} failed: {e}", self.path_of(id));
            Errno::EIO
        })
    }
}
