//! The device's shared state: stored files, parked reads, and the link's outbox.
//!
//! A FUSE read of a missing block is parked here with its fuser reply and a
//! deadline; the block's first waiter sends one demand for it. A block from
//! the host lands in two steps: the link thread checks it ([`Core::accept`])
//! and at once answers, from the checked bytes, every parked read that lies
//! wholly within it; a store writer then writes it ([`Core::store`]), sets
//! its bit and answers the reads that needed more than that block. So a
//! demanded block never waits behind a slow disk write. The reaper thread
//! fails parked reads whose deadline passed with EIO, so no reader waits
//! forever, and a read of a block that already timed out fails at once
//! until the block lands or a new link comes up. When the link is lost,
//! parked reads keep waiting, within their deadline, and a new link is
//! asked at once for every block they need.
//!
//! Lock order: a file's map lock is never held while taking the pending
//! lock. A read re-checks presence under the pending lock, and a landing
//! sets the block's bit before taking it, which closes the race between
//! "missing" and "arrived".

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use feedfs_protocol::reqlog::Outcome;
use feedfs_protocol::{FileId, Manifest, Message};
use fuser::{Errno, ReplyData};

use crate::link::outbox::Outbox;
use crate::store::reqlog::RequestLog;
use crate::store::{BlockState, Store, StoredFile};

/// Longest time a landed block's bit stays in memory only.
const MAP_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

struct Parked {
    file: u32,
    offset: u64,
    size: u32,
    first: u64,
    last: u64,
    missing: usize,
    deadline: Instant,
    reply: ReplyData,
    /// For the request log: when it was parked, by whom, and whether it
    /// sent a demand itself.
    since: Instant,
    pid: u32,
    demanded: bool,
}

#[derive(Default)]
struct Pending {
    next_id: u64,
    reads: HashMap<u64, Parked>,
    /// Reads waiting for each (file, block); a key present means the block was demanded.
    waiters: HashMap<(u32, u64), Vec<u64>>,
    deadlines: BTreeSet<(Instant, u64)>,
    outbox: Option<Outbox>,
    /// Blocks checked and on their way to the store: waited for, never demanded.
    landing: HashSet<(u32, u64)>,
    /// The daemon is stopping: reads of missing blocks fail at once.
    closed: bool,
    /// Mounted offline: until a link comes up, reads of missing blocks fail
    /// at once (nobody is expected to bring them).
    offline: bool,
    /// Blocks a read timed out waiting for, since the last link came up:
    /// a read that needs one fails at once instead of waiting a whole
    /// timeout again (the kernel retries a failed readahead with a read of
    /// its own). Cleared by the block's landing or a new link.
    expired: HashSet<(u32, u64)>,
}

pub struct Core {
    manifest: Manifest,
    /// Stored copy of each host id that is a file.
    files: Vec<Option<StoredFile>>,
    total_blocks: u64,
    present_blocks: AtomicU64,
    complete_sent: AtomicBool,
    read_timeout: Duration,
    pending: Mutex<Pending>,
    wake_reaper: Condvar,
    log: RequestLog,
}

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

impl Core {
    /// Open every file of the manifest in the store.
    pub fn new(manifest: Manifest, store: &Store, read_timeout: Duration) -> anyhow::Result<Core> {
        let mut files = Vec::with_capacity(manifest.host_entries() as usize);
        for i in 0..manifest.host_entries() {
            let e = manifest.get(FileId(i)).expect("ids are dense");
            files.push(match e.kind {
                feedfs_protocol::EntryKind::File => Some(store.open_file(e)?),
                feedfs_protocol::EntryKind::Dir => None,
            });
        }
        let afresh = files
            .iter()
            .flatten()
            .filter(|f| f.started_afresh())
            .count();
        if afresh > 0 {
            log::info!("store: {afresh} files new or changed, started afresh (-v lists them)");
        }
        let total_blocks = files.iter().flatten().map(StoredFile::blocks).sum();
        let present = files.iter().flatten().map(StoredFile::present_count).sum();
        let log = RequestLog::start(store.dir(), &manifest);
        Ok(Core {
            manifest,
            files,
            total_blocks,
            present_blocks: AtomicU64::new(present),
            complete_sent: AtomicBool::new(false),
            read_timeout,
            pending: Mutex::new(Pending::default()),
            wake_reaper: Condvar::new(),
            log,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn file(&self, id: FileId) -> Option<&StoredFile> {
        self.files.get(id.0 as usize).and_then(Option::as_ref)
    }

    pub fn total_blocks(&self) -> u64 {
        self.total_blocks
    }

    pub fn present_blocks(&self) -> u64 {
        self.present_blocks.load(Ordering::Relaxed)
    }

    /// Bytes of the served files not in the store yet.
    pub fn missing_bytes(&self) -> u64 {
        self.files
            .iter()
            .flatten()
            .map(StoredFile::missing_bytes)
            .sum()
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attach a link: frames sent from now on go to `outbox`, and every
    /// block a parked read still waits for is demanded over it (reads that
    /// parked while no link was up, or whose demand went to a link that was
    /// lost).
    pub fn link_up(&self, outbox: Outbox) {
        let wanted = {
            let mut p = self.pending();
            p.outbox = Some(outbox.clone());
            p.offline = false;
            p.expired.clear();
            let mut wanted: Vec<(u32, u64)> = p
                .waiters
                .keys()
                .filter(|k| !p.landing.contains(k))
                .copied()
                .collect();
            wanted.sort_unstable();
            wanted
        };
        if !wanted.is_empty() {
            log::info!(
                "link up: asking for {} blocks readers wait for",
                wanted.len()
            );
        }
        for file in wanted.chunk_by(|a, b| a.0 == b.0) {
            let blocks: Vec<u64> = file.iter().map(|&(_, b)| b).collect();
            for (first, count) in runs(&blocks) {
                let msg = Message::Demand {
                    file: FileId(file[0].0),
                    first,
                    count: count as u32,
                };
                outbox.send(msg.to_frame());
            }
        }
        self.log.link(true);
    }

    /// Mounted with no link (`--offline`): reads of missing blocks fail at
    /// once until a link is attached.
    pub fn offline(&self) {
        self.pending().offline = true;
    }

    /// The link was lost: nothing more is sent, but parked reads keep
    /// waiting, until their deadline, for a new link to bring their blocks;
    /// new reads of missing blocks park the same way.
    pub fn link_lost(&self) {
        self.pending().outbox = None;
        self.log.link(false);
    }

    /// The daemon is stopping: every parked read fails with EIO now, and so
    /// does every later read of a missing block.
    pub fn shut_down(&self) {
        let failed: Vec<Parked> = {
            let mut p = self.pending();
            p.outbox = None;
            p.closed = true;
            p.waiters.clear();
            p.deadlines.clear();
            p.reads.drain().map(|(_, r)| r).collect()
        };
        if !failed.is_empty() {
            log::warn!("stopping: failing {} parked reads with EIO", failed.len());
        }
        self.log.link(false);
        for r in failed {
            self.ended(&r, Outcome::Failed);
            r.reply.error(Errno::EIO);
        }
    }

    /// Send one message to the host, if a link is up.
    pub fn send(&self, msg: &Message) -> bool {
        let p = self.pending();
        match &p.outbox {
            Some(outbox) => outbox.send(msg.to_frame()),
            None => false,
        }
    }

    /// Serve a FUSE read, or park it until its blocks land.
    pub fn read(&self, id: FileId, offset: u64, size: u32, reply: ReplyData) {
        self.read_by(id, offset, size, 0, reply)
    }

    /// [`Core::read`] for process `pid` (0 if unknown), as the request log names it.
    pub fn read_by(&self, id: FileId, offset: u64, size: u32, pid: u32, reply: ReplyData) {
        let Some(file) = self.file(id) else {
            reply.error(Errno::EISDIR);
            return;
        };
        if offset >= file.size() || size == 0 {
            reply.data(&[]);
            return;
        }
        let bs = u64::from(file.block_size());
        let first = offset / bs;
        let last = (offset.saturating_add(u64::from(size)).min(file.size()) - 1) / bs;
        match self.missing_blocks(file, first, last) {
            Ok(missing) if missing.is_empty() => {
                self.log_served(id, file, offset, size, first, last);
                return serve(file, offset, size, reply);
            }
            Ok(_) => {}
            Err(e) => {
                log::error!("store read of {} failed: {e}", self.path_of(id));
                reply.error(Errno::EIO);
                return;
            }
        }
        self.park(id, file, offset, size, first, last, pid, reply);
    }

    fn log_served(
        &self,
        id: FileId,
        file: &StoredFile,
        offset: u64,
        size: u32,
        first: u64,
        last: u64,
    ) {
        let bytes = file.size().saturating_sub(offset).min(size.into());
        self.log.served(id, first, last, bytes);
    }

    /// Record a parked read that has ended.
    fn ended(&self, r: &Parked, outcome: Outcome) {
        self.log.waited(
            FileId(r.file),
            r.first,
            r.last,
            r.since,
            r.pid,
            outcome,
            r.demanded,
        );
    }

    /// Write the request log out and stop its writer (at unmount).
    pub fn close_log(&self) {
        self.log.close();
    }

    fn missing_blocks(
        &self,
        file: &StoredFile,
        first: u64,
        last: u64,
    ) -> std::io::Result<Vec<u64>> {
        let mut missing = Vec::new();
        for b in first..=last {
            match file.check(b)? {
                BlockState::Ready => {}
                BlockState::Missing => missing.push(b),
                BlockState::Dropped => {
                    self.present_blocks.fetch_sub(1, Ordering::Relaxed);
                    self.complete_sent.store(false, Ordering::SeqCst);
                    missing.push(b);
                }
            }
        }
        Ok(missing)
    }

    #[allow(clippy::too_many_arguments)]
    fn park(
        &self,
        id: FileId,
        file: &StoredFile,
        offset: u64,
        size: u32,
        first: u64,
        last: u64,
        pid: u32,
        reply: ReplyData,
    ) {
        let mut p = self.pending();
        if p.closed || p.offline {
            drop(p);
            log::debug!(
                "read of missing data in {} with no link coming (offline or stopping): EIO",
                self.path_of(id)
            );
            reply.error(Errno::EIO);
            return;
        }
        // Re-check under the pending lock: a block may have landed since.
        let missing: Vec<u64> = (first..=last)
            .filter(|&b| !file.is_present(b).unwrap_or(false))
            .collect();
        if missing.is_empty() {
            drop(p);
            self.log_served(id, file, offset, size, first, last);
            return serve(file, offset, size, reply);
        }
        if missing.iter().any(|&b| p.expired.contains(&(id.0, b))) {
            drop(p);
            log::debug!(
                "read of {} at {offset} needs a block a read already timed out on: EIO",
                self.path_of(id)
            );
            reply.error(Errno::EIO);
            return;
        }
        let rid = p.next_id;
        p.next_id += 1;
        let mut to_demand = Vec::new();
        for &b in &missing {
            let arriving = p.landing.contains(&(id.0, b));
            let w = p.waiters.entry((id.0, b)).or_default();
            if w.is_empty() && !arriving {
                to_demand.push(b);
            }
            w.push(rid);
        }
        let deadline = Instant::now() + self.read_timeout;
        let earliest = p.deadlines.first().is_none_or(|&(d, _)| deadline < d);
        p.deadlines.insert((deadline, rid));
        p.reads.insert(
            rid,
            Parked {
                file: id.0,
                offset,
                size,
                first,
                last,
                missing: missing.len(),
                deadline,
                reply,
                since: Instant::now(),
                pid,
                demanded: !to_demand.is_empty(),
            },
        );
        // Sent outside the lock: a direct write is a system call.
        let outbox = p.outbox.clone();
        drop(p);
        self.log.waiting(id, first, last);
        if let Some(outbox) = outbox {
            for (first, count) in runs(&to_demand) {
                let msg = Message::Demand {
                    file: id,
                    first,
                    count: count as u32,
                };
                outbox.send(msg.to_frame());
            }
        }
        if earliest {
            self.wake_reaper.notify_one();
        }
    }

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
        let early: Vec<Parked> = {
            let mut p = self.pending();
            if !p.landing.insert((id.0, index)) {
                return Ok(None);
            }
            let Some(ids) = p.waiters.get(&(id.0, index)).cloned() else {
                return Ok(Some(Landing {
                    file: id,
                    index,
                    crc,
                    data: data.to_vec(),
                }));
            };
            let (within, rest): (Vec<u64>, Vec<u64>) = ids.into_iter().partition(|rid| {
                p.reads
                    .get(rid)
                    .is_some_and(|r| r.first == index && r.last == index)
            });
            if rest.is_empty() {
                p.waiters.remove(&(id.0, index));
            } else {
                p.waiters.insert((id.0, index), rest);
            }
            within
                .into_iter()
                .filter_map(|rid| {
                    let r = p.reads.remove(&rid)?;
                    p.deadlines.remove(&(r.deadline, rid));
                    Some(r)
                })
                .collect()
        };
        let block_start = index * u64::from(file.block_size());
        for r in early {
            // Checked against its CRC above; the read lies within this block.
            let from = (r.offset - block_start) as usize;
            let to = (from + r.size as usize).min(data.len());
            self.ended(&r, Outcome::Served);
            r.reply.data(&data[from..to]);
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
    /// (so a block a reader saw is recorded), and whenever `idle` says no
    /// other block is waiting to be written; otherwise in batches.
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
        let done: Vec<Parked> = {
            let mut p = self.pending();
            p.landing.remove(&(id.0, index));
            p.expired.remove(&(id.0, index));
            let written = match written {
                Ok(w) => w,
                // Not stored: the caller fails its waiters.
                Err(source) => {
                    return Err(LandError::Store {
                        file: id,
                        index,
                        source,
                    })
                }
            };
            if written {
                self.present_blocks.fetch_add(1, Ordering::Relaxed);
            }
            let mut done = Vec::new();
            for rid in p.waiters.remove(&(id.0, index)).unwrap_or_default() {
                let finished = match p.reads.get_mut(&rid) {
                    Some(r) => {
                        r.missing -= 1;
                        r.missing == 0
                    }
                    None => false,
                };
                if finished {
                    let r = p.reads.remove(&rid).expect("present");
                    p.deadlines.remove(&(r.deadline, rid));
                    done.push(r);
                }
            }
            done
        };
        if idle || !done.is_empty() {
            if let Err(e) = file.flush_map() {
                log::warn!("store: cannot write the block map: {e}");
            }
        }
        for r in done {
            self.ended(&r, Outcome::Served);
            let file = self.file(FileId(r.file)).expect("parked on a file");
            serve(file, r.offset, r.size, r.reply);
        }
        self.maybe_complete();
        Ok(())
    }

    /// Write every file's pending map entries (see `store::MAP_BATCH`).
    pub fn flush_maps(&self) {
        for f in self.files.iter().flatten() {
            if let Err(e) = f.flush_map() {
                log::warn!("store: cannot write a block map: {e}");
            }
        }
    }

    /// Write every file's pending map entries and make the files durable,
    /// data before map (see `StoredFile::sync_map`).
    pub fn sync_maps(&self) {
        for f in self.files.iter().flatten() {
            if let Err(e) = f.sync_map() {
                log::warn!("store: cannot sync a block map: {e}");
            }
        }
    }

    /// A block the host sent could not be used (bad CRC): ask for it
    /// again, whether or not a reader waits for it yet.
    pub fn redemand(&self, id: FileId, index: u64) {
        self.send(&Message::Demand {
            file: id,
            first: index,
            count: 1,
        });
    }

    /// Fail every read waiting for this block (the store cannot hold it).
    pub fn fail_waiters(&self, id: FileId, index: u64, errno: Errno) {
        let failed: Vec<Parked> = {
            let mut p = self.pending();
            let ids = p.waiters.remove(&(id.0, index)).unwrap_or_default();
            let mut failed = Vec::new();
            for rid in ids {
                if let Some(r) = p.reads.remove(&rid) {
                    p.deadlines.remove(&(r.deadline, rid));
                    forget_waits(&mut p.waiters, &r, rid);
                    failed.push(r);
                }
            }
            failed
        };
        for r in failed {
            self.ended(&r, Outcome::Failed);
            r.reply.error(errno);
        }
    }

    /// Demand every block still missing (after the host's stream ended),
    /// except those already checked and on their way to the store.
    pub fn demand_all_missing(&self) {
        for (i, f) in self.files.iter().enumerate() {
            let Some(f) = f else { continue };
            let id = i as u32;
            // Both under the pending lock: the writer sets a block's bit
            // before it takes this lock to drop it from `landing`, so no
            // block is seen as neither present nor arriving.
            let (missing, arriving) = {
                let p = self.pending();
                let arriving: HashSet<u64> = p
                    .landing
                    .iter()
                    .filter(|(file, _)| *file == id)
                    .map(|&(_, b)| b)
                    .collect();
                (f.missing_ranges(), arriving)
            };
            for (first, count) in missing {
                let wanted: Vec<u64> = (first..first + count)
                    .filter(|b| !arriving.contains(b))
                    .collect();
                for (first, count) in runs(&wanted) {
                    let mut first = first;
                    let mut left = count;
                    while left > 0 {
                        let n = left.min(u64::from(u32::MAX));
                        self.send(&Message::Demand {
                            file: FileId(id),
                            first,
                            count: n as u32,
                        });
                        first += n;
                        left -= n;
                    }
                }
            }
        }
    }

    /// A new link starts: its host has not been told yet that every block
    /// is present, whatever an earlier link was told.
    pub fn start_link(&self) {
        self.complete_sent.store(false, Ordering::SeqCst);
    }

    /// Tell the host, once per link, that every block is present.
    pub fn maybe_complete(&self) {
        let present = self.present_blocks();
        if present == self.total_blocks && !self.complete_sent.swap(true, Ordering::SeqCst) {
            log::info!("all {present} blocks present");
            self.flush_maps();
            self.send(&Message::Complete { blocks: present });
        }
    }

    /// Run until `stop` is set: fail parked reads whose deadline has passed,
    /// and write the block maps' pending entries at least every second.
    pub fn reap(&self, stop: &AtomicBool) {
        let mut last_flush = Instant::now();
        let mut p = self.pending();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now.duration_since(last_flush) >= MAP_FLUSH_INTERVAL {
                drop(p);
                self.sync_maps();
                last_flush = now;
                p = self.pending();
            }
            let mut expired = Vec::new();
            while let Some(&(d, rid)) = p.deadlines.first() {
                if d > now {
                    break;
                }
                p.deadlines.pop_first();
                if let Some(r) = p.reads.remove(&rid) {
                    forget_waits(&mut p.waiters, &r, rid);
                    if let Some(f) = self.file(FileId(r.file)) {
                        for b in r.first..=r.last {
                            if !f.is_present(b).unwrap_or(true) && !p.landing.contains(&(r.file, b))
                            {
                                p.expired.insert((r.file, b));
                            }
                        }
                    }
                    expired.push(r);
                }
            }
            if !expired.is_empty() {
                drop(p);
                for r in expired {
                    log::warn!(
                        "read of {} at {} not served within {:?}: EIO",
                        self.path_of(FileId(r.file)),
                        r.offset,
                        self.read_timeout
                    );
                    self.ended(&r, Outcome::TimedOut);
                    r.reply.error(Errno::EIO);
                }
                p = self.pending();
                continue;
            }
            let wait = p
                .deadlines
                .first()
                .map_or(Duration::from_millis(500), |&(d, _)| {
                    d.saturating_duration_since(now)
                })
                .min(Duration::from_millis(500));
            p = self
                .wake_reaper
                .wait_timeout(p, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wake the reaper (used to stop it).
    pub fn wake(&self) {
        self.wake_reaper.notify_all();
    }

    /// The path of a file of the manifest, for messages.
    pub fn path_of(&self, id: FileId) -> &str {
        self.manifest.get(id).map_or("?", |e| e.path.as_str())
    }
}

/// Remove a read from the waiter lists of its blocks.
fn forget_waits(waiters: &mut HashMap<(u32, u64), Vec<u64>>, r: &Parked, rid: u64) {
    for b in r.first..=r.last {
        if let Some(w) = waiters.get_mut(&(r.file, b)) {
            w.retain(|&x| x != rid);
            if w.is_empty() {
                waiters.remove(&(r.file, b));
            }
        }
    }
}

fn serve(file: &StoredFile, offset: u64, size: u32, reply: ReplyData) {
    match file.read_at(offset, size as usize) {
        Ok(buf) => reply.data(&buf),
        Err(e) => {
            log::error!("store read at {offset} failed: {e}");
            reply.error(Errno::EIO);
        }
    }
}

/// Sorted block indexes as runs of (first, count).
pub fn runs(blocks: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &b in blocks {
        match out.last_mut() {
            Some((f, c)) if *f + *c == b => *c += 1,
            _ => out.push((b, 1)),
        }
    }
    out
}

/// Shared handle used by the FUSE adapter, the link thread and the reaper.
pub type SharedCore = Arc<Core>;

#[cfg(test)]
mod tests {
    #[test]
    fn runs_coalesce() {
        assert_eq!(
            super::runs(&[1, 2, 3, 7, 9, 10]),
            vec![(1, 3), (7, 1), (9, 2)]
        );
        assert!(super::runs(&[]).is_empty());
    }
}
