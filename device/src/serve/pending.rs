//! The parked-read table: reads of missing blocks waiting for them to land,
//! as a pure state machine. No I/O and no clock: the caller passes `now`,
//! says which blocks are present, sends the demands it is handed and
//! answers the reads it is handed, outside its lock.
//!
//! Invariants:
//! - A parked read is handed back exactly once (completed, failed, timed
//!   out or stopped), its reply moving out with it, so no read is ever
//!   answered twice.
//! - A (file, block) key in `waiters` means the block was demanded (or is
//!   on its way); the first read to wait for a block that is neither asks
//!   for it, later ones only wait.
//! - A read re-checks presence here, under the table's lock, and a landing
//!   sets the block's bit before it comes here: no block is seen as
//!   missing after it arrived without its reader being found.
//! - After a read timed out waiting for a block, a read that needs that
//!   block fails at once, until the block lands or a new link comes up.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use feedfs_protocol::FileId;
use fuser::Errno;

use crate::serve::demand::{self, Demand};

#[cfg(test)]
mod tests;

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
/// blocks `first..=last`, for process `pid` (0 if unknown).
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
    /// `file_size` bytes long in blocks of `block_size`; `None` when it
    /// reads nothing (empty, or at or past the end).
    pub fn new(
        file: FileId,
        offset: u64,
        size: u32,
        pid: u32,
        file_size: u64,
        block_size: u32,
    ) -> Option<ReadAt> {
        if offset >= file_size || size == 0 || block_size == 0 {
            return None;
        }
        let bs = u64::from(block_size);
        let end = offset.saturating_add(u64::from(size)).min(file_size);
        Some(ReadAt {
            file,
            offset,
            size,
            first: offset / bs,
            last: (end - 1) / bs,
            pid,
        })
    }

    pub fn blocks(&self) -> RangeInclusive<u64> {
        self.first..=self.last
    }

    /// Whether it reads from block `index` and no other.
    pub fn within(&self, index: u64) -> bool {
        self.first == index && self.last == index
    }

    /// The bytes it reads out of a block that starts at byte `block_start`
    /// and holds `data`; empty if it does not lie in that block.
    pub fn slice<'a>(&self, block_start: u64, data: &'a [u8]) -> &'a [u8] {
        let Some(from) = self.offset.checked_sub(block_start) else {
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

/// A read handed back by the table, for the caller to answer.
#[derive(Debug)]
pub struct Taken<R> {
    pub read: ReadAt,
    pub reply: R,
    /// When it was parked.
    pub since: Instant,
    /// Whether it sent a demand itself (for the request log).
    pub demanded: bool,
}

/// What [`Pending::park`] made of a read.
#[derive(Debug)]
pub enum Park<R> {
    /// Every block is present by now: serve it from the store.
    Ready(ReadAt, R),
    /// No link is coming (mounted offline, or stopping): fail it.
    NoLink(ReadAt, R),
    /// It needs a block a read already timed out on: fail it at once.
    Expired(ReadAt, R),
    /// Parked until its blocks land or its deadline passes. `demands` are
    /// for the blocks nobody asked for yet (send them if a link is up);
    /// `earliest` says its deadline comes before every other one (wake the
    /// reaper).
    Parked {
        demands: Vec<Demand>,
        earliest: bool,
    },
}

/// A (file, block) pair.
type Key = (FileId, u64);

struct Parked<R> {
    read: ReadAt,
    reply: R,
    /// Blocks it still waits for.
    missing: usize,
    deadline: Instant,
    since: Instant,
    demanded: bool,
}

impl<R> Parked<R> {
    fn taken(self) -> Taken<R> {
        Taken {
            read: self.read,
            reply: self.reply,
            since: self.since,
            demanded: self.demanded,
        }
    }
}

/// The table of parked reads.
pub struct Pending<R> {
    timeout: Duration,
    next_id: u64,
    reads: HashMap<u64, Parked<R>>,
    /// Reads waiting for each block, in the order they parked.
    waiters: HashMap<Key, Vec<u64>>,
    deadlines: BTreeSet<(Instant, u64)>,
    /// Blocks checked and on their way to the store: waited for, never demanded.
    landing: HashSet<Key>,
    /// Stopping: reads of missing blocks fail at once.
    closed: bool,
    /// Mounted offline: until a link comes up, reads of missing blocks
    /// fail at once (nobody is expected to bring them).
    offline: bool,
    /// Blocks a read timed out waiting for, since the last link came up: a
    /// read that needs one fails at once instead of waiting a whole timeout
    /// again (the kernel retries a failed readahead with a read of its
    /// own). Cleared by the block's landing or a new link.
    expired: HashSet<Key>,
}

impl<R: Reply> Pending<R> {
    /// An empty table whose reads wait at most `timeout`.
    pub fn new(timeout: Duration) -> Pending<R> {
        Pending {
            timeout,
            next_id: 0,
            reads: HashMap::new(),
            waiters: HashMap::new(),
            deadlines: BTreeSet::new(),
            landing: HashSet::new(),
            closed: false,
            offline: false,
            expired: HashSet::new(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Reads parked now.
    pub fn len(&self) -> usize {
        self.reads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reads.is_empty()
    }

    /// Mounted with no link: reads of missing blocks fail until a link is up.
    pub fn set_offline(&mut self) {
        self.offline = true;
    }

    /// A link came up: reads of missing blocks park again, earlier
    /// timeouts are forgotten, and the returned demands ask for every block
    /// a parked read waits for that is not already on its way.
    pub fn link_up(&mut self) -> Vec<Demand> {
        self.offline = false;
        self.expired.clear();
        let mut wanted: Vec<Key> = self
            .waiters
            .keys()
            .filter(|k| !self.landing.contains(k))
            .copied()
            .collect();
        wanted.sort_unstable();
        wanted
            .chunk_by(|a, b| a.0 == b.0)
            .flat_map(|file| {
                let blocks: Vec<u64> = file.iter().map(|&(_, b)| b).collect();
                demand::for_blocks(file[0].0, &blocks)
            })
            .collect()
    }

    /// Stopping: every parked read is handed back (to fail), and later
    /// reads of missing blocks fail at once.
    pub fn shut_down(&mut self) -> Vec<Taken<R>> {
        self.closed = true;
        self.waiters.clear();
        self.deadlines.clear();
        let mut all: Vec<(u64, Parked<R>)> = self.reads.drain().collect();
        all.sort_unstable_by_key(|(rid, _)| *rid);
        all.into_iter().map(|(_, r)| r.taken()).collect()
    }

    /// Park `read`, whose caller found a block missing, re-checking each
    /// block with `present` (under the table's lock, so a block that landed
    /// since is seen). Its deadline is `now` plus the timeout.
    pub fn park(
        &mut self,
        read: ReadAt,
        reply: R,
        now: Instant,
        present: impl Fn(FileId, u64) -> bool,
    ) -> Park<R> {
        if self.closed || self.offline {
            return Park::NoLink(read, reply);
        }
        let missing: Vec<u64> = read.blocks().filter(|&b| !present(read.file, b)).collect();
        if missing.is_empty() {
            return Park::Ready(read, reply);
        }
        if missing
            .iter()
            .any(|&b| self.expired.contains(&(read.file, b)))
        {
            return Park::Expired(read, reply);
        }
        let rid = self.next_id;
        self.next_id += 1;
        let mut to_demand = Vec::new();
        for &b in &missing {
            let key = (read.file, b);
            let arriving = self.landing.contains(&key);
            let w = self.waiters.entry(key).or_default();
            if w.is_empty() && !arriving {
                to_demand.push(b);
            }
            w.push(rid);
        }
        let deadline = now + self.timeout;
        let earliest = self.deadlines.first().is_none_or(|&(d, _)| deadline < d);
        self.deadlines.insert((deadline, rid));
        self.reads.insert(
            rid,
            Parked {
                read,
                reply,
                missing: missing.len(),
                deadline,
                since: now,
                demanded: !to_demand.is_empty(),
            },
        );
        Park::Parked {
            demands: demand::for_blocks(read.file, &to_demand),
            earliest,
        }
    }

    /// A block was checked and is on its way to the store: the reads that
    /// lie wholly within it are handed back, to be answered from its bytes
    /// now; the others keep waiting for it to be stored. `None` when it was
    /// already on its way (a duplicate: drop it).
    pub fn begin_landing(&mut self, file: FileId, index: u64) -> Option<Vec<Taken<R>>> {
        let key = (file, index);
        if !self.landing.insert(key) {
            return None;
        }
        let Some(ids) = self.waiters.remove(&key) else {
            return Some(Vec::new());
        };
        let (within, rest): (Vec<u64>, Vec<u64>) = ids
            .into_iter()
            .partition(|rid| self.reads.get(rid).is_some_and(|r| r.read.within(index)));
        if !rest.is_empty() {
            self.waiters.insert(key, rest);
        }
        Some(
            within
                .into_iter()
                .filter_map(|rid| self.take(rid))
                .collect(),
        )
    }

    /// A block was stored (its bit is set): the reads it completes are
    /// handed back, to be served from the store.
    pub fn landed(&mut self, file: FileId, index: u64) -> Vec<Taken<R>> {
        let key = (file, index);
        self.landing.remove(&key);
        self.expired.remove(&key);
        let mut done = Vec::new();
        for rid in self.waiters.remove(&key).unwrap_or_default() {
            let finished = self.reads.get_mut(&rid).is_some_and(|r| {
                r.missing -= 1;
                r.missing == 0
            });
            if finished {
                done.extend(self.take(rid));
            }
        }
        done
    }

    /// A block could not be stored: it is no longer on its way. The reads
    /// waiting for it stay parked ([`Pending::fail_waiters`] fails them).
    pub fn landing_failed(&mut self, file: FileId, index: u64) {
        self.landing.remove(&(file, index));
        self.expired.remove(&(file, index));
    }

    /// Hand back every read waiting for this block (to fail: the store
    /// cannot hold it), forgetting their waits on other blocks too.
    pub fn fail_waiters(&mut self, file: FileId, index: u64) -> Vec<Taken<R>> {
        let ids = self.waiters.remove(&(file, index)).unwrap_or_default();
        ids.into_iter()
            .filter_map(|rid| {
                let t = self.take(rid)?;
                self.forget_waits(&t.read, rid);
                Some(t)
            })
            .collect()
    }

    /// Hand back every read whose deadline is at or before `now` (to fail
    /// with a timeout). Each block such a read still missed, that is not
    /// present (by `present`) nor on its way, fails later reads at once.
    pub fn expire(&mut self, now: Instant, present: impl Fn(FileId, u64) -> bool) -> Vec<Taken<R>> {
        let mut out = Vec::new();
        while let Some(&(d, rid)) = self.deadlines.first() {
            if d > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(r) = self.reads.remove(&rid) else {
                continue;
            };
            self.forget_waits(&r.read, rid);
            for b in r.read.blocks() {
                let key = (r.read.file, b);
                if !present(r.read.file, b) && !self.landing.contains(&key) {
                    self.expired.insert(key);
                }
            }
            out.push(r.taken());
        }
        out
    }

    /// The earliest deadline of a parked read.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(d, _)| d)
    }

    /// Demands for the runs `missing` of `file` (blocks not in the store),
    /// leaving out the blocks already on their way.
    pub fn missing_demands(&self, file: FileId, missing: &[(u64, u64)]) -> Vec<Demand> {
        let arriving: BTreeSet<u64> = self
            .landing
            .iter()
            .filter(|(f, _)| *f == file)
            .map(|&(_, b)| b)
            .collect();
        demand::for_runs_except(file, missing, &arriving)
    }

    /// Take a read out of the table and its deadline out of the queue.
    fn take(&mut self, rid: u64) -> Option<Taken<R>> {
        let r = self.reads.remove(&rid)?;
        self.deadlines.remove(&(r.deadline, rid));
        Some(r.taken())
    }

    /// Remove a read from the waiter lists of its blocks.
    fn forget_waits(&mut self, read: &ReadAt, rid: u64) {
        for b in read.blocks() {
            let key = (read.file, b);
            if let Some(w) = self.waiters.get_mut(&key) {
                w.retain(|&x| x != rid);
                if w.is_empty() {
                    self.waiters.remove(&key);
                }
            }
        }
    }
}
