//! After the handshake: the stream in runs, a resume with Have, demands
//! that pre-empt the stream, damage, the rate limit and a device that
//! stalls.

use super::*;

/// Options whose stream runs are one page long.
fn one_page_runs() -> Options {
    Options {
        run_size: 4096,
        ..options()
    }
}

fn run_of(step: Step) -> Pick {
    match step {
        Step::Run(p) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_handshake_then_the_stream_then_stream_done_then_complete() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    m.handle(t0, msg(OwnedMessage::HaveEnd { files: 2 }))
        .unwrap();
    let (sent, next) = send_all(&mut m, &set, t0);
    assert_eq!(
        sent,
        vec![
            pick(BIG, 0, 3, Kind::Stream),
            pick(SMALL, 0, 1, Kind::Stream)
        ],
        "one run per file"
    );
    assert_eq!(
        next,
        Step::StreamDone {
            pages_sent: 4,
            again: false
        }
    );
    assert_eq!(m.poll(t0), Step::Wait(IDLE_RESEND), "StreamDone goes once");
    let t1 = t0 + Duration::from_millis(1500);
    m.handle(t1, msg(OwnedMessage::Complete { pages: 4 }))
        .unwrap();
    assert!(m.is_complete());
    assert_eq!(m.poll(t1), Step::Complete);
    let summary = m.finish(t1);
    assert_eq!(summary.counters.sent_stream, 4);
    assert_eq!(summary.counters.runs, 2);
    assert_eq!(summary.bytes_sent, 10_005);
    assert_eq!(summary.device_pages, 4);
    assert_eq!(summary.pages_had, 0);
    let entries: Vec<Entry> = m.entries().collect();
    assert_eq!(entries.len(), 3);
    assert_eq!(
        entries[1],
        Entry::Sent {
            t_us: 0,
            file: SMALL,
            first: 0,
            count: 1,
            kind: Kind::Stream,
            stream_before: 3
        }
    );
    assert_eq!(
        entries[2],
        Entry::Done {
            t_us: 1_500_000,
            pages_sent: 4
        }
    );
    assert_eq!(m.entries().count(), 0, "taken once");
}

#[test]
fn a_resume_with_have_sends_only_what_the_device_lacks() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    m.handle(t0, have(BIG, 0, 2)).unwrap();
    assert_eq!(
        m.entries().collect::<Vec<_>>(),
        vec![Entry::Have {
            t_us: 0,
            file: BIG,
            pages: 2
        }]
    );
    m.handle(t0, msg(OwnedMessage::HaveEnd { files: 2 }))
        .unwrap();
    let p = run_of(m.poll(t0));
    assert_eq!((p.file, p.first, p.count), (BIG, 2, 1));
    // What is left to send: the short last page of "big" and "small".
    let progress = m.run_sent(t0, p, 1808, 1808);
    assert_eq!(progress.bytes_total, 1808 + 5);
    assert_eq!(progress.bytes_sent, 1808);
    let (sent, next) = send_all(&mut m, &set, t0);
    assert_eq!(sent, vec![pick(SMALL, 0, 1, Kind::Stream)]);
    assert_eq!(
        next,
        Step::StreamDone {
            pages_sent: 2,
            again: false
        }
    );
    m.handle(t0, msg(OwnedMessage::Complete { pages: 4 }))
        .unwrap();
    assert_eq!(m.finish(t0).pages_had, 2);
}

#[test]
fn a_bad_have_is_a_protocol_error_told_to_the_device() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    let e = m.handle(t0, have(BIG, 2, 5)).unwrap_err();
    assert!(
        matches!(
            e,
            SessionError::BadRequest {
                what: MessageType::Have,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.code_for_device(), Some(ErrorCode::Protocol));
}

#[test]
fn demands_before_have_end_are_answered_and_nothing_else() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    m.handle(t0, demand(BIG, 1, 2)).unwrap();
    let (sent, next) = send_all(&mut m, &set, t0);
    assert_eq!(
        sent,
        vec![pick(BIG, 1, 2, Kind::Demand)],
        "exactly the pages asked for, in one run"
    );
    assert!(matches!(next, Step::Wait(_)), "{next:?}");
    assert_eq!(
        m.entries().next(),
        Some(Entry::Demand {
            t_us: 0,
            file: BIG,
            first: 1,
            count: 2
        })
    );
}

#[test]
fn demands_pre_empt_the_stream_which_then_yields_for_a_moment() {
    let set = served();
    let t0 = Instant::now();
    let mut m = started(&set, one_page_runs(), t0);
    m.handle(t0, hello(VERSION, VERSION)).unwrap();
    m.handle(t0, msg(OwnedMessage::HaveEnd { files: 2 }))
        .unwrap();
    let p = run_of(m.poll(t0));
    assert_eq!(
        (p.file, p.first, p.count, p.kind),
        (BIG, 0, 1, Kind::Stream)
    );
    m.run_sent(t0, p, 4096, 4096);
    // A reader wants the last page of "big": it goes next.
    m.handle(t0, demand(BIG, 2, 1)).unwrap();
    let p = run_of(m.poll(t0));
    assert_eq!(Step::Run(p), pick(BIG, 2, 1, Kind::Demand));
    m.run_sent(t0, p, 1808, 1808);
    // Then the stream holds back, for readers, until STREAM_YIELD has passed.
    let half = STREAM_YIELD / 2;
    assert_eq!(m.poll(t0 + half), Step::Wait(STREAM_YIELD - half));
    assert_eq!(m.poll(t0 + STREAM_YIELD), pick(BIG, 1, 1, Kind::Stream));
    assert_eq!(m.finish(t0).counters.demands, 1);
}

#[test]
fn a_bad_demand_is_recorded_and_a_protocol_error() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    // Id 0 is the directory "tree".
    let e = m.handle(t0, demand(FileId(0), 0, 1)).unwrap_err();
    assert!(e.to_string().contains("bad Demand"), "{e}");
    assert_eq!(e.code_for_device(), Some(ErrorCode::Protocol));
    assert_eq!(m.entries().count(), 1, "what came is recorded");
    let e = m.handle(t0, demand(BIG, 2, 2)).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
}

#[test]
fn damaged_frames_after_the_hello_are_skipped_and_are_no_word_from_the_device() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    m.handle(t0, msg(OwnedMessage::HaveEnd { files: 2 }))
        .unwrap();
    let (_, done) = send_all(&mut m, &set, t0);
    assert!(matches!(done, Step::StreamDone { again: false, .. }));
    assert_eq!(m.poll(t0), Step::Wait(IDLE_RESEND));
    let half = t0 + SECOND / 2;
    let damaged = Event::Damaged {
        error: FrameError::BadChecksum {
            expected: 1,
            actual: 2,
        },
        before_hello: None,
    };
    m.handle(half, damaged).unwrap();
    let malformed = Event::Malformed(feedfs_protocol::message::ParseError::TrailingBytes {
        ty: MessageType::Have,
        extra: 3,
    });
    m.handle(half, malformed).unwrap();
    assert_eq!(
        m.poll(half),
        Step::Wait(SECOND / 2),
        "the idle wait goes on"
    );
    assert!(matches!(
        m.poll(t0 + SECOND),
        Step::StreamDone { again: true, .. }
    ));
}

#[test]
fn a_peer_silent_after_the_handshake_hears_stream_done_again_each_second() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    m.handle(t0, msg(OwnedMessage::HaveEnd { files: 2 }))
        .unwrap();
    let _ = send_all(&mut m, &set, t0);
    let mut now = t0;
    for _ in 0..5 {
        assert_eq!(m.poll(now), Step::Wait(IDLE_RESEND));
        now += IDLE_RESEND;
        assert_eq!(
            m.poll(now),
            Step::StreamDone {
                pages_sent: 4,
                again: true
            },
            "a stalled device is reminded, never given up on"
        );
    }
    // A word from the device starts the wait again.
    m.handle(now + SECOND / 2, msg(OwnedMessage::HaveEnd { files: 2 }))
        .unwrap();
    assert_eq!(m.poll(now + SECOND / 2), Step::Wait(IDLE_RESEND));
}

#[test]
fn under_a_rate_limit_the_machine_waits_for_the_budget() {
    let set = served();
    let t0 = Instant::now();
    // 4096 bytes a second and one-page runs: the bucket holds one run.
    let options = Options {
        rate: Some(4096),
        ..one_page_runs()
    };
    let mut m = started(&set, options, t0);
    m.handle(t0, hello(VERSION, VERSION)).unwrap();
    m.handle(t0, msg(OwnedMessage::HaveEnd { files: 2 }))
        .unwrap();
    let p = run_of(m.poll(t0));
    m.run_sent(t0, p, 4096, 4096);
    assert_eq!(m.poll(t0), Step::Wait(SECOND));
    assert_eq!(m.poll(t0 + SECOND / 2), Step::Wait(SECOND / 2));
    assert_eq!(m.poll(t0 + SECOND), pick(BIG, 1, 1, Kind::Stream));
}

#[test]
fn under_a_rate_stream_runs_carry_about_a_millisecond_and_demands_are_never_cut() {
    // 40 MiB/s: 41 943 bytes a millisecond, 10 whole pages.
    assert_eq!(stream_run_pages(256 << 10, Some(40 << 20)), 10);
    // A slow link: at least 16 KiB.
    assert_eq!(stream_run_pages(256 << 10, Some(1 << 20)), 4);
    // A fast one, or none: --run-size.
    assert_eq!(stream_run_pages(256 << 10, Some(10 << 30)), 64);
    assert_eq!(stream_run_pages(256 << 10, None), 64);
    assert_eq!(stream_run_pages(4096, Some(40 << 20)), 1);
    assert_eq!(stream_run_pages(1 << 20, None), MAX_RUN_PAGES);
    let set = {
        let t = TempDir::new("machine-rate");
        t.write("tree/large", &vec![1u8; 1 << 20]);
        walk(&[t.join("tree")]).unwrap()
    };
    let t0 = Instant::now();
    let options = Options {
        rate: Some(40 << 20),
        ..options()
    };
    let mut m = started(&set, options, t0);
    m.handle(t0, hello(VERSION, VERSION)).unwrap();
    m.handle(t0, demand(FileId(1), 100, 64)).unwrap();
    m.handle(t0, msg(OwnedMessage::HaveEnd { files: 1 }))
        .unwrap();
    assert_eq!(m.poll(t0), pick(FileId(1), 100, 64, Kind::Demand));
    let later = t0 + SECOND;
    assert_eq!(m.poll(later), pick(FileId(1), 0, 10, Kind::Stream));
}

#[test]
fn without_the_stream_only_demands_go_out() {
    let set = served();
    let t0 = Instant::now();
    let options = Options {
        stream: false,
        ..options()
    };
    let mut m = started(&set, options, t0);
    m.handle(t0, hello(VERSION, VERSION)).unwrap();
    m.handle(t0, msg(OwnedMessage::HaveEnd { files: 2 }))
        .unwrap();
    m.handle(t0, demand(SMALL, 0, 1)).unwrap();
    let (sent, _) = send_all(&mut m, &set, t0);
    assert_eq!(sent, vec![pick(SMALL, 0, 1, Kind::Demand)]);
}
