//! The core's writes: waiting for the pages they cover in part, landing
//! at once over whole pages, and what reads parked beside them get.

use super::*;

/// How each write was answered.
#[derive(Clone, Default)]
struct Writes(Arc<std::sync::Mutex<Vec<Result<u32, Errno>>>>);

struct FakeWrite(Writes);

impl WriteReply for FakeWrite {
    fn written(self: Box<Self>, n: u32) {
        self.0 .0.lock().unwrap().push(Ok(n));
    }
    fn error(self: Box<Self>, errno: Errno) {
        self.0 .0.lock().unwrap().push(Err(errno));
    }
}

impl Rig {
    fn write(&self, w: &Writes, offset: u64, data: &[u8]) {
        self.core
            .write(F, offset, data, 0, Box::new(FakeWrite(w.clone())));
    }
}

#[test]
fn a_write_of_part_of_a_missing_page_waits_for_it_and_lands_from_the_run() {
    let r = linked("write-wait");
    let w = Writes::default();
    r.write(&w, 100, b"abc");
    assert_eq!(r.sent(), [demand(0, 1)]);
    assert!(w.0.lock().unwrap().is_empty(), "it waits for page 0");
    for landing in r.accept(0, 1, &[]) {
        assert_eq!(*w.0.lock().unwrap(), [Ok(3)], "landed from the checked run");
        r.core.store(landing, true).unwrap();
    }
    r.read(1, 0, 4096);
    let mut want = bytes()[..4096].to_vec();
    want[100..103].copy_from_slice(b"abc");
    assert_eq!(r.answers.all(), [(1, Answer::Data(want))]);
}

#[test]
fn a_whole_page_write_lands_at_once_and_a_later_run_leaves_it() {
    let r = linked("write-whole");
    let w = Writes::default();
    r.write(&w, 4096, &[9; 4096]);
    assert_eq!(*w.0.lock().unwrap(), [Ok(4096)]);
    assert!(r.sent().is_empty(), "nothing to fetch");
    r.land(0, 3, true);
    r.read(1, 4096, 4096);
    r.read(2, 0, 10);
    assert_eq!(
        r.answers.all(),
        [
            (1, Answer::Data(vec![9; 4096])),
            (2, Answer::Data(bytes()[..10].to_vec()))
        ]
    );
}

#[test]
fn offline_a_write_of_part_of_a_missing_page_fails_and_one_past_the_end_too() {
    let (r, _tx) = rig("write-offline", Duration::from_secs(30));
    r.core.offline();
    let w = Writes::default();
    r.write(&w, 10, b"x");
    r.write(&w, SIZE - 1, b"xy");
    assert_eq!(*w.0.lock().unwrap(), [Err(Errno::EIO), Err(Errno::EFBIG)]);
}

#[test]
fn a_read_over_a_written_page_is_never_answered_with_the_hosts_bytes() {
    let r = linked("write-then-read");
    let w = Writes::default();
    r.write(&w, 0, &[9; 4096]);
    // Page 1 is missing: the read parks, and the run 0..2 must not answer
    // it with the host's page 0.
    r.read(1, 0, 8192);
    for landing in r.accept(0, 2, &[]) {
        r.core.store(landing, true).unwrap();
    }
    let mut want = vec![9; 4096];
    want.extend_from_slice(&bytes()[4096..8192]);
    assert_eq!(r.answers.all(), [(1, Answer::Data(want))]);
}

#[test]
fn a_read_parked_before_a_write_of_its_page_gets_the_write() {
    let r = linked("read-then-write");
    let w = Writes::default();
    r.read(1, 0, 8192);
    assert_eq!(r.sent(), [demand(0, 2)]);
    r.write(&w, 0, &[9; 4096]);
    // Page 0 is present by the write: no run will land it for the read.
    for landing in r.accept(0, 2, &[]) {
        r.core.store(landing, true).unwrap();
    }
    let mut want = vec![9; 4096];
    want.extend_from_slice(&bytes()[4096..8192]);
    assert_eq!(r.answers.all(), [(1, Answer::Data(want))]);
}
