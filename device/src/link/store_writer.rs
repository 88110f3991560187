//! The store writer: a thread per host session that writes checked blocks,
//! sets their bits and answers the reads they complete, so the link thread
//! never waits on the disk.
//!
//! A block that cannot be stored (a full or failing disk) fails the reads
//! waiting for it and is reported to the host with Error code 5 (NoSpace)
//! or 4 (Store), and the session goes on: blocks already present are still
//! served and a later block that fits is still stored.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

use feedfs_protocol::{ErrorCode, Message};

use crate::link::error::LinkError;
use crate::serve::core::{Core, LandError, Landing, SharedCore};

/// A running store writer and its queue.
pub struct StoreWriter {
    landings: SyncSender<Landing>,
    thread: JoinHandle<()>,
}

impl StoreWriter {
    /// Start writing `core`'s checked blocks.
    pub fn start(core: &SharedCore) -> Result<StoreWriter, LinkError> {
        let (landings, queued) = mpsc::sync_channel(queue_len(core));
        let writer_core = core.clone();
        let thread = thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_blocks(&writer_core, queued))
            .map_err(|error| LinkError::Thread {
                name: "store-writer",
                error,
            })?;
        Ok(StoreWriter { landings, thread })
    }

    /// Queue a checked block, waiting while the queue is full; false when
    /// the writer is gone.
    pub fn queue(&self, landing: Landing) -> bool {
        self.landings.send(landing).is_ok()
    }

    /// Store what is queued, then stop. The block maps need no flush here:
    /// the last block, stored with the queue empty, wrote its map entries
    /// (and a flush would wait for a sync of the store the reaper may be
    /// doing, holding up the link's end).
    pub fn stop(self) {
        drop(self.landings);
        let _ = self.thread.join();
    }
}

/// Checked blocks that may wait for the store writer: about 8 MiB of them,
/// so a stall of the disk of several milliseconds does not stop the link
/// thread (which answers reads from checked blocks at once).
fn queue_len(core: &Core) -> usize {
    let largest = core
        .manifest()
        .files()
        .map(|e| e.block_size)
        .max()
        .unwrap_or(1);
    ((8 << 20) / largest.max(1) as usize).max(4)
}

/// Write each checked block, set its bit, answer the reads it completes.
fn write_blocks(core: &Core, queued: Receiver<Landing>) {
    let mut next = queued.recv().ok();
    while let Some(landing) = next.take() {
        next = queued.try_recv().ok();
        let idle = next.is_none();
        match core.store(landing, idle) {
            Ok(_) => {}
            Err(LandError::Store {
                file,
                index,
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
                    "device cannot store block {index} of {}{store_file}: {source}",
                    core.path_of(file)
                );
                log::error!("{text}");
                core.fail_waiters(file, index, errno);
                core.send(&Message::Error { code, text: &text });
            }
            Err(e) => log::error!("{e}"),
        }
        if idle {
            next = queued.recv().ok();
        }
    }
}
