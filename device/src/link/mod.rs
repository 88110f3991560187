//! One link to a host, from its first Hello to its end.
//!
//! A link is a byte stream each way: this process's stdin/stdout, a pipe
//! handed over by `feedfs-device attach`, or a pair of USB bulk endpoints.
//! It may carry several host sessions one after another: a host says
//! Hello, sends its manifest, gets the Have report and then blocks, until
//! it says Goodbye or a new Hello starts the next session (a host that was
//! killed and started again on a USB cable that stayed plugged in). Frames
//! before a Hello are the tail of an earlier session and are skipped.
//!
//! The first manifest creates the [`Core`] and has the main thread mount
//! it; every later session must bring the same manifest. When a link ends,
//! parked reads keep waiting, within their deadline, for the next link.

pub mod gadget;
pub mod outbox;
pub mod usb;

use std::fs::File;
use std::io::Read;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use feedfs_protocol::io::{FrameReader, ReadError};
use feedfs_protocol::message::{decode_block, Encoding, MAX_RANGES_PER_HAVE};
use feedfs_protocol::warn::{held_back_note, WarnLimit};
use feedfs_protocol::{
    block_len, BlockRange, ErrorCode, FileId, FrameError, Manifest, ManifestBuilder, Message,
    Recovery, Role, VERSION,
};

use crate::serve::core::{Core, LandError, Landing, SharedCore};
use crate::link::outbox::{write_frames, LinkOut, Outbox};
use crate::cmd::status::human_bytes;
use crate::store::{free_space, Store};
use crate::daemon::Event;

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

/// Ask for a [`PIPE_BUFFER`]-byte pipe; anything but a pipe stays as it is.
pub fn grow_pipe(fd: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: F_SETPIPE_SZ on a descriptor we own; no memory is passed.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BUFFER) } < 0 {
        log::debug!(
            "link pipe size unchanged: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// What every link of one daemon shares.
pub struct Daemon {
    pub store: Store,
    pub read_timeout: Duration,
    pub events: Sender<Event>,
    /// The main thread's answer to the first manifest: mounted or not.
    mounted: Mutex<Option<Receiver<bool>>>,
    core: Mutex<Option<SharedCore>>,
}

impl Daemon {
    pub fn new(
        store: Store,
        read_timeout: Duration,
        events: Sender<Event>,
        mounted: Receiver<bool>,
        mounted_core: Option<SharedCore>,
    ) -> Daemon {
        Daemon {
            store,
            read_timeout,
            events,
            mounted: Mutex::new(Some(mounted)),
            core: Mutex::new(mounted_core),
        }
    }

    /// The mounted files' core, once the first manifest arrived.
    pub fn core(&self) -> Option<SharedCore> {
        self.core.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A host's Hello, owned.
struct Hello {
    role: Role,
    min_version: u8,
    max_version: u8,
    agent: String,
}

impl Hello {
    /// The owned form of a Hello message; `None` for any other message.
    fn of(msg: &Message) -> Option<Hello> {
        match *msg {
            Message::Hello {
                role,
                min_version,
                max_version,
                agent,
            } => Some(Hello {
                role,
                min_version,
                max_version,
                agent: agent.to_string(),
            }),
            _ => None,
        }
    }
}

/// How a host session ended.
enum End {
    /// The host said Goodbye: the link stays for the next host.
    Goodbye,
    /// The link's input ended.
    Closed,
    /// A new host session began on the same link.
    Hello(Hello),
}

/// Serve one link until it ends. `Ok` when it ended cleanly.
pub fn serve(daemon: &Daemon, link: LinkIo) -> anyhow::Result<()> {
    log::info!("link up: {}", link.name);
    let output = LinkOut::new(link.output);
    let (queue, frames) = mpsc::channel::<Vec<u8>>();
    let outbox = Outbox::new(queue, &output);
    let zlp = link.zlp_packet;
    let writer = thread::Builder::new()
        .name("link-writer".into())
        .spawn(move || write_frames(output, frames, zlp))?;
    let mut reader = FrameReader::new(link.input);
    let result = sessions(daemon, &mut reader, &outbox);
    if let Some(core) = daemon.core() {
        core.link_lost();
    }
    // Whatever is queued (an Error saying why) still goes out.
    drop(outbox);
    let _ = writer.join();
    result
}

fn sessions<R: Read>(
    daemon: &Daemon,
    reader: &mut FrameReader<R>,
    outbox: &Outbox,
) -> anyhow::Result<()> {
    loop {
        let Some(mut hello) = wait_hello(reader, outbox)? else {
            return Ok(());
        };
        loop {
            match session(daemon, reader, outbox, hello)? {
                End::Goodbye => break,
                End::Closed => return Ok(()),
                End::Hello(h) => {
                    log::info!("a new host session starts on the same link");
                    hello = h;
                }
            }
        }
    }
}

/// Skip to the next Hello; `None` when the link closes first.
fn wait_hello<R: Read>(
    reader: &mut FrameReader<R>,
    outbox: &Outbox,
) -> anyhow::Result<Option<Hello>> {
    let mut skipped = 0u64;
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(ReadError::Frame(e @ FrameError::UnsupportedVersion { .. })) => {
                return Err(refuse(outbox, ErrorCode::Version, e.to_string()))
            }
            Err(ReadError::Frame(e)) if e.recovery() != Recovery::Fatal => {
                skipped += 1;
                log::debug!("before a Hello, skipped a damaged frame: {e}");
                continue;
            }
            Err(e) => bail!("link failed before the host said hello: {e}"),
        };
        match Message::parse(frame).ok().as_ref().and_then(Hello::of) {
            Some(hello) => {
                if skipped > 0 {
                    log::warn!("skipped {skipped} frames of an earlier session before this Hello");
                }
                return Ok(Some(hello));
            }
            None => skipped += 1,
        }
    }
}

/// One host session: check its Hello, answer it, take the manifest, report
/// what is here, then take blocks.
fn session<R: Read>(
    daemon: &Daemon,
    reader: &mut FrameReader<R>,
    outbox: &Outbox,
    hello: Hello,
) -> anyhow::Result<End> {
    let Hello {
        role,
        min_version,
        max_version,
        agent,
    } = hello;
    if role != Role::Host {
        return Err(refuse(
            outbox,
            ErrorCode::Protocol,
            format!("expected a host's Hello, got one from a {role:?}"),
        ));
    }
    if !(min_version..=max_version).contains(&VERSION) {
        return Err(refuse(
            outbox,
            ErrorCode::Version,
            format!("host {agent} speaks protocol versions {min_version}..={max_version}, this device speaks {VERSION}"),
        ));
    }
    log::info!("host is {agent}");
    let me = format!("feedfs-device {}", env!("CARGO_PKG_VERSION"));
    send(
        outbox,
        &Message::Hello {
            role: Role::Device,
            min_version: VERSION,
            max_version: VERSION,
            agent: &me,
        },
    );
    let manifest = match read_manifest(reader, outbox)? {
        Ok(m) => m,
        Err(end) => return Ok(end),
    };
    let core = attach_core(daemon, manifest, outbox)?;
    send_have(&core);
    core.start_link();
    core.maybe_complete();
    let (landings, queued) = mpsc::sync_channel(write_queue_len(&core));
    let writer_core = core.clone();
    let writer = thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || store_writer(&writer_core, queued))?;
    let result = frame_loop(reader, &core, &landings);
    // Blocks already checked are still stored.
    drop(landings);
    let _ = writer.join();
    core.flush_maps();
    result
}

/// The host's manifest, checked; or how the session ended before it was whole.
fn read_manifest<R: Read>(
    reader: &mut FrameReader<R>,
    outbox: &Outbox,
) -> anyhow::Result<Result<Manifest, End>> {
    let mut builder = ManifestBuilder::new();
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => bail!("link closed during the manifest"),
            Err(e @ ReadError::Frame(_)) => {
                return Err(refuse(
                    outbox,
                    ErrorCode::Protocol,
                    format!("damaged frame in the manifest: {e}"),
                ))
            }
            Err(e) => bail!("link failed during the manifest: {e}"),
        };
        let msg = Message::parse(frame)
            .map_err(|e| refuse(outbox, ErrorCode::Protocol, e.to_string()))?;
        if let Some(hello) = Hello::of(&msg) {
            return Ok(Err(End::Hello(hello)));
        }
        match msg {
            Message::ManifestEnd {
                entries,
                total_bytes,
            } => {
                return builder
                    .finish(entries, total_bytes)
                    .map(Ok)
                    .map_err(|e| refuse(outbox, ErrorCode::Manifest, e.to_string()));
            }
            Message::Error { code, text } => bail!("host reported an error ({code:?}): {text}"),
            msg => builder.push_message(&msg).map_err(|e| {
                refuse(
                    outbox,
                    ErrorCode::Manifest,
                    format!("manifest refused: {e}"),
                )
            })?,
        }
    }
}

/// Put this session's link on the core: the first manifest creates the core
/// and has it mounted; a later one must match it.
fn attach_core(daemon: &Daemon, manifest: Manifest, outbox: &Outbox) -> anyhow::Result<SharedCore> {
    if let Some(core) = daemon.core() {
        let same = core.manifest().entries() == manifest.entries()
            && core.manifest().total_bytes() == manifest.total_bytes();
        if !same {
            return Err(refuse(
                outbox,
                ErrorCode::Manifest,
                "this device has other files mounted from an earlier host; unmount them \
                 (stop the daemon) before serving a different set"
                    .into(),
            ));
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
        Core::new(manifest, &daemon.store, daemon.read_timeout).map_err(|e| {
            refuse(
                outbox,
                ErrorCode::Store,
                format!("cannot open the store: {e:#}"),
            )
        })?,
    );
    warn_if_short_of_space(daemon.store.dir(), &core);
    core.link_up(outbox.clone());
    daemon
        .events
        .send(Event::Manifest(core.clone()))
        .map_err(|_| anyhow!("daemon is stopping"))?;
    let mounted = daemon
        .mounted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .context("mounted twice")?;
    if !mounted.recv().unwrap_or(false) {
        core.send(&Message::Error {
            code: ErrorCode::Internal,
            text: "the device could not mount the files",
        });
        core.link_lost();
        bail!("mount failed");
    }
    *daemon.core.lock().unwrap_or_else(|p| p.into_inner()) = Some(core.clone());
    Ok(core)
}

/// Say at once when the store's filesystem cannot hold the blocks still
/// missing, rather than when it fills up. The protocol has no warning
/// message, and an Error would end a push that may still succeed (other
/// writers may free space): the log line is all the host sees, on the
/// device's stderr.
fn warn_if_short_of_space(dir: &std::path::Path, core: &Core) {
    let missing = core.missing_bytes();
    match free_space(dir) {
        Ok(free) if free < missing => log::warn!(
            "the store {} has {} free, but the blocks still missing take up to {}: \
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

/// Send a message to the host directly (before the core exists).
fn send(outbox: &Outbox, msg: &Message) {
    outbox.send(msg.to_frame());
}

/// Send an error to the host and return it as ours too.
fn refuse(outbox: &Outbox, code: ErrorCode, text: String) -> anyhow::Error {
    send(outbox, &Message::Error { code, text: &text });
    anyhow!(text)
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
                let store_file = core
                    .file(file)
                    .map_or_else(String::new, |f| format!(" in {}", f.data_path().display()));
                let text = format!(
                    "device cannot store block {index} of {}{store_file}: {source}",
                    core.path_of(file)
                );
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

fn frame_loop<R: Read>(
    reader: &mut FrameReader<R>,
    core: &Core,
    landings: &SyncSender<Landing>,
) -> anyhow::Result<End> {
    let mut stream_dones = 0u32;
    // Where LZ4 blocks are decoded, reused from block to block.
    let mut plain = Vec::new();
    // A link turned to noise drops frame after frame: a few lines a second.
    let mut dropped = WarnLimit::new(5, Duration::from_secs(1));
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => {
                log::info!("host closed the link");
                return Ok(End::Closed);
            }
            Err(ReadError::Frame(e)) => match e.recovery() {
                Recovery::Skip | Recovery::Resync => {
                    if let Some(n) = dropped.check(Instant::now()) {
                        log::warn!("dropped a frame from the host: {e}{}", held_back_note(n));
                    }
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
        if let Some(hello) = Hello::of(&msg) {
            return Ok(End::Hello(hello));
        }
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
                return Ok(End::Goodbye);
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
/// the manifest, and hashed, and so is a zero block's run of zeros (the
/// store keeps it as a hole). Data that does not decode, like data that
/// fails its CRC, is dropped and demanded again; an error is returned only
/// when the host must be stopped (a block that is not in the manifest or
/// has the wrong length).
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
        Encoding::Lz4 | Encoding::Zero => {
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
    use crate::testutil::TempDir;

    use feedfs_protocol::frame::Frame;
    use feedfs_protocol::EntryKind;

    /// A core over a fresh store holding one file "f" of `size` bytes in
    /// 4 KiB blocks, its outbox's other end, and the store directory.
    fn core(tag: &str, size: u64) -> (Core, Receiver<Vec<u8>>, TempDir) {
        let dir = TempDir::new(&format!("session-{tag}"));
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
        let (core, rx, _dir) = core("lz4", 6000);
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
    }

    #[test]
    fn zero_blocks_land_as_zeros_and_a_false_crc_is_demanded_again() {
        let (core, rx, _dir) = core("zero", 6000);
        let mut plain = vec![0x5a; 4096];
        let (landings, queued) = mpsc::sync_channel(16);
        let mut land = |index, crc| {
            let r = on_block(
                &core,
                &landings,
                FileId(0),
                index,
                crc,
                Encoding::Zero,
                &[],
                None,
                &mut plain,
            );
            for landing in queued.try_iter() {
                core.store(landing, true).unwrap();
            }
            r
        };
        // The CRC of 4096 zeros given for the short last block (1904 bytes).
        land(1, crc32fast::hash(&[0; 4096])).unwrap();
        assert_eq!(
            sent(&rx),
            ["Demand { file: FileId(0), first: 1, count: 1 }"]
        );
        land(0, crc32fast::hash(&[0; 4096])).unwrap();
        land(1, crc32fast::hash(&[0; 1904])).unwrap();
        let f = core.file(FileId(0)).unwrap();
        assert_eq!(f.read_at(0, 6000).unwrap(), vec![0; 6000]);
        assert_eq!(sent(&rx), ["Complete { blocks: 2 }"]);
        drop(core);
    }
}
