//! The parked-read table's specification, with a fake reply that records
//! every answer (and a reply dropped unanswered).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use feedfs_protocol::FileId;
use fuser::Errno;

use super::*;
use crate::serve::fake::{Answer, Answers, Fake};

/// Every file in these tests: 1000 bytes in blocks of 100.
const SIZE: u64 = 1000;
const BS: u32 = 100;
const TIMEOUT: Duration = Duration::from_secs(10);
const F: FileId = FileId(1);
const G: FileId = FileId(2);

/// A table, the clock's start, which blocks are present, and the answers.
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
        let read = ReadAt::new(file, offset, size, 7, SIZE, BS).expect("reads something");
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

    /// Store block `b` of `file`: its bit first, then the table.
    fn store(&mut self, file: FileId, b: u64) -> Vec<Taken<Fake>> {
        self.present.insert((file, b));
        self.table.landed(file, b)
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
    Demand { file, first, count }
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
fn a_read_spans_the_blocks_its_bytes_lie_in() {
    let r = ReadAt::new(F, 150, 100, 7, SIZE, BS).unwrap();
    assert_eq!((r.first, r.last), (1, 2));
    let tail = ReadAt::new(F, 950, 4096, 7, SIZE, BS).unwrap();
    assert_eq!((tail.first, tail.last), (9, 9));
    assert_eq!(tail.bytes(SIZE), 50);
    assert!(ReadAt::new(F, SIZE, 10, 7, SIZE, BS).is_none());
    assert!(ReadAt::new(F, 0, 0, 7, SIZE, BS).is_none());
}

#[test]
fn a_read_whose_blocks_landed_meanwhile_is_ready_at_once() {
    let mut w = World::new();
    // The caller saw block 3 missing; it landed before the table's lock.
    w.present.insert((F, 3));
    assert!(matches!(w.park(1, F, 310, 20, 0), Park::Ready(r, _) if r.first == 3));
    assert!(w.table.is_empty());
}

#[test]
fn the_first_read_of_a_missing_block_demands_it_and_later_ones_only_wait() {
    let mut w = World::new();
    assert_eq!(w.parked(1, F, 300, 10, 0), vec![d(F, 3, 1)]);
    assert_eq!(w.parked(2, F, 350, 10, 1), vec![]);
    assert_eq!(w.table.len(), 2);
    let done = w.store(F, 3);
    assert_eq!(tags(&done), vec![1, 2]);
    assert!(done[0].demanded && !done[1].demanded);
    fail(done);
}

#[test]
fn a_read_spanning_blocks_demands_its_missing_ones_as_runs() {
    let mut w = World::new();
    w.present.insert((F, 4));
    assert_eq!(w.parked(1, F, 200, 500, 0), vec![d(F, 2, 2), d(F, 5, 2)]);
}

#[test]
fn a_read_spanning_several_blocks_completes_when_its_last_missing_block_is_stored() {
    let mut w = World::new();
    w.parked(1, F, 150, 300, 0); // blocks 1..=4
    assert!(w.store(F, 4).is_empty());
    assert!(w.store(F, 1).is_empty());
    assert!(w.store(F, 2).is_empty());
    let done = w.store(F, 3);
    assert_eq!(tags(&done), vec![1]);
    assert_eq!((done[0].read.offset, done[0].read.size), (150, 300));
    assert!(w.table.is_empty());
    fail(done);
}

#[test]
fn a_landing_answers_reads_within_its_block_at_once_and_keeps_the_others() {
    let mut w = World::new();
    w.parked(1, F, 310, 20, 0); // block 3 only
    w.parked(2, F, 350, 100, 0); // blocks 3 and 4
    w.parked(3, F, 500, 10, 0); // block 5: another block
    let early = w.table.begin_landing(F, 3).expect("first landing");
    assert_eq!(tags(&early), vec![1]);
    let data: Vec<u8> = (0..100).collect();
    assert_eq!(early[0].read.slice(300, &data), &data[10..30]);
    for t in early {
        let bytes = t.read.slice(300, &data).to_vec();
        t.reply.data(&bytes);
    }
    assert_eq!(w.answers(), vec![(1, Answer::Data((10..30).collect()))]);
    // Stored: read 2 still waits for block 4.
    assert!(w.store(F, 3).is_empty());
    let done = w.store(F, 4);
    assert_eq!(tags(&done), vec![2]);
    fail(done);
    assert_eq!(w.table.len(), 1, "read 3 waits for block 5");
}

#[test]
fn a_read_of_a_block_on_its_way_waits_for_it_without_demanding_it() {
    let mut w = World::new();
    assert!(w.table.begin_landing(F, 5).expect("first").is_empty());
    assert_eq!(w.parked(1, F, 500, 100, 0), vec![]);
    assert_eq!(tags(&w.store(F, 5)), vec![1]);
}

#[test]
fn a_block_already_on_its_way_is_refused_as_a_duplicate() {
    let mut w = World::new();
    assert!(w.table.begin_landing(F, 2).is_some());
    assert!(w.table.begin_landing(F, 2).is_none());
    w.table.landed(F, 2);
    assert!(w.table.begin_landing(F, 2).is_some(), "on its way again");
}

#[test]
fn a_parked_read_times_out_after_the_read_timeout_and_not_before() {
    let mut w = World::new();
    w.parked(1, F, 0, 10, 0);
    w.parked(2, F, 100, 10, 500);
    assert_eq!(w.table.next_deadline(), Some(w.at(10_000)));
    assert!(w.expire(9_999).is_empty());
    let out = w.expire(10_000);
    assert_eq!(tags(&out), vec![1]);
    fail(out);
    assert_eq!(w.table.next_deadline(), Some(w.at(10_500)));
    // It no longer waits: its block landing answers nobody.
    assert!(w.store(F, 0).is_empty());
    assert_eq!(tags(&w.expire(20_000)), vec![2]);
}

#[test]
fn only_a_read_whose_deadline_comes_first_wakes_the_reaper() {
    let mut w = World::new();
    assert!(matches!(
        w.park(1, F, 0, 10, 100),
        Park::Parked { earliest: true, .. }
    ));
    assert!(matches!(
        w.park(2, F, 100, 10, 200),
        Park::Parked {
            earliest: false,
            ..
        }
    ));
}

#[test]
fn after_a_timeout_a_read_needing_that_block_fails_at_once() {
    let mut w = World::new();
    w.parked(1, F, 250, 100, 0); // blocks 2 and 3
    w.present.insert((F, 3));
    fail(w.expire(10_000));
    assert!(matches!(w.park(2, F, 200, 10, 10_001), Park::Expired(..)));
    // Block 3 was present when it timed out, block 4 never waited for.
    assert!(matches!(w.park(3, F, 300, 10, 10_001), Park::Ready(..)));
    assert_eq!(w.parked(4, F, 400, 10, 10_001), vec![d(F, 4, 1)]);
}

#[test]
fn a_block_on_its_way_when_a_read_times_out_does_not_fail_later_reads() {
    let mut w = World::new();
    w.parked(1, F, 700, 10, 0);
    w.table.begin_landing(F, 8);
    w.parked(2, F, 850, 10, 0);
    fail(w.expire(10_000));
    // Block 8 was on its way: a new read waits for it again.
    assert!(matches!(w.park(3, F, 800, 10, 10_001), Park::Parked { .. }));
    assert!(matches!(w.park(4, F, 700, 10, 10_001), Park::Expired(..)));
}

#[test]
fn the_block_landing_ends_its_fail_fast() {
    let mut w = World::new();
    w.parked(1, F, 0, 10, 0);
    w.parked(2, F, 100, 10, 0);
    fail(w.expire(10_000));
    w.store(F, 0);
    assert!(matches!(w.park(3, F, 0, 10, 10_001), Park::Ready(..)));
    // A block that failed to store ends it too: it is asked for again.
    w.table.begin_landing(F, 1);
    w.table.landing_failed(F, 1);
    assert_eq!(w.parked(4, F, 100, 10, 10_001), vec![d(F, 1, 1)]);
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
    w.parked(2, F, 300, 200, 0); // blocks 3 and 4
    w.parked(3, F, 900, 10, 0);
    w.parked(4, F, 600, 10, 0);
    w.table.begin_landing(F, 6);
    assert_eq!(
        w.table.link_up(),
        vec![d(F, 3, 2), d(F, 9, 1), d(G, 0, 1)],
        "sorted by file, in runs, not the block on its way"
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
    assert!(matches!(w.park(3, F, 100, 10, 1), Park::Parked { .. }));
}

#[test]
fn stopping_hands_back_every_parked_read_and_fails_later_ones() {
    let mut w = World::new();
    w.parked(1, F, 0, 10, 0);
    w.parked(2, F, 0, 500, 1);
    w.parked(3, G, 0, 10, 2);
    assert_eq!(tags(&w.table.shut_down()), vec![1, 2, 3]);
    assert!(w.table.is_empty() && w.table.next_deadline().is_none());
    assert!(matches!(w.park(4, F, 0, 10, 3), Park::NoLink(..)));
    assert!(w.store(F, 0).is_empty());
}

#[test]
fn a_block_the_store_cannot_hold_fails_its_readers_and_their_other_waits() {
    let mut w = World::new();
    w.parked(1, F, 250, 100, 0); // blocks 2 and 3
    w.parked(2, F, 300, 10, 0); // block 3
    w.parked(3, F, 200, 10, 0); // block 2
    w.parked(4, F, 150, 100, 0); // blocks 1 and 2
                                 // Checked: read 3, within block 2, is answered from its bytes.
    let early = w.table.begin_landing(F, 2).expect("first");
    assert_eq!(tags(&early), vec![3]);
    fail(early);
    // Then the store cannot write it: the others fail.
    w.table.landing_failed(F, 2);
    let failed = w.table.fail_waiters(F, 2);
    assert_eq!(tags(&failed), vec![1, 4]);
    fail(failed);
    assert!(
        w.store(F, 1).is_empty(),
        "read 4 no longer waits for block 1"
    );
    assert_eq!(tags(&w.store(F, 3)), vec![2]);
    assert!(w.expire(60_000).is_empty());
}

#[test]
fn demands_for_missing_runs_leave_out_blocks_on_their_way() {
    let mut w = World::new();
    w.table.begin_landing(F, 2);
    w.table.begin_landing(G, 5);
    assert_eq!(
        w.table.missing_demands(F, &[(0, 4), (5, 1)]),
        vec![d(F, 0, 2), d(F, 3, 1), d(F, 5, 1)]
    );
    assert_eq!(w.table.missing_demands(G, &[(5, 1)]), vec![]);
}

#[test]
fn every_parked_read_is_handed_back_once_whatever_ends_it() {
    let mut w = World::new();
    w.parked(1, F, 0, 10, 0); // answered early from block 0
    w.parked(2, F, 50, 100, 0); // blocks 0, 1: stored
    w.parked(3, F, 500, 10, 0); // times out
    w.parked(4, F, 700, 10, 20_000); // fails: not storable
    w.parked(5, G, 0, 10, 20_000); // still parked at the stop
    let mut taken = Vec::new();
    taken.extend(w.table.begin_landing(F, 0).unwrap());
    assert!(w.table.begin_landing(F, 0).is_none());
    taken.extend(w.store(F, 0));
    taken.extend(w.store(F, 1));
    taken.extend(w.store(F, 1));
    taken.extend(w.expire(10_000));
    taken.extend(w.expire(10_000));
    taken.extend(w.table.fail_waiters(F, 7));
    taken.extend(w.table.fail_waiters(F, 7));
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
    let Park::NoLink(read, reply) = w.park(1, F, 120, 30, 0) else {
        panic!("not refused");
    };
    assert_eq!((read.offset, read.size, read.pid), (120, 30, 7));
    reply.error(Errno::EIO);
    assert_eq!(w.answers(), vec![(1, Answer::Error(Errno::EIO))]);
}
