//! The `push` command from start to finish: walk the paths, open the record
//! file and the link, run the session, and explain a failure.
//!
//! Everything the device would refuse is refused before the link is opened.
//! A broken link with `--exec` is explained with the device command's exit
//! status when it has exited; a successful push leaves the command running.
//! With `--usb --wait` a broken link is a device that went away: the push
//! waits for it and resumes. A successful push ends with one summary line
//! on stderr, terminal or not; SIGINT, SIGTERM and SIGHUP end it cleanly
//! ([`crate::send::stop`]).

use std::collections::HashSet;
use std::io::IsTerminal;
use std::time::Instant;

use anyhow::{Context, Result};
use feedfs_protocol::FileId;

use crate::cli::PushArgs;
use crate::files::http::ClientOptions;
use crate::files::manifest::{walk_with, ServedSet};
use crate::files::source::{nothing_ahead, open};
use crate::link::Link;
use crate::logs::record::Recorder;
use crate::prefetch::plan::PLAN_VERSION_BLOCKS;
use crate::prefetch::ziporder::zip_pages;
use crate::send::progress::{Outcome, Progress};
use crate::send::session::{Options, Session, Summary};
use crate::send::stop::Stop;

/// Smallest file looked at for a zip order.
const ZIP_ORDER_MIN: u64 = 1 << 20;

/// What to stream first: the plan's ranges (`--plan`), then the built-in
/// order of zip files of at least [`ZIP_ORDER_MIN`] bytes that the plan
/// does not cover (unless `--no-zip-order`).
fn first_ranges(args: &PushArgs, set: &ServedSet) -> Result<Vec<(FileId, u64, u64)>> {
    let mut ranges = Vec::new();
    if let Some(path) = &args.plan {
        let plan = crate::logs::logcmd::read_plan(path)?;
        if plan.read_from == PLAN_VERSION_BLOCKS {
            log::info!(
                "plan {}: made in blocks by an older feedfs-host, read in pages",
                path.display()
            );
        }
        let (planned, warnings) = plan.resolve(set);
        for w in warnings {
            log::warn!("{w}");
        }
        log::info!(
            "plan {}: {} pages first",
            path.display(),
            planned.iter().map(|r| r.2).sum::<u64>()
        );
        ranges = planned;
    }
    if args.no_zip_order {
        return Ok(ranges);
    }
    let covered: HashSet<FileId> = ranges.iter().map(|r| r.0).collect();
    // Smaller files stream in moments whatever their order; leaving them
    // out keeps a tree of many small files from costing an open each.
    let zips = set
        .files()
        .filter(|e| e.size >= ZIP_ORDER_MIN && !covered.contains(&e.id));
    for e in zips {
        let Ok(mut backend) = open(e) else {
            continue;
        };
        let mut read = |off: u64, buf: &mut [u8]| {
            backend
                .read_exact_at(buf, off, &nothing_ahead)
                .map_err(|e| std::io::Error::other(e.to_string()))
        };
        if let Some(zip) = zip_pages(&mut read, e.size) {
            log::info!(
                "{}: a zip; its directory and start-up entries go first",
                e.path
            );
            ranges.extend(zip.into_iter().map(|(first, count)| (e.id, first, count)));
        }
    }
    Ok(ranges)
}

/// Run `feedfs-host push`; `Ok` only when the device reported `Complete`.
pub fn push(args: &PushArgs) -> Result<Summary> {
    let start = Instant::now();
    let stop = Stop::install().context("cannot set up signal handling")?;
    let http = ClientOptions {
        headers: args.headers.clone(),
        cacert: args.cacert.clone(),
        retry_for: args.retry_for,
        endpoint_url: args.endpoint_url.clone(),
        path_style: args.path_style,
    };
    let set = walk_with(&args.paths, &http)?;
    log::info!(
        "serving {} entries, {} files, {} bytes",
        set.entries.len(),
        set.files().count(),
        set.total_bytes
    );
    let mut record = match &args.record {
        Some(path) => Recorder::create(path)
            .with_context(|| format!("cannot create the record file {}", path.display()))?,
        None => Recorder::disabled(),
    };
    for e in set.files() {
        record
            .file(e.id, e.size, &e.path, &e.identity)
            .context("cannot write the record file")?;
    }
    record.flush().context("cannot write the record file")?;
    let plan = first_ranges(args, &set)?;

    let mut progress = Progress::new(std::io::stderr().is_terminal(), start);
    let options = Options {
        readahead: feedfs_protocol::page_count(args.readahead),
        run_size: args.run_size,
        rate: args.rate,
        stream: !args.no_stream,
        compress: args.compress,
        handshake_timeout: args.handshake_timeout,
    };
    // With --usb --wait, a device that goes away is waited for and the
    // transfer resumes: the device's Have tells what it still lacks.
    loop {
        let Link {
            read,
            write,
            mut peer,
        } = open_link(args)?;
        let result = Session::new(&set, options, &mut record, &mut progress, start)
            .with_plan(&plan)
            .context("the plan does not fit the files served")?
            .with_stop(&stop)
            .run(read, write);
        progress.clear();
        if let Err(e) = record.flush() {
            log::warn!("could not finish the record file: {e}");
        }
        return match result {
            Ok(summary) => {
                let outcome = Outcome {
                    files: set.files().count() as u64,
                    bytes_sent: summary.bytes_sent,
                    pages_had: summary.pages_had,
                    demands: summary.counters.demands,
                    left_out: set.left_out(),
                };
                progress.finish(Instant::now(), &outcome);
                Ok(summary)
            }
            Err(e) if e.is_link() && args.wait => {
                eprintln!("feedfs-host: the device went away ({e}); waiting for it to come back");
                continue;
            }
            Err(e) if e.is_link() => match peer.describe_end() {
                Some(end) => Err(anyhow::Error::new(e).context(end)),
                None => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        };
    }
}

fn open_link(args: &PushArgs) -> Result<Link> {
    Ok(match (&args.exec, args.stdio, args.usb) {
        (Some(cmd), _, _) => {
            Link::exec(cmd).with_context(|| format!("cannot start the device command {cmd:?}"))?
        }
        (None, true, _) => Link::stdio().context("cannot use stdin and stdout as the link")?,
        (None, false, true) => {
            Link::usb(args.serial.as_deref(), args.wait).context("cannot open the USB link")?
        }
        (None, false, false) => anyhow::bail!("no link given: use --exec CMD, --stdio or --usb"),
    })
}
