//! The device's shared state, as wiring: the stored files, the table of
//! parked reads ([`Pending`]) with the link's outbox beside it, the reaper
//! and the request log. The decisions are the table's; this module reads
//! the store, sends what the table says to send and answers what it hands
//! back.
//!
//! A FUSE read of missing pages is parked with its fuser reply and a
//! deadline; it waits only for the pages it needs, and demands those nobody
//! demanded yet, one Demand per run. A run of pages from the host lands in
//! two steps (module `land`): the link thread has checked each page against
//! its CRC, and [`Core::accept`] answers at once, from the checked bytes,
//! every parked read that lies wholly within the run's good pages; a store
//! writer then writes it ([`Core::store`]), sets its bits and answers the
//! reads that needed more than that run. So a demanded page never waits
//! behind a slow disk write. The reaper thread fails parked reads whose
//! deadline passed with EIO, so no reader waits forever, and a read of a
//! page that already timed out fails at once until the page lands or a new
//! link comes up. When the link is lost, parked reads keep waiting, within
//! their deadline, and a new link is asked at once for every page they
//! need.
//!
//! Lock order: a file's map lock is never held while taking the pending
//! lock. A read re-checks presence under the pending lock, and a landing
//! sets the pages' bits before taking it, which closes the race between
//! "missing" and "arrived". Nothing is written to the link, and no read is
//! answered, while the pending lock is held: frames and replies are
//! collected under it and sent after.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use feedfs_protocol::reqlog::Outcome;
use feedfs_protocol::{FileId, Manifest, Message};
use fuser::{Errno, ReplyData};

use crate::link::outbox::Outbox;
use crate::serve::demand::Demand;
use crate::serve::pending::{Park, Pending, ReadAt, Reply, Taken};
use crate::store::reqlog::{RequestLog, Waited};
use crate::store::{Opened, Store, StoredFile};

mod land;
mod maps;
#[cfg(test)]
mod tests;
mod write;

pub use land::{CheckedRun, LandError, Landing};
pub use write::{Waiter, WriteReply};

/// A FUSE read is answered through fuser.
impl Reply for ReplyData {
    fn data(self, bytes: &[u8]) {
        ReplyData::data(self, bytes)
    }
    fn error(self, errno: Errno) {
        ReplyData::error(self, errno)
    }
}

/// Why the device's state could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A file of the manifest cannot be opened in the store (the store's
    /// message names its store file and says why).
    #[error("{cause:#}")]
    OpenFile { path: String, cause: anyhow::Error },
}

/// What the pending lock guards: the table and where its demands go.
struct Shared<R> {
    table: Pending<R>,
    outbox: Option<Outbox>,
}

/// The device's shared state, generic over how a read is answered:
/// `Core` answers FUSE reads; tests hold a fake reply.
pub struct Core<R = ReplyData> {
    manifest: Manifest,
    /// Stored copy of each host id that is a file.
    files: Vec<Option<StoredFile>>,
    total_pages: u64,
    /// Shared with writes that wait (they count the pages they make present).
    present_pages: Arc<AtomicU64>,
    complete_sent: Arc<AtomicBool>,
    /// The reaper is to sync the store at its next look.
    sync_wanted: AtomicBool,
    pending: Mutex<Shared<Waiter<R>>>,
    wake_reaper: Condvar,
    log: RequestLog,
}

impl<R: Reply> Core<R> {
    /// Open every file of the manifest in the store.
    pub fn new(
        manifest: Manifest,
        store: &Store,
        read_timeout: Duration,
    ) -> Result<Core<R>, CoreError> {
        let mut files = Vec::with_capacity(manifest.host_entries() as usize);
        for i in 0..manifest.host_entries() {
            // Ids are dense: `files[i]` is host id `i`.
            let Some(e) = manifest.get(FileId(i)) else {
                files.push(None);
                continue;
            };
            files.push(match e.kind {
                feedfs_protocol::EntryKind::File => {
                    Some(store.open_file(e).map_err(|cause| CoreError::OpenFile {
                        path: e.path.clone(),
                        cause,
                    })?)
                }
                feedfs_protocol::EntryKind::Dir | feedfs_protocol::EntryKind::Symlink => None,
            });
        }
        log_opened(&files);
        let total_pages = files.iter().flatten().map(StoredFile::pages).sum();
        let present = files.iter().flatten().map(StoredFile::present_count).sum();
        let log = RequestLog::start(store.dir(), &manifest);
        Ok(Core {
            manifest,
            files,
            total_pages,
            present_pages: Arc::new(AtomicU64::new(present)),
            complete_sent: Arc::new(AtomicBool::new(false)),
            sync_wanted: AtomicBool::new(false),
            pending: Mutex::new(Shared {
                table: Pending::new(read_timeout),
                outbox: None,
            }),
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

    pub fn total_pages(&self) -> u64 {
        self.total_pages
    }

    pub fn present_pages(&self) -> u64 {
        self.present_pages.load(Ordering::Relaxed)
    }

    /// Bytes of the served files not in the store yet.
    pub fn missing_bytes(&self) -> u64 {
        self.files
            .iter()
            .flatten()
            .map(StoredFile::missing_bytes)
            .sum()
    }

    fn pending(&self) -> MutexGuard<'_, Shared<Waiter<R>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attach a link: frames sent from now on go to `outbox`, and every
    /// page a parked read still waits for is demanded over it (reads that
    /// parked while no link was up, or whose demand went to a link that was
    /// lost).
    pub fn link_up(&self, outbox: Outbox) {
        let wanted = {
            let mut p = self.pending();
            p.outbox = Some(outbox.clone());
            p.table.link_up()
        };
        if !wanted.is_empty() {
            let pages: u64 = wanted.iter().map(|d| u64::from(d.count)).sum();
            log::info!("link up: asking for {pages} pages readers wait for");
        }
        send_demands(Some(&outbox), &wanted);
        self.log.link(true);
    }

    /// Mounted with no link (`--offline`): reads of missing pages fail at
    /// once until a link is attached.
    pub fn offline(&self) {
        self.pending().table.set_offline();
    }

    /// The link was lost: nothing more is sent, but parked reads keep
    /// waiting, until their deadline, for a new link to bring their pages;
    /// new reads of missing pages park the same way.
    pub fn link_lost(&self) {
        self.pending().outbox = None;
        self.log.link(false);
        self.want_sync();
    }

    /// The daemon is stopping: every parked read fails with EIO now, and so
    /// does every later read of a missing page.
    pub fn shut_down(&self) {
        let failed = {
            let mut p = self.pending();
            p.outbox = None;
            p.table.shut_down()
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

    /// The link's outbox, if a link is up (taken under the pending lock,
    /// used after it).
    fn outbox(&self) -> Option<Outbox> {
        self.pending().outbox.clone()
    }

    /// Send one message to the host, if a link is up.
    pub fn send(&self, msg: &Message) -> bool {
        self.outbox().is_some_and(|o| o.send(msg.to_frame()))
    }

    /// Serve a FUSE read, or park it until the pages it needs land.
    pub fn read(&self, id: FileId, offset: u64, size: u32, reply: R) {
        self.read_by(id, offset, size, 0, reply)
    }

    /// [`Core::read`] for process `pid` (0 if unknown), as the request log names it.
    pub fn read_by(&self, id: FileId, offset: u64, size: u32, pid: u32, reply: R) {
        let Some(file) = self.file(id) else {
            reply.error(Errno::EISDIR);
            return;
        };
        if self.held(id).is_some() {
            reply.error(Errno::EIO);
            return;
        }
        let Some(read) = ReadAt::new(id, offset, size, pid, file.size()) else {
            reply.data(&[]);
            return;
        };
        let scan = match file.check_pages(read.first, read.count()) {
            Ok(scan) => scan,
            Err(e) => {
                log::error!("store read of {} failed: {e}", self.path_of(id));
                reply.error(Errno::EIO);
                return;
            }
        };
        self.lost(scan.dropped);
        if scan.missing == 0 {
            self.log_served(file, &read);
            return serve(file, &read, reply);
        }
        self.park(file, read, Waiter::Read(reply));
    }

    /// Why file `id` is not served (the store holds writes to another
    /// version of it), if it is not.
    pub fn held(&self, id: FileId) -> Option<&str> {
        self.file(id)?.held()
    }

    /// Pages that were present have been dropped (they failed their
    /// check): they count as missing, and the host must be told Complete
    /// again once they are back.
    fn lost(&self, dropped: u64) {
        if dropped > 0 {
            self.present_pages.fetch_sub(dropped, Ordering::Relaxed);
            self.complete_sent.store(false, Ordering::SeqCst);
        }
    }

    fn park(&self, file: &StoredFile, read: ReadAt, reply: Waiter<R>) {
        let (parked, outbox) = {
            let mut p = self.pending();
            // Presence is re-checked under the pending lock: a page may have landed since.
            let parked = p.table.park(read, reply, Instant::now(), |_, page| {
                file.is_present(page).unwrap_or(false)
            });
            let outbox = match &parked {
                Park::Parked { demands, .. } if !demands.is_empty() => p.outbox.clone(),
                _ => None,
            };
            (parked, outbox)
        };
        match parked {
            Park::Ready(read, reply) => {
                self.log_served(file, &read);
                let span = reply.writes_pages();
                serve(file, &read, reply);
                if let Some(span) = span {
                    self.written(file, read.file, span);
                }
            }
            Park::NoLink(_, reply) => {
                log::debug!(
                    "read of missing data in {} with no link coming (offline or stopping): EIO",
                    self.path_of(read.file)
                );
                reply.error(Errno::EIO);
            }
            Park::Expired(read, reply) => {
                log::debug!(
                    "read of {} at {} needs a page a read already timed out on: EIO",
                    self.path_of(read.file),
                    read.offset
                );
                reply.error(Errno::EIO);
            }
            Park::Parked { demands, earliest } => {
                self.log.waiting(read.file, read.first, read.last);
                send_demands(outbox.as_ref(), &demands);
                if earliest {
                    self.wake_reaper.notify_one();
                }
            }
        }
    }

    fn log_served(&self, file: &StoredFile, read: &ReadAt) {
        self.log
            .served(read.file, read.first, read.last, read.bytes(file.size()));
    }

    /// Record a parked read that has ended.
    fn ended(&self, r: &Taken<Waiter<R>>, outcome: Outcome) {
        self.log.waited(Waited {
            file: r.read.file,
            first: r.read.first,
            last: r.read.last,
            since: r.since,
            pid: r.read.pid,
            outcome,
            demanded: r.demanded,
        });
    }

    /// Write the request log out and stop its writer (at unmount).
    pub fn close_log(&self) {
        self.log.close();
    }

    /// Pages the host sent could not be used (bad CRC): ask for them
    /// again, whether or not a reader waits for them yet.
    pub fn redemand(&self, id: FileId, first: u64, count: u32) {
        let again = Demand {
            file: id,
            first,
            count,
            again: true,
        };
        send_demands(self.outbox().as_ref(), &[again]);
    }

    /// Demand every page still missing (after the host's stream ended),
    /// except those already checked and on their way to the store. Frames
    /// arrive in order, so what is missing at the stream's end was lost on
    /// the way: asked for `again`.
    pub fn demand_all_missing(&self) {
        // All under the pending lock: the writer sets a page's bit before
        // it takes this lock to drop it from those on their way, so no page
        // is seen as neither present nor arriving. One pass over the pages
        // on their way serves every file (a pass per file made a push of
        // 100 000 small files take minutes at its end).
        let (demands, outbox) = {
            let p = self.pending();
            let missing = self.files.iter().enumerate().filter_map(|(i, f)| {
                let ranges = f.as_ref()?.missing_ranges();
                (!ranges.is_empty()).then_some((FileId(i as u32), ranges))
            });
            let demands = crate::serve::demand::again(p.table.missing_demands(missing));
            (demands, p.outbox.clone())
        };
        send_demands(outbox.as_ref(), &demands);
    }

    /// A new link starts: its host has not been told yet that every page
    /// is present, whatever an earlier link was told.
    pub fn start_link(&self) {
        self.complete_sent.store(false, Ordering::SeqCst);
    }

    /// Tell the host, once per link, that every page is present.
    pub fn maybe_complete(&self) {
        let present = self.present_pages();
        if present == self.total_pages && !self.complete_sent.swap(true, Ordering::SeqCst) {
            log::info!("all {present} pages present");
            self.flush_maps();
            self.send(&Message::Complete { pages: present });
            self.want_sync();
        }
    }

    /// The path of a file of the manifest, for messages.
    pub fn path_of(&self, id: FileId) -> &str {
        self.manifest.get(id).map_or("?", |e| e.path.as_str())
    }
}

/// Send demands over `outbox`, if a link is up (never under the pending lock).
pub(super) fn send_demands(outbox: Option<&Outbox>, demands: &[Demand]) {
    if let Some(outbox) = outbox {
        for d in demands {
            outbox.send(d.frame());
        }
    }
}

/// Say at info how opening found the store: files started afresh (a
/// line each at debug) and files converted from store format 1.
fn log_opened(files: &[Option<StoredFile>]) {
    let (mut afresh, mut converted, mut dropped) = (0, 0, 0);
    for f in files.iter().flatten() {
        match f.opened() {
            Opened::Kept => {}
            Opened::Afresh => afresh += 1,
            Opened::Converted { dropped: d } => {
                converted += 1;
                dropped += d;
            }
        }
    }
    if afresh > 0 {
        log::info!("store: {afresh} files new or changed, started afresh (-v lists them)");
    }
    if converted > 0 {
        log::info!(
            "store: converted {converted} files of store format 1, {dropped} blocks dropped"
        );
    }
}

/// Answer a read from the store (EIO if it needs a torn page).
fn serve(file: &StoredFile, read: &ReadAt, reply: impl Reply) {
    if file.torn_in(read.first, read.last) {
        log::error!("read at {} needs a torn page: EIO", read.offset);
        return reply.error(Errno::EIO);
    }
    thread_local! {
        /// Each thread that answers reads from the store reads into its own
        /// buffer, kept from read to read.
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with_borrow_mut(
        |buf| match file.read_into(read.offset, read.size as usize, buf) {
            Ok(bytes) => reply.data(bytes),
            Err(e) => {
                log::error!("store read at {} failed: {e}", read.offset);
                reply.error(Errno::EIO);
            }
        },
    )
}

/// Shared handle used by the FUSE adapter, the link thread and the reaper.
pub type SharedCore = Arc<Core>;
