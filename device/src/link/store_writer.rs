//! The store writer: a thread per host session that writes checked pages,
//! their CRCs and their bits and answers the reads they complete, so the
//! link thread never waits on the disk.
//!
//! Its queue is bounded by bytes ([`QUEUE_BYTES`]), not by entries: runs
//! are of any length, and the daemon's memory must not grow with them.
//! Pages that cannot be stored (a full or failing disk) fail the reads
//! waiting for them and are reported to the host with Error code 5
//! (NoSpace) or 4 (Store), and the session goes on: pages already present
//! are still served and later pages that fit are still stored.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};

use feedfs_protocol::{ErrorCode, Message};

use crate::link::error::LinkError;
use crate::serve::core::{Core, LandError, Landing, SharedCore};

/// Bytes of checked pages that may wait for the store writer: enough that
/// a stall of the disk of several milliseconds does not stop the link
/// thread (which answers reads from checked pages at once), little enough
/// to keep the daemon small.
pub const QUEUE_BYTES: usize = 8 << 20;

/// A running store writer and its queue.
pub struct StoreWriter {
    landings: Sender<Landing>,
    queued: Arc<Budget>,
    thread: JoinHandle<()>,
}

/// Bytes queued for the writer, and a wait for room.
#[derive(Default)]
struct Budget {
    bytes: Mutex<usize>,
    room: Condvar,
}

impl Budget {
    /// Take `n` bytes, waiting while the queue holds others and `n` would
    /// pass the bound (a landing larger than the bound goes alone).
    fn take(&self, n: usize) {
        let mut b = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        while *b > 0 && *b + n > QUEUE_BYTES {
            b = self.room.wait(b).unwrap_or_else(|p| p.into_inner());
        }
        *b += n;
    }

    fn give(&self, n: usize) {
        let mut b = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        *b = b.saturating_sub(n);
        self.room.notify_all();
    }
}

impl StoreWriter {
    /// Start writing `core`'s checked pages.
    pub fn start(core: &SharedCore) -> Result<StoreWriter, LinkError> {
        let (landings, queue) = mpsc::channel();
        let queued = Arc::new(Budget::default());
        let (writer_core, budget) = (core.clone(), queued.clone());
        let thread = thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_runs(&writer_core, &queue, &budget))
            .map_err(|error| LinkError::Thread {
                name: "store-writer",
                error,
            })?;
        Ok(StoreWriter {
            landings,
            queued,
            thread,
        })
    }

    /// Queue checked pages, waiting while the queue is full; false when
    /// the writer is gone.
    pub fn queue(&self, landing: Landing) -> bool {
        let n = landing.bytes();
        self.queued.take(n);
        let sent = self.landings.send(landing).is_ok();
        if !sent {
            self.queued.give(n);
        }
        sent
    }

    /// Store what is queued, then stop. The page maps need no flush here:
    /// the last run, stored with the queue empty, wrote its map bits (and
    /// a flush would wait for a sync of the store the reaper may be doing,
    /// holding up the link's end).
    pub fn stop(self) {
        drop(self.landings);
        let _ = self.thread.join();
    }
}

/// Write each run of checked pages, set their bits, answer the reads they
/// complete.
fn write_runs(core: &Core, queue: &Receiver<Landing>, budget: &Budget) {
    let mut next = queue.recv().ok();
    while let Some(landing) = next.take() {
        let n = landing.bytes();
        next = queue.try_recv().ok();
        let idle = next.is_none();
        let stored = core.store(landing, idle);
        budget.give(n);
        match stored {
            Ok(()) => {}
            Err(LandError::Store {
                file,
                first,
                count,
                source,
            }) => {
                let (code, errno) = if source.raw_os_error() == Some(libc::ENOSPC) {
                    (ErrorCode::NoSpace, fuser::Errno::ENOSPC)
                } else {
                    (ErrorCode::Store, fuser::Errno::EIO)
                };
                let store_file = core
                    .file(file)
                    .map_or_else(String::new, |f| format!(" in {}", f.data_path().display()));
                let text = format!(
                    "device cannot store pages {first}..{} of {}{store_file}: {source}",
                    first + count,
                    core.path_of(file)
                );
                log::error!("{text}");
                core.fail_waiters(file, first, count, errno);
                core.send(&Message::Error { code, text: &text });
            }
            Err(e) => log::error!("{e}"),
        }
        if idle {
            next = queue.recv().ok();
        }
    }
}
