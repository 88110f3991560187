//! The parked-read table's specification, with a fake reply that records
//! every answer (and a reply dropped unanswered).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use feedfs_protocol::FileId;
use fuser::Errno;

use super::*;
use crate::serve::fake::{Answer, Answers, Fake};

/// Every file in these tests: 10 pages, the last one of 100 bytes.
const SIZE: u64 = 9 * 4096 + 100;
const TIMEOUT: Duration = Duration::from_secs(10);
const F: FileId = FileId(1);
const G: FileId = FileId(2);

/// A table, the clock's start, which pages are present, and the answers.
struct World {
    table: Pending<Fake>,
    t0: Instant,
    present: HashSet<(FileId, u64)>,
    answers: Answers,
}

impl World {
    fn new() -> World {
        World {
            table: Pending::new(TIMEOUT),
            t0: Instant::now(),
            present: HashSet::new(),
            answers: Answers::default(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn reply(&self, tag: u32) -> Fake {
        self.answers.reply(tag)
    }

    /// Read `tag` of `size` bytes at `offset` of `file`, parked at `ms`.
    fn park(&mut self, tag: u32, file: FileId, offset: u64, size: u32, ms: u64) -> Park<Fake> {
        let read = ReadAt::new(file, offset, size, 7, SIZE).expect("reads something");
        let reply = self.reply(tag);
        let now = self.at(ms);
        let present = &self.present;
        self.table
            .park(read, reply, now, |f, b| present.contains(&(f, b)))
    }

    /// Park and expect it parked: its demands.
    fn parked(&mut self, tag: u32, file: FileId, offset: u64, size: u32, ms: u64) -> Vec<Demand> {
        match self.park(tag, file, offset, size, ms) {
            Park::Parked { demands, .. } => demands,
            other => panic!("read {tag} not parked: {other:?}"),
        }
    }

    /// Store page `p` of `file`: its bit first, then the table.
    fn store(&mut self, file: FileId, p: u64) -> Vec<Taken<Fake>> {
        self.present.insert((file, p));
        self.table.landed(file, p, 1)
    }

    /// Pages `first..first + count` of `file` were checked and are on
    /// their way to the store.
    fn begin(&mut self, file: FileId, first: u64, count: u64) -> Begun<Fake> {
        let present = &self.present;
        self.table
            .begin_landing(file, first, count, |p| present.contains(&(file, p)))
    }

    fn expire(&mut self, ms: u64) -> Vec<Taken<Fake>> {
        let now = self.at(ms);
        let present = &self.present;
        self.table.expire(now, |f, b| present.contains(&(f, b)))
    }

    fn answers(&self) -> Vec<(u32, Answer)> {
        self.answers.all()
    }
}

fn d(file: FileId, first: u64, count: u32) -> Demand {
    Demand {
        file,
        first,
        count,
        again: false,
    }
}

fn tags(taken: &[Taken<Fake>]) -> Vec<u32> {
    taken.iter().map(|t| t.reply.tag).collect()
}

/// Answer every taken read with an error, as the caller would.
fn fail(taken: Vec<Taken<Fake>>) {
    for t in taken {
        t.reply.error(Errno::EIO);
    }
}

#[test]
fn a_read_needs_the_pages_its_bytes_lie_in() {
    let r = ReadAt::new(F, 4000, 200, 7, SIZE).unwrap();
    assert_eq!((r.first, r.last, r.count()), (0, 1, 2));
    let one = ReadAt::new(F, 4096, 4096, 7, SIZE).unwrap();
    assert_eq!((one.first, one.last), (1, 1));
    // Past the end, it needs only the pages up to the end.
    let tail = ReadAt::new(F, 9 * 4096 + 50, 1 << 20, 7, SIZE).unwrap();
    assert_eq!((tail.first, tail.last), (9, 9));
    assert_eq!(tail.bytes(SIZE), 50);
    assert!(ReadAt::new(F, SIZE, 10, 7, SIZE).is_none());
    assert!(ReadAt::new(F, 0, 0, 7, SIZE).is_none());
    assert!(r.within(0, 2) && !r.within(1, 3) && !r.within(0, 1));
}

#[test]
fn a_read_whose_pages_landed_meanwhile_is_ready_at_once() {
    let mut w = World::new();
    // The caller saw page 3 missing; it landed before the table's lock.
    w.present.insert((F, 3));
    assert!(matches!(w.park(1, F, 12298, 20, 0), Park::Ready(r, _) if r.first == 3));
    assert!(w.table.is_empty());
}

#[test]
fn the_first_read_of_a_missing_page_demands_it_and_later_ones_only_wait() {
    let mut w = World::new();
    assert_eq!(w.parked(1, F, 12288, 10, 0), vec![d(F, 3, 1)]);
    assert_eq!(w.parked(2, F, 12338, 10, 1), vec![]);
    assert_eq!(w.table.len(), 2);
    let done = w.store(F, 3);
    assert_eq!(tags(&done), vec![1, 2]);
    assert!(done[0].demanded && !done[1].demanded);
    fail(done);
}

#[test]
fn a_read_spanning_pages_demands_its_missing_ones_as_runs() {
    let mut w = World::new();
    w.present.insert((F, 4));
    assert_eq!(w.parked(1, F, 8192, 16484, 0), vec![d(F, 2, 2), d(F, 5, 2)]);
}

#[test]
fn a_read_spanning_several_pages_completes_when_its_last_missing_page_is_stored() {
    let mut w = World::new();
    w.parked(1, F, 4146, 12288, 0); // pages 1..=4
    assert!(w.store(F, 4).is_empty());
    assert!(w.store(F, 1).is_empty());
    assert!(w.store(F, 2).is_empty());
    let done = w.store(F, 3);
    assert_eq!(tags(&done), vec![1]);
    assert_eq!((done[0].read.offset, done[0].read.size), (4146, 12288));
    assert!(w.table.is_empty());
    fail(done);
}

#[test]
fn a_landing_answers_reads_within_its_pages_at_once_and_keeps_the_others() {
    let mut w = World::new();
    w.parked(1, F, 12298, 20, 0); // page 3 only
    w.parked(2, F, 12338, 4096, 0); // pages 3 and 4
    w.parked(3, F, 20480, 10, 0); // page 5: another page
    let begun = w.begin(F, 3, 1);
    assert_eq!(begun.fresh, vec![(3, 1)]);
    let early = begun.early;
    assert_eq!(tags(&early), vec![1]);
    let data: Vec<u8> = (0..4096).map(|i| i as u8).collect();
    assert_eq!(early[0].read.slice(3 * 4096, &data), &data[10..30]);
    for t in early {
        let bytes = t.read.slice(3 * 4096, &data).to_vec();
        t.reply.data(&bytes);
    }
    assert_eq!(w.answers(), vec![(1, Answer::Data((10..30).collect()))]);
    // Stored: read 2 still waits for page 4.
    assert!(w.store(F, 3).is_empty());
    let done = w.store(F, 4);
    assert_eq!(tags(&done), vec![2]);
    fail(done);
    assert_eq!(w.table.len(), 1, "read 3 waits for page 5");
}

#[test]
fn a_run_answers_every_read_within_it_and_leaves_the_pages_present_or_on_their_way() {
    let mut w = World::new();
    w.parked(1, F, 4096 + 10, 3 * 4096, 0); // pages 1 to 4
    w.parked(2, F, 4 * 4096, 2 * 4096, 0); // pages 4 and 5
    w.parked(3, F, 0, 10, 0); // page 0
    assert_eq!(w.begin(F, 3, 1).fresh, vec![(3, 1)]);
    // Pages 1 to 4: 3 is on its way already.
    let begun = w.begin(F, 1, 4);
    assert_eq!(begun.fresh, vec![(1, 2), (4, 1)]);
    assert_eq!(tags(&begun.early), vec![1]);
    fail(begun.early);
    // Read 1 no longer waits for anything; read 2 waits for page 5.
    assert!(w.store(F, 1).is_empty() && w.store(F, 4).is_empty());
    assert_eq!(tags(&w.store(F, 5)), vec![2]);
    assert_eq!(w.table.len(), 1, "read 3 waits for page 0");
}

#[test]
fn a_read_that_needs_a_present_page_is_not_answered_from_the_run() {
    let mut w = World::new();
    w.parked(1, F, 0, 2 * 4096, 0); // pages 0 and 1
                                    // Page 0 became present meanwhile (written on the device): the run's
                                    // bytes of it are not what the read must see.
    w.present.insert((F, 0));
    let begun = w.begin(F, 0, 2);
    assert_eq!(begun.fresh, vec![(1, 1)]);
    assert!(begun.early.is_empty());
    assert_eq!(w.table.len(), 1, "it waits for the store");
}

#[test]
fn a_read_of_a_page_on_its_way_waits_for_it_without_demanding_it() {
    let mut w = World::new();
    assert!(w.begin(F, 5, 1).early.is_empty());
    assert_eq!(w.parked(1, F, 20480, 100, 0), vec![]);
    assert_eq!(tags(&w.store(F, 5)), vec![1]);
}

#[test]
fn a_page_already_on_its_way_is_left_out_as_a_duplicate() {
    let mut w = World::new();
    assert_eq!(w.begin(F, 2, 1).fresh, vec![(2, 1)]);
    assert!(w.begin(F, 2, 1).fresh.is_empty());
    w.table.landed(F, 2, 1);
    assert_eq!(w.begin(F, 2, 1).fresh, vec![(2, 1)], "on its way again");
}

#[test]
fn a_parked_read_times_out_after_the_read_timeout_and_not_before() {
    let mut w = World::new();
    w.parked(1, F, 0, 10, 0);
    w.parked(2, F, 4096, 10, 500);
    assert_eq!(w.table.next_deadline(), Some(w.at(10_000)));
    assert!(w.expire(9_999).is_empty());
    let out = w.expire(10_000);
    assert_eq!(tags(&out), vec![1]);
    fail(out);
    assert_eq!(w.table.next_deadline(), Some(w.at(10_500)));
    // It no longer waits: its page landing answers nobody.
    assert!(w.store(F, 0).is_empty());
    assert_eq!(tags(&w.expire(20_000)), vec![2]);
}

#[test]
fn only_a_read_whose_deadline_comes_first_wakes_the_reaper() {
    // A timeout shorter than the reaper's nap: the first read's deadline
    // comes before the reaper would look again.
    let mut w = World::new();
    w.table = Pending::new(REAPER_NAP / 2);
    assert!(matches!(
        w.park(1, F, 0, 10, 100),
        Park::Parked { earliest: true, .. }
    ));
    assert!(matches!(
        w.park(2, F, 4096, 10, 200),
        Park::Parked {
            earliest: false,
            ..
        }
    ));
}

#[test]
fn a_deadline_after_the_reapers_next_look_wakes_nobody() {
    let mut w = World::new();
    assert!(TIMEOUT >= REAPER_NAP);
    assert!(matches!(
        w.park(1, F, 0, 10, 100),
        Park::Parked {
            earliest: false,
            ..
        }
    ));
}

#[test]
fn after_a_timeout_a_read_needing_that_page_fails_at_once() {
    let mut w = World::new();
    w.parked(1, F, 8242, 4096, 0); // pages 2 and 3
    w.present.insert((F, 3));
    fail(w.expire(10_000));
    assert!(matches!(w.park(2, F, 8192, 10, 10_001), Park::Expired(..)));
    // Page 3 was present when it timed out, page 4 never waited for.
    assert!(matches!(w.park(3, F, 12288, 10, 10_001), Park::Ready(..)));
    assert_eq!(w.parked(4, F, 16384, 10, 10_001), vec![d(F, 4, 1)]);
}

#[test]
fn a_page_on_its_way_when_a_read_times_out_does_not_fail_later_reads() {
    let mut w = World::new();
    w.parked(1, F, 28672, 10, 0);
    w.begin(F, 8, 1);
    w.parked(2, F, 32818, 10, 0);
    fail(w.expire(10_000));
    // Page 8 was on its way: a new read waits for it again.
    assert!(matches!(
        w.park(3, F, 32768, 10, 10_001),
        Park::Parked { .. }
    ));
    assert!(matches!(w.park(4, F, 28672, 10, 10_001), Park::Expired(..)));
}

#[test]
fn the_page_landing_ends_its_fail_fast() {
    let mut w = World::new();
    w.parked(1, F, 0, 10, 0);
    w.parked(2, F, 4096, 10, 0);
    fail(w.expire(10_000));
    w.store(F, 0);
    assert!(matches!(w.park(3, F, 0, 10, 10_001), Park::Ready(..)));
    // A page that failed to store ends it too: it is asked for again.
    w.begin(F, 1, 1);
    w.table.landing_failed(F, 1, 1);
    assert_eq!(w.parked(4, F, 4096, 10, 10_001), vec![d(F, 1, 1)]);
}

#[test]
fn a_new_link_ends_every_fail_fast() {
    let mut w = World::new();
    w.parked(1, F, 0, 10, 0);
    fail(w.expire(10_000));
    assert!(w.table.link_up().is_empty());
    assert_eq!(w.parked(2, F, 0, 10, 10_001), vec![d(F, 0, 1)]);
}

#[test]
fn a_read_parked_while_no_link_is_demanded_by_the_next_link_within_its_timeout() {
    let mut w = World::new();
    // The link is down: demands are handed out but nobody sends them.
    w.parked(1, G, 0, 10, 0);
    w.parked(2, F, 12288, 4196, 0); // pages 3 and 4
    w.parked(3, F, 36864, 10, 0);
    w.parked(4, F, 24576, 10, 0);
    w.begin(F, 6, 1);
    assert_eq!(
        w.table.link_up(),
        vec![d(F, 3, 2), d(F, 9, 1), d(G, 0, 1)],
        "sorted by file, in runs, not the page on its way"
    );
    assert!(w.expire(9_999).is_empty(), "still within the timeout");
    w.store(F, 3);
    assert_eq!(tags(&w.store(F, 4)), vec![2]);
}

#[test]
fn mounted_offline_reads_fail_until_a_link_comes_up() {
    let mut w = World::new();
    w.table.set_offline();
    assert!(matches!(w.park(1, F, 0, 10, 0), Park::NoLink(..)));
    w.present.insert((F, 0));
    assert!(matches!(w.park(2, F, 0, 10, 0), Park::NoLink(..)));
    w.table.link_up();
    assert!(matches!(w.park(3, F, 4096, 10, 1), Park::Parked { .. }));
}

#[test]
fn stopping_hands_back_every_parked_read_and_fails_later_ones() {
    let mut w = World::new();
    w.parked(1, F, 0, 10, 0);
    w.parked(2, F, 0, 16484, 1);
    w.parked(3, G, 0, 10, 2);
    assert_eq!(tags(&w.table.shut_down()), vec![1, 2, 3]);
    assert!(w.table.is_empty() && w.table.next_deadline().is_none());
    assert!(matches!(w.park(4, F, 0, 10, 3), Park::NoLink(..)));
    assert!(w.store(F, 0).is_empty());
}

#[test]
fn a_page_the_store_cannot_hold_fails_its_readers_and_their_other_waits() {
    let mut w = World::new();
    w.parked(1, F, 8242, 4096, 0); // pages 2 and 3
    w.parked(2, F, 12288, 10, 0); // page 3
    w.parked(3, F, 8192, 10, 0); // page 2
    w.parked(4, F, 4146, 4096, 0); // pages 1 and 2
                                   // Checked: read 3, within page 2, is answered from its bytes.
    let early = w.begin(F, 2, 1).early;
    assert_eq!(tags(&early), vec![3]);
    fail(early);
    // Then the store cannot write it: the others fail.
    w.table.landing_failed(F, 2, 1);
    let failed = w.table.fail_waiters(F, 2, 1);
    assert_eq!(tags(&failed), vec![1, 4]);
    fail(failed);
    assert!(
        w.store(F, 1).is_empty(),
        "read 4 no longer waits for page 1"
    );
    assert_eq!(tags(&w.store(F, 3)), vec![2]);
    assert!(w.expire(60_000).is_empty());
}

#[test]
fn demands_for_missing_runs_leave_out_pages_on_their_way() {
    let mut w = World::new();
    w.begin(F, 2, 1);
    w.begin(G, 5, 1);
    assert_eq!(
        w.table.missing_demands([(F, vec![(0, 4), (5, 1)])]),
        vec![d(F, 0, 2), d(F, 3, 1), d(F, 5, 1)]
    );
    assert_eq!(w.table.missing_demands([(G, vec![(5, 1)])]), vec![]);
}

#[test]
fn every_parked_read_is_handed_back_once_whatever_ends_it() {
    let mut w = World::new();
    w.parked(1, F, 0, 10, 0); // answered early from page 0
    w.parked(2, F, 50, 4096, 0); // pages 0, 1: stored
    w.parked(3, F, 20480, 10, 0); // times out
    w.parked(4, F, 28672, 10, 20_000); // fails: not storable
    w.parked(5, G, 0, 10, 20_000); // still parked at the stop
    let mut taken = Vec::new();
    taken.extend(w.begin(F, 0, 1).early);
    assert!(w.begin(F, 0, 1).fresh.is_empty());
    taken.extend(w.store(F, 0));
    taken.extend(w.store(F, 1));
    taken.extend(w.store(F, 1));
    taken.extend(w.expire(10_000));
    taken.extend(w.expire(10_000));
    taken.extend(w.table.fail_waiters(F, 7, 1));
    taken.extend(w.table.fail_waiters(F, 7, 1));
    taken.extend(w.table.shut_down());
    taken.extend(w.table.shut_down());
    assert_eq!(tags(&taken), vec![1, 2, 3, 4, 5]);
    fail(taken);
    let answers = w.answers();
    assert_eq!(answers.len(), 5);
    assert!(answers.iter().all(|(_, a)| *a == Answer::Error(Errno::EIO)));
}

#[test]
fn a_refused_read_comes_back_with_its_reply_for_the_caller_to_answer() {
    let mut w = World::new();
    w.table.set_offline();
    let Park::NoLink(read, reply) = w.park(1, F, 4116, 30, 0) else {
        panic!("not refused");
    };
    assert_eq!((read.offset, read.size, read.pid), (4116, 30, 7));
    reply.error(Errno::EIO);
    assert_eq!(w.answers(), vec![(1, Answer::Error(Errno::EIO))]);
}

#[test]
fn a_read_still_waiting_asks_again_for_what_has_not_come_every_interval() {
    let mut w = World::new();
    let ask = ASK_AGAIN.as_millis() as u64;
    // Read 1 waits for pages 0..4, read 2 (later) for 2..6 and joins.
    assert_eq!(w.parked(1, F, 0, 4 * 4096, 0), vec![d(F, 0, 4)]);
    assert_eq!(w.parked(2, F, 2 * 4096, 4 * 4096, 300), vec![d(F, 4, 2)]);
    // Nothing to ask before the interval.
    assert_eq!(w.table.ask_again(w.at(ask - 1)), vec![]);
    // Page 1 lands; page 3 is on its way to the store.
    assert!(w.store(F, 1).is_empty());
    w.begin(F, 3, 1);
    // Read 1 asks again, marked `again`, for 0 and 2 only.
    let again = |first, count| Demand {
        again: true,
        ..d(F, first, count)
    };
    assert_eq!(w.table.ask_again(w.at(ask)), vec![again(0, 1), again(2, 1)]);
    // Read 2's turn: 2, 4 and 5, each page once.
    assert_eq!(
        w.table.ask_again(w.at(ask + 300)),
        vec![again(2, 1), again(4, 2)]
    );
    // Both again one interval later; a read answered meanwhile asks nothing.
    for p in [0, 2, 3] {
        w.store(F, p);
    }
    assert_eq!(tags(&w.store(F, 3)), Vec::<u32>::new());
    assert_eq!(w.table.ask_again(w.at(2 * ask + 300)), vec![again(4, 2)]);
    // A read that timed out asks nothing any more.
    fail(w.expire(TIMEOUT.as_millis() as u64 + 300));
    assert_eq!(
        w.table
            .ask_again(w.at(TIMEOUT.as_millis() as u64 + 2 * ask)),
        vec![]
    );
}
