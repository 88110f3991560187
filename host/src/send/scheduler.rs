//! The host's send order, as a pure state machine: which block goes out next.
//!
//! It owns, per file, four bitsets over the file's blocks: what the device
//! lacks, what has been sent, and what is queued as demand or as readahead.
//! Three sources feed [`Scheduler::pick_next`], in strict priority:
//! 1. demanded blocks, in arrival order; a demand for a block already queued
//!    as a demand and not yet sent is dropped, a demand for a block already
//!    sent is sent again (the device only asks for what it is missing);
//! 2. readahead, only for a reader that goes forward: a demand that starts
//!    a file, or that continues where the previous demand of that file (or
//!    the readahead sent after it) ended, queues the next blocks after it
//!    (those the device lacks and that are neither sent nor queued). The
//!    window starts at [`INITIAL_WINDOW`] blocks and doubles with each
//!    demand that continues the run, up to the `readahead` limit; any other
//!    demand is taken as random access and gets none, so a random reader's
//!    next block never waits behind data nobody asked for. A demand for a
//!    planned block gets none either: the plan knows better what the
//!    reader needs next, and goes on sending it;
//! 3. the background stream: first the planned blocks, in the order of a
//!    prefetch plan given with [`Scheduler::with_plan`] (a learned plan or
//!    a zip file's built-in order), then every block the device lacks,
//!    files in manifest order, blocks in ascending order; both skip blocks
//!    already sent or held. [`Scheduler::pause_stream`] holds back the
//!    file-order part only: planned blocks are what readers are about to
//!    ask for, so they keep the link busy while a reader is active.
//!
//! Until the device's `HaveEnd` the scheduler does not know what the device
//! holds, so it answers demands only: no readahead, no stream. It does no I/O
//! and reads no clock. Memory is the bitsets plus two queues, each bounded by
//! the number of blocks (a block is in a queue at most once), and the plan's
//! ranges. An index past a file's end, or an id that is not a file, is an
//! error, never ignored.

use std::collections::VecDeque;

use feedfs_protocol::{BlockRange, FileId};

mod bits;
use bits::{first_in_a_not_b, Bits};

/// Readahead window, in blocks, after the first demand of a forward run.
pub const INITIAL_WINDOW: u64 = 4;

/// Why a device message could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    #[error("file id {0} is not a file of the manifest")]
    NotAFile(FileId),
    #[error("blocks {first}..{end} of file {file} are out of range: the file has {blocks} blocks", end = u128::from(*.first) + u128::from(*.count))]
    OutOfRange {
        file: FileId,
        first: u64,
        count: u64,
        blocks: u64,
    },
}

/// Why a block was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Demand,
    Readahead,
    /// From the prefetch plan, ahead of the rest of the stream.
    Plan,
    Stream,
}

impl Kind {
    /// The word used in logs and the record file.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Demand => "demand",
            Kind::Readahead => "readahead",
            Kind::Plan => "plan",
            Kind::Stream => "stream",
        }
    }
}

/// The next block to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub file: FileId,
    pub index: u64,
    pub kind: Kind,
}

/// What the scheduler has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Demand messages received.
    pub demands: u64,
    /// Demanded blocks dropped because they were already queued.
    pub duplicates: u64,
    pub sent_demand: u64,
    pub sent_readahead: u64,
    pub sent_plan: u64,
    pub sent_stream: u64,
}

impl Counters {
    /// Blocks picked so far, of every kind.
    pub fn sent(&self) -> u64 {
        self.sent_demand + self.sent_readahead + self.sent_plan + self.sent_stream
    }
}

#[derive(Debug)]
struct FileState {
    blocks: u64,
    /// Whether this file has had a demand yet.
    demanded: bool,
    /// End of the last demand, and of the readahead queued after it.
    run_end: u64,
    ahead_end: u64,
    /// Current readahead window, in blocks (0 after a random demand).
    window: u64,
    lacks: Bits,
    sent: Bits,
    in_demand: Bits,
    in_readahead: Bits,
    /// Blocks named by the plan.
    planned: Bits,
}

/// The send-order state machine; see the module documentation.
#[derive(Debug)]
pub struct Scheduler {
    /// Indexed by file id; `None` for ids that are not files (directories).
    files: Vec<Option<FileState>>,
    readahead: u64,
    have_end: bool,
    /// Whether to stream in the background at all (`--no-stream` clears it).
    stream: bool,
    /// The stream waits while readers are active (see [`Scheduler::pause_stream`]).
    stream_paused: bool,
    demand: VecDeque<(FileId, u64)>,
    ahead: VecDeque<(FileId, u64)>,
    /// Planned ranges not yet streamed: (file, next block, end).
    plan: VecDeque<(FileId, u64, u64)>,
    /// Where the stream goes on: index into `files`, then block index.
    cursor: (usize, u64),
    counters: Counters,
}

impl Scheduler {
    /// A scheduler for these files (id, number of blocks); every block starts
    /// as lacking on the device. Ids not listed are not files.
    pub fn new(files: &[(FileId, u64)], readahead: u64) -> Self {
        let len = files.iter().map(|(id, _)| id.0 as usize + 1).max();
        let mut slots: Vec<Option<FileState>> = Vec::new();
        slots.resize_with(len.unwrap_or(0), || None);
        for &(id, blocks) in files {
            slots[id.0 as usize] = Some(FileState {
                blocks,
                demanded: false,
                run_end: 0,
                ahead_end: 0,
                window: 0,
                lacks: Bits::full(blocks),
                sent: Bits::empty(blocks),
                in_demand: Bits::empty(blocks),
                in_readahead: Bits::empty(blocks),
                planned: Bits::empty(blocks),
            });
        }
        Scheduler {
            files: slots,
            readahead,
            have_end: false,
            stream: true,
            stream_paused: false,
            demand: VecDeque::new(),
            ahead: VecDeque::new(),
            plan: VecDeque::new(),
            cursor: (0, 0),
            counters: Counters::default(),
        }
    }

    fn file_mut(&mut self, file: FileId) -> Result<&mut FileState, SchedError> {
        self.files
            .get_mut(file.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(SchedError::NotAFile(file))
    }

    fn check_range(f: &FileState, file: FileId, first: u64, count: u64) -> Result<u64, SchedError> {
        match first.checked_add(count) {
            Some(end) if end <= f.blocks => Ok(end),
            _ => Err(SchedError::OutOfRange {
                file,
                first,
                count,
                blocks: f.blocks,
            }),
        }
    }

    /// The device already holds these blocks: never stream them. Every range
    /// is checked before any is applied.
    pub fn on_have(&mut self, file: FileId, ranges: &[BlockRange]) -> Result<(), SchedError> {
        let f = self.file_mut(file)?;
        for r in ranges {
            Self::check_range(f, file, r.first, r.count)?;
        }
        for r in ranges {
            f.lacks.clear_range(r.first, r.end());
        }
        Ok(())
    }

    /// Stream these ranges (file, first block, count), in this order, before
    /// the rest of the stream. Every range is checked before any is taken.
    pub fn with_plan(mut self, ranges: &[(FileId, u64, u64)]) -> Result<Self, SchedError> {
        self.set_plan(ranges)?;
        Ok(self)
    }

    /// [`Scheduler::with_plan`] in place.
    pub fn set_plan(&mut self, ranges: &[(FileId, u64, u64)]) -> Result<(), SchedError> {
        for &(file, first, count) in ranges {
            let f = self.file_mut(file)?;
            Self::check_range(f, file, first, count)?;
        }
        for &(file, first, count) in ranges {
            let f = self.file_mut(file)?;
            for i in first..first + count {
                f.planned.set(i);
            }
        }
        self.plan = ranges
            .iter()
            .map(|&(file, first, count)| (file, first, first + count))
            .collect();
        Ok(())
    }

    /// Serve demands (and their readahead) only, never the background stream.
    pub fn without_stream(mut self) -> Self {
        self.stream = false;
        self
    }

    /// Hold back the background stream (demands and readahead still go):
    /// the session does this for a moment after each demand, so a reader's
    /// next block does not compete with the stream for the link and the CPUs.
    pub fn pause_stream(&mut self, paused: bool) {
        self.stream_paused = paused;
    }

    /// The device has reported everything it holds: readahead and the stream may start.
    pub fn on_have_end(&mut self) {
        self.have_end = true;
    }

    /// Whether the device's `HaveEnd` has arrived.
    pub fn have_end(&self) -> bool {
        self.have_end
    }

    /// A reader on the device waits for `[first, first + count)` of `file`.
    pub fn on_demand(&mut self, file: FileId, first: u64, count: u64) -> Result<(), SchedError> {
        let readahead = self.readahead;
        let have_end = self.have_end;
        let f = self.file_mut(file)?;
        let end = Self::check_range(f, file, first, count)?;
        let mut queued = Vec::new();
        let mut duplicates = 0;
        for i in first..end {
            if f.in_demand.get(i) {
                duplicates += 1;
            } else {
                f.in_demand.set(i);
                queued.push((file, i));
            }
        }
        let forward = if f.demanded {
            first >= f.run_end && first <= f.ahead_end.max(f.run_end)
        } else {
            first == 0
        };
        f.window = if forward {
            (f.window * 2).max(INITIAL_WINDOW).min(readahead)
        } else {
            0
        };
        f.demanded = true;
        f.run_end = end;
        f.ahead_end = end.saturating_add(f.window).min(f.blocks);
        let mut ahead = Vec::new();
        if have_end && !f.planned.get(first) {
            for i in end..f.ahead_end {
                if f.lacks.get(i) && !f.sent.get(i) && !f.in_demand.get(i) && !f.in_readahead.get(i)
                {
                    f.in_readahead.set(i);
                    ahead.push((file, i));
                }
            }
        }
        self.demand.extend(queued);
        self.ahead.extend(ahead);
        self.counters.demands += 1;
        self.counters.duplicates += duplicates;
        Ok(())
    }

    /// The next block to send, marked as sent; `None` when nothing is due.
    pub fn pick_next(&mut self) -> Option<Pick> {
        if let Some((file, index)) = self.demand.pop_front() {
            if let Some(f) = self.files[file.0 as usize].as_mut() {
                f.in_demand.clear(index);
                f.sent.set(index);
            }
            self.counters.sent_demand += 1;
            return Some(Pick {
                file,
                index,
                kind: Kind::Demand,
            });
        }
        self.prune_readahead();
        if let Some((file, index)) = self.ahead.pop_front() {
            if let Some(f) = self.files[file.0 as usize].as_mut() {
                f.in_readahead.clear(index);
                f.sent.set(index);
            }
            self.counters.sent_readahead += 1;
            return Some(Pick {
                file,
                index,
                kind: Kind::Readahead,
            });
        }
        if !self.have_end || !self.stream {
            return None;
        }
        if self.advance_plan() {
            let (file, index, _) = self.plan.front_mut().expect("advance_plan found one");
            let (file, index) = (*file, *index);
            if let Some(f) = self.files[file.0 as usize].as_mut() {
                f.sent.set(index);
            }
            self.counters.sent_plan += 1;
            return Some(Pick {
                file,
                index,
                kind: Kind::Plan,
            });
        }
        if self.stream_paused || !self.advance_stream() {
            return None;
        }
        let (slot, index) = self.cursor;
        if let Some(f) = self.files[slot].as_mut() {
            f.sent.set(index);
        }
        self.cursor.1 = index + 1;
        self.counters.sent_stream += 1;
        Some(Pick {
            file: FileId(slot as u32),
            index,
            kind: Kind::Stream,
        })
    }

    /// Drop readahead entries at the front of the queue that no longer need
    /// sending (sent meanwhile, or reported held by a late `Have`).
    fn prune_readahead(&mut self) {
        while let Some(&(file, index)) = self.ahead.front() {
            let Some(f) = self.files[file.0 as usize].as_mut() else {
                self.ahead.pop_front();
                continue;
            };
            if f.sent.get(index) || !f.lacks.get(index) {
                f.in_readahead.clear(index);
                self.ahead.pop_front();
            } else {
                return;
            }
        }
    }

    /// Move the plan's front to the next planned block the device lacks and
    /// that was not sent, dropping ranges that have none; false when the
    /// plan is done.
    fn advance_plan(&mut self) -> bool {
        while let Some((file, next, end)) = self.plan.front_mut() {
            if let Some(f) = &self.files[file.0 as usize] {
                if let Some(i) = first_in_a_not_b(&f.lacks, &f.sent, *next).filter(|&i| i < *end) {
                    *next = i;
                    return true;
                }
            }
            self.plan.pop_front();
        }
        false
    }

    /// Move the stream cursor to the next block the device lacks and that
    /// was not sent; false when there is none. The set of such blocks only
    /// shrinks, so the cursor only moves forward.
    fn advance_stream(&mut self) -> bool {
        while self.cursor.0 < self.files.len() {
            let (slot, from) = self.cursor;
            if let Some(f) = &self.files[slot] {
                if let Some(i) = first_in_a_not_b(&f.lacks, &f.sent, from) {
                    self.cursor.1 = i;
                    return true;
                }
            }
            self.cursor = (slot + 1, 0);
        }
        false
    }

    /// Whether [`Scheduler::pick_next`] would return a block now.
    pub fn has_work(&mut self) -> bool {
        self.prune_readahead();
        !self.demand.is_empty()
            || !self.ahead.is_empty()
            || (self.have_end
                && self.stream
                && (self.advance_plan() || (!self.stream_paused && self.advance_stream())))
    }

    /// True once `HaveEnd` has arrived, the stream has nothing left and no
    /// demand or readahead is queued: the moment to send `StreamDone`.
    pub fn stream_finished(&mut self) -> bool {
        self.prune_readahead();
        // Without a stream there is no end of it to announce.
        self.stream
            && self.have_end
            && self.demand.is_empty()
            && self.ahead.is_empty()
            && !self.advance_stream()
    }

    /// How many blocks of `file` the device lacks (as far as it has said),
    /// and whether its last block is among them; `None` if not a file.
    pub fn lacking(&self, file: FileId) -> Option<(u64, bool)> {
        let f = self.files.get(file.0 as usize)?.as_ref()?;
        let last = f.blocks.checked_sub(1).is_some_and(|l| f.lacks.get(l));
        Some((f.lacks.count(), last))
    }

    /// What the scheduler has done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }
}

#[cfg(test)]
mod tests;
