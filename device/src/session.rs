//! The daemon's life: handshake and manifest on the link thread, mount and
//! signals on the main thread, then frames from the host until the link ends.
//!
//! The link is the process's own stdin/stdout; nothing else writes to
//! stdout. The mount outlives the link: when the link ends, blocks already
//! present keep being served and reads of missing ones fail with EIO. The
//! daemon unmounts and exits on SIGINT or SIGTERM, or when someone else
//! unmounts it.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use feedfs_protocol::io::{FrameReader, ReadError};
use feedfs_protocol::message::{decode_block, Encoding, MAX_RANGES_PER_HAVE};
use feedfs_protocol::{
    block_len, BlockRange, ErrorCode, FileId, ManifestBuilder, Message, Recovery, Role, VERSION,
};
use fuser::{Config, MountOption, SessionACL};

use crate::core::{Core, LandError, Landing, SharedCore};
use crate::fs::FeedFs;
use crate::outbox::{write_frames, LinkOut, Outbox};
use crate::store::Store;
use crate::Event;

/// Where the daemon's files come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// A host on this process's stdin/stdout.
    Stdio,
    /// No link: mount the manifest the store holds and serve the blocks present.
    Offline,
}

/// How `feedfs-device mount` was asked to run.
pub struct MountOptions {
    pub mountpoint: PathBuf,
    pub store: PathBuf,
    pub read_timeout: Duration,
    pub allow_other: bool,
    pub link: Link,
    /// The kernel's readahead on the mount, in KiB (see [`READ_AHEAD_KB`]).
    pub kernel_readahead_kb: u32,
}

/// Mount and run until a signal or an unmount.
pub fn run(opts: MountOptions) -> anyhow::Result<()> {
    if !opts.mountpoint.is_dir() {
        bail!(
            "mount point {} is not a directory",
            opts.mountpoint.display()
        );
    }
    let store = Store::open(&opts.store)?;
    let (events_tx, events) = mpsc::channel::<Event>();
    watch_signals(events_tx.clone())?;
    let (mounted_tx, mounted_rx) = mpsc::channel::<bool>();
    let writer = match opts.link {
        Link::Offline => {
            let core = Core::new(store.load_manifest()?, &store, opts.read_timeout)?;
            log::info!(
                "offline: {} of {} blocks present",
                core.present_blocks(),
                core.total_blocks()
            );
            let _ = events_tx.send(Event::Manifest(Arc::new(core)));
            None
        }
        Link::Stdio => Some(start_stdio(
            store,
            opts.read_timeout,
            &events_tx,
            mounted_rx,
        )?),
    };
    let mut link_ended = false;
    let result = main_loop(&opts, events, events_tx, mounted_tx, &mut link_ended);
    if let (Err(_), true, Some(writer)) = (&result, link_ended, writer) {
        // The session failed and its link thread has ended (so every sender
        // of frames is gone): let the host read why before this process goes.
        let _ = writer.join();
    }
    result
}

fn start_stdio(
    store: Store,
    read_timeout: Duration,
    events_tx: &Sender<Event>,
    mounted_rx: Receiver<bool>,
) -> anyhow::Result<thread::JoinHandle<()>> {
    let input = File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let output = File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    grow_pipe(&input);
    grow_pipe(&output);

    let output: LinkOut = Arc::new(Mutex::new(output));
    let (queue, frames) = mpsc::channel::<Vec<u8>>();
    let outbox = Outbox::new(queue, &output);
    let writer = thread::Builder::new()
        .name("link-writer".into())
        .spawn(move || write_frames(output, frames))?;
    let link_events = events_tx.clone();
    thread::Builder::new()
        .name("link-reader".into())
        .spawn(move || {
            let result = link_thread(
                input,
                outbox,
                &store,
                read_timeout,
                &link_events,
                mounted_rx,
            );
            let _ = link_events.send(Event::LinkEnded(result.map_err(|e| format!("{e:#}"))));
        })?;
    Ok(writer)
}

fn watch_signals(tx: Sender<Event>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for s in signals.forever() {
                if tx.send(Event::Signal(s)).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

fn main_loop(
    opts: &MountOptions,
    events: Receiver<Event>,
    events_tx: Sender<Event>,
    mounted_tx: Sender<bool>,
    link_ended: &mut bool,
) -> anyhow::Result<()> {
    let mut session = None;
    let stop_reaper = Arc::new(AtomicBool::new(false));
    let mut core_for_reaper: Option<SharedCore> = None;
    let result = loop {
        match events.recv() {
            Ok(Event::Manifest(core)) => {
                let fs = FeedFs::new(core.clone(), events_tx.clone());
                match fuser::spawn_mount(fs, &opts.mountpoint, &mount_config(opts.allow_other)) {
                    Ok(s) => {
                        log::info!(
                            "mounted {} entries ({} bytes) at {}",
                            core.manifest().host_entries(),
                            core.manifest().total_bytes(),
                            opts.mountpoint.display()
                        );
                        session = Some(s);
                        raise_readahead(&opts.mountpoint, opts.kernel_readahead_kb);
                        let stop = stop_reaper.clone();
                        let reaper_core = core.clone();
                        thread::Builder::new()
                            .name("reaper".into())
                            .spawn(move || reaper_core.reap(&stop))?;
                        core_for_reaper = Some(core);
                        let _ = mounted_tx.send(true);
                    }
                    Err(e) => {
                        let _ = mounted_tx.send(false);
                        // The link thread tells the host and ends; wait for it.
                        while let Ok(ev) = events.recv_timeout(Duration::from_secs(2)) {
                            if matches!(ev, Event::LinkEnded(_)) {
                                *link_ended = true;
                                break;
                            }
                        }
                        break Err(anyhow!(e).context(format!(
                            "cannot mount FUSE at {} (is /dev/fuse there and usable by this user?)",
                            opts.mountpoint.display()
                        )));
                    }
                }
            }
            Ok(Event::LinkEnded(Ok(()))) => {
                log::info!("link ended; still serving the blocks present")
            }
            Ok(Event::LinkEnded(Err(e))) if session.is_none() => {
                *link_ended = true;
                break Err(anyhow!(e));
            }
            Ok(Event::LinkEnded(Err(e))) => {
                log::warn!("link failed: {e}; still serving the blocks present")
            }
            Ok(Event::Signal(s)) => {
                log::info!("signal {s}: unmounting");
                break Ok(());
            }
            Ok(Event::Unmounted) => {
                log::info!("unmounted");
                break Ok(());
            }
            Err(_) => break Ok(()),
        }
    };
    // Readers first: every parked read fails now and no new one waits, so
    // nothing blocks the unmount.
    if let Some(core) = &core_for_reaper {
        core.link_down();
    }
    if let Some(s) = session {
        if let Err(e) = s.umount_and_join() {
            log::warn!("unmount: {e}; files are still open on it, detaching it lazily");
            detach_lazily(&opts.mountpoint)?;
        }
    }
    stop_reaper.store(true, Ordering::Relaxed);
    if let Some(core) = core_for_reaper {
        core.wake();
        core.close_log();
    }
    result
}

/// Take a busy mount out of the tree; open files on it lose their daemon
/// when this process exits, and get ENOTCONN instead of waiting.
fn detach_lazily(mountpoint: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        let c = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())?;
        // SAFETY: a valid NUL-terminated path; umount2 touches no memory of ours.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot unmount {}", mountpoint.display()));
        }
        return Ok(());
    }
    let status = std::process::Command::new("fusermount3")
        .arg("-uz")
        .arg(mountpoint)
        .status()?;
    anyhow::ensure!(
        status.success(),
        "fusermount3 -uz {} failed",
        mountpoint.display()
    );
    Ok(())
}

/// Kernel readahead for the mount, in KiB, unless `--kernel-readahead`
/// says otherwise. The default 128 KiB makes a
/// sequential reader pay one FUSE round trip per 128 KiB; with 1 MiB a cold
/// sequential read of a 1 GiB file through the mount, link otherwise idle,
/// went from 780-846 MB/s to 1.0-1.1 GB/s. On a slow link it costs: every
/// byte read ahead and never used is a byte the link did not spend on data
/// a reader waits for (bench/prefetch: an app start at 40 MB/s took 1.9
/// times as long as its own bytes need with 1 MiB, 1.2 times with 128 KiB).
pub const READ_AHEAD_KB: u32 = 1024;

/// Set the readahead of the mount's backing device (needs root; skipped otherwise).
fn raise_readahead(mountpoint: &std::path::Path, kb: u32) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return;
    };
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    if let Err(e) = std::fs::write(&knob, kb.to_string()) {
        log::debug!("readahead left as it is ({knob}: {e})");
    }
}

fn mount_config(allow_other: bool) -> Config {
    let mut c = Config::default();
    c.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("feedfs".into()),
        MountOption::Subtype("feedfs".into()),
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::NoAtime,
        MountOption::DefaultPermissions,
    ];
    c.acl = if allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    c.n_threads = Some(2);
    c
}

/// Bytes a link pipe may hold: more than the default 64 KiB so the stream
/// rarely waits on a full pipe (it ran at 0.6 of a raw pipe copy's rate
/// with 64 KiB and matched it with 256 KiB), little enough that a demand
/// waits behind at most this much stream data (about 0.3 ms at 1 GB/s).
const PIPE_BUFFER: i32 = 256 * 1024;

/// Ask for a [`PIPE_BUFFER`]-byte pipe; anything but a pipe stays as it is.
fn grow_pipe(fd: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: F_SETPIPE_SZ on a descriptor we own; no memory is passed.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BUFFER) } < 0 {
        log::debug!(
            "link pipe size unchanged: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Send a message to the host directly (before the core exists).
fn send(outbox: &Outbox, msg: &Message) {
    outbox.send(msg.to_frame());
}

/// Send an error to the host and return it as ours too.
fn refuse(outbox: &Outbox, code: ErrorCode, text: String) -> anyhow::Error {
    send(outbox, &Message::Error { code, text: &text });
    anyhow!(text)
}

fn link_thread(
    input: File,
    outbox: Outbox,
    store: &Store,
    read_timeout: Duration,
    events: &Sender<Event>,
    mounted: Receiver<bool>,
) -> anyhow::Result<()> {
    let agent = format!("feedfs-device {}", env!("CARGO_PKG_VERSION"));
    send(
        &outbox,
        &Message::Hello {
            role: Role::Device,
            min_version: VERSION,
            max_version: VERSION,
            agent: &agent,
        },
    );
    let mut reader = FrameReader::new(input);

    // Handshake: the first frame must be the host's Hello.
    let hello = match reader.next_frame() {
        Ok(Some(f)) => Message::parse(f).map_err(|e| {
            refuse(
                &outbox,
                ErrorCode::Protocol,
                format!("bad first message from host: {e}"),
            )
        })?,
        Ok(None) => bail!("link closed before the host said hello"),
        Err(ReadError::Frame(e @ feedfs_protocol::FrameError::UnsupportedVersion { .. })) => {
            return Err(refuse(&outbox, ErrorCode::Version, e.to_string()))
        }
        Err(e @ ReadError::Frame(_)) => {
            return Err(refuse(
                &outbox,
                ErrorCode::Protocol,
                format!("bad first frame from host: {e}"),
            ))
        }
        Err(e) => bail!("link failed during handshake: {e}"),
    };
    match hello {
        Message::Hello { role: Role::Host, min_version, max_version, agent }
            if (min_version..=max_version).contains(&VERSION) =>
        {
            log::info!("host is {agent}");
        }
        Message::Hello { role: Role::Host, min_version, max_version, agent } => {
            return Err(refuse(
                &outbox,
                ErrorCode::Version,
                format!("host {agent} speaks protocol versions {min_version}..={max_version}, this device speaks {VERSION}"),
            ))
        }
        other => {
            return Err(refuse(&outbox, ErrorCode::Protocol, format!("expected the host's Hello, got {other:?}")))
        }
    }

    // Manifest.
    let mut builder = ManifestBuilder::new();
    let manifest = loop {
        let frame = match reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => bail!("link closed during the manifest"),
            Err(e @ ReadError::Frame(_)) => {
                return Err(refuse(
                    &outbox,
                    ErrorCode::Protocol,
                    format!("damaged frame in the manifest: {e}"),
                ))
            }
            Err(e) => bail!("link failed during the manifest: {e}"),
        };
        let msg = Message::parse(frame)
            .map_err(|e| refuse(&outbox, ErrorCode::Protocol, e.to_string()))?;
        match msg {
            Message::ManifestEnd {
                entries,
                total_bytes,
            } => {
                break builder
                    .finish(entries, total_bytes)
                    .map_err(|e| refuse(&outbox, ErrorCode::Manifest, e.to_string()))?;
            }
            Message::Error { code, text } => bail!("host reported an error ({code:?}): {text}"),
            msg => builder.push_message(&msg).map_err(|e| {
                refuse(
                    &outbox,
                    ErrorCode::Manifest,
                    format!("manifest refused: {e}"),
                )
            })?,
        }
    };
    if let Err(e) = store.save_manifest(&manifest) {
        log::warn!("{e:#}; a restart without a link will not find these files");
    }
    let core: SharedCore = Arc::new(Core::new(manifest, store, read_timeout).map_err(|e| {
        refuse(
            &outbox,
            ErrorCode::Store,
            format!("cannot open the store: {e:#}"),
        )
    })?);
    core.link_up(outbox.clone());
    drop(outbox);
    events
        .send(Event::Manifest(core.clone()))
        .map_err(|_| anyhow!("daemon is stopping"))?;
    if !mounted.recv().unwrap_or(false) {
        core.send(&Message::Error {
            code: ErrorCode::Internal,
            text: "the device could not mount the files",
        });
        core.link_down();
        bail!("mount failed");
    }

    send_have(&core);
    core.maybe_complete();
    let (landings, queued) = mpsc::sync_channel(write_queue_len(&core));
    let writer_core = core.clone();
    let writer = thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || store_writer(&writer_core, queued))?;
    let result = frame_loop(&mut reader, &core, &landings);
    // Blocks already checked are still stored; then the link is down.
    drop(landings);
    let _ = writer.join();
    core.flush_maps();
    core.link_down();
    result
}

/// Checked blocks that may wait for the store writer: about 8 MiB of them,
/// so a stall of the disk of several milliseconds does not stop the link
/// thread (which answers reads from checked blocks at once).
fn write_queue_len(core: &Core) -> usize {
    let largest = core
        .manifest()
        .files()
        .map(|e| e.block_size)
        .max()
        .unwrap_or(1);
    ((8 << 20) / largest.max(1) as usize).max(4)
}

/// The store writer: write each checked block, set its bit, answer the
/// reads it completes. A block that cannot be stored (full or failing
/// disk) fails the reads waiting for it and is reported to the host.
fn store_writer(core: &Core, queued: Receiver<Landing>) {
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
                let text = format!("device cannot store block {index} of {file}: {source}");
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

/// Tell the host which blocks are already here.
fn send_have(core: &Core) {
    let files = core.manifest().host_entries();
    for i in 0..files {
        let Some(f) = core.file(FileId(i)) else {
            continue;
        };
        let ranges: Vec<BlockRange> = f
            .present_ranges()
            .into_iter()
            .map(|(first, count)| BlockRange { first, count })
            .collect();
        for chunk in ranges.chunks(MAX_RANGES_PER_HAVE) {
            core.send(&Message::Have {
                file: FileId(i),
                ranges: chunk.to_vec(),
            });
        }
    }
    core.send(&Message::HaveEnd {
        files: core.manifest().files().count() as u32,
    });
    log::info!(
        "{} of {} blocks already present",
        core.present_blocks(),
        core.total_blocks()
    );
}

fn frame_loop(
    reader: &mut FrameReader<File>,
    core: &Core,
    landings: &SyncSender<Landing>,
) -> anyhow::Result<()> {
    let mut stream_dones = 0u32;
    // Where LZ4 blocks are decoded, reused from block to block.
    let mut plain = Vec::new();
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => {
                log::info!("host closed the link");
                return Ok(());
            }
            Err(ReadError::Frame(e)) => match e.recovery() {
                Recovery::Skip | Recovery::Resync => {
                    log::warn!("dropped a frame from the host: {e}");
                    continue;
                }
                Recovery::Reconnect | Recovery::Fatal => bail!("link from host failed: {e}"),
            },
            Err(ReadError::Io(e)) => bail!("link read failed: {e}"),
        };
        // A raw Block's data was hashed once, while its frame was checked.
        let data_crc = frame.data_crc();
        let msg = match Message::parse(frame) {
            Ok(m) => m,
            Err(e) => {
                log::warn!("dropped a message from the host: {e}");
                continue;
            }
        };
        match msg {
            Message::Block {
                file,
                index,
                crc,
                encoding,
                data,
            } => on_block(
                core, landings, file, index, crc, encoding, data, data_crc, &mut plain,
            )?,
            Message::StreamDone { blocks_sent } => {
                stream_dones += 1;
                log::info!("host stream done ({blocks_sent} blocks sent)");
                if core.present_blocks() < core.total_blocks() {
                    core.demand_all_missing();
                } else if stream_dones > 1 {
                    // Said again: our Complete may have been lost.
                    core.send(&Message::Complete {
                        blocks: core.present_blocks(),
                    });
                }
            }
            Message::Error { code, text } => bail!("host reported an error ({code:?}): {text}"),
            Message::Goodbye => {
                log::info!("host said goodbye");
                return Ok(());
            }
            other => log::warn!(
                "ignoring unexpected {:?} message from the host",
                other.message_type()
            ),
        }
    }
}

/// Check and store one Block. Raw data comes with its CRC from the frame
/// check; LZ4 data is decoded into `plain`, bounded by the block's length in
/// the manifest, and hashed. Data that does not decode, like data that fails
/// its CRC, is dropped and demanded again; an error is returned only when
/// the host must be stopped (a block that is not in the manifest or has the
/// wrong length).
#[allow(clippy::too_many_arguments)]
fn on_block(
    core: &Core,
    landings: &SyncSender<Landing>,
    file: FileId,
    index: u64,
    crc: u32,
    encoding: Encoding,
    data: &[u8],
    data_crc: Option<u32>,
    plain: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let landed = match encoding {
        Encoding::Raw => core.accept(
            file,
            index,
            crc,
            data,
            data_crc.unwrap_or_else(|| crc32fast::hash(data)),
        ),
        Encoding::Lz4 => {
            let expected = core
                .file(file)
                .filter(|f| index < f.blocks())
                .map(|f| block_len(f.size(), f.block_size(), index));
            match expected {
                // Not a block of the manifest: `accept` refuses it as such,
                // before it looks at data or CRC.
                None => core.accept(file, index, crc, data, crc),
                Some(len) => match decode_block(encoding, data, len, plain) {
                    Ok(block) => core.accept(file, index, crc, block, crc32fast::hash(block)),
                    Err(e) => {
                        log::warn!("block {index} of {file} dropped: {e}; asking again");
                        core.redemand(file, index);
                        return Ok(());
                    }
                },
            }
        }
    };
    match landed {
        Ok(Some(landing)) => {
            if landings.send(landing).is_err() {
                bail!("the store writer stopped");
            }
        }
        Ok(None) => {}
        Err(e @ LandError::BadCrc { .. }) => {
            log::warn!("{e}; asking again");
            core.redemand(file, index);
        }
        Err(e) => {
            let text = e.to_string();
            log::error!("{text}");
            core.send(&Message::Error {
                code: ErrorCode::Protocol,
                text: &text,
            });
            bail!("host sent a bad block: {text}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use feedfs_protocol::frame::Frame;
    use feedfs_protocol::EntryKind;

    /// A core over a fresh store holding one file "f" of `size` bytes in
    /// 4 KiB blocks, its outbox's other end, and the store directory.
    fn core(tag: &str, size: u64) -> (Core, Receiver<Vec<u8>>, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "feedfs-device-session-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut b = ManifestBuilder::new();
        b.push(FileId(0), EntryKind::File, "f", size, 0o644, 4096, [7; 16])
            .unwrap();
        let store = Store::open(&dir).unwrap();
        let core = Core::new(b.finish(1, size).unwrap(), &store, Duration::from_secs(1)).unwrap();
        let (tx, rx) = mpsc::channel();
        core.link_up(Outbox::queued(tx));
        (core, rx, dir)
    }

    /// The messages the core sent, as text.
    fn sent(rx: &Receiver<Vec<u8>>) -> Vec<String> {
        let text = |f: Vec<u8>| {
            let msg = Message::parse(Frame::new_checked(&f[..]).unwrap()).unwrap();
            format!("{msg:?}")
        };
        rx.try_iter().map(text).collect()
    }

    #[test]
    fn lz4_blocks_land_and_damaged_ones_are_demanded_again() {
        let (core, rx, dir) = core("lz4", 6000);
        let block0: Vec<u8> = (0..4096u32).map(|i| (i % 13) as u8).collect();
        let block1: Vec<u8> = (0..1904u32).map(|i| (i % 5) as u8).collect();
        let (p0, p1) = (
            lz4_flex::block::compress(&block0),
            lz4_flex::block::compress(&block1),
        );
        let crc0 = crc32fast::hash(&block0);
        let mut plain = Vec::new();
        let (landings, queued) = mpsc::sync_channel(16);
        // The link thread's part, then the store writer's, in one step.
        let mut land = |index, crc, data: &[u8]| {
            let r = on_block(
                &core,
                &landings,
                FileId(0),
                index,
                crc,
                Encoding::Lz4,
                data,
                None,
                &mut plain,
            );
            for landing in queued.try_iter() {
                core.store(landing, true).unwrap();
            }
            r
        };

        // Damaged LZ4 data (its frame was fine): dropped, asked for again.
        let mut bad = p0.clone();
        bad[0] = 0xff;
        land(0, crc0, &bad).unwrap();
        // Data that decodes, but to another length than the block's: the same.
        land(0, crc0, &p1).unwrap();
        // Decodes to the right length but not to the block: its CRC says so.
        let other = lz4_flex::block::compress(&vec![0u8; 4096]);
        land(0, crc0, &other).unwrap();
        let demand = "Demand { file: FileId(0), first: 0, count: 1 }";
        assert_eq!(sent(&rx), [demand; 3]);
        assert!(!core.file(FileId(0)).unwrap().is_present(0).unwrap());

        // Good blocks land, the short last one too; then the device is complete.
        land(0, crc0, &p0).unwrap();
        land(1, crc32fast::hash(&block1), &p1).unwrap();
        let f = core.file(FileId(0)).unwrap();
        assert_eq!(f.read_at(0, 6000).unwrap(), [block0, block1].concat());
        assert_eq!(sent(&rx), ["Complete { blocks: 2 }"]);

        // A block past the end stops the session, LZ4 or not.
        let err = land(2, 0, &p1).unwrap_err().to_string();
        assert!(err.contains("past its end"), "{err}");
        assert!(sent(&rx)[0].starts_with("Error { code: Protocol"));
        drop(core);
        let _ = std::fs::remove_dir_all(dir);
    }
}
