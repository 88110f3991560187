//! The scheduler's specification: demands first, readahead, the plan, the stream, Have and resume.

use super::*;

fn r(first: u64, count: u64) -> BlockRange {
    BlockRange { first, count }
}

fn pick(file: u32, index: u64, kind: Kind) -> Option<Pick> {
    Some(Pick {
        file: FileId(file),
        index,
        kind,
    })
}

/// Every pick until the scheduler is idle.
fn drain(s: &mut Scheduler) -> Vec<(u32, u64, Kind)> {
    std::iter::from_fn(|| s.pick_next())
        .map(|p| (p.file.0, p.index, p.kind))
        .collect()
}

#[test]
fn no_stream_before_have_end() {
    let mut s = Scheduler::new(&[(FileId(0), 3)], 8);
    assert_eq!(s.pick_next(), None);
    assert!(!s.stream_finished());
    s.on_have_end();
    assert_eq!(
        drain(&mut s),
        vec![
            (0, 0, Kind::Stream),
            (0, 1, Kind::Stream),
            (0, 2, Kind::Stream)
        ]
    );
    assert!(s.stream_finished());
}

#[test]
fn demands_are_answered_before_have_end_without_readahead() {
    let mut s = Scheduler::new(&[(FileId(0), 20)], 8);
    s.on_demand(FileId(0), 5, 2).unwrap();
    assert_eq!(
        drain(&mut s),
        vec![(0, 5, Kind::Demand), (0, 6, Kind::Demand)]
    );
    assert!(!s.stream_finished());
}

#[test]
fn demand_preempts_stream() {
    let mut s = Scheduler::new(&[(FileId(0), 4), (FileId(2), 4)], 0);
    s.on_have_end();
    assert_eq!(s.pick_next(), pick(0, 0, Kind::Stream));
    s.on_demand(FileId(2), 3, 1).unwrap();
    assert_eq!(s.pick_next(), pick(2, 3, Kind::Demand));
    assert_eq!(
        drain(&mut s),
        vec![
            (0, 1, Kind::Stream),
            (0, 2, Kind::Stream),
            (0, 3, Kind::Stream),
            (2, 0, Kind::Stream),
            (2, 1, Kind::Stream),
            (2, 2, Kind::Stream),
        ]
    );
    let c = s.counters();
    assert_eq!((c.sent_demand, c.sent_stream, c.sent()), (1, 7, 8));
}

#[test]
fn readahead_follows_a_forward_run_and_skips_held_and_sent_blocks() {
    let mut s = Scheduler::new(&[(FileId(0), 40)], 8);
    s.on_have(FileId(0), &[r(6, 1)]).unwrap();
    s.on_have_end();
    // The stream sends block 0; a reader starts at block 2: random, no readahead.
    assert_eq!(s.pick_next(), pick(0, 0, Kind::Stream));
    s.on_demand(FileId(0), 2, 1).unwrap();
    assert_eq!(s.pick_next(), pick(0, 2, Kind::Demand));
    assert_eq!(s.pick_next(), pick(0, 1, Kind::Stream));
    // It goes on at block 3, where the last demand ended: a window of 4
    // (4..8), of which 6 is held.
    s.on_demand(FileId(0), 3, 1).unwrap();
    assert_eq!(
        drain(&mut s)[..4],
        [
            (0, 3, Kind::Demand),
            (0, 4, Kind::Readahead),
            (0, 5, Kind::Readahead),
            (0, 7, Kind::Readahead)
        ]
    );
}

#[test]
fn readahead_stops_at_the_end_of_the_file() {
    let mut s = Scheduler::new(&[(FileId(0), 5), (FileId(1), 5)], 8);
    s.on_have_end();
    // A read from the start of a file is a forward run from the first demand.
    s.on_demand(FileId(0), 0, 3).unwrap();
    assert_eq!(
        drain(&mut s)[..5],
        [
            (0, 0, Kind::Demand),
            (0, 1, Kind::Demand),
            (0, 2, Kind::Demand),
            (0, 3, Kind::Readahead),
            (0, 4, Kind::Readahead),
        ]
    );
}

#[test]
fn the_window_doubles_along_a_run_and_a_random_demand_resets_it() {
    let mut s = Scheduler::new(&[(FileId(0), 1000)], 16).without_stream();
    s.on_have_end();
    let ahead = |s: &mut Scheduler| drain(s).iter().filter(|p| p.2 == Kind::Readahead).count();
    s.on_demand(FileId(0), 0, 1).unwrap();
    assert_eq!(ahead(&mut s), 4);
    // The reader reached the end of the readahead: 8, then 16 (the limit), then 16.
    s.on_demand(FileId(0), 5, 1).unwrap();
    assert_eq!(ahead(&mut s), 8);
    s.on_demand(FileId(0), 14, 1).unwrap();
    assert_eq!(ahead(&mut s), 16);
    s.on_demand(FileId(0), 31, 1).unwrap();
    assert_eq!(ahead(&mut s), 16);
    // A jump elsewhere is random: nothing extra; then a new run starts small.
    s.on_demand(FileId(0), 500, 1).unwrap();
    assert_eq!(ahead(&mut s), 0);
    s.on_demand(FileId(0), 501, 1).unwrap();
    assert_eq!(ahead(&mut s), 4);
}

#[test]
fn duplicate_demands_are_dropped_and_sent_blocks_resent() {
    let mut s = Scheduler::new(&[(FileId(0), 10)], 0);
    s.on_demand(FileId(0), 3, 2).unwrap();
    s.on_demand(FileId(0), 4, 2).unwrap();
    assert_eq!(s.counters().duplicates, 1);
    assert_eq!(
        drain(&mut s),
        vec![
            (0, 3, Kind::Demand),
            (0, 4, Kind::Demand),
            (0, 5, Kind::Demand)
        ]
    );
    // Block 3 was sent, but the device asks again (say its CRC failed).
    s.on_demand(FileId(0), 3, 1).unwrap();
    assert_eq!(drain(&mut s), vec![(0, 3, Kind::Demand)]);
    assert_eq!(s.counters().demands, 3);
    assert_eq!(s.counters().sent_demand, 4);
}

#[test]
fn held_blocks_are_never_streamed() {
    let mut s = Scheduler::new(&[(FileId(0), 130), (FileId(1), 2)], 8);
    s.on_have(FileId(0), &[r(0, 64), r(65, 64)]).unwrap();
    s.on_have(FileId(1), &[r(0, 2)]).unwrap();
    assert_eq!(s.lacking(FileId(0)), Some((2, true)));
    assert_eq!(s.lacking(FileId(1)), Some((0, false)));
    s.on_have_end();
    assert_eq!(
        drain(&mut s),
        vec![(0, 64, Kind::Stream), (0, 129, Kind::Stream)]
    );
    assert!(s.stream_finished());
}

#[test]
fn stream_done_waits_for_queues() {
    let mut s = Scheduler::new(&[(FileId(0), 4)], 2);
    s.on_have(FileId(0), &[r(0, 4)]).unwrap();
    s.on_have_end();
    assert!(s.stream_finished());
    // A re-demand after the end reopens the queue until it is answered.
    s.on_demand(FileId(0), 1, 1).unwrap();
    assert!(!s.stream_finished());
    assert_eq!(s.pick_next(), pick(0, 1, Kind::Demand));
    // Readahead skipped 2 and 3: the device holds them.
    assert_eq!(s.pick_next(), None);
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
    assert_eq!(s.pick_next(), None);
    assert!(s.stream_finished());
}

#[test]
fn out_of_range_and_non_files_are_errors() {
    let mut s = Scheduler::new(&[(FileId(1), 10)], 8);
    assert_eq!(
        s.on_demand(FileId(1), 9, 2),
        Err(SchedError::OutOfRange {
            file: FileId(1),
            first: 9,
            count: 2,
            blocks: 10
        })
    );
    assert!(matches!(
        s.on_demand(FileId(1), u64::MAX, 2),
        Err(SchedError::OutOfRange { .. })
    ));
    assert_eq!(
        s.on_demand(FileId(0), 0, 1),
        Err(SchedError::NotAFile(FileId(0)))
    );
    assert_eq!(
        s.on_demand(FileId(7), 0, 1),
        Err(SchedError::NotAFile(FileId(7)))
    );
    // A Have with one bad range applies none of them.
    assert!(s.on_have(FileId(1), &[r(0, 2), r(10, 1)]).is_err());
    assert_eq!(s.lacking(FileId(1)), Some((10, true)));
    assert_eq!(s.counters().demands, 0);
    let text = s.on_demand(FileId(1), 9, 2).unwrap_err().to_string();
    assert_eq!(
        text,
        "blocks 9..11 of file #1 are out of range: the file has 10 blocks"
    );
}

#[test]
fn without_stream_only_demands_go_out() {
    let mut s = Scheduler::new(&[(FileId(0), 100)], 2).without_stream();
    s.on_have_end();
    assert!(!s.has_work());
    assert_eq!(s.pick_next(), None);
    assert!(!s.stream_finished(), "no StreamDone without a stream");
    s.on_demand(FileId(0), 0, 1).unwrap();
    let kinds: Vec<_> = std::iter::from_fn(|| s.pick_next())
        .map(|p| (p.index, p.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (0, Kind::Demand),
            (1, Kind::Readahead),
            (2, Kind::Readahead)
        ]
    );
}

#[test]
fn a_paused_stream_still_lets_demands_and_readahead_out() {
    let mut s = Scheduler::new(&[(FileId(0), 100)], 4);
    s.on_have_end();
    s.pause_stream(true);
    assert!(!s.has_work());
    assert_eq!(s.pick_next(), None);
    assert!(!s.stream_finished(), "paused is not finished");
    s.on_demand(FileId(0), 0, 1).unwrap();
    assert_eq!(drain(&mut s).len(), 5, "the demand and its readahead");
    s.pause_stream(false);
    assert_eq!(s.pick_next(), pick(0, 5, Kind::Stream));
}
#[test]
fn planned_blocks_go_first_then_the_rest_in_file_order() {
    let plan = [(FileId(1), 2, 2), (FileId(0), 3, 1), (FileId(1), 3, 2)];
    let mut s = Scheduler::new(&[(FileId(0), 5), (FileId(1), 6)], 0)
        .with_plan(&plan)
        .unwrap();
    s.on_have(FileId(0), &[r(3, 1)]).unwrap();
    // Before HaveEnd, the plan waits like the stream.
    assert_eq!(s.pick_next(), None);
    s.on_have_end();
    assert_eq!(s.pick_next(), pick(1, 2, Kind::Plan));
    // A demand pre-empts the plan.
    s.on_demand(FileId(0), 4, 1).unwrap();
    assert_eq!(s.pick_next(), pick(0, 4, Kind::Demand));
    assert_eq!(
        drain(&mut s),
        vec![
            // 0:3 is held; 1:3 was planned twice, sent once.
            (1, 3, Kind::Plan),
            (1, 4, Kind::Plan),
            (0, 0, Kind::Stream),
            (0, 1, Kind::Stream),
            (0, 2, Kind::Stream),
            (1, 0, Kind::Stream),
            (1, 1, Kind::Stream),
            (1, 5, Kind::Stream),
        ]
    );
    assert!(s.stream_finished());
    let c = s.counters();
    assert_eq!((c.sent_plan, c.sent_stream, c.sent()), (3, 6, 10));
}

#[test]
fn a_paused_stream_lets_the_plan_go_and_bad_plans_are_refused() {
    let mut s = Scheduler::new(&[(FileId(0), 10)], 0)
        .with_plan(&[(FileId(0), 5, 1)])
        .unwrap();
    s.on_have_end();
    s.pause_stream(true);
    assert!(s.has_work());
    assert_eq!(s.pick_next(), pick(0, 5, Kind::Plan));
    assert!(!s.has_work(), "the rest of the stream waits");
    assert_eq!(s.pick_next(), None);
    s.pause_stream(false);
    assert_eq!(s.pick_next(), pick(0, 0, Kind::Stream));
    let bad = Scheduler::new(&[(FileId(0), 10)], 0).with_plan(&[(FileId(0), 9, 2)]);
    assert!(matches!(bad, Err(SchedError::OutOfRange { .. })));
    let bad = Scheduler::new(&[(FileId(0), 10)], 0).with_plan(&[(FileId(1), 0, 1)]);
    assert!(matches!(bad, Err(SchedError::NotAFile(_))));
}

#[test]
fn a_demand_for_a_planned_block_gets_no_readahead_the_plan_goes_on() {
    let mut s = Scheduler::new(&[(FileId(0), 100)], 8)
        .with_plan(&[(FileId(0), 10, 2), (FileId(0), 50, 2)])
        .unwrap();
    s.on_have_end();
    // A reader at the start of the file: not planned, readahead as usual.
    s.on_demand(FileId(0), 0, 1).unwrap();
    assert_eq!(s.pick_next(), pick(0, 0, Kind::Demand));
    assert_eq!(s.pick_next(), pick(0, 1, Kind::Readahead));
    for _ in 2..5 {
        assert_eq!(s.pick_next().unwrap().kind, Kind::Readahead);
    }
    // A reader at a planned block: the plan goes on from there.
    s.on_demand(FileId(0), 11, 1).unwrap();
    assert_eq!(
        drain(&mut s)[..4],
        [
            (0, 11, Kind::Demand),
            (0, 10, Kind::Plan),
            (0, 50, Kind::Plan),
            (0, 51, Kind::Plan)
        ]
    );
}
