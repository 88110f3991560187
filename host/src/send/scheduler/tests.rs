//! The scheduler's specification: demands first as runs of exactly the
//! pages asked for, readahead as runs of its own behind them, the plan and
//! the stream in long runs, Have and resume.

use super::*;
use std::cell::Cell;
use std::time::Instant;

use super::flight::IN_FLIGHT;

mod plan;

thread_local! {
    static CLOCK: (Instant, Cell<u32>) = (Instant::now(), Cell::new(0));
}

/// A time after every earlier one by more than [`IN_FLIGHT`]: what was
/// sent before it is no longer on its way (the tests of the in-flight rule
/// pass their own times).
fn later() -> Instant {
    CLOCK.with(|(t0, n)| {
        n.set(n.get() + 1);
        *t0 + IN_FLIGHT * (2 * n.get())
    })
}

fn r(first: u64, count: u64) -> PageRange {
    PageRange { first, count }
}

/// Demand runs up to 256 pages, the others up to 64.
const L: Limits = Limits {
    demand: 256,
    stream: 64,
};

fn pick(file: u32, first: u64, count: u32, kind: Kind) -> Option<Pick> {
    Some(Pick {
        file: FileId(file),
        first,
        count,
        kind,
    })
}

/// Every run until the scheduler is idle, as (file, first, count, kind).
fn drain_with(s: &mut Scheduler, limits: Limits) -> Vec<(u32, u64, u32, Kind)> {
    std::iter::from_fn(|| s.pick_next(limits, later()))
        .map(|p| (p.file.0, p.first, p.count, p.kind))
        .collect()
}

fn drain(s: &mut Scheduler) -> Vec<(u32, u64, u32, Kind)> {
    drain_with(s, L)
}

#[test]
fn no_stream_before_have_end_then_one_run_per_file() {
    let mut s = Scheduler::new(&[(FileId(0), 3), (FileId(1), 5)], 8);
    assert_eq!(s.pick_next(L, later()), None);
    assert!(!s.stream_finished());
    s.on_have_end();
    assert_eq!(
        drain(&mut s),
        vec![(0, 0, 3, Kind::Stream), (1, 0, 5, Kind::Stream)],
        "a run never crosses from one file to the next"
    );
    assert!(s.stream_finished());
    assert_eq!(s.counters().runs, 2);
    assert_eq!(s.counters().sent(), 8);
}

#[test]
fn only_pages_the_device_lacks_and_nothing_sent_may_be_fetched_ahead() {
    let mut s = Scheduler::new(&[(FileId(0), 100)], 0);
    s.on_have(FileId(0), &[r(10, 5)]).unwrap();
    s.on_have_end();
    assert!(s.unsent(FileId(0), 0, 10));
    assert!(
        !s.unsent(FileId(0), 5, 10),
        "pages 10..15 are on the device"
    );
    assert_eq!(s.pick_next(L, later()), pick(0, 0, 10, Kind::Stream));
    assert!(!s.unsent(FileId(0), 0, 1), "sent");
    assert!(s.unsent(FileId(0), 15, 85));
    assert!(!s.unsent(FileId(0), 15, 86), "past the end");
    assert!(!s.unsent(FileId(0), 15, 0), "nothing");
    assert!(!s.unsent(FileId(1), 0, 1), "not a file");
}

#[test]
fn a_demand_of_one_page_is_a_run_of_one_page() {
    let mut s = Scheduler::new(&[(FileId(0), 1000)], 64);
    s.on_have_end();
    s.on_demand(FileId(0), 500, 1, false, later()).unwrap();
    assert_eq!(s.pick_next(L, later()), pick(0, 500, 1, Kind::Demand));
    // Random access: no readahead; the stream goes on from the start.
    assert_eq!(s.pick_next(L, later()), pick(0, 0, 64, Kind::Stream));
}

#[test]
fn a_demand_of_32_pages_is_one_run_of_32_pages_before_anything_else() {
    let mut s = Scheduler::new(&[(FileId(0), 1000)], 0);
    s.on_have_end();
    assert_eq!(s.pick_next(L, later()), pick(0, 0, 64, Kind::Stream));
    s.on_demand(FileId(0), 300, 32, false, later()).unwrap();
    // Longer than a stream run may be: demands have their own limit.
    let small = Limits {
        demand: 256,
        stream: 4,
    };
    assert_eq!(s.pick_next(small, later()), pick(0, 300, 32, Kind::Demand));
    assert_eq!(s.pick_next(small, later()), pick(0, 64, 4, Kind::Stream));
}

#[test]
fn demands_are_answered_before_have_end_without_readahead() {
    let mut s = Scheduler::new(&[(FileId(0), 20)], 8);
    s.on_demand(FileId(0), 5, 2, false, later()).unwrap();
    s.on_demand(FileId(0), 0, 1, false, later()).unwrap();
    assert_eq!(
        drain(&mut s),
        vec![(0, 5, 2, Kind::Demand), (0, 0, 1, Kind::Demand)]
    );
    assert!(!s.stream_finished());
}

#[test]
fn demand_preempts_stream() {
    let mut s = Scheduler::new(&[(FileId(0), 4), (FileId(2), 4)], 0);
    s.on_have_end();
    let two = Limits {
        demand: 256,
        stream: 2,
    };
    assert_eq!(s.pick_next(two, later()), pick(0, 0, 2, Kind::Stream));
    s.on_demand(FileId(2), 3, 1, false, later()).unwrap();
    assert_eq!(s.pick_next(two, later()), pick(2, 3, 1, Kind::Demand));
    assert_eq!(
        drain_with(&mut s, two),
        vec![
            (0, 2, 2, Kind::Stream),
            (2, 0, 2, Kind::Stream),
            (2, 2, 1, Kind::Stream)
        ]
    );
    let c = s.counters();
    assert_eq!((c.sent_demand, c.sent_stream, c.sent()), (1, 7, 8));
}

#[test]
fn a_demand_longer_than_the_limit_goes_as_consecutive_runs() {
    let mut s = Scheduler::new(&[(FileId(0), 1000)], 0);
    s.on_demand(FileId(0), 10, 600, false, later()).unwrap();
    assert_eq!(
        drain(&mut s),
        vec![
            (0, 10, 256, Kind::Demand),
            (0, 266, 256, Kind::Demand),
            (0, 522, 88, Kind::Demand)
        ]
    );
}

#[test]
fn readahead_follows_a_forward_run_as_separate_runs_skipping_held_and_sent_pages() {
    let mut s = Scheduler::new(&[(FileId(0), 400)], 64);
    s.on_have(FileId(0), &[r(40, 2)]).unwrap();
    s.on_have_end();
    // A reader starts at page 2: random, no readahead.
    s.on_demand(FileId(0), 2, 1, false, later()).unwrap();
    assert_eq!(s.pick_next(L, later()), pick(0, 2, 1, Kind::Demand));
    // It goes on at page 3, where its demand ended: a window of 32 pages
    // (4..36) behind the demand, as its own run.
    s.on_demand(FileId(0), 3, 1, false, later()).unwrap();
    assert_eq!(s.pick_next(L, later()), pick(0, 3, 1, Kind::Demand));
    assert_eq!(s.pick_next(L, later()), pick(0, 4, 32, Kind::Readahead));
    // Next at 36: a window of 64 (37..101), of which 40 and 41 are held.
    s.on_demand(FileId(0), 36, 1, false, later()).unwrap();
    let small = Limits {
        demand: 256,
        stream: 16,
    };
    assert_eq!(
        drain_with(&mut s, small)[..6],
        [
            (0, 36, 1, Kind::Demand),
            (0, 37, 3, Kind::Readahead),
            (0, 42, 16, Kind::Readahead),
            (0, 58, 16, Kind::Readahead),
            (0, 74, 16, Kind::Readahead),
            (0, 90, 11, Kind::Readahead),
        ]
    );
}

#[test]
fn readahead_already_sent_by_the_stream_is_not_sent_again() {
    let mut s = Scheduler::new(&[(FileId(0), 200)], 64);
    s.on_have_end();
    s.on_demand(FileId(0), 0, 1, false, later()).unwrap();
    assert_eq!(s.pick_next(L, later()), pick(0, 0, 1, Kind::Demand));
    // A late Have: the device got 10..20 meanwhile (another session).
    s.on_have(FileId(0), &[r(10, 10)]).unwrap();
    assert_eq!(
        drain(&mut s)[..3],
        [
            (0, 1, 9, Kind::Readahead),
            (0, 20, 13, Kind::Readahead),
            (0, 33, 64, Kind::Stream)
        ]
    );
}

#[test]
fn readahead_stops_at_the_end_of_the_file() {
    let mut s = Scheduler::new(&[(FileId(0), 10), (FileId(1), 10)], 64);
    s.on_have_end();
    // A read from the start of a file is a forward run from the first demand.
    s.on_demand(FileId(0), 0, 3, false, later()).unwrap();
    assert_eq!(
        drain(&mut s)[..3],
        [
            (0, 0, 3, Kind::Demand),
            (0, 3, 7, Kind::Readahead),
            (1, 0, 10, Kind::Stream),
        ]
    );
}

#[test]
fn the_window_doubles_along_a_run_and_a_random_demand_resets_it() {
    let mut s = Scheduler::new(&[(FileId(0), 10_000)], 128).without_stream();
    s.on_have_end();
    let ahead = |s: &mut Scheduler| -> u64 {
        drain(s)
            .iter()
            .filter(|p| p.3 == Kind::Readahead)
            .map(|p| u64::from(p.2))
            .sum()
    };
    s.on_demand(FileId(0), 0, 1, false, later()).unwrap();
    assert_eq!(ahead(&mut s), 32);
    // The reader reached the end of the readahead: 64, then 128 (the limit), then 128.
    s.on_demand(FileId(0), 33, 1, false, later()).unwrap();
    assert_eq!(ahead(&mut s), 64);
    s.on_demand(FileId(0), 98, 1, false, later()).unwrap();
    assert_eq!(ahead(&mut s), 128);
    s.on_demand(FileId(0), 227, 1, false, later()).unwrap();
    assert_eq!(ahead(&mut s), 128);
    // A jump elsewhere is random: nothing extra; then a new run starts small.
    s.on_demand(FileId(0), 5000, 1, false, later()).unwrap();
    assert_eq!(ahead(&mut s), 0);
    s.on_demand(FileId(0), 5001, 1, false, later()).unwrap();
    assert_eq!(ahead(&mut s), 32);
}

#[test]
fn duplicate_demands_are_dropped_and_sent_pages_resent() {
    let mut s = Scheduler::new(&[(FileId(0), 10)], 0);
    s.on_demand(FileId(0), 3, 2, false, later()).unwrap();
    s.on_demand(FileId(0), 4, 2, false, later()).unwrap();
    assert_eq!(s.counters().duplicates, 1);
    // The new page of the second demand continues the first: one run.
    assert_eq!(drain(&mut s), vec![(0, 3, 3, Kind::Demand)]);
    // Page 3 was sent, but the device asks again (say its CRC failed).
    s.on_demand(FileId(0), 3, 1, false, later()).unwrap();
    assert_eq!(drain(&mut s), vec![(0, 3, 1, Kind::Demand)]);
    assert_eq!(s.counters().demands, 3);
    assert_eq!(s.counters().sent_demand, 4);
}

#[test]
fn stream_runs_are_long_and_skip_held_and_sent_pages() {
    let mut s = Scheduler::new(&[(FileId(0), 1000), (FileId(1), 2)], 8);
    s.on_have(FileId(0), &[r(0, 64), r(100, 50)]).unwrap();
    s.on_have(FileId(1), &[r(0, 2)]).unwrap();
    assert_eq!(s.lacking(FileId(0)), Some((886, true)));
    assert_eq!(s.lacking(FileId(1)), Some((0, false)));
    s.on_have_end();
    s.on_demand(FileId(0), 300, 10, false, later()).unwrap();
    assert_eq!(s.pick_next(L, later()), pick(0, 300, 10, Kind::Demand));
    let big = Limits {
        demand: 256,
        stream: 256,
    };
    assert_eq!(
        drain_with(&mut s, big),
        vec![
            (0, 64, 36, Kind::Stream),
            (0, 150, 150, Kind::Stream),
            (0, 310, 256, Kind::Stream),
            (0, 566, 256, Kind::Stream),
            (0, 822, 178, Kind::Stream),
        ]
    );
    assert!(s.stream_finished());
}

#[test]
fn runs_never_exceed_the_limits() {
    let mut s = Scheduler::new(&[(FileId(0), 5000), (FileId(1), 777)], 300)
        .with_plan(&[(FileId(1), 100, 500)])
        .unwrap();
    s.on_have_end();
    s.on_demand(FileId(0), 0, 1000, false, later()).unwrap();
    let limits = Limits {
        demand: 100,
        stream: 7,
    };
    let runs = drain_with(&mut s, limits);
    assert!(runs.iter().all(|p| p.2 >= 1), "no empty run");
    assert!(runs
        .iter()
        .all(|p| p.2 <= if p.3 == Kind::Demand { 100 } else { 7 }));
    let pages: u64 = runs.iter().map(|p| u64::from(p.2)).sum();
    assert_eq!(pages, 5777, "every page once");
}

#[test]
fn stream_done_waits_for_queues() {
    let mut s = Scheduler::new(&[(FileId(0), 4)], 2);
    s.on_have(FileId(0), &[r(0, 4)]).unwrap();
    s.on_have_end();
    assert!(s.stream_finished());
    // A re-demand after the end reopens the queue until it is answered.
    s.on_demand(FileId(0), 1, 1, false, later()).unwrap();
    assert!(!s.stream_finished());
    assert_eq!(s.pick_next(L, later()), pick(0, 1, 1, Kind::Demand));
    // Readahead skipped 2 and 3: the device holds them.
    assert_eq!(s.pick_next(L, later()), None);
    assert!(s.stream_finished());
}

#[test]
fn empty_manifest_finishes_at_once() {
    let mut s = Scheduler::new(&[], 8);
    assert!(!s.stream_finished());
    s.on_have_end();
    assert!(s.stream_finished());
    let mut s = Scheduler::new(&[(FileId(1), 0)], 8);
    s.on_have_end();
    assert_eq!(s.pick_next(L, later()), None);
    assert!(s.stream_finished());
}

#[test]
fn out_of_range_and_non_files_are_errors() {
    let mut s = Scheduler::new(&[(FileId(1), 10)], 8);
    assert_eq!(
        s.on_demand(FileId(1), 9, 2, false, later()),
        Err(SchedError::OutOfRange {
            file: FileId(1),
            first: 9,
            count: 2,
            pages: 10
        })
    );
    assert!(matches!(
        s.on_demand(FileId(1), u64::MAX, 2, false, later()),
        Err(SchedError::OutOfRange { .. })
    ));
    assert_eq!(
        s.on_demand(FileId(0), 0, 1, false, later()),
        Err(SchedError::NotAFile(FileId(0)))
    );
    assert_eq!(
        s.on_demand(FileId(7), 0, 1, false, later()),
        Err(SchedError::NotAFile(FileId(7)))
    );
    // A Have with one bad range applies none of them.
    assert!(s.on_have(FileId(1), &[r(0, 2), r(10, 1)]).is_err());
    assert_eq!(s.lacking(FileId(1)), Some((10, true)));
    assert_eq!(s.counters().demands, 0);
    let text = s
        .on_demand(FileId(1), 9, 2, false, later())
        .unwrap_err()
        .to_string();
    assert_eq!(
        text,
        "pages 9..11 of file #1 are out of range: the file has 10 pages"
    );
}

#[test]
fn without_stream_only_demands_go_out() {
    let mut s = Scheduler::new(&[(FileId(0), 100)], 2).without_stream();
    s.on_have_end();
    assert!(!s.has_work());
    assert_eq!(s.pick_next(L, later()), None);
    assert!(!s.stream_finished(), "no StreamDone without a stream");
    s.on_demand(FileId(0), 0, 1, false, later()).unwrap();
    assert_eq!(
        drain(&mut s),
        vec![(0, 0, 1, Kind::Demand), (0, 1, 2, Kind::Readahead)]
    );
}

#[test]
fn a_paused_stream_still_lets_demands_and_readahead_out() {
    let mut s = Scheduler::new(&[(FileId(0), 100)], 4);
    s.on_have_end();
    s.pause_stream(true);
    assert!(!s.has_work());
    assert_eq!(s.pick_next(L, later()), None);
    assert!(!s.stream_finished(), "paused is not finished");
    s.on_demand(FileId(0), 0, 1, false, later()).unwrap();
    assert!(s.demand_waiting());
    assert_eq!(
        drain(&mut s),
        vec![(0, 0, 1, Kind::Demand), (0, 1, 4, Kind::Readahead)]
    );
    s.pause_stream(false);
    assert_eq!(s.pick_next(L, later()), pick(0, 5, 64, Kind::Stream));
}

#[test]
fn a_demand_for_pages_on_their_way_sends_only_the_others() {
    let t0 = Instant::now();
    let ms = std::time::Duration::from_millis(1);
    let mut s = Scheduler::new(&[(FileId(0), 1024)], 256);
    s.on_have_end();
    let l = Limits {
        demand: 256,
        stream: 64,
    };
    // A forward reader: its first demand, then readahead behind it.
    s.on_demand(FileId(0), 0, 32, false, t0).unwrap();
    assert_eq!(s.pick_next(l, t0), pick(0, 0, 32, Kind::Demand));
    assert_eq!(s.pick_next(l, t0 + ms), pick(0, 32, 32, Kind::Readahead));
    // The reader asks for 32..96 before the readahead landed: 32..64 is on
    // its way and is not sent again; 64..96, queued as readahead, goes now.
    s.on_demand(FileId(0), 32, 64, false, t0 + 2 * ms).unwrap();
    assert_eq!(s.pick_next(l, t0 + 3 * ms), pick(0, 64, 32, Kind::Demand));
    assert_eq!(s.counters().in_flight, 32);
    // A page that never came is asked for again after the window (counted
    // from the last run that continued its own): sent again.
    s.on_demand(FileId(0), 40, 1, false, t0 + 3 * ms + IN_FLIGHT)
        .unwrap();
    assert_eq!(
        s.pick_next(l, t0 + 3 * ms + IN_FLIGHT),
        pick(0, 40, 1, Kind::Demand)
    );
    assert_eq!(s.counters().in_flight, 32);
    // A page that arrived damaged is asked for again at once: sent again
    // although it is still counted as on its way.
    s.on_demand(FileId(0), 64, 2, true, t0 + 4 * ms + IN_FLIGHT)
        .unwrap();
    assert_eq!(
        s.pick_next(l, t0 + 4 * ms + IN_FLIGHT),
        pick(0, 64, 2, Kind::Demand)
    );
    assert_eq!(s.counters().in_flight, 32);
}
