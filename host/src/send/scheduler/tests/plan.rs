//! The scheduler's specification for a prefetch plan: planned pages first,
//! in the plan's order, then the rest; a demand still goes ahead of them.

use super::*;

#[test]
fn planned_pages_go_first_then_the_rest_in_file_order() {
    let plan = [(FileId(1), 2, 2), (FileId(0), 3, 1), (FileId(1), 3, 2)];
    let mut s = Scheduler::new(&[(FileId(0), 5), (FileId(1), 6)], 0)
        .with_plan(&plan)
        .unwrap();
    s.on_have(FileId(0), &[r(3, 1)]).unwrap();
    // Before HaveEnd, the plan waits like the stream.
    assert_eq!(s.pick_next(L, later()), None);
    s.on_have_end();
    let one = Limits {
        demand: 256,
        stream: 1,
    };
    assert_eq!(s.pick_next(one, later()), pick(1, 2, 1, Kind::Plan));
    // A demand pre-empts the plan.
    s.on_demand(FileId(0), 4, 1, false, later()).unwrap();
    assert_eq!(s.pick_next(L, later()), pick(0, 4, 1, Kind::Demand));
    assert_eq!(
        drain(&mut s),
        vec![
            // 0:3 is held; 1:3 was planned twice, sent once.
            (1, 3, 1, Kind::Plan),
            (1, 4, 1, Kind::Plan),
            (0, 0, 3, Kind::Stream),
            (1, 0, 2, Kind::Stream),
            (1, 5, 1, Kind::Stream),
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
    assert_eq!(s.pick_next(L, later()), pick(0, 5, 1, Kind::Plan));
    assert!(!s.has_work(), "the rest of the stream waits");
    assert_eq!(s.pick_next(L, later()), None);
    s.pause_stream(false);
    assert_eq!(s.pick_next(L, later()), pick(0, 0, 5, Kind::Stream));
    assert_eq!(s.pick_next(L, later()), pick(0, 6, 4, Kind::Stream));
    let bad = Scheduler::new(&[(FileId(0), 10)], 0).with_plan(&[(FileId(0), 9, 2)]);
    assert!(matches!(bad, Err(SchedError::OutOfRange { .. })));
    let bad = Scheduler::new(&[(FileId(0), 10)], 0).with_plan(&[(FileId(1), 0, 1)]);
    assert!(matches!(bad, Err(SchedError::NotAFile(_))));
}

#[test]
fn a_demand_for_a_planned_page_gets_no_readahead_the_plan_goes_on() {
    let mut s = Scheduler::new(&[(FileId(0), 1000)], 64)
        .with_plan(&[(FileId(0), 100, 2), (FileId(0), 500, 2)])
        .unwrap();
    s.on_have_end();
    // A reader at the start of the file: not planned, readahead as usual.
    s.on_demand(FileId(0), 0, 1, false, later()).unwrap();
    assert_eq!(s.pick_next(L, later()), pick(0, 0, 1, Kind::Demand));
    assert_eq!(s.pick_next(L, later()), pick(0, 1, 32, Kind::Readahead));
    // A reader at a planned page: the plan goes on from there.
    s.on_demand(FileId(0), 101, 1, false, later()).unwrap();
    assert_eq!(
        drain(&mut s)[..3],
        [
            (0, 101, 1, Kind::Demand),
            (0, 100, 1, Kind::Plan),
            (0, 500, 2, Kind::Plan)
        ]
    );
}
