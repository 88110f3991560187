//! The parked-read table: reads of missing pages waiting for them to land,
//! as a pure state machine. No I/O and no clock: the caller passes `now`,
//! says which pages are present, sends the demands it is handed and
//! answers the reads it is handed, outside its lock.
//!
//! Invariants:
//! - A parked read is handed back exactly once (completed, failed, timed
//!   out or stopped), its reply moving out with it, so no read is ever
//!   answered twice.
//! - A read waits only for the pages it needs (`pages_of(offset, size)`).
//! - A (file, page) key in `waiters` means the page was demanded (or is
//!   on its way); the first read to wait for a page that is neither asks
//!   for it (one Demand per run of such pages), later ones only wait.
//! - A read re-checks presence here, under the table's lock, and a landing
//!   sets the page's bit before it comes here: no page is seen as
//!   missing after it arrived without its reader being found.
//! - After a read timed out waiting for a page, a read that needs that
//!   page fails at once, until the page lands or a new link comes up.
//! - A parked read asks again (`again` set) for the pages it still waits
//!   for every [`ASK_AGAIN`] (module `ask`): a page lost on the link (a
//!   damaged frame) costs a moment, never the whole timeout.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use feedfs_protocol::FileId;

use crate::serve::demand::{self, Demand};

mod ask;
mod read;
#[cfg(test)]
mod tests;

pub use ask::ASK_AGAIN;
pub use read::{ReadAt, Reply};

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
    /// Every page is present by now: serve it from the store.
    Ready(ReadAt, R),
    /// No link is coming (mounted offline, or stopping): fail it.
    NoLink(ReadAt, R),
    /// It needs a page a read already timed out on: fail it at once.
    Expired(ReadAt, R),
    /// Parked until its pages land or its deadline passes. `demands` are
    /// for the pages nobody asked for yet (send them if a link is up);
    /// `earliest` says its deadline comes before every other one and
    /// before the reaper's next look (wake the reaper).
    Parked {
        demands: Vec<Demand>,
        earliest: bool,
    },
}

/// Longest sleep of the reaper between two looks at the table's deadlines.
pub const REAPER_NAP: Duration = Duration::from_millis(500);

/// A (file, page) pair.
type Key = (FileId, u64);

struct Parked<R> {
    read: ReadAt,
    reply: R,
    /// Pages it still waits for.
    missing: usize,
    deadline: Instant,
    since: Instant,
    demanded: bool,
    /// When it next asks again for the pages it still waits for.
    ask_at: Instant,
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

/// What [`Pending::begin_landing`] made of a run of checked pages.
#[derive(Debug)]
pub struct Begun<R> {
    /// Reads that lie wholly within the run: answer them from its bytes.
    pub early: Vec<Taken<R>>,
    /// Runs `(first, count)` of its pages that were not on their way yet:
    /// to be stored.
    pub fresh: Vec<(u64, u64)>,
}

/// The table of parked reads.
pub struct Pending<R> {
    timeout: Duration,
    next_id: u64,
    reads: HashMap<u64, Parked<R>>,
    /// Reads waiting for each page, in the order they parked.
    waiters: HashMap<Key, Vec<u64>>,
    deadlines: BTreeSet<(Instant, u64)>,
    /// When each parked read next asks again.
    asks: BTreeSet<(Instant, u64)>,
    /// Pages checked and on their way to the store: waited for, never demanded.
    landing: HashSet<Key>,
    /// Stopping: reads of missing pages fail at once.
    closed: bool,
    /// Mounted offline: until a link comes up, reads of missing pages
    /// fail at once (nobody is expected to bring them).
    offline: bool,
    /// Pages a read timed out waiting for, since the last link came up: a
    /// read that needs one fails at once instead of waiting a whole timeout
    /// again (the kernel retries a failed readahead with a read of its
    /// own). Cleared by the page's landing or a new link.
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
            asks: BTreeSet::new(),
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

    /// Mounted with no link: reads of missing pages fail until a link is up.
    pub fn set_offline(&mut self) {
        self.offline = true;
    }

    /// A link came up: reads of missing pages park again, earlier
    /// timeouts are forgotten, and the returned demands ask for every page
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
                let pages: Vec<u64> = file.iter().map(|&(_, p)| p).collect();
                demand::for_pages(file[0].0, &pages)
            })
            .collect()
    }

    /// Stopping: every parked read is handed back (to fail), and later
    /// reads of missing pages fail at once.
    pub fn shut_down(&mut self) -> Vec<Taken<R>> {
        self.closed = true;
        self.waiters.clear();
        self.deadlines.clear();
        self.asks.clear();
        let mut all: Vec<(u64, Parked<R>)> = self.reads.drain().collect();
        all.sort_unstable_by_key(|(rid, _)| *rid);
        all.into_iter().map(|(_, r)| r.taken()).collect()
    }

    /// Park `read`, whose caller found a page missing, re-checking each
    /// page with `present` (under the table's lock, so a page that landed
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
        let missing: Vec<u64> = read.pages().filter(|&p| !present(read.file, p)).collect();
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
        // The reaper looks again within REAPER_NAP of now whatever it was
        // told: a later deadline needs no wake-up (a context switch on
        // every demand, measured at about 4 us).
        let earliest = deadline < now + REAPER_NAP
            && self.deadlines.first().is_none_or(|&(d, _)| deadline < d);
        self.deadlines.insert((deadline, rid));
        let ask_at = now + ASK_AGAIN;
        self.asks.insert((ask_at, rid));
        self.reads.insert(
            rid,
            Parked {
                read,
                reply,
                missing: missing.len(),
                deadline,
                since: now,
                demanded: !to_demand.is_empty(),
                ask_at,
            },
        );
        Park::Parked {
            demands: demand::for_pages(read.file, &to_demand),
            earliest,
        }
    }

    /// Pages `first..first + count` were checked and are on their way to
    /// the store: the reads that lie wholly within them and need none of
    /// the `present` ones are handed back, to be answered from their bytes
    /// now; the others keep waiting for them to be stored. (A present page
    /// may hold other bytes than the host's: one written on the device.) Also returned: the runs of these pages that were
    /// neither `present` nor on their way already (the others are
    /// duplicates: drop them).
    pub fn begin_landing(
        &mut self,
        file: FileId,
        first: u64,
        count: u64,
        present: impl Fn(u64) -> bool,
    ) -> Begun<R> {
        let end = first.saturating_add(count);
        let mut fresh: Vec<u64> = Vec::new();
        let mut within = Vec::new();
        for p in first..end {
            if !present(p) && self.landing.insert((file, p)) {
                fresh.push(p);
            }
            if self.waiters.is_empty() {
                continue;
            }
            for &rid in self.waiters.get(&(file, p)).into_iter().flatten() {
                if self
                    .reads
                    .get(&rid)
                    .is_some_and(|r| r.read.within(first, end) && !r.read.pages().any(&present))
                {
                    within.push(rid);
                }
            }
        }
        within.sort_unstable();
        within.dedup();
        let early = within
            .into_iter()
            .filter_map(|rid| {
                let t = self.take(rid)?;
                self.forget_waits(&t.read, rid);
                Some(t)
            })
            .collect();
        Begun {
            early,
            fresh: demand::runs(&fresh),
        }
    }

    /// Pages `first..first + count` were stored (their bits are set): the
    /// reads they complete are handed back, to be served from the store.
    pub fn landed(&mut self, file: FileId, first: u64, count: u64) -> Vec<Taken<R>> {
        let mut done = Vec::new();
        for p in first..first.saturating_add(count) {
            let key = (file, p);
            self.landing.remove(&key);
            if !self.expired.is_empty() {
                self.expired.remove(&key);
            }
            if self.waiters.is_empty() {
                continue;
            }
            for rid in self.waiters.remove(&key).unwrap_or_default() {
                let finished = self.reads.get_mut(&rid).is_some_and(|r| {
                    r.missing -= 1;
                    r.missing == 0
                });
                if finished {
                    done.extend(self.take(rid));
                }
            }
        }
        done
    }

    /// Pages could not be stored: they are no longer on their way. The
    /// reads waiting for them stay parked ([`Pending::fail_waiters`] fails
    /// them).
    pub fn landing_failed(&mut self, file: FileId, first: u64, count: u64) {
        for p in first..first.saturating_add(count) {
            self.landing.remove(&(file, p));
            self.expired.remove(&(file, p));
        }
    }

    /// Hand back every read waiting for one of these pages (to fail: the
    /// store cannot hold them), forgetting their waits on other pages too.
    pub fn fail_waiters(&mut self, file: FileId, first: u64, count: u64) -> Vec<Taken<R>> {
        let mut out = Vec::new();
        for p in first..first.saturating_add(count) {
            let ids = self.waiters.remove(&(file, p)).unwrap_or_default();
            for rid in ids {
                if let Some(t) = self.take(rid) {
                    self.forget_waits(&t.read, rid);
                    out.push(t);
                }
            }
        }
        out
    }

    /// Hand back every read whose deadline is at or before `now` (to fail
    /// with a timeout). Each page such a read still missed, that is not
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
            self.asks.remove(&(r.ask_at, rid));
            self.forget_waits(&r.read, rid);
            for p in r.read.pages() {
                let key = (r.read.file, p);
                if !present(r.read.file, p) && !self.landing.contains(&key) {
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

    /// Demands for the runs of pages `missing` of each file (pages not in
    /// the store), leaving out the pages already on their way: one pass
    /// over those, whatever the number of files.
    pub fn missing_demands(
        &self,
        missing: impl IntoIterator<Item = (FileId, Vec<(u64, u64)>)>,
    ) -> Vec<Demand> {
        let mut arriving: HashMap<FileId, BTreeSet<u64>> = HashMap::new();
        for &(f, p) in &self.landing {
            arriving.entry(f).or_default().insert(p);
        }
        let none = BTreeSet::new();
        missing
            .into_iter()
            .flat_map(|(file, runs)| {
                demand::for_runs_except(file, &runs, arriving.get(&file).unwrap_or(&none))
            })
            .collect()
    }

    /// Take a read out of the table and its deadline out of the queue.
    fn take(&mut self, rid: u64) -> Option<Taken<R>> {
        let r = self.reads.remove(&rid)?;
        self.deadlines.remove(&(r.deadline, rid));
        self.asks.remove(&(r.ask_at, rid));
        Some(r.taken())
    }

    /// Remove a read from the waiter lists of its pages.
    fn forget_waits(&mut self, read: &ReadAt, rid: u64) {
        for p in read.pages() {
            let key = (read.file, p);
            if let Some(w) = self.waiters.get_mut(&key) {
                w.retain(|&x| x != rid);
                if w.is_empty() {
                    self.waiters.remove(&key);
                }
            }
        }
    }
}
