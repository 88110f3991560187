//! One link to a host, from its first Hello to its end: the thin loop that
//! feeds the link's frames to the protocol [`session`] and carries out what
//! it answers.
//!
//! A link is a byte stream each way: this process's stdin/stdout, a pipe
//! handed over by `feedfs-device attach`, or a pair of USB bulk endpoints.
//! It may carry several host sessions one after another: a host says
//! Hello, sends its manifest, gets the Have report and then runs of pages, until
//! it says Goodbye or a new Hello starts the next session (a host that was
//! killed and started again on a USB cable that stayed plugged in). What
//! each frame means is the [`session::Session`]'s to decide; this loop reads
//! frames, writes through the [`outbox`], and calls the [`Core`].
//!
//! The first manifest creates the [`Core`] and has the main thread mount
//! it; every later session must bring the same manifest. When a link ends,
//! parked reads keep waiting, within their deadline, for the next link.

pub mod error;
pub mod gadget;
pub mod outbox;
pub mod session;
pub mod store_writer;
pub mod usb;

use std::fs::File;
use std::io::Read;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use feedfs_protocol::io::{FrameReader, ReadError};
use feedfs_protocol::{FileId, Manifest, Message, PageRange};
use nix::fcntl::{fcntl, FcntlArg};

use crate::cmd::status::human_bytes;
use crate::link::error::LinkError;
use crate::link::outbox::{write_frames, LinkOut, Outbox};
use crate::link::session::{Action, Input, Pages, Session};
use crate::link::store_writer::StoreWriter;
use crate::serve::core::{CheckedRun, Core, LandError, SharedCore};
use crate::store::{free_space, Store};

/// One opening of a byte link to a host.
pub struct LinkIo {
    pub input: Box<dyn Read + Send>,
    pub output: File,
    /// A USB endpoint's max packet size: a write of a multiple of it is
    /// followed by a zero-length packet. `None` for pipes.
    pub zlp_packet: Option<usize>,
    /// What the link is, for logs.
    pub name: String,
}

/// Bytes a link pipe may hold: more than the default 64 KiB so the stream
/// rarely waits on a full pipe (it ran at 0.6 of a raw pipe copy's rate
/// with 64 KiB and matched it with 256 KiB), little enough that a demand
/// waits behind at most this much stream data (about 0.3 ms at 1 GB/s).
const PIPE_BUFFER: i32 = 256 * 1024;

/// Ask for a pipe of `PIPE_BUFFER` bytes; anything but a pipe stays as it is.
pub fn grow_pipe(fd: &File) {
    if let Err(e) = fcntl(fd, FcntlArg::F_SETPIPE_SZ(PIPE_BUFFER)) {
        log::debug!("link pipe size unchanged: {e}");
    }
}

/// How a link tells the daemon's main thread that the manifest arrived and
/// the store is open (so it mounts): `false` when the daemon is stopping.
pub type OnManifest = Box<dyn Fn(SharedCore) -> bool + Send + Sync>;

/// What every link of one daemon shares.
pub struct Daemon {
    pub store: Store,
    pub read_timeout: Duration,
    on_manifest: OnManifest,
    /// The main thread's answer to the first manifest: mounted or not.
    mounted: Mutex<Option<Receiver<bool>>>,
    core: Mutex<Option<SharedCore>>,
}

impl Daemon {
    pub fn new(
        store: Store,
        read_timeout: Duration,
        on_manifest: OnManifest,
        mounted: Receiver<bool>,
        mounted_core: Option<SharedCore>,
    ) -> Daemon {
        Daemon {
            store,
            read_timeout,
            on_manifest,
            mounted: Mutex::new(Some(mounted)),
            core: Mutex::new(mounted_core),
        }
    }

    /// The mounted files' core, once the first manifest arrived.
    pub fn core(&self) -> Option<SharedCore> {
        self.core.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Serve one link until it ends. `Ok` when it ended cleanly.
pub fn serve(daemon: &Daemon, link: LinkIo) -> Result<(), LinkError> {
    log::info!("link up: {}", link.name);
    let output = LinkOut::new(link.output);
    let (queue, frames) = mpsc::channel::<Vec<u8>>();
    let outbox = Outbox::new(queue, &output);
    let zlp = link.zlp_packet;
    let writer = thread::Builder::new()
        .name("link-writer".into())
        .spawn(move || write_frames(output, frames, zlp))
        .map_err(|error| LinkError::Thread {
            name: "link-writer",
            error,
        })?;
    let mut reader = FrameReader::new(link.input);
    let result = run(daemon, &mut reader, &outbox);
    if let Some(core) = daemon.core() {
        core.link_lost();
    }
    // Whatever is queued (an Error saying why) still goes out.
    drop(outbox);
    let _ = writer.join();
    result
}

/// The link's loop: each frame (or frame error, or the end) goes to the
/// session, the run it passes goes to the Core, and its actions are
/// carried out in order, until it says the link is over.
fn run<R: Read>(
    daemon: &Daemon,
    reader: &mut FrameReader<R>,
    outbox: &Outbox,
) -> Result<(), LinkError> {
    let mut session = Session::new(format!("feedfs-device {}", env!("CARGO_PKG_VERSION")));
    let mut core: Option<SharedCore> = None;
    let mut writer: Option<StoreWriter> = None;
    loop {
        let input = match reader.next_frame() {
            Ok(Some(frame)) => match Message::parse(frame) {
                Ok(msg) => Input::Message(msg),
                Err(e) => Input::Unparsable(e),
            },
            Ok(None) => Input::Closed,
            Err(ReadError::Frame(e)) => Input::Damaged(e),
            Err(ReadError::Io(e)) => Input::ReadFailed(e),
        };
        let pages: &dyn Pages = match &core {
            Some(c) => c.as_ref(),
            None => &NoFiles,
        };
        let landed = session
            .handle(Instant::now(), input, pages)
            .map(|run| land(core.as_deref(), writer.as_ref(), &run));
        match landed {
            Some(Err(Unlanded::Refused(e))) => session.refused(e),
            Some(Err(Unlanded::WriterGone)) => session.fail(LinkError::WriterStopped),
            Some(Ok(())) | None => {}
        }
        while let Some(action) = session.next_action() {
            match action {
                Action::Send(msg) => {
                    outbox.send(msg.to_frame());
                }
                Action::Attach(manifest) => match attach_core(daemon, manifest, outbox) {
                    Ok(c) => {
                        session.attached(have_report(&c), c.present_pages());
                        core = Some(c);
                    }
                    Err(e) => session.fail(e),
                },
                Action::StartPages => {
                    if let Some(c) = &core {
                        c.start_link();
                        c.maybe_complete();
                        match StoreWriter::start(c) {
                            Ok(w) => writer = Some(w),
                            Err(e) => session.fail(e),
                        }
                    }
                }
                Action::Redemand { file, first, count } => {
                    if let Some(c) = &core {
                        c.redemand(file, first, count);
                    }
                }
                Action::DemandMissing => {
                    if let Some(c) = &core {
                        c.demand_all_missing();
                    }
                }
                // Pages already checked are still stored.
                Action::StopPages => {
                    if let Some(w) = writer.take() {
                        w.stop();
                    }
                }
                Action::End(result) => {
                    if let Some(w) = writer.take() {
                        w.stop();
                    }
                    return result;
                }
            }
        }
    }
}

/// Why a checked run did not reach the store writer.
enum Unlanded {
    /// The Core refused it.
    Refused(LandError),
    /// The store writer is gone.
    WriterGone,
}

/// Hand a checked run to the Core (which answers the reads it completes
/// from memory) and its pages on to the store writer.
fn land(
    core: Option<&Core>,
    writer: Option<&StoreWriter>,
    run: &CheckedRun,
) -> Result<(), Unlanded> {
    let (Some(core), Some(writer)) = (core, writer) else {
        return Err(Unlanded::WriterGone);
    };
    for landing in core.accept(run).map_err(Unlanded::Refused)? {
        if !writer.queue(landing) {
            return Err(Unlanded::WriterGone);
        }
    }
    Ok(())
}

/// The Core answers what the session asks about the files.
impl Pages for Core {
    fn present_pages(&self) -> u64 {
        Core::present_pages(self)
    }

    fn run_len(&self, file: FileId, first: u64, count: u64) -> Result<usize, LandError> {
        Core::run_len(self, file, first, count)
    }
}

/// No manifest attached yet: no page is one of it.
struct NoFiles;

impl Pages for NoFiles {
    fn present_pages(&self) -> u64 {
        0
    }

    fn run_len(&self, file: FileId, _first: u64, _count: u64) -> Result<usize, LandError> {
        Err(LandError::NoSuchFile(file))
    }
}

/// The pages the store holds, per file that holds any.
fn have_report(core: &Core) -> Vec<(FileId, Vec<PageRange>)> {
    (0..core.manifest().host_entries())
        .filter_map(|i| {
            let ranges: Vec<PageRange> = core
                .file(FileId(i))?
                .present_ranges()
                .into_iter()
                .map(|(first, count)| PageRange { first, count })
                .collect();
            (!ranges.is_empty()).then_some((FileId(i), ranges))
        })
        .collect()
}

/// Put this session's link on the core: the first manifest creates the core
/// and has it mounted; a later one must match it.
fn attach_core(
    daemon: &Daemon,
    manifest: Manifest,
    outbox: &Outbox,
) -> Result<SharedCore, LinkError> {
    if let Some(core) = daemon.core() {
        let same = core.manifest().entries() == manifest.entries()
            && core.manifest().total_bytes() == manifest.total_bytes();
        if !same {
            return Err(LinkError::OtherManifest);
        }
        core.link_up(outbox.clone());
        return Ok(core);
    }
    // The old manifest's store files go only once the new one is on disk.
    match daemon.store.save_manifest(&manifest) {
        Err(e) => log::warn!("{e:#}; a restart without a link will not find these files"),
        Ok(()) => match daemon.store.prune(&manifest) {
            Ok((0, _)) => {}
            Ok((files, bytes)) => log::info!(
                "store: removed {files} files no longer served, {} freed",
                human_bytes(bytes)
            ),
            Err(e) => log::warn!("{e:#}; files no longer served stay in the store"),
        },
    }
    let core: SharedCore = Arc::new(
        Core::new(manifest, &daemon.store, daemon.read_timeout).map_err(LinkError::StoreOpen)?,
    );
    warn_if_short_of_space(daemon.store.dir(), &core);
    core.link_up(outbox.clone());
    if !(daemon.on_manifest)(core.clone()) {
        return Err(LinkError::DaemonStopping);
    }
    let mounted = daemon
        .mounted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .ok_or(LinkError::MountedTwice)?;
    if !mounted.recv().unwrap_or(false) {
        core.link_lost();
        return Err(LinkError::MountFailed);
    }
    *daemon.core.lock().unwrap_or_else(|p| p.into_inner()) = Some(core.clone());
    Ok(core)
}

/// Say at once when the store's filesystem cannot hold the pages still
/// missing, rather than when it fills up. The protocol has no warning
/// message, and an Error would end a push that may still succeed (other
/// writers may free space): the log line is all the host sees, on the
/// device's stderr.
fn warn_if_short_of_space(dir: &std::path::Path, core: &Core) {
    let missing = core.missing_bytes();
    match free_space(dir) {
        Ok(free) if free < missing => log::warn!(
            "the store {} has {} free, but the pages still missing take up to {}: \
             storing them will fail with NoSpace; free space there or use a --store \
             on a larger filesystem",
            dir.display(),
            human_bytes(free),
            human_bytes(missing)
        ),
        Ok(_) => {}
        Err(e) => log::debug!("free space of {}: {e}", dir.display()),
    }
}

#[cfg(test)]
mod tests;
