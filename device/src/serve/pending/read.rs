//! What a parked read is: the pages a FUSE read asks for, and how it is
//! answered.

use feedfs_protocol::{pages_of, FileId};
use fuser::Errno;

/// How a read is answered: fuser's `ReplyData` (see [`crate::serve::core`]),
/// or a test's double.
/// Both methods take the reply by value, so it is answered once.
pub trait Reply: Send {
    /// Answer with these bytes.
    fn data(self, bytes: &[u8]);
    /// Answer with an error.
    fn error(self, errno: Errno);
}

/// What a read asks for: `size` bytes at `offset` of `file`, which lie in
/// pages `first..=last`, for process `pid` (0 if unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAt {
    pub file: FileId,
    pub offset: u64,
    pub size: u32,
    pub first: u64,
    pub last: u64,
    pub pid: u32,
}

impl ReadAt {
    /// A read by `pid` of `size` bytes at `offset` of `file`, which is
    /// `file_size` bytes long; `None` when it reads nothing (empty, or at or
    /// past the end).
    pub fn new(file: FileId, offset: u64, size: u32, pid: u32, file_size: u64) -> Option<ReadAt> {
        if offset >= file_size || size == 0 {
            return None;
        }
        let len = u64::from(size).min(file_size - offset);
        let (first, count) = pages_of(offset, len);
        Some(ReadAt {
            file,
            offset,
            size,
            first,
            last: first + count - 1,
            pid,
        })
    }

    /// The pages it needs.
    pub fn pages(&self) -> std::ops::RangeInclusive<u64> {
        self.first..=self.last
    }

    /// How many pages it needs.
    pub fn count(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Whether every page it needs lies in `first..end`.
    pub fn within(&self, first: u64, end: u64) -> bool {
        self.first >= first && self.last < end
    }

    /// The bytes it reads out of a run that starts at byte `run_start` and
    /// holds `data`; empty if it does not lie in that run.
    pub fn slice<'a>(&self, run_start: u64, data: &'a [u8]) -> &'a [u8] {
        let Some(from) = self.offset.checked_sub(run_start) else {
            return &[];
        };
        let from = usize::try_from(from).unwrap_or(usize::MAX).min(data.len());
        let to = from.saturating_add(self.size as usize).min(data.len());
        &data[from..to]
    }

    /// Bytes it reads of a file of `file_size` bytes.
    pub fn bytes(&self, file_size: u64) -> u64 {
        file_size
            .saturating_sub(self.offset)
            .min(u64::from(self.size))
    }
}
