//! The `push` command from start to finish: walk the paths, learn what to
//! stream first, and feed the devices ([`crate::fleet`]); then explain
//! how each ended.
//!
//! Everything the device would refuse is refused before a link is opened.
//! One device keeps its progress line, its one summary line on stderr
//! (terminal or not) and its error as the push's: a broken link with
//! `--exec` is explained with the device command's exit status when it has
//! exited; a successful push leaves the command running. With `--usb
//! --wait` a broken link is a device that went away: the push waits for it
//! and resumes. Several devices get a row each on a terminal, a line each
//! as they finish and one closing line; the push fails when any did.
//! SIGINT, SIGTERM and SIGHUP end it cleanly ([`crate::send::stop`]).

use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use feedfs_protocol::io::print_stdout;
use feedfs_protocol::FileId;

use crate::cli::PushArgs;
use crate::files::http::ClientOptions;
use crate::files::manifest::{walk_with, ServedSet};
use crate::files::shared::SharedSource;
use crate::files::source::{nothing_ahead, open};
use crate::fleet::board::Board;
use crate::fleet::report::{closing, json, outcome, Fed, Served};
use crate::fleet::targets::{check_record, several, targets, Device, Targets};
use crate::fleet::Fleet;
use crate::prefetch::plan::PLAN_VERSION_BLOCKS;
use crate::prefetch::ziporder::zip_pages;
use crate::send::progress::Progress;
use crate::send::session::{Options, SessionError};
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

/// Run `feedfs-host push`: `Ok` only when every device reported `Complete`.
pub fn push(args: &PushArgs) -> Result<Vec<Fed>> {
    let start = Instant::now();
    let stop = Stop::install().context("cannot set up signal handling")?;
    let targets = targets(args)?;
    let several = several(&targets);
    if let Some(path) = &args.record {
        // Refused before anything starts, not once per device.
        check_record(path, several)?;
    }
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
    let plan = first_ranges(args, &set)?;
    let options = Options {
        readahead: feedfs_protocol::page_count(args.readahead),
        run_size: args.run_size,
        rate: args.rate,
        stream: !args.no_stream,
        compress: args.compress,
        handshake_timeout: args.handshake_timeout,
    };
    let shared = SharedSource::new(args.cache);
    let fleet = Fleet {
        args,
        set: &set,
        plan: &plan,
        options,
        stop: &stop,
        start,
        shared: (several && args.cache > 0).then_some(&shared),
    };
    let served = Served {
        files: set.files().count() as u64,
        left_out: set.left_out(),
    };
    let terminal = std::io::stderr().is_terminal();
    let all = match targets {
        Targets::Listed(devices) if devices.len() == 1 => {
            return one(&fleet, &devices[0], terminal, &served);
        }
        targets => {
            // A signal ends the waits for devices too (they look at
            // `Stop::signalled`), and the summaries are written: it is taken.
            let _waits = stop.attach(|_| true);
            let board = Arc::new(Board::new(terminal, start));
            crate::term::set_drawn(Some(board.clone()));
            let all = match targets {
                Targets::Listed(devices) => fleet.feed_listed(&devices, &board, &served),
                Targets::EveryUsb => fleet.feed_every_usb(&board, &served)?,
            };
            crate::term::set_drawn(None);
            board.clear();
            all
        }
    };
    let source_bytes = match fleet.shared {
        Some(shared) => {
            log::info!(
                "page cache: {} slabs dropped (devices further apart than --cache read \
                 their pages again)",
                shared.cache().stats().dropped
            );
            shared.bytes_read()
        }
        None => all
            .iter()
            .filter_map(|f| f.result.as_ref().ok())
            .map(|s| s.source_bytes)
            .sum(),
    };
    crate::term::write_lines(format!("feedfs-host: {}\n", closing(&all, source_bytes)).as_bytes());
    print_json(args, &all, source_bytes, &served)?;
    let failed = all.iter().filter(|f| f.result.is_err()).count();
    let what = format!("{failed} of {} devices did not complete", all.len());
    match (failed, stop.signalled()) {
        (0, _) => Ok(all),
        (_, None) => Err(anyhow::anyhow!(what)),
        (_, Some(sig)) => Err(anyhow::Error::new(SessionError::Interrupted(sig)).context(what)),
    }
}

/// Push to one device: its progress line, its summary line, its error
/// as the push's.
fn one(fleet: &Fleet, device: &Device, terminal: bool, served: &Served) -> Result<Vec<Fed>> {
    let mut record = fleet.record(device, false)?;
    let mut progress = Progress::new(terminal, fleet.start);
    let status = |text: &str| eprintln!("feedfs-host: {text}");
    let result = fleet.feed(device, &mut record, &mut progress, &status);
    let fed = Fed {
        device: device.clone(),
        result: result.as_ref().map(|s| *s).map_err(|e| format!("{e:#}")),
        elapsed: fleet.start.elapsed(),
    };
    if let Ok(summary) = &fed.result {
        progress.finish(Instant::now(), &outcome(summary, served));
    }
    let source_bytes = fed.result.as_ref().map_or(0, |s| s.source_bytes);
    // The session's error stays the push's, whatever happens to the JSON.
    if let Err(e) = print_json(fleet.args, std::slice::from_ref(&fed), source_bytes, served) {
        log::warn!("{e:#}");
    }
    result.map(|_| vec![fed])
}

/// With `--json`: the summary of every device on stdout.
fn print_json(args: &PushArgs, all: &[Fed], source_bytes: u64, served: &Served) -> Result<()> {
    if !args.json {
        return Ok(());
    }
    let text = serde_json::to_string_pretty(&json(all, source_bytes, served))?;
    print_stdout(|out| writeln!(out, "{text}")).context("cannot write the JSON summary")
}
