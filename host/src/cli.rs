//! The command line, as clap derive types.
//!
//! `feedfs-host push (--exec CMD | --stdio | --usb [--serial S] [--wait])
//! [--block-size SIZE] [--readahead N] [--rate RATE] [--compress WHEN]
//! [--record FILE] [--plan PLAN] PATH...`: exactly one link flag, at least
//! one path, sizes in human units. `devices` and `usb-check` look at USB
//! devices; `log show|plot LOG` reads a host record or a device request
//! log; `plan LOG... -o PLAN` learns a prefetch plan and `plan --show PLAN`
//! prints one.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use feedfs_protocol::units::{parse_block_size, parse_size_in, UnitError};

use crate::compress::Mode;

/// `--rate`: from one smallest block a second to well past any link.
fn parse_rate(s: &str) -> Result<u64, UnitError> {
    parse_size_in(s, 4 << 10..=1 << 40)
}

/// Serve read-only files to a feedfs device: the device mounts them at full
/// size at once, the host streams their blocks, and blocks a program on the
/// device is waiting for go first.
#[derive(Debug, Parser)]
#[command(name = "feedfs-host", version, about, long_about = None)]
#[command(after_help = "Logs go to stderr; set RUST_LOG=info (or debug) for more detail.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve files and directories to a device until it holds all of them.
    Push(PushArgs),
    /// List the feedfs devices attached over USB, with serial and speed.
    Devices,
    /// Check a USB link against `feedfs-device usb-check`.
    ///
    /// Zero-length packets both ways, then the raw bulk rate (a push's
    /// ceiling). Exit status 0 only when every check passed.
    UsbCheck {
        /// The device's serial number (needed when several are attached).
        #[arg(long, value_name = "SERIAL")]
        serial: Option<String>,
        /// How long to stream for the rate.
        #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
        seconds: f64,
    },
    /// Read a log: a host record (push --record) or a device request log
    /// (STORE/log/requests.log, copied off the device).
    #[command(subcommand)]
    Log(LogCommand),
    /// Learn a prefetch plan from logs (LOG... -o PLAN), or print one (--show PLAN).
    ///
    /// The plan lists the blocks the logged runs needed, ordered by first
    /// access across runs (blocks every run needs early come first), with
    /// a readahead window after each accessed range. `push --plan PLAN`
    /// streams them first.
    Plan(PlanArgs),
}

/// `feedfs-host log` commands.
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Per file: bytes present, demand requests and their median and p99
    /// wait; then the order in which blocks were first asked for.
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
    /// Blocks added after each accessed range, as a readahead would send them.
    #[arg(long, value_name = "BLOCKS", default_value_t = 4)]
    pub window: u64,
}

/// Options of `feedfs-host push`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("link").required(true).args(["exec", "stdio", "usb"])))]
pub struct PushArgs {
    /// Start the device side with `sh -c CMD` and talk over its stdin and
    /// stdout (its stderr shows here). It is left running after the push.
    #[arg(long, value_name = "CMD", conflicts_with_all = ["serial", "wait"])]
    pub exec: Option<String>,

    /// Talk over this process's own stdin and stdout (stdout then carries
    /// frames only; messages go to stderr).
    #[arg(long, conflicts_with_all = ["serial", "wait"])]
    pub stdio: bool,

    /// Talk to a feedfs device over USB (`feedfs-device mount --usb-ffs` or
    /// `--usb-gadget` on the device).
    #[arg(long)]
    pub usb: bool,

    /// With --usb: the device's serial number (see `feedfs-host devices`);
    /// needed when several are attached.
    #[arg(long, value_name = "SERIAL")]
    pub serial: Option<String>,

    /// With --usb: wait for the device to appear, and when it goes away
    /// (unplugged, restarted) wait for it to come back and resume, sending
    /// only what it still lacks.
    #[arg(long)]
    pub wait: bool,

    /// Block size: a power of two from 4K to 1M (units K, M; e.g. 64K, 1MiB, 4096).
    #[arg(long, value_name = "SIZE", default_value = "64K", value_parser = parse_block_size)]
    pub block_size: u32,

    /// Most blocks sent ahead of a program reading a file forward; the
    /// window starts at 4 and doubles along the run. Random reads get none.
    #[arg(long, value_name = "BLOCKS", default_value_t = 32)]
    pub readahead: u64,

    /// Limit the link to RATE bytes per second, from 4K to 1T (units K, M,
    /// G: binary; 40M is about a USB 2.0 cable's real rate). Demanded
    /// blocks still go first.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub rate: Option<u64>,

    /// Compress blocks with LZ4 on the link. `auto`: while the link is the
    /// bottleneck (under --rate, or while writes to it block) and LZ4 keeps
    /// up with it, and only blocks that shrink below 95 %; data that does
    /// not shrink is tried less and less often. `lz4`: try every block.
    /// `none`: never.
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = Mode::Auto)]
    pub compress: Mode,

    /// Send only the blocks readers ask for (and their readahead), never
    /// the background stream; for measuring demand reads on an idle link.
    /// The push then ends only if the device completes by demand alone.
    #[arg(long)]
    pub no_stream: bool,

    /// Write a tab-separated log of every demand and every block sent to FILE.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Stream the blocks of this prefetch plan (from `feedfs-host plan`)
    /// first, then the rest in file order. Files that changed since the
    /// plan was made are streamed in file order, with a warning.
    #[arg(long, value_name = "PLAN")]
    pub plan: Option<PathBuf>,

    /// Do not stream zip files (APK, JAR, wheel) in their built-in order
    /// (directory and start-up entries first); use file order.
    #[arg(long)]
    pub no_zip_order: bool,

    /// Files and directories to serve; each is served under its own name.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exactly_one_link() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        assert!(parse(&["feedfs-host", "push", "a"]).is_err());
        assert!(parse(&["feedfs-host", "push", "--stdio", "--exec", "x", "a"]).is_err());
        assert!(parse(&["feedfs-host", "push", "--stdio"]).is_err());
        let Command::Push(p) = parse(&["feedfs-host", "push", "--exec", "x", "a", "b"])
            .unwrap()
            .command
        else {
            panic!("not a push")
        };
        assert_eq!(p.exec.as_deref(), Some("x"));
        assert_eq!(p.block_size, 65536);
        assert_eq!(p.readahead, 32);
        assert_eq!(p.paths.len(), 2);
        let Command::Push(p) =
            parse(&["feedfs-host", "push", "--stdio", "--block-size", "1M", "a"])
                .unwrap()
                .command
        else {
            panic!("not a push")
        };
        assert!(p.stdio);
        assert_eq!(p.block_size, 1 << 20);
        assert!(parse(&["feedfs-host", "push", "--stdio", "--block-size", "3K", "a"]).is_err());
        // USB: --serial and --wait only with --usb.
        let Command::Push(p) = parse(&["feedfs-host", "push", "--usb", "--wait", "a"])
            .unwrap()
            .command
        else {
            panic!("not a push")
        };
        assert!(p.usb && p.wait && p.serial.is_none());
        assert!(parse(&["feedfs-host", "push", "--usb", "--stdio", "a"]).is_err());
        assert!(parse(&["feedfs-host", "push", "--stdio", "--wait", "a"]).is_err());
        assert!(parse(&["feedfs-host", "push", "--exec", "x", "--serial", "s", "a"]).is_err());
    }

    #[test]
    fn compress_is_auto_unless_told() {
        let compress = |extra: &[&str]| {
            let args = [&["feedfs-host", "push", "--stdio"], extra, &["a"]].concat();
            Cli::try_parse_from(args).map(|c| match c.command {
                Command::Push(p) => p.compress,
                _ => panic!("not a push"),
            })
        };
        assert_eq!(compress(&[]).unwrap(), Mode::Auto);
        assert_eq!(compress(&["--compress", "lz4"]).unwrap(), Mode::Lz4);
        assert_eq!(compress(&["--compress", "none"]).unwrap(), Mode::None);
        assert_eq!(compress(&["--compress=auto"]).unwrap(), Mode::Auto);
        assert!(compress(&["--compress", "zstd"]).is_err());
    }

    #[test]
    fn log_and_plan_commands() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        assert!(
            parse(&["feedfs-host", "plan", "a.log"]).is_err(),
            "-o is needed"
        );
        assert!(parse(&["feedfs-host", "plan"]).is_err());
        assert!(parse(&["feedfs-host", "plan", "--show", "p", "-o", "q"]).is_err());
        let Command::Plan(p) = parse(&["feedfs-host", "plan", "a", "b", "-o", "p"])
            .unwrap()
            .command
        else {
            panic!("not plan")
        };
        assert_eq!((p.logs.len(), p.window), (2, 4));
        assert!(parse(&["feedfs-host", "plan", "--show", "p"]).is_ok());
        assert!(
            parse(&["feedfs-host", "log", "plot", "x"]).is_err(),
            "-o is needed"
        );
        assert!(parse(&["feedfs-host", "log", "plot", "x", "-o", "y.svg"]).is_ok());
        assert!(parse(&["feedfs-host", "log", "show", "x", "--json"]).is_ok());
        let Command::Push(p) = parse(&["feedfs-host", "push", "--stdio", "--plan", "p", "a"])
            .unwrap()
            .command
        else {
            panic!("not push")
        };
        assert_eq!(p.plan, Some(PathBuf::from("p")));
    }
}
