//! `feedfs-device`: the device daemon's command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use feedfs_device::session::{self, Link, MountOptions};
use feedfs_device::units::parse_duration;

/// Mount files served by feedfs-host at once and fill them block by block.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount the host's files at MOUNTPOINT, read-only, as soon as the manifest arrives.
    ///
    /// Blocks land in the store; a read of a block not there yet waits for it
    /// (at most --read-timeout, then EIO). The daemon stays mounted when the
    /// link ends and unmounts on SIGINT or SIGTERM.
    Mount(MountArgs),
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("link").required(true))]
struct MountArgs {
    /// Where to mount (an existing directory).
    mountpoint: PathBuf,
    /// Store directory: block data and the map of present blocks (created if missing).
    #[arg(long, value_name = "DIR")]
    store: PathBuf,
    /// Use this process's stdin/stdout as the link (for feedfs-host --exec, adb shell, ssh).
    #[arg(long, group = "link")]
    stdio: bool,
    /// No link: mount the files the store already knows and serve the blocks it holds
    /// (reads of missing blocks fail with EIO).
    #[arg(long, group = "link")]
    offline: bool,
    /// How long a read may wait for a missing block before it fails with EIO.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    read_timeout: Duration,
    /// Let other users read the mount (needs user_allow_other in /etc/fuse.conf when not root).
    #[arg(long)]
    allow_other: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info,fuser=warn"))
        .target(env_logger::Target::Stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("feedfs-device: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Mount(a) => session::run(MountOptions {
            link: if a.offline {
                Link::Offline
            } else {
                Link::Stdio
            },
            mountpoint: a.mountpoint,
            store: a.store,
            read_timeout: a.read_timeout,
            allow_other: a.allow_other,
        }),
    }
}
