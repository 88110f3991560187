//! `feedfs-device`: the device daemon's command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use feedfs_device::session::{self, Link, MountOptions};
use feedfs_device::units::{parse_duration, parse_kib};

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
    /// Re-check every block the store holds against its recorded CRC-32.
    ///
    /// Bad blocks are dropped from the store's map, so the next host sends
    /// them again. Exit status: 0 all good, 3 bad blocks were found and
    /// dropped, 1 the store could not be checked (for example, a daemon is
    /// using it).
    Verify {
        /// The store directory.
        #[arg(long, value_name = "DIR")]
        store: PathBuf,
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
        #[arg(long, value_name = "DIR")]
        store: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
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
    /// How far the kernel reads ahead of a reader on the mount (K, M; 0 for
    /// none; set as root only). Large suits a fast link; on a slow link
    /// (USB 2.0) with scattered reads, 128K wastes less of it.
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_kib)]
    kernel_readahead: u32,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info,fuser=warn"))
        .target(env_logger::Target::Stderr)
        .init();
    match run(Cli::parse()) {
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
            let reports = feedfs_device::verify::verify(&store)?;
            let mut bad = 0;
            for r in &reports {
                println!(
                    "{}: {} of {} blocks present and good, {} bad",
                    r.path,
                    r.present,
                    r.blocks,
                    r.bad.len()
                );
                if !r.bad.is_empty() {
                    println!("  dropped, to be fetched again: blocks {:?}", r.bad);
                }
                bad += r.bad.len();
            }
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Status { store, json } => {
            let s = feedfs_device::status::status(&store)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", feedfs_device::status::render_text(&s));
            }
            Ok(ExitCode::SUCCESS)
        }
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
            kernel_readahead_kb: a.kernel_readahead,
        })
        .map(|()| ExitCode::SUCCESS),
    }
}
