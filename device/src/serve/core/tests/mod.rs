//! The wiring around the table: a real store in a temporary directory, the
//! outbox's frames read back, and fake replies.

use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use feedfs_protocol::frame::Frame;
use feedfs_protocol::{FileId, ManifestBuilder, Message};
use fuser::Errno;

use super::*;
use crate::serve::fake::{Answer, Answers, Fake};
use crate::testutil::TempDir;

/// One file of 10 000 bytes: pages 0 and 1 whole, 2 short (1808 bytes).
const SIZE: u64 = 10_000;
const F: FileId = FileId(0);

struct Rig {
    core: Core<Fake>,
    frames: Receiver<Vec<u8>>,
    answers: Answers,
    store: Store,
    _dir: TempDir,
}

fn bytes() -> Vec<u8> {
    (0..SIZE).map(|i| (i * 7 % 251) as u8).collect()
}

/// The bytes of pages `first..first + count` and their CRCs.
fn pages(first: u64, count: u64) -> (Vec<u8>, Vec<u32>) {
    let all = bytes();
    let from = (first * 4096) as usize;
    let data = all[from..((first + count) * 4096).min(SIZE) as usize].to_vec();
    let crcs = data.chunks(4096).map(crc32fast::hash).collect();
    (data, crcs)
}

/// A core over a fresh store, with no link yet.
fn rig(tag: &str, timeout: Duration) -> (Rig, mpsc::Sender<Vec<u8>>) {
    let dir = TempDir::new(&format!("core-{tag}"));
    let mut b = ManifestBuilder::new();
    b.push(crate::testentry::file_entry(0, "f", SIZE, [7; 16]))
        .unwrap();
    let store = Store::open(&dir).unwrap();
    let core = Core::<Fake>::new(b.finish(1, SIZE).unwrap(), &store, timeout).unwrap();
    let (tx, frames) = mpsc::channel();
    let rig = Rig {
        core,
        frames,
        answers: Answers::default(),
        store,
        _dir: dir,
    };
    (rig, tx)
}

/// A core over a fresh store with a link up.
fn linked(tag: &str) -> Rig {
    let (r, tx) = rig(tag, Duration::from_secs(30));
    r.core.link_up(Outbox::queued(tx));
    r
}

impl Rig {
    fn read(&self, tag: u32, offset: u64, size: u32) {
        self.core.read(F, offset, size, self.answers.reply(tag));
    }

    /// The link thread's half of landing pages `first..first + count`,
    /// those marked in `bad` failing their check.
    fn accept(&self, first: u64, count: u64, bad: &[u64]) -> Vec<Landing> {
        let (data, crcs) = pages(first, count);
        let good: Vec<bool> = (first..first + count).map(|p| !bad.contains(&p)).collect();
        self.core
            .accept(&CheckedRun {
                file: F,
                first,
                crcs: &crcs,
                data: Some(&data),
                good: &good,
            })
            .unwrap()
    }

    /// Both halves of landing pages `first..first + count`; `idle` as the
    /// store writer says.
    fn land(&self, first: u64, count: u64, idle: bool) {
        for landing in self.accept(first, count, &[]) {
            self.core.store(landing, idle).unwrap();
        }
    }

    /// The messages sent so far, as text.
    fn sent(&self) -> Vec<String> {
        self.frames
            .try_iter()
            .map(|f| {
                let msg = Message::parse(Frame::new_checked(&f[..]).unwrap()).unwrap();
                format!("{msg:?}")
            })
            .collect()
    }

    /// Pages the map file on disk marks present.
    fn on_record(&self) -> u64 {
        let entry = self.core.manifest().get(F).unwrap();
        crate::store::present_on_disk(self.store.dir(), entry)
            .unwrap()
            .map_or(0, |(n, _)| n)
    }
}

fn demand(first: u64, count: u32) -> String {
    format!("Demand {{ file: FileId(0), first: {first}, count: {count}, again: false }}")
}

/// A demand for pages that arrived damaged or were lost on the way.
fn again(first: u64, count: u32) -> String {
    format!("Demand {{ file: FileId(0), first: {first}, count: {count}, again: true }}")
}

#[test]
fn a_read_demands_only_the_pages_it_needs_that_nobody_demanded() {
    let r = linked("needs");
    r.read(1, 100, 100);
    r.read(2, 0, 10);
    assert_eq!(r.sent(), [demand(0, 1)], "page 0 once");
    // Pages 0 to 2: page 0 is on its way, pages 1 and 2 are one run.
    r.read(3, 4000, 6000);
    assert_eq!(r.sent(), [demand(1, 2)]);
    assert!(r.answers.all().is_empty());
}

#[test]
fn a_read_within_a_run_is_answered_from_the_checked_bytes_before_it_is_stored() {
    let r = linked("early");
    r.read(1, 100, 100);
    r.read(2, 4000, 200);
    r.read(3, 9000, 100);
    assert_eq!(r.sent(), [demand(0, 1), demand(1, 1), demand(2, 1)]);
    let landings = r.accept(0, 2, &[]);
    // Answered before the run is written: nothing is in the store yet.
    assert!(!r.core.file(F).unwrap().is_present(0).unwrap());
    let all = bytes();
    assert_eq!(
        r.answers.all(),
        [
            (1, Answer::Data(all[100..200].to_vec())),
            (2, Answer::Data(all[4000..4200].to_vec()))
        ]
    );
    assert_eq!(landings.len(), 1);
    for l in landings {
        r.core.store(l, true).unwrap();
    }
    assert_eq!(
        r.answers.all().len(),
        2,
        "answered once; read 3 needs page 2"
    );
    r.land(2, 1, true);
    assert_eq!(
        r.answers.all()[2],
        (3, Answer::Data(all[9000..9100].to_vec()))
    );
}

#[test]
fn a_read_spanning_runs_is_answered_from_the_store_after_the_map_records_them() {
    let r = linked("span");
    r.read(1, 4000, 200);
    assert_eq!(r.sent(), [demand(0, 2)]);
    // Not idle, and nobody can be answered yet: the map write waits.
    r.land(0, 1, false);
    assert!(r.answers.all().is_empty());
    assert_eq!(r.on_record(), 0);
    r.land(1, 1, false);
    assert_eq!(
        r.answers.all(),
        [(1, Answer::Data(bytes()[4000..4200].to_vec()))]
    );
    assert_eq!(r.on_record(), 2, "written before the read was answered");
}

#[test]
fn the_good_pages_of_a_damaged_run_land_and_the_bad_one_is_waited_for() {
    let r = linked("bad");
    r.read(1, 0, 10);
    r.read(2, 4096, 10);
    r.read(3, 8192, 10);
    assert_eq!(r.sent(), [demand(0, 1), demand(1, 1), demand(2, 1)]);
    let landings = r.accept(0, 3, &[1]);
    let all = bytes();
    assert_eq!(
        r.answers.all(),
        [
            (1, Answer::Data(all[..10].to_vec())),
            (3, Answer::Data(all[8192..8202].to_vec()))
        ]
    );
    assert_eq!(landings.len(), 2, "pages 0 and 2, page 1 left out");
    for l in landings {
        r.core.store(l, true).unwrap();
    }
    let f = r.core.file(F).unwrap();
    assert_eq!(f.present_ranges(), [(0, 1), (2, 1)]);
    r.core.redemand(F, 1, 1);
    assert_eq!(r.sent(), [again(1, 1)]);
    r.land(1, 1, true);
    assert_eq!(
        r.answers.all()[2],
        (2, Answer::Data(all[4096..4106].to_vec()))
    );
}

#[test]
fn a_run_of_zeros_lands_as_holes_and_answers_its_readers_with_zeros() {
    let r = linked("zeros");
    r.read(1, 5000, 3000);
    let crcs = [crc32fast::hash(&[0; 4096]), crc32fast::hash(&[0; 1808])];
    let landings = r
        .core
        .accept(&CheckedRun {
            file: F,
            first: 1,
            crcs: &crcs,
            data: None,
            good: &[true, true],
        })
        .unwrap();
    assert_eq!(r.answers.all(), [(1, Answer::Data(vec![0; 3000]))]);
    for l in landings {
        r.core.store(l, true).unwrap();
    }
    r.read(2, 4096, 8192);
    assert_eq!(
        r.answers.all()[1],
        (2, Answer::Data(vec![0; 10_000 - 4096]))
    );
}

#[test]
fn a_run_outside_the_file_or_of_the_wrong_length_is_refused() {
    let r = linked("refused");
    let (data, crcs) = pages(1, 2);
    let run = |first, data| CheckedRun {
        file: F,
        first,
        crcs: &crcs,
        data,
        good: &[true, true],
    };
    assert!(matches!(
        r.core.accept(&run(2, Some(&data))),
        Err(LandError::PastEnd { pages: 3, .. })
    ));
    assert!(matches!(
        r.core.accept(&run(0, Some(&data))),
        Err(LandError::BadLength {
            got: 5904,
            expected: 8192,
            ..
        })
    ));
    let mut elsewhere = run(1, Some(&data));
    elsewhere.file = FileId(4);
    assert!(matches!(
        r.core.accept(&elsewhere),
        Err(LandError::NoSuchFile(FileId(4)))
    ));
}

#[test]
fn pages_present_in_memory_are_served_at_once_even_before_their_map_bits_are_written() {
    let r = linked("memory");
    r.land(1, 1, false);
    assert_eq!(r.on_record(), 0);
    r.read(1, 4096, 4096);
    assert_eq!(r.answers.all(), [(1, Answer::Data(pages(1, 1).0))]);
    assert_eq!(
        r.on_record(),
        0,
        "served from the store, its bit still pending"
    );
    assert!(r.sent().is_empty(), "nothing demanded");
}

#[test]
fn after_the_stream_every_missing_page_not_on_its_way_is_demanded() {
    let r = linked("all");
    let _on_its_way = r.accept(1, 1, &[]);
    r.core.demand_all_missing();
    assert_eq!(r.sent(), [again(0, 1), again(2, 1)]);
}

#[test]
fn a_duplicate_run_is_not_stored_twice() {
    let r = linked("dup");
    assert_eq!(r.accept(0, 2, &[]).len(), 1);
    assert!(r.accept(0, 2, &[]).is_empty(), "on its way already");
    assert_eq!(r.accept(1, 2, &[]).len(), 1, "page 2 only");
}

#[test]
fn the_last_page_stored_tells_the_host_complete_once_per_link() {
    let r = linked("complete");
    r.land(0, 1, true);
    r.land(2, 1, true);
    assert!(r.sent().is_empty());
    r.land(1, 1, true);
    assert_eq!(r.sent(), ["Complete { pages: 3 }"]);
    r.core.maybe_complete();
    assert!(r.sent().is_empty());
    r.core.start_link();
    r.core.maybe_complete();
    assert_eq!(r.sent(), ["Complete { pages: 3 }"]);
    assert_eq!(r.on_record(), 3);
}

#[test]
fn pages_the_store_cannot_hold_fail_their_readers_with_the_errno_given() {
    let r = linked("nospace");
    r.read(1, 4000, 200);
    r.read(2, 0, 10);
    r.core.fail_waiters(F, 1, 2, Errno::ENOSPC);
    assert_eq!(r.answers.all(), [(1, Answer::Error(Errno::ENOSPC))]);
    r.land(0, 1, true);
    assert_eq!(
        r.answers.all()[1],
        (2, Answer::Data(bytes()[..10].to_vec()))
    );
}

#[test]
fn reads_past_the_end_are_empty_and_offline_reads_of_missing_pages_fail() {
    let (r, _tx) = rig("offline", Duration::from_secs(30));
    r.core.offline();
    r.read(1, SIZE, 10);
    r.read(2, 0, 10);
    assert_eq!(
        r.answers.all(),
        [(1, Answer::Data(vec![])), (2, Answer::Error(Errno::EIO))]
    );
}

#[test]
fn a_read_parked_with_no_link_is_demanded_when_a_link_comes_up() {
    let (r, tx) = rig("later", Duration::from_secs(30));
    r.read(1, 9000, 100);
    assert!(r.sent().is_empty());
    r.core.link_up(Outbox::queued(tx));
    assert_eq!(r.sent(), [demand(2, 1)]);
}

#[test]
fn stopping_fails_parked_reads_and_later_reads_of_missing_pages() {
    let r = linked("stop");
    r.read(1, 0, 10);
    r.core.shut_down();
    r.read(2, 0, 10);
    assert_eq!(
        r.answers.all(),
        [
            (1, Answer::Error(Errno::EIO)),
            (2, Answer::Error(Errno::EIO))
        ]
    );
}

#[test]
fn the_reaper_fails_a_read_after_the_timeout_and_the_next_read_at_once() {
    let (r, tx) = rig("reap", Duration::from_millis(50));
    r.core.link_up(Outbox::queued(tx));
    let core = Arc::new(r.core);
    let stop = Arc::new(AtomicBool::new(false));
    let reaper = {
        let (core, stop) = (core.clone(), stop.clone());
        std::thread::spawn(move || core.reap(&stop))
    };
    let start = Instant::now();
    core.read(F, 0, 10, r.answers.reply(1));
    while r.answers.all().is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(start.elapsed() >= Duration::from_millis(50));
    core.read(F, 5, 10, r.answers.reply(2));
    stop.store(true, Ordering::Relaxed);
    core.wake();
    reaper.join().unwrap();
    assert_eq!(
        r.answers.all(),
        [
            (1, Answer::Error(Errno::EIO)),
            (2, Answer::Error(Errno::EIO))
        ]
    );
}

mod writes;
