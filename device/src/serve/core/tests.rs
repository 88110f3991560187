//! The wiring around the table: a real store in a temporary directory, the
//! outbox's frames read back, and fake replies.

use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use feedfs_protocol::frame::Frame;
use feedfs_protocol::{EntryKind, FileId, ManifestBuilder, Message};
use fuser::Errno;

use super::*;
use crate::serve::fake::{Answer, Answers, Fake};
use crate::testutil::TempDir;

/// One file of 10 000 bytes in 4 KiB blocks: blocks 0 and 1 whole, 2 short.
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

fn block(index: u64) -> Vec<u8> {
    let all = bytes();
    let from = (index * 4096) as usize;
    all[from..(from + 4096).min(all.len())].to_vec()
}

/// A core over a fresh store, with no link yet.
fn rig(tag: &str, timeout: Duration) -> (Rig, mpsc::Sender<Vec<u8>>) {
    let dir = TempDir::new(&format!("core-{tag}"));
    let mut b = ManifestBuilder::new();
    b.push(F, EntryKind::File, "f", SIZE, 0o644, 4096, [7; 16])
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

    /// Both halves of landing block `index`; `idle` as the store writer says.
    fn land(&self, index: u64, idle: bool) {
        let data = block(index);
        let crc = crc32fast::hash(&data);
        let landing = self.core.accept(F, index, crc, &data, crc).unwrap();
        self.core.store(landing.expect("new block"), idle).unwrap();
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

    /// Blocks the map file on disk marks present.
    fn on_record(&self) -> u64 {
        let entry = self.core.manifest().get(F).unwrap();
        crate::store::present_on_disk(self.store.dir(), entry)
            .unwrap()
            .map_or(0, |(n, _)| n)
    }
}

fn demand(first: u64, count: u32) -> String {
    format!("Demand {{ file: FileId(0), first: {first}, count: {count} }}")
}

#[test]
fn a_read_of_a_missing_block_demands_it_once_and_is_answered_from_the_checked_bytes() {
    let r = linked("early");
    r.read(1, 100, 100);
    r.read(2, 0, 10);
    assert_eq!(r.sent(), [demand(0, 1)]);
    assert!(r.answers.all().is_empty());
    let data = block(0);
    let crc = crc32fast::hash(&data);
    let landing = r.core.accept(F, 0, crc, &data, crc).unwrap();
    // Answered before the block is written: nothing is in the store yet.
    assert!(!r.core.file(F).unwrap().is_present(0).unwrap());
    assert_eq!(
        r.answers.all(),
        [
            (1, Answer::Data(data[100..200].to_vec())),
            (2, Answer::Data(data[..10].to_vec()))
        ]
    );
    r.core.store(landing.unwrap(), true).unwrap();
    assert_eq!(r.answers.all().len(), 2, "answered once");
}

#[test]
fn a_read_spanning_blocks_is_answered_from_the_store_after_the_map_records_them() {
    let r = linked("span");
    r.read(1, 4000, 200);
    assert_eq!(r.sent(), [demand(0, 2)]);
    // Not idle, and nobody can be answered yet: the map write waits.
    r.land(0, false);
    assert!(r.answers.all().is_empty());
    assert_eq!(r.on_record(), 0);
    r.land(1, false);
    assert_eq!(
        r.answers.all(),
        [(1, Answer::Data(bytes()[4000..4200].to_vec()))]
    );
    assert_eq!(r.on_record(), 2, "written before the read was answered");
}

#[test]
fn a_block_present_in_memory_is_served_at_once_even_before_its_map_entry_is_written() {
    let r = linked("memory");
    r.land(1, false);
    assert_eq!(r.on_record(), 0);
    r.read(1, 4096, 4096);
    assert_eq!(r.answers.all(), [(1, Answer::Data(block(1)))]);
    assert_eq!(
        r.on_record(),
        0,
        "served from the store, its entry still pending"
    );
    assert!(r.sent().is_empty(), "nothing demanded");
}

#[test]
fn after_the_stream_every_missing_block_not_on_its_way_is_demanded() {
    let r = linked("all");
    let data = block(1);
    let crc = crc32fast::hash(&data);
    let _on_its_way = r.core.accept(F, 1, crc, &data, crc).unwrap().unwrap();
    r.core.demand_all_missing();
    assert_eq!(r.sent(), [demand(0, 1), demand(2, 1)]);
}

#[test]
fn the_last_block_stored_tells_the_host_complete_once_per_link() {
    let r = linked("complete");
    r.land(0, true);
    r.land(2, true);
    assert!(r.sent().is_empty());
    r.land(1, true);
    assert_eq!(r.sent(), ["Complete { blocks: 3 }"]);
    r.core.maybe_complete();
    assert!(r.sent().is_empty());
    r.core.start_link();
    r.core.maybe_complete();
    assert_eq!(r.sent(), ["Complete { blocks: 3 }"]);
    assert_eq!(r.on_record(), 3);
}

#[test]
fn a_block_failing_its_crc_is_refused_and_its_reader_keeps_waiting() {
    let r = linked("crc");
    r.read(1, 0, 10);
    let data = block(0);
    let crc = crc32fast::hash(&data);
    let refused = r.core.accept(F, 0, crc ^ 1, &data, crc);
    assert!(matches!(refused, Err(LandError::BadCrc { .. })));
    r.core.redemand(F, 0);
    assert_eq!(r.sent(), [demand(0, 1), demand(0, 1)]);
    assert!(r.answers.all().is_empty());
    r.land(0, true);
    assert_eq!(r.answers.all(), [(1, Answer::Data(data[..10].to_vec()))]);
}

#[test]
fn a_block_the_store_cannot_hold_fails_its_readers_with_the_errno_given() {
    let r = linked("nospace");
    r.read(1, 4000, 200);
    r.core.fail_waiters(F, 1, Errno::ENOSPC);
    assert_eq!(r.answers.all(), [(1, Answer::Error(Errno::ENOSPC))]);
}

#[test]
fn reads_past_the_end_are_empty_and_offline_reads_of_missing_blocks_fail() {
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
fn stopping_fails_parked_reads_and_later_reads_of_missing_blocks() {
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
