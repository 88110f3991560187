//! The command line, as clap derive types.
//!
//! `feedfs-host [-v|-q] [-s SERIAL] push (--exec CMD | --stdio | --usb
//! [--wait]) [--run-size SIZE] [--readahead SIZE] [--rate RATE] [--compress
//! WHEN] [--record FILE] [--plan PLAN] [--handshake-timeout TIME] [--header
//! 'K: V']... [--cacert FILE] [--retry-for TIME] PATH|URL...`:
//! exactly one link flag, at least one path, sizes and times in human units
//! ([`feedfs_protocol::units`]). `devices [--json]` and `usb-check` look at
//! USB devices; `log show|plot LOG` reads a host record or a device request
//! log; `plan LOG... -o PLAN` learns a prefetch plan and `plan --show PLAN`
//! prints one. `completions SHELL` and `man` (hidden) print what is
//! generated from these definitions. [`Cli::parse_checked`] adds the checks
//! clap cannot express.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgGroup, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use feedfs_protocol::units::{
    parse_duration_in, parse_run_size, parse_size_in, parse_size_multiple, UnitError,
};

use crate::send::compress::Mode;

/// `--rate`: from one page a second to well past any link.
fn parse_rate(s: &str) -> Result<u64, UnitError> {
    parse_size_in(s, 4 << 10..=1 << 40)
}

/// `push --readahead`: bytes in whole pages, from none to 1 GiB (so an old
/// count of blocks, `--readahead 32`, is refused rather than taken as bytes).
fn parse_readahead(s: &str) -> Result<u64, UnitError> {
    parse_size_multiple(s, 0..=1 << 30, feedfs_protocol::PAGE_SIZE.into())
}

/// What `--block-size` says now: it is gone.
fn block_size_gone(_: &str) -> Result<String, String> {
    Err("--block-size is gone: pages are 4 KiB; --run-size sets the stream's run length".into())
}

/// `push --handshake-timeout`: from 100ms to an hour.
fn parse_handshake_timeout(s: &str) -> Result<Duration, UnitError> {
    parse_duration_in(s, Duration::from_millis(100)..=Duration::from_secs(3600))
}

/// `push --retry-for`: from a second to a day (24h).
fn parse_retry_for(s: &str) -> Result<Duration, UnitError> {
    parse_duration_in(s, Duration::from_secs(1)..=Duration::from_secs(86_400))
}

/// `usb-check --duration`: long enough to see a rate, short enough to wait for.
fn parse_stream_time(s: &str) -> Result<Duration, UnitError> {
    parse_duration_in(s, Duration::from_millis(100)..=Duration::from_secs(600))
}

/// `--version`: the crate's version and the wire format's.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (protocol version {})",
        env!("CARGO_PKG_VERSION"),
        feedfs_protocol::VERSION
    )
});

/// The first value given twice.
fn repeated(values: &[String]) -> Option<&str> {
    values
        .iter()
        .enumerate()
        .find(|(i, v)| values[..*i].contains(v))
        .map(|(_, v)| v.as_str())
}

/// `push --cache`: none (0) to 64 GiB.
fn parse_cache(s: &str) -> Result<u64, UnitError> {
    parse_size_in(s, 0..=64 << 30)
}

/// What `--help` ends with: logging and the exit statuses.
const AFTER_HELP: &str = "\
Logs go to stderr: warnings by default, -v for info, -vv for debug, -q for
errors only; RUST_LOG (e.g. RUST_LOG=debug), when set, wins over -v and -q.

Exit status:
  0    success
  1    failure (the message says what failed; usb-check: a check failed)
  2    usage error: an unknown option or a value out of its range
  129  push stopped by SIGHUP (the record is flushed first)
  130  push stopped by SIGINT (Ctrl-C)
  143  push stopped by SIGTERM";

/// Serve read-only files to a feedfs device: the device mounts them at full
/// size at once, the host streams their pages, and pages a program on the
/// device is waiting for go first.
#[derive(Debug, Parser)]
#[command(name = "feedfs-host", version = VERSION.as_str(), about, long_about = None)]
#[command(after_help = AFTER_HELP)]
pub struct Cli {
    /// More log detail on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Less log detail on stderr (-q errors only, -qq nothing).
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,

    /// The USB device to use, by serial number (see `feedfs-host devices`);
    /// needed when several are attached. For push --usb (repeatable: one
    /// session per device) and usb-check.
    #[arg(
        short,
        long,
        global = true,
        value_name = "SERIAL",
        env = "FEEDFS_SERIAL",
        action = ArgAction::Append
    )]
    pub serial: Vec<String>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parse `args` (the program name first), with the checks clap cannot
    /// express: `--serial` given on the command line to a push over a pipe
    /// is an error (from `FEEDFS_SERIAL` it is not: the variable is meant
    /// to be left set), and the push gets the serials; `usb-check` takes
    /// one device.
    pub fn parse_checked<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        let serial_typed = matches.value_source("serial") == Some(ValueSource::CommandLine);
        let conflict = |text: &str| Cli::command().error(ErrorKind::ArgumentConflict, text);
        match &mut cli.command {
            Command::Push(p) => {
                if serial_typed && !p.usb {
                    return Err(conflict(
                        "--serial names a USB device: use it with --usb, not with --exec or --stdio",
                    ));
                }
                // clap's `requires` takes the flag's default for presence.
                if p.all && !p.usb {
                    return Err(conflict("--all picks USB devices: use it with --usb"));
                }
                if !p.serials.is_empty() && p.exec.is_empty() {
                    return Err(conflict(
                        "--serials fills {serial} in an --exec command: give one",
                    ));
                }
                if p.usb && !p.all {
                    p.serial = cli.serial.clone();
                } else if serial_typed {
                    return Err(conflict(
                        "--all serves every feedfs device: leave out --serial, or name the \
                         devices with --serial alone",
                    ));
                }
                if p.serial
                    .iter()
                    .chain(&p.serials)
                    .any(|s| s.trim().is_empty())
                {
                    return Err(conflict("a serial is empty (two commas in --serials?)"));
                }
                if let Some(dup) = repeated(&p.serial).or_else(|| repeated(&p.serials)) {
                    return Err(conflict(&format!("the serial {dup} is given twice")));
                }
            }
            Command::UsbCheck { .. } if cli.serial.len() > 1 => {
                return Err(conflict("usb-check checks one device: give --serial once"));
            }
            _ => {}
        }
        Ok(cli)
    }

    /// The one USB device named, if any (for usb-check).
    pub fn one_serial(&self) -> Option<&str> {
        self.serial.first().map(String::as_str)
    }

    /// The log filter when RUST_LOG is not set: warnings, moved by -v and -q.
    pub fn log_filter(&self) -> &'static str {
        const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
        let level = (2 + i32::from(self.verbose) - i32::from(self.quiet)).clamp(0, 5);
        LEVELS[level as usize]
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve files, directories, block devices, HTTP(S) URLs and S3 objects to a device
    /// until it holds all of them.
    Push(Box<PushArgs>),
    /// List the feedfs devices attached over USB, one per line.
    ///
    /// Serial, bus, address and speed, tab-separated. Prints nothing when
    /// none is attached.
    Devices {
        /// Print a JSON array of {serial, bus, address, speed} instead.
        #[arg(long)]
        json: bool,
    },
    /// Check a USB link against `feedfs-device usb-check`.
    ///
    /// Zero-length packets both ways, then the raw bulk rate (a push's
    /// ceiling). Exit status 0 only when every check passed.
    UsbCheck {
        /// How long to stream for the rate, from 100ms to 10m.
        #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_stream_time)]
        duration: Duration,
    },
    /// Read a log: a host record (push --record) or a device request log
    /// (STORE/log/requests.log, copied off the device).
    #[command(subcommand)]
    Log(LogCommand),
    /// Learn a prefetch plan from logs (LOG... -o PLAN), or print one (--show PLAN).
    ///
    /// The plan lists the pages the logged runs needed, ordered by first
    /// access across runs (pages every run needs early come first), with
    /// a readahead window after each accessed range. `push --plan PLAN`
    /// streams them first.
    Plan(PlanArgs),
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
        /// Write feedfs-host.1, feedfs-host-push.1, ... into this directory.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// `feedfs-host log` commands.
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Per file: bytes present, demand requests and their median and p99
    /// wait; then the order in which pages were first asked for.
    Show(LogShowArgs),
    /// Draw the log as an SVG picture: time across, position in the file
    /// up, a mark per demand request, the stream's progress as a line.
    Plot(LogPlotArgs),
}

/// Options of `feedfs-host log show`.
#[derive(Debug, Clone, Args)]
pub struct LogShowArgs {
    /// A host record or a device request log.
    #[arg(value_name = "LOG")]
    pub log: PathBuf,
    /// Print JSON (every step of the first-access order) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Steps of the first-access order to print as text.
    #[arg(long, value_name = "N", default_value_t = 40)]
    pub steps: usize,
}

/// Options of `feedfs-host log plot`.
#[derive(Debug, Clone, Args)]
pub struct LogPlotArgs {
    /// A host record or a device request log (its last mount is drawn).
    #[arg(value_name = "LOG")]
    pub log: PathBuf,
    /// The SVG file to write.
    #[arg(short, long, value_name = "SVG")]
    pub output: PathBuf,
}

/// Options of `feedfs-host plan`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["logs", "show"])))]
pub struct PlanArgs {
    /// Host records and device request logs to learn from, oldest first.
    #[arg(value_name = "LOG", requires = "output")]
    pub logs: Vec<PathBuf>,
    /// Where to write the plan.
    #[arg(short, long, value_name = "PLAN")]
    pub output: Option<PathBuf>,
    /// Print a plan readably instead.
    #[arg(long, value_name = "PLAN", conflicts_with_all = ["logs", "output"])]
    pub show: Option<PathBuf>,
    /// Pages (4 KiB each) added after each accessed range, as a readahead
    /// would send them.
    #[arg(long, value_name = "PAGES", default_value_t = 32)]
    pub window: u64,
}

/// Options of `feedfs-host push`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("link").required(true).args(["exec", "stdio", "usb"])))]
pub struct PushArgs {
    /// Start the device side with `sh -c CMD` and talk over its stdin and
    /// stdout (its stderr shows here). It is left running after the push.
    /// Repeat it to feed several devices at once, one command each, or
    /// give one command with `{serial}` in it and --serials.
    #[arg(long, value_name = "CMD", conflicts_with = "wait", action = ArgAction::Append)]
    pub exec: Vec<String>,

    /// With one --exec whose command holds `{serial}`: run it once per
    /// serial in this comma-separated list, `{serial}` replaced (for adb:
    /// --exec 'adb -s {serial} shell …' --serials A,B,C).
    #[arg(long, value_name = "LIST", value_delimiter = ',', requires = "exec")]
    pub serials: Vec<String>,

    /// Talk over this process's own stdin and stdout (stdout then carries
    /// frames only; messages go to stderr).
    #[arg(long, conflicts_with = "wait")]
    pub stdio: bool,

    /// Talk to a feedfs device over USB (`feedfs-device mount --usb-ffs` or
    /// `--usb-gadget` on the device).
    #[arg(long)]
    pub usb: bool,

    /// With --usb: the devices' serial numbers, from the global
    /// `-s/--serial` (or `FEEDFS_SERIAL`); set by [`Cli::parse_checked`].
    #[arg(skip)]
    pub serial: Vec<String>,

    /// With --usb: feed every attached feedfs device, each in a session
    /// of its own; with --wait also those that appear later, until
    /// SIGINT or SIGTERM.
    #[arg(long, requires = "usb")]
    pub all: bool,

    /// With --usb: wait for the device to appear, and when it goes away
    /// (unplugged, restarted) wait for it to come back and resume, sending
    /// only what it still lacks.
    #[arg(long)]
    pub wait: bool,

    /// With several devices: bytes of the page cache their sessions share,
    /// so each page is read from its source about once while the devices
    /// stream within this much of each other (units K, M, G; 0: no cache).
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_cache)]
    pub cache: u64,

    /// Print a JSON summary of every device on stdout at the end
    /// (not with --stdio, whose stdout is the link).
    #[arg(long, conflicts_with = "stdio")]
    pub json: bool,

    /// Most bytes one frame of the background stream carries (its run of
    /// pages): whole 4 KiB pages from 4K to 1M (units K, M). Under --rate a
    /// stream run is also cut to what the link carries in about 1 ms (at
    /// least 16K), so a demand never waits long behind it. A demand is
    /// always sent as exactly the pages it asked for.
    #[arg(long, value_name = "SIZE", default_value = "256K", value_parser = parse_run_size)]
    pub run_size: u32,

    /// Removed: pages are 4 KiB; --run-size sets the stream's run length.
    #[arg(long, hide = true, value_name = "SIZE", value_parser = block_size_gone)]
    pub block_size: Option<String>,

    /// Most bytes sent ahead of a program reading a file forward: whole
    /// 4 KiB pages from 0 to 1G (units K, M, G); the window starts at 128K
    /// and doubles along the run. Random reads get none. (A cold
    /// sequential read with no stream, 1 MiB reads over a pipe: 361 MB/s
    /// with 2M, 474-491 MB/s with 8M-16M.)
    #[arg(long, value_name = "SIZE", default_value = "8M", value_parser = parse_readahead)]
    pub readahead: u64,

    /// Limit the link to RATE bytes per second, from 4K to 1T (units K, M,
    /// G: binary; 40M is about a USB 2.0 cable's real rate). Demanded
    /// pages still go first.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub rate: Option<u64>,

    /// Compress runs with LZ4 on the link. `auto`: while the link is the
    /// bottleneck (under --rate, or while writes to it block) and LZ4 keeps
    /// up with it, and only runs that shrink below 95 %; data that does
    /// not shrink is tried less and less often. `lz4`: try every run.
    /// `none`: never.
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = Mode::Auto)]
    pub compress: Mode,

    /// Send only the pages readers ask for (and their readahead), never
    /// the background stream; for measuring demand reads on an idle link.
    /// The push then ends only if the device completes by demand alone.
    #[arg(long)]
    pub no_stream: bool,

    /// Write a tab-separated log of every demand and every run sent to FILE.
    /// With several devices FILE must hold `{device}`, replaced by each
    /// device's name (its serial, or its number from 1).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Stream the pages of this prefetch plan (from `feedfs-host plan`)
    /// first, then the rest in file order. Files that changed since the
    /// plan was made are streamed in file order, with a warning.
    #[arg(long, value_name = "PLAN")]
    pub plan: Option<PathBuf>,

    /// Give up when the device has not said Hello within this long, from
    /// 100ms to 1h (units ms, s, m, h): a command that hangs, or one that
    /// is not feedfs-device.
    /// Raise it for a device side that starts slowly (an ssh that asks for
    /// a password).
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = parse_handshake_timeout)]
    pub handshake_timeout: Duration,

    /// Do not stream zip files (APK, JAR, wheel) in their built-in order
    /// (directory and start-up entries first); use file order.
    #[arg(long)]
    pub no_zip_order: bool,

    /// Send this header with every HTTP(S) request, as 'Name: value'
    /// (repeatable), e.g. 'Authorization: Bearer …'. Values never appear in
    /// logs, the record, the progress line or errors.
    #[arg(long = "header", short = 'H', value_name = "HEADER")]
    pub headers: Vec<String>,

    /// Trust the CA certificates of this PEM file for HTTPS instead of the
    /// built-in roots (a private server's, or a self-signed certificate).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// How long to retry an HTTP(S) server that went away (refused, reset,
    /// timed out, 5xx, a body cut short) before the push fails, from 1s to
    /// 24h (units ms, s, m, h); meanwhile reads of missing pages wait, up
    /// to the device's --read-timeout.
    #[arg(long, value_name = "TIME", default_value = "60s", value_parser = parse_retry_for)]
    pub retry_for: Duration,

    /// The S3-compatible store s3:// URLs are fetched from, such as
    /// http://127.0.0.1:9000 (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL,
    /// else Amazon S3 in the region). Credentials and region come from the
    /// AWS_* variables or the profile files, as for the AWS tools.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Address S3 buckets as ENDPOINT/BUCKET/KEY rather than
    /// BUCKET.ENDPOINT/KEY (always so for an endpoint at an IP address or
    /// localhost).
    #[arg(long)]
    pub path_style: bool,

    /// What to serve, each under its own name: files, directories, block
    /// devices (/dev/sdb, /dev/loop0: a read-only file of the device's
    /// size), http:// or https:// URLs (a file named by the URL's last
    /// path segment, fetched by Range requests as the device needs it),
    /// s3://BUCKET/KEY (an object, likewise) and s3://BUCKET/PREFIX/ (the
    /// objects under it, as a directory named by the prefix's last part).
    #[arg(value_name = "PATH|URL", required = true)]
    pub paths: Vec<PathBuf>,
}

#[cfg(test)]
mod tests;
