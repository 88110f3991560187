//! Landing a block from the host, in two steps: the link thread checks it
//! and answers from its bytes the parked reads that lie wholly within it
//! ([`Core::accept`]); the store writer writes it, sets its bit, writes the
//! map when a read needs it and serves the reads it completes
//! ([`Core::store`]).

use std::sync::atomic::Ordering;

use feedfs_protocol::reqlog::Outcome;
use feedfs_protocol::FileId;
use fuser::Errno;

use super::{serve, Core};
use crate::serve::pending::Reply;

/// A checked block on its way from the link thread to the store writer.
pub struct Landing {
    file: FileId,
    index: u64,
    crc: u32,
    data: Vec<u8>,
}

/// Why a block from the host was refused.
#[derive(Debug, thiserror::Error)]
pub enum LandError {
    #[error("block for {0}, which is not a file of the manifest")]
    NoSuchFile(FileId),
    #[error("block {index} of {file} is past its end ({blocks} blocks)")]
    PastEnd {
        file: FileId,
        index: u64,
        blocks: u64,
    },
    #[error("block {index} of {file} has {got} bytes, expected {expected}")]
    BadLength {
        file: FileId,
        index: u64,
        got: usize,
        expected: usize,
    },
    #[error(
        "block {index} of {file} fails its CRC (sent {sent:#010x}, data gives {actual:#010x})"
    )]
    BadCrc {
        file: FileId,
        index: u64,
        sent: u32,
        actual: u32,
    },
    #[error("cannot store block {index} of {file}: {source}")]
    Store {
        file: FileId,
        index: u64,
        source: std::io::Error,
    },
}

impl<R: Reply> Core<R> {
    /// The link thread's half of landing a block: check it against the
    /// manifest and its CRC (`actual` is the CRC-32 of `data`, computed once
    /// while the frame was checked; `crc` is what the host says it should
    /// be), answer at once, from memory, every parked read that lies wholly
    /// within it, and hand it on for [`Core::store`]. `None` for a block the
    /// store has or is about to have.
    pub fn accept(
        &self,
        id: FileId,
        index: u64,
        crc: u32,
        data: &[u8],
        actual: u32,
    ) -> Result<Option<Landing>, LandError> {
        let file = self.file(id).ok_or(LandError::NoSuchFile(id))?;
        if index >= file.blocks() {
            return Err(LandError::PastEnd {
                file: id,
                index,
                blocks: file.blocks(),
            });
        }
        let expected = feedfs_protocol::block_len(file.size(), file.block_size(), index);
        if data.len() != expected {
            return Err(LandError::BadLength {
                file: id,
                index,
                got: data.len(),
                expected,
            });
        }
        if actual != crc {
            return Err(LandError::BadCrc {
                file: id,
                index,
                sent: crc,
                actual,
            });
        }
        if file.is_present(index).unwrap_or(false) {
            return Ok(None);
        }
        let Some(early) = self.pending().table.begin_landing(id, index) else {
            return Ok(None);
        };
        let block_start = index * u64::from(file.block_size());
        for r in early {
            // Checked against its CRC above; the read lies within this block.
            self.ended(&r, Outcome::Served);
            r.reply.data(r.read.slice(block_start, data));
        }
        Ok(Some(Landing {
            file: id,
            index,
            crc,
            data: data.to_vec(),
        }))
    }

    /// The store writer's half: write a checked block, set its bit, answer
    /// the reads it completes, and tell the host when every block is here.
    ///
    /// The block map is written before any read is answered from the store
    /// here (so a block such a reader saw is recorded), and whenever `idle`
    /// says no other block is waiting to be written; otherwise in batches.
    pub fn store(&self, l: Landing, idle: bool) -> Result<(), LandError> {
        let Landing {
            file: id,
            index,
            crc,
            data,
        } = l;
        let file = self.file(id).ok_or(LandError::NoSuchFile(id))?;
        // However it came (a zero block, or raw zeros), a block of zeros is a hole.
        let written = if feedfs_protocol::message::is_zero(&data) {
            file.write_zero_block(index, crc)
        } else {
            file.write_block(index, &data, crc)
        };
        let done = {
            let mut p = self.pending();
            match written {
                Ok(fresh) => {
                    if fresh {
                        self.present_blocks.fetch_add(1, Ordering::Relaxed);
                    }
                    p.table.landed(id, index)
                }
                // Not stored: the caller fails its waiters.
                Err(source) => {
                    p.table.landing_failed(id, index);
                    return Err(LandError::Store {
                        file: id,
                        index,
                        source,
                    });
                }
            }
        };
        if idle || !done.is_empty() {
            if let Err(e) = file.flush_map() {
                log::warn!("store: cannot write the block map: {e}");
            }
        }
        for r in done {
            self.ended(&r, Outcome::Served);
            serve(file, &r.read, r.reply);
        }
        self.maybe_complete();
        Ok(())
    }

    /// Fail every read waiting for this block (the store cannot hold it).
    pub fn fail_waiters(&self, id: FileId, index: u64, errno: Errno) {
        let failed = self.pending().table.fail_waiters(id, index);
        for r in failed {
            self.ended(&r, Outcome::Failed);
            r.reply.error(errno);
        }
    }
}
