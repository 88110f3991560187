//! The host's send order, as a pure state machine: which run of pages goes
//! out next.
//!
//! It owns, per file, bitsets over the file's pages: what the device lacks,
//! what has been sent, what is queued as demand or as readahead, and what
//! the plan names (1 Mi pages, 4 GiB, take 128 KiB a set). Its queues hold
//! ranges, never one entry per page. [`Scheduler::pick_next`] returns a run
//! of consecutive pages of one file ([`Pick`]), never longer than the
//! caller's [`Limits`], from three sources in strict priority:
//! 1. demands, in arrival order: a run of exactly the demanded pages (the
//!    consecutive pages of one demand, never more than asked); a demanded
//!    page already queued as a demand and not yet sent is dropped, and so
//!    is one sent within [`flight::IN_FLIGHT`] (it is on its way: module
//!    `flight`) unless the demand says `again`; one sent earlier is sent
//!    again (the device only asks for what it is missing);
//! 2. readahead, only for a reader that goes forward, as runs of their own
//!    behind the demand: a demand that starts a file, or that continues
//!    where the previous demand of that file (or the readahead queued after
//!    it) ended, queues the next pages after it (those the device lacks
//!    and that are neither sent nor queued). The window starts at
//!    [`INITIAL_WINDOW`] pages and doubles with each demand that continues
//!    the run, up to the `readahead` limit; any other demand is taken as
//!    random access and gets none, so a random reader's next page never
//!    waits behind data nobody asked for. A demand for a planned page gets
//!    none either: the plan knows better what the reader needs next, and
//!    goes on sending it;
//! 3. the background stream, in long runs of pages the device lacks and
//!    that were not sent: first the planned pages, in the order of a
//!    prefetch plan given with [`Scheduler::with_plan`] (a learned plan or
//!    a zip file's built-in order), then every page the device lacks,
//!    files in manifest order, pages in ascending order.
//!    [`Scheduler::pause_stream`] holds back the file-order part only:
//!    planned pages are what readers are about to ask for, so they keep the
//!    link busy while a reader is active.
//!
//! Until the device's `HaveEnd` the scheduler does not know what the device
//! holds, so it answers demands only: no readahead, no stream. It does no
//! I/O and reads no clock: the caller passes `now`. A run never crosses from one file to another.
//! An index past a file's end, or an id that is not a file, is an error,
//! never ignored.

use std::collections::VecDeque;
use std::time::Instant;

use feedfs_protocol::{FileId, PageRange};

mod bits;
pub mod flight;
mod pick;
use bits::Bits;
use flight::InFlight;

/// Readahead window, in pages, after the first demand of a forward run
/// (128 KiB, a kernel's usual readahead).
pub const INITIAL_WINDOW: u64 = 32;

/// Why a device message could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    #[error("file id {0} is not a file of the manifest")]
    NotAFile(FileId),
    #[error("pages {first}..{end} of file {file} are out of range: the file has {pages} pages", end = u128::from(*.first) + u128::from(*.count))]
    OutOfRange {
        file: FileId,
        first: u64,
        count: u64,
        pages: u64,
    },
}

/// Why a run was picked.
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

/// The next run to send: `count` pages of `file` from page `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub file: FileId,
    pub first: u64,
    pub count: u32,
    pub kind: Kind,
}

impl Pick {
    /// One past the run's last page.
    pub fn end(&self) -> u64 {
        self.first + u64::from(self.count)
    }
}

/// The most pages one run may carry: `demand` for demand runs, `stream`
/// for readahead, plan and stream runs (each at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub demand: u32,
    pub stream: u32,
}

/// What the scheduler has done so far, in pages (and demand messages).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Demand messages received.
    pub demands: u64,
    /// Demanded pages dropped because they were already queued.
    pub duplicates: u64,
    /// Demanded pages not sent again because they were on their way.
    pub in_flight: u64,
    pub sent_demand: u64,
    pub sent_readahead: u64,
    pub sent_plan: u64,
    pub sent_stream: u64,
    /// Runs picked, of every kind.
    pub runs: u64,
}

impl Counters {
    /// Pages picked so far, of every kind.
    pub fn sent(&self) -> u64 {
        self.sent_demand + self.sent_readahead + self.sent_plan + self.sent_stream
    }
}

#[derive(Debug)]
struct FileState {
    pages: u64,
    /// Whether this file has had a demand yet.
    demanded: bool,
    /// End of the last demand, and of the readahead queued after it.
    run_end: u64,
    ahead_end: u64,
    /// Current readahead window, in pages (0 after a random demand).
    window: u64,
    lacks: Bits,
    sent: Bits,
    in_demand: Bits,
    in_readahead: Bits,
    /// Pages named by the plan.
    planned: Bits,
}

/// A queued range of one file: pages `[first, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Queued {
    file: FileId,
    first: u64,
    end: u64,
}

/// The send-order state machine; see the module documentation.
#[derive(Debug)]
pub struct Scheduler {
    /// Indexed by file id; `None` for ids that are not files (directories, links).
    files: Vec<Option<FileState>>,
    /// Most readahead pages after a demand.
    readahead: u64,
    have_end: bool,
    /// Whether to stream in the background at all (`--no-stream` clears it).
    stream: bool,
    /// The stream waits while readers are active (see [`Scheduler::pause_stream`]).
    stream_paused: bool,
    demand: VecDeque<Queued>,
    ahead: VecDeque<Queued>,
    /// Planned ranges not yet streamed (`first` moves on as they go).
    plan: VecDeque<Queued>,
    /// Where the stream goes on: index into `files`, then page index.
    cursor: (usize, u64),
    /// Runs sent lately, still on their way.
    flight: InFlight,
    counters: Counters,
}

/// Append `[first, end)` of `file` to `queue`, joined to the last range when it continues it.
fn enqueue(queue: &mut VecDeque<Queued>, file: FileId, first: u64, end: u64) {
    match queue.back_mut() {
        Some(q) if q.file == file && q.end == first => q.end = end,
        _ => queue.push_back(Queued { file, first, end }),
    }
}

impl Scheduler {
    /// A scheduler for these files (id, number of pages) and at most
    /// `readahead` pages after a demand; every page starts as lacking on
    /// the device. Ids not listed are not files.
    pub fn new(files: &[(FileId, u64)], readahead: u64) -> Self {
        let len = files.iter().map(|(id, _)| id.0 as usize + 1).max();
        let mut slots: Vec<Option<FileState>> = Vec::new();
        slots.resize_with(len.unwrap_or(0), || None);
        for &(id, pages) in files {
            slots[id.0 as usize] = Some(FileState {
                pages,
                demanded: false,
                run_end: 0,
                ahead_end: 0,
                window: 0,
                lacks: Bits::full(pages),
                sent: Bits::empty(pages),
                in_demand: Bits::empty(pages),
                in_readahead: Bits::empty(pages),
                planned: Bits::empty(pages),
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
            flight: InFlight::default(),
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
            Some(end) if end <= f.pages => Ok(end),
            _ => Err(SchedError::OutOfRange {
                file,
                first,
                count,
                pages: f.pages,
            }),
        }
    }

    /// The device already holds these pages: never stream them. Every range
    /// is checked before any is applied.
    pub fn on_have(&mut self, file: FileId, ranges: &[PageRange]) -> Result<(), SchedError> {
        let f = self.file_mut(file)?;
        for r in ranges {
            Self::check_range(f, file, r.first, r.count)?;
        }
        for r in ranges {
            f.lacks.clear_range(r.first, r.end());
        }
        Ok(())
    }

    /// Stream these ranges (file, first page, count), in this order, before
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
        self.plan.clear();
        for &(file, first, count) in ranges {
            self.file_mut(file)?.planned.set_range(first, first + count);
            enqueue(&mut self.plan, file, first, first + count);
        }
        Ok(())
    }

    /// Serve demands (and their readahead) only, never the background stream.
    pub fn without_stream(mut self) -> Self {
        self.stream = false;
        self
    }

    /// Hold back the background stream (demands and readahead still go):
    /// the session does this for a moment after each demand, so a reader's
    /// next pages do not compete with the stream for the link and the CPUs.
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

    /// A reader on the device waits for pages `[first, first + count)` of
    /// `file`, as the device said at `now`; `again`: send them even if they
    /// are on their way (they arrived damaged, or not at all).
    pub fn on_demand(
        &mut self,
        file: FileId,
        first: u64,
        count: u64,
        again: bool,
        now: Instant,
    ) -> Result<(), SchedError> {
        let readahead = self.readahead;
        let have_end = self.have_end;
        let f = self
            .files
            .get(file.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(SchedError::NotAFile(file))?;
        let end = Self::check_range(f, file, first, count)?;
        let on_way = if again {
            Vec::new()
        } else {
            self.flight.covered(now, file, first, end)
        };
        let f = self.file_mut(file)?;
        let mut on_way = on_way.into_iter().peekable();
        let mut queued = Vec::new();
        let mut duplicates = 0;
        let mut in_flight = 0;
        for i in first..end {
            if f.in_demand.get(i) {
                duplicates += 1;
                continue;
            }
            while on_way.peek().is_some_and(|&(_, e)| e <= i) {
                on_way.next();
            }
            if f.sent.get(i) && on_way.peek().is_some_and(|&(a, _)| a <= i) {
                in_flight += 1;
                continue;
            }
            f.in_demand.set(i);
            match queued.last_mut() {
                Some((_, e)) if *e == i => *e = i + 1,
                _ => queued.push((i, i + 1)),
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
        f.ahead_end = end.saturating_add(f.window).min(f.pages);
        let mut ahead = Vec::new();
        if have_end && count > 0 && !f.planned.get(first) {
            for i in end..f.ahead_end {
                let wanted = f.lacks.get(i)
                    && !f.sent.get(i)
                    && !f.in_demand.get(i)
                    && !f.in_readahead.get(i);
                if !wanted {
                    continue;
                }
                f.in_readahead.set(i);
                match ahead.last_mut() {
                    Some((_, e)) if *e == i => *e = i + 1,
                    _ => ahead.push((i, i + 1)),
                }
            }
        }
        for (a, e) in queued {
            enqueue(&mut self.demand, file, a, e);
        }
        for (a, e) in ahead {
            enqueue(&mut self.ahead, file, a, e);
        }
        self.counters.demands += 1;
        self.counters.duplicates += duplicates;
        self.counters.in_flight += in_flight;
        Ok(())
    }

    /// Whether [`Scheduler::pick_next`] would return a run now.
    pub fn has_work(&mut self) -> bool {
        self.prune_readahead();
        !self.demand.is_empty()
            || !self.ahead.is_empty()
            || (self.have_end
                && self.stream
                && (self.advance_plan() || (!self.stream_paused && self.advance_stream())))
    }

    /// Whether the next run would be a demand's.
    pub fn demand_waiting(&self) -> bool {
        !self.demand.is_empty()
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

    /// How many pages of `file` the device lacks (as far as it has said),
    /// and whether its last page is among them; `None` if not a file.
    pub fn lacking(&self, file: FileId) -> Option<(u64, bool)> {
        let f = self.files.get(file.0 as usize)?.as_ref()?;
        let last = f.pages.checked_sub(1).is_some_and(|l| f.lacks.get(l));
        Some((f.lacks.count(), last))
    }

    /// Whether every page of `[first, first + count)` of `file` is one the
    /// device lacks and none has been sent: what a source may fetch ahead
    /// of the stream without fetching a page for nothing.
    pub fn unsent(&self, file: FileId, first: u64, count: u64) -> bool {
        let Some(Some(f)) = self.files.get(file.0 as usize) else {
            return false;
        };
        let end = first.saturating_add(count);
        count > 0 && end <= f.pages && (first..end).all(|i| f.lacks.get(i) && !f.sent.get(i))
    }

    /// What the scheduler has done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }
}

#[cfg(test)]
mod tests;
