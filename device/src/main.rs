//! `feedfs-device`: the device daemon's command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};
use feedfs_device::daemon::logfile;
use feedfs_device::daemon::{self, Link, MountOptions};
use feedfs_device::link::gadget::Gadget;
use feedfs_device::link::usb::Ffs;
use feedfs_protocol::io::print_stdout;
use feedfs_protocol::units::{parse_duration_in, parse_size_multiple, UnitError};

/// `--read-timeout`: long enough for a run of pages over a slow link, at most a day.
fn parse_read_timeout(s: &str) -> Result<Duration, UnitError> {
    parse_duration_in(
        s,
        Duration::from_millis(100)..=Duration::from_secs(24 * 3600),
    )
}

/// `--kernel-readahead`, in KiB: what FUSE takes, from none to 1G.
fn parse_kernel_readahead(s: &str) -> Result<u32, UnitError> {
    parse_size_multiple(s, 0..=1 << 30, 1 << 10).map(|bytes| (bytes >> 10) as u32)
}

/// `--version`: the crate's version, the wire format's and the store map's.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (protocol version {}, store map version {})",
        env!("CARGO_PKG_VERSION"),
        feedfs_protocol::VERSION,
        feedfs_device::store::MAP_VERSION
    )
});

/// What `--help` ends with: logging and the exit statuses.
const AFTER_HELP: &str = "\
Logs go to stderr (a mount daemon's, once its host is gone, to
STORE/log/daemon.log): info by default, -v for debug, -vv for trace, -q for
warnings only, -qq for errors only; RUST_LOG (e.g. RUST_LOG=debug), when
set, wins over -v and -q.

Exit status:
  0  success; mount: unmounted after SIGINT, SIGTERM or an umount
  1  failure (the message says what failed)
  2  usage error: an unknown option or a value out of its range
  3  verify: bad pages were found and dropped from the store, or written
     pages were found torn";

/// Mount files served by feedfs-host at once and fill them page by page.
#[derive(Parser)]
#[command(name = "feedfs-device", version = VERSION.as_str(), about, long_about = None)]
#[command(after_help = AFTER_HELP)]
struct Cli {
    /// More log detail on stderr (-v debug, -vv trace).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
    /// Less log detail on stderr (-q warnings only, -qq errors only, -qqq nothing).
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "verbose")]
    quiet: u8,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// The log filter when RUST_LOG is not set: info, moved by -v and -q;
    /// the FUSE library says no more than warnings unless asked by RUST_LOG.
    fn log_filter(&self) -> String {
        const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
        let level = (3 + i32::from(self.verbose) - i32::from(self.quiet)).clamp(0, 5) as usize;
        format!("{},fuser={}", LEVELS[level], LEVELS[level.min(2)])
    }
}

#[derive(Subcommand)]
enum OverlayAction {
    /// Every file with writes: its path, bytes written, size, and whether
    /// the host serves it (`served`), serves another version of it
    /// (`held`: not served until its writes are exported or discarded) or
    /// no longer serves it (`not served`).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write FILE as the device sees it (the host's pages with the
    /// device's writes over them) to OUT. Fails, naming the missing byte
    /// ranges, when the store lacks some of its pages.
    Export {
        /// The file's path in the mount.
        file: String,
        #[arg(short, long, value_name = "OUT")]
        out: PathBuf,
    },
    /// Drop FILE's writes: its written pages are fetched from the host again.
    Discard {
        /// The file's path in the mount.
        file: String,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Mount the host's files at MOUNTPOINT (read-only unless --writable) as soon as the manifest arrives.
    ///
    /// Pages land in the store; a read waits only for the pages it needs that
    /// are not there yet (at most --read-timeout, then EIO). The daemon stays mounted when the
    /// link ends and unmounts on SIGINT or SIGTERM (or stops when someone
    /// runs `umount MOUNTPOINT`). It ignores SIGHUP; with --stdio it runs in a
    /// session of its own (a Ctrl-C meant for the host does not reach it),
    /// and once that link ends it logs to STORE/log/daemon.log.
    Mount(MountArgs),
    /// Hand a new link to the daemon already serving a store (after the
    /// first host went away), without an unmount.
    ///
    /// The daemon takes this process's stdin and stdout as its link; this
    /// process stays until that link ends. Refused while another link
    /// feeds the store. Use it as the device command of a new host:
    /// `feedfs-host push --exec 'adb shell feedfs-device attach --store DIR --stdio' ...`.
    Attach {
        /// The store of the running daemon.
        #[arg(long, value_name = "DIR", env = "FEEDFS_STORE")]
        store: PathBuf,
        /// Hand over this process's stdin/stdout (the only kind of link attach takes).
        #[arg(long, required = true)]
        stdio: bool,
    },
    /// Re-check every page the store holds against its recorded CRC-32.
    ///
    /// Bad pages are dropped from the store's map, so the next host sends
    /// them again. Exit status: 0 all good, 3 bad pages were found and
    /// dropped, 1 the store could not be checked (for example, a daemon is
    /// using it).
    Verify {
        /// The store directory.
        #[arg(long, value_name = "DIR", env = "FEEDFS_STORE")]
        store: PathBuf,
    },
    /// The files written on the device (`mount --writable`): list them,
    /// export one as the device sees it, or discard its writes.
    ///
    /// `export` and `discard` refuse while a daemon runs on the store.
    Overlay {
        /// The store directory.
        #[arg(long, value_name = "DIR", env = "FEEDFS_STORE")]
        store: PathBuf,
        #[command(subcommand)]
        action: OverlayAction,
    },
    /// Show what a store holds and how long its readers waited.
    ///
    /// Per file: bytes present of the total, reads that had to wait for the
    /// host (demand requests) with their median and 99th-percentile wait
    /// (in the last mount), and whether a daemon runs with its link up.
    /// Reads only: works while the daemon runs (figures up to a second
    /// behind) and after it stopped.
    Status {
        /// The store directory.
        #[arg(long, value_name = "DIR", env = "FEEDFS_STORE")]
        store: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Be the device end of `feedfs-host usb-check`.
    ///
    /// Echo transfers (to check zero-length packets both ways) and sink a
    /// stream (to measure the raw bulk rate), until the host is done.
    UsbCheck(UsbArgs),
    /// Print a completion script for SHELL to stdout.
    #[command(hide = true)]
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout, or write one per command
    /// into DIR.
    #[command(hide = true)]
    Man {
        /// Write feedfs-device.1, feedfs-device-mount.1, ... into this directory.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("usb").required(true))]
struct UsbArgs {
    /// Use the FunctionFS instance mounted at DIR (set up by you or an init script).
    #[arg(long, value_name = "DIR", group = "usb")]
    usb_ffs: Option<PathBuf>,
    /// Set up the USB gadget through configfs, and remove it on exit.
    #[arg(long, group = "usb")]
    usb_gadget: bool,
    /// With --usb-gadget: the USB device controller to bind (default: the first in /sys/class/udc).
    #[arg(long, value_name = "NAME", requires = "usb_gadget")]
    udc: Option<String>,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("link").required(true))]
struct MountArgs {
    /// Where to mount (an existing directory).
    mountpoint: PathBuf,
    /// Store directory: page data and the map of present pages (created if missing).
    #[arg(long, value_name = "DIR", env = "FEEDFS_STORE")]
    store: PathBuf,
    /// Use this process's stdin/stdout as the link (for feedfs-host --exec, adb shell, ssh).
    #[arg(long, group = "link")]
    stdio: bool,
    /// Use the USB function whose FunctionFS is mounted at DIR: write its
    /// descriptors, then serve each host that configures the device.
    #[arg(long, value_name = "DIR", group = "link")]
    usb_ffs: Option<PathBuf>,
    /// Set up a USB gadget with the feedfs function through configfs (needs
    /// root and a UDC), serve over it, and remove it on exit.
    #[arg(long, group = "link")]
    usb_gadget: bool,
    /// With --usb-gadget: the USB device controller to bind (default: the first in /sys/class/udc).
    #[arg(long, value_name = "NAME", requires = "usb_gadget")]
    udc: Option<String>,
    /// No link: mount the files the store already knows and serve the pages it holds
    /// (reads of missing pages fail with EIO).
    #[arg(long, group = "link")]
    offline: bool,
    /// How long a read may wait for a missing page before it fails with
    /// EIO: from 100ms to 24h, with a unit (ms, s, m, h).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_read_timeout)]
    read_timeout: Duration,
    /// Let other users read the mount (needs user_allow_other in /etc/fuse.conf when not root).
    #[arg(long)]
    allow_other: bool,
    /// How far the kernel reads ahead of a reader on the mount: whole KiB
    /// from 0 (none) to 1G (units K, M, G; set as root only). Large suits a
    /// fast link; on a slow link (USB 2.0) with scattered reads, 128K
    /// wastes less of it.
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_kernel_readahead)]
    kernel_readahead: u32,
    /// Served files take writes in place (pwrite, mmap, fsync), kept in the
    /// store as the device's own pages; the host never sees them. Sizes stay
    /// fixed, and entries cannot be created, removed or renamed. See
    /// `feedfs-device overlay`.
    #[arg(long)]
    writable: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(cli.log_filter()))
        .target(env_logger::Target::Pipe(Box::new(logfile::Stderr)))
        .init();
    if let Command::Mount(a) = &cli.command {
        daemon::leave_terminal(a.stdio);
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("feedfs-device: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Verify { store } => {
            let reports = feedfs_device::cmd::verify::verify(&store)?;
            print_stdout(|out| {
                for r in &reports {
                    writeln!(
                        out,
                        "{}: {} of {} pages present and good, {} bad",
                        r.path,
                        r.present,
                        r.pages,
                        r.bad.len()
                    )?;
                    if !r.bad.is_empty() {
                        writeln!(out, "  dropped, to be fetched again: pages {:?}", r.bad)?;
                    }
                    if !r.torn.is_empty() {
                        writeln!(
                            out,
                            "  written pages torn by a crash (EIO until written whole again, or \
                             `overlay discard`): pages {:?}",
                            r.torn
                        )?;
                    }
                }
                Ok(())
            })?;
            let bad: usize = reports.iter().map(|r| r.bad.len() + r.torn.len()).sum();
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Overlay { store, action } => {
            use feedfs_device::cmd::overlay;
            match action {
                OverlayAction::List { json } => {
                    let files = overlay::list(&store)?;
                    let text = if json {
                        serde_json::to_string_pretty(&files)? + "\n"
                    } else {
                        files
                            .iter()
                            .map(|f| {
                                format!(
                                    "{}\t{} written of {}\t{}\n",
                                    f.path, f.written, f.size, f.state
                                )
                            })
                            .collect()
                    };
                    print_stdout(|out| out.write_all(text.as_bytes()))?;
                }
                OverlayAction::Export { file, out } => {
                    let n = overlay::export(&store, &file, &out)?;
                    eprintln!(
                        "feedfs-device: exported {file} ({n} bytes) to {}",
                        out.display()
                    );
                }
                OverlayAction::Discard { file } => {
                    let n = overlay::discard(&store, &file)?;
                    eprintln!(
                        "feedfs-device: discarded {n} bytes written to {file}; the host sends those pages again"
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Attach { store, stdio: _ } => {
            feedfs_device::daemon::attach::attach_stdio(&store).map(|()| ExitCode::SUCCESS)
        }
        Command::UsbCheck(a) => {
            let mut gadget = None;
            let ffs = match (a.usb_ffs, a.usb_gadget) {
                (Some(dir), _) => Ffs::start(&dir)?,
                (None, _) => {
                    let mut g = Gadget::create()?;
                    let ffs = Ffs::start(g.ffs_dir())?;
                    g.adopt(ffs.closer());
                    g.bind(a.udc.as_deref())?;
                    gadget = Some(g);
                    ffs
                }
            };
            let result = feedfs_device::cmd::usbcheck::run(&ffs);
            drop(gadget);
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Status { store, json } => {
            let s = feedfs_device::cmd::status::status(&store)?;
            let text = if json {
                serde_json::to_string_pretty(&s)? + "\n"
            } else {
                feedfs_device::cmd::status::render_text(&s)
            };
            print_stdout(|out| out.write_all(text.as_bytes()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "feedfs-device", &mut script);
            print_stdout(|out| out.write_all(&script))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out_dir: None } => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            print_stdout(|out| out.write_all(&page))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out_dir: Some(dir) } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Mount(a) => daemon::run(MountOptions {
            link: match (a.offline, a.usb_ffs, a.usb_gadget) {
                (true, _, _) => Link::Offline,
                (_, Some(dir), _) => Link::UsbFfs(dir),
                (_, _, true) => Link::UsbGadget(a.udc),
                _ => Link::Stdio,
            },
            mountpoint: a.mountpoint,
            store: a.store,
            read_timeout: a.read_timeout,
            allow_other: a.allow_other,
            kernel_readahead_kb: a.kernel_readahead,
            writable: a.writable,
        })
        .map(|()| ExitCode::SUCCESS),
    }
}
