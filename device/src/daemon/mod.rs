//! The daemon's life: links on the link thread, mount and signals on the
//! main thread, until a signal or an unmount.
//!
//! Links come one at a time: this process's stdin/stdout (the first one),
//! a USB function's bulk endpoints (each time a host configures the device),
//! or a pipe handed over by `feedfs-device attach` ([`attach`]); one that
//! comes while another is up is refused (attach) or waits (USB).
//! [`link::serve`] speaks the protocol on each. The
//! mount outlives every link: while no link is up, pages already present
//! are served and reads of missing ones wait, within `--read-timeout`, for
//! the next link. The daemon unmounts and exits on SIGINT or SIGTERM, or
//! when someone else unmounts it (a normal stop); a stdio daemon whose only
//! link fails before anything was mounted exits with that link's error.
//! It ignores SIGHUP, a stdio daemon runs in a session of its own
//! ([`leave_terminal`]), and once its stdin/stdout link ends it keeps none
//! of its starter's descriptors ([`logfile`]).

pub mod attach;
pub mod logfile;
pub mod mountpoint;

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::anyhow;
use fuser::{Config, MountOption, SessionACL};

use crate::link::error::LinkError;
use crate::link::gadget::Gadget;
use crate::link::usb::Ffs;
use crate::link::{self, grow_pipe, Daemon, LinkIo};
use crate::serve::core::{Core, SharedCore};
use crate::serve::fs::FeedFs;
use crate::store::Store;
use attach::{Busy, Incoming};

/// Where the daemon's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// A host on this process's stdin/stdout.
    Stdio,
    /// No link: mount the manifest the store holds and serve the pages present.
    Offline,
    /// A FunctionFS instance already mounted at this directory.
    UsbFfs(PathBuf),
    /// Set up a USB gadget with the feedfs function on this UDC (the first
    /// one when `None`), and remove it on exit.
    UsbGadget(Option<String>),
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
    /// Served files take writes, kept as the device's own pages.
    pub writable: bool,
}

/// Ignore SIGHUP, so the daemon outlives the terminal or pty it was
/// started from (a closed `ssh -t`, `script`, a CI runner). With
/// `new_session` (a pipe daemon, which outlives its host) also leave the
/// starter's session and process group, so a Ctrl-C meant for the host
/// does not reach it; a process group leader (a job of an interactive
/// shell) cannot, and stays in its own group. A daemon run in a terminal
/// for USB stays in it, so Ctrl-C there stops it. Call it before any
/// thread starts.
pub fn leave_terminal(new_session: bool) {
    use nix::sys::signal::{signal, SigHandler, Signal};
    if new_session {
        if let Err(e) = nix::unistd::setsid() {
            log::debug!("staying in this session: {e}");
        }
    }
    // SAFETY: SIG_IGN installs no handler of ours, so nothing runs in
    // signal context (nix marks every `signal` call unsafe for handlers).
    if let Err(e) = unsafe { signal(Signal::SIGHUP, SigHandler::SigIgn) } {
        log::debug!("SIGHUP not ignored: {e}");
    }
}

/// Mount and run until a signal or an unmount.
pub fn run(opts: MountOptions) -> anyhow::Result<()> {
    // Before the store is created: a mistyped mount point creates nothing.
    match std::fs::metadata(&opts.mountpoint) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return mountpoint::prepare(&opts.mountpoint)
        }
        Ok(m) if !m.is_dir() => return mountpoint::prepare(&opts.mountpoint),
        _ => {}
    }
    crate::store::raise_open_file_limit();
    let store = Store::open(&opts.store)?;
    logfile::use_store(store.dir());
    // Holding the store's lock: a dead mount there is no live daemon's.
    mountpoint::prepare(&opts.mountpoint)?;
    let (events_tx, events) = mpsc::channel::<Event>();
    watch_signals(events_tx.clone())?;
    let (mounted_tx, mounted_rx) = mpsc::channel::<bool>();
    let (links_tx, links) = mpsc::channel::<Incoming>();
    let busy: Busy = Arc::default();
    let mut offline = None;
    // Held until the end: the gadget is removed when it drops.
    let mut _gadget = None;
    match &opts.link {
        Link::Offline => {
            let core = Arc::new(Core::new(
                store.load_manifest()?,
                &store,
                opts.read_timeout,
            )?);
            log::info!(
                "offline: {} of {} pages present",
                core.present_pages(),
                core.total_pages()
            );
            core.offline();
            let _ = events_tx.send(Event::Manifest(core.clone()));
            offline = Some(core);
        }
        Link::Stdio => {
            busy.take();
            let _ = links_tx.send(Incoming {
                link: stdio_link()?,
                done: None,
            });
        }
        Link::UsbFfs(dir) => start_usb(Ffs::start(dir)?, links_tx.clone(), busy.clone())?,
        Link::UsbGadget(udc) => {
            let mut gadget = Gadget::create()?;
            let ffs = Ffs::start(gadget.ffs_dir())?;
            gadget.adopt(ffs.closer());
            gadget.bind(udc.as_deref())?;
            _gadget = Some(gadget);
            start_usb(ffs, links_tx.clone(), busy.clone())?;
        }
    }
    let _socket = attach::listen(&opts.store, links_tx, busy.clone())
        .map_err(|e| log::warn!("{e:#}; `feedfs-device attach` cannot reach this daemon"))
        .ok();
    let manifests = events_tx.clone();
    let daemon = Daemon::new(
        store,
        opts.read_timeout,
        Box::new(move |core| manifests.send(Event::Manifest(core)).is_ok()),
        mounted_rx,
        offline,
    );
    start_links(daemon, links, busy, events_tx.clone())?;
    main_loop(&opts, events, events_tx, mounted_tx)
}

/// This process's stdin and stdout as a link.
fn stdio_link() -> anyhow::Result<LinkIo> {
    let input = File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let output = File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    grow_pipe(&input);
    grow_pipe(&output);
    Ok(LinkIo {
        input: Box::new(input),
        output,
        zlp_packet: None,
        name: "stdin/stdout".into(),
    })
}

/// Each time a USB host configures the device (and no other link is up),
/// hand its endpoints to the link thread and wait until that link ends.
fn start_usb(ffs: Ffs, links: Sender<Incoming>, busy: Busy) -> anyhow::Result<()> {
    thread::Builder::new()
        .name("usb-links".into())
        .spawn(move || loop {
            let link = match ffs.next_link() {
                Ok(l) => l,
                Err(e) => {
                    log::error!("USB: {e:#}");
                    return;
                }
            };
            busy.take();
            let (done, ended) = mpsc::channel();
            if links
                .send(Incoming {
                    link,
                    done: Some(done),
                })
                .is_err()
            {
                return;
            }
            let _ = ended.recv();
        })?;
    Ok(())
}

/// The link thread: serve each link handed over, one at a time.
fn start_links(
    daemon: Daemon,
    links: Receiver<Incoming>,
    busy: Busy,
    events: Sender<Event>,
) -> anyhow::Result<()> {
    thread::Builder::new()
        .name("link-reader".into())
        .spawn(move || {
            for Incoming { link, done } in links {
                let result = link::serve(&daemon, link);
                busy.release();
                if let Some(done) = done {
                    let _ = done.send(result.as_ref().map_err(|e| e.to_string()).copied());
                }
                if events.send(Event::LinkEnded(result)).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
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
) -> anyhow::Result<()> {
    let mut session = None;
    let stop_reaper = Arc::new(AtomicBool::new(false));
    let mut core_for_reaper: Option<SharedCore> = None;
    let mut unmounted = false;
    let result = loop {
        match events.recv() {
            Ok(Event::Manifest(core)) => {
                let fs = FeedFs::new(core.clone(), opts.writable, {
                    let tx = events_tx.clone();
                    move || {
                        let _ = tx.send(Event::Unmounted);
                    }
                });
                match fuser::spawn_mount(fs, &opts.mountpoint, &mount_config(opts)) {
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
                        let hint = mount_hint(&e);
                        // The link thread tells the host and ends; wait for it.
                        while let Ok(ev) = events.recv_timeout(Duration::from_secs(2)) {
                            if matches!(ev, Event::LinkEnded(_)) {
                                break;
                            }
                        }
                        break Err(anyhow!(e).context(format!(
                            "cannot mount FUSE at {}{hint}",
                            opts.mountpoint.display()
                        )));
                    }
                }
            }
            Ok(Event::LinkEnded(result)) if session.is_none() && opts.link == Link::Stdio => {
                break Err(match result {
                    Err(e) => e.into(),
                    Ok(()) => anyhow!("the link closed before a host sent its files"),
                });
            }
            Ok(Event::LinkEnded(result)) => {
                if session.is_some() && opts.link == Link::Stdio {
                    // Whoever started this daemon is gone with the link: keep
                    // none of its pipes or its terminal.
                    if let Err(e) = logfile::leave_starter() {
                        log::warn!("cannot move the log to the store: {e}");
                    }
                }
                if let Err(e) = result {
                    log::warn!("link failed: {e}");
                }
                if session.is_some() {
                    log::info!("link down; serving the pages present, waiting for the next link");
                }
            }
            Ok(Event::Signal(s)) => {
                log::info!("signal {s}: unmounting");
                break Ok(());
            }
            Ok(Event::Unmounted) => {
                log::info!("unmounted from outside (umount); stopping");
                unmounted = true;
                break Ok(());
            }
            Err(_) => break Ok(()),
        }
    };
    // Readers first: every parked read fails now and no new one waits, so
    // nothing blocks the unmount.
    if let Some(core) = &core_for_reaper {
        core.shut_down();
    }
    if let Some(s) = session {
        match s.umount_and_join() {
            Ok(()) => {}
            // Someone else unmounted it: nothing is left to take down.
            Err(e) if unmounted && e.raw_os_error() == Some(libc::EINVAL) => {
                log::debug!("unmount after an outside umount: {e}")
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                log::warn!("unmount: {e}; files are still open on it, detaching it lazily");
                mountpoint::detach_lazily(&opts.mountpoint)?;
            }
            Err(e) => {
                log::warn!("unmount: {e}; detaching it lazily");
                mountpoint::detach_lazily(&opts.mountpoint)?;
            }
        }
    }
    stop_reaper.store(true, Ordering::Relaxed);
    if let Some(core) = core_for_reaper {
        core.wake();
        core.sync_maps();
        core.close_log();
    }
    result
}

/// What to check after a failed mount, by its error.
fn mount_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENODEV | libc::EACCES | libc::EPERM) => {
            " (is /dev/fuse there and usable by this user?)"
        }
        Some(libc::ENOTCONN) => {
            " (a dead mount is in the way: detach it with `umount -l` or `fusermount3 -u -z`)"
        }
        _ => "",
    }
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

fn mount_config(opts: &MountOptions) -> Config {
    let mut c = Config::default();
    c.mount_options = vec![
        if opts.writable {
            MountOption::RW
        } else {
            MountOption::RO
        },
        MountOption::FSName("feedfs".into()),
        MountOption::Subtype("feedfs".into()),
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::NoAtime,
        MountOption::DefaultPermissions,
    ];
    c.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    c.n_threads = Some(2);
    c
}

/// What the daemon's threads tell its main thread.
pub enum Event {
    /// SIGINT or SIGTERM arrived.
    Signal(i32),
    /// The manifest arrived and the store is open: mount it.
    Manifest(SharedCore),
    /// A link ended; `Err` with the reason if it failed.
    LinkEnded(Result<(), LinkError>),
    /// The FUSE session ended (unmounted by us or by someone else).
    Unmounted,
}
