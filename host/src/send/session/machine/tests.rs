//! The host's protocol session driven message by message, with the time
//! passed in: no threads, no sockets, no clock.
//!
//! The set served is a directory "tree" (id 0) with "big" (id 1, 10 000
//! bytes: blocks 0 and 1 whole, block 2 of 1808 bytes) and "small" (id 2,
//! 5 bytes: one block).

use feedfs_protocol::io::ReadError;
use feedfs_protocol::{BlockRange, ErrorCode, FrameError, MessageType};

use super::*;
use crate::files::manifest::walk;
use crate::send::compress::Mode;
use crate::send::session::reader::Seen;
use crate::testutil::TempDir;

const BIG: FileId = FileId(1);
const SMALL: FileId = FileId(2);
const SECOND: Duration = Duration::from_secs(1);

fn served() -> ServedSet {
    let t = TempDir::new("machine");
    t.write("tree/big", &vec![7u8; 10_000]);
    t.write("tree/small", b"small");
    walk(&[t.join("tree")], 4096).unwrap()
}

fn options() -> Options {
    Options {
        readahead: 0,
        rate: None,
        stream: true,
        compress: Mode::None,
        handshake_timeout: Duration::from_secs(10),
    }
}

fn msg(m: DeviceMsg) -> Event {
    Event::Msg(m)
}

fn hello(min_version: u8, max_version: u8) -> Event {
    msg(DeviceMsg::Hello {
        role: Role::Device,
        min_version,
        max_version,
        agent: "fake-device".into(),
    })
}

fn have(file: FileId, first: u64, count: u64) -> Event {
    msg(DeviceMsg::Have {
        file,
        ranges: vec![BlockRange { first, count }],
    })
}

fn demand(file: FileId, first: u64, count: u32) -> Event {
    msg(DeviceMsg::Demand { file, first, count })
}

fn pick(file: FileId, index: u64, kind: Kind) -> Step {
    Step::Block(Pick { file, index, kind })
}

/// A machine whose manifest went out at `t0`.
fn started(set: &ServedSet, options: Options, t0: Instant) -> Machine<'_> {
    let mut m = Machine::new(set, &options, t0);
    assert_eq!(m.poll(t0), Step::Manifest);
    m.manifest_sent(t0);
    m
}

/// [`started`], then the device's Hello.
fn connected(set: &ServedSet, t0: Instant) -> Machine<'_> {
    let mut m = started(set, options(), t0);
    m.handle(t0, hello(VERSION, VERSION)).unwrap();
    assert!(m.said_hello());
    m
}

/// Send every block the machine picks at `now`, as 100 bytes each on the
/// wire; what was picked, and the step that ended the run.
fn send_all(m: &mut Machine, now: Instant) -> (Vec<Step>, Step) {
    let mut sent = Vec::new();
    loop {
        match m.poll(now) {
            step @ Step::Block(p) => {
                m.block_sent(now, p, 4096, 100);
                sent.push(step);
            }
            other => return (sent, other),
        }
    }
}

#[test]
fn the_manifest_goes_first_and_the_handshake_waits_for_the_hello() {
    let set = served();
    let t0 = Instant::now();
    let mut m = Machine::new(&set, &options(), t0);
    assert_eq!(m.poll(t0), Step::Manifest, "until the manifest is out");
    assert_eq!(m.poll(t0 + SECOND), Step::Manifest);
    m.manifest_sent(t0 + SECOND);
    assert_eq!(m.poll(t0 + 3 * SECOND), Step::Wait(8 * SECOND));
    m.handle(t0 + 3 * SECOND, hello(VERSION - 1, VERSION + 1))
        .unwrap();
    // Before HaveEnd nothing is known of the device: demands only.
    assert_eq!(m.poll(t0 + 3 * SECOND), Step::Wait(IDLE_RESEND));
}

#[test]
fn a_handshake_then_the_stream_then_stream_done_then_complete() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    m.handle(t0, msg(DeviceMsg::HaveEnd { files: 2 })).unwrap();
    let (sent, next) = send_all(&mut m, t0);
    assert_eq!(
        sent,
        vec![
            pick(BIG, 0, Kind::Stream),
            pick(BIG, 1, Kind::Stream),
            pick(BIG, 2, Kind::Stream),
            pick(SMALL, 0, Kind::Stream),
        ]
    );
    assert_eq!(
        next,
        Step::StreamDone {
            blocks_sent: 4,
            again: false
        }
    );
    assert_eq!(m.poll(t0), Step::Wait(IDLE_RESEND), "StreamDone goes once");
    let t1 = t0 + Duration::from_millis(1500);
    m.handle(t1, msg(DeviceMsg::Complete { blocks: 4 }))
        .unwrap();
    assert!(m.is_complete());
    assert_eq!(m.poll(t1), Step::Complete);
    let summary = m.finish(t1);
    assert_eq!(summary.counters.sent_stream, 4);
    assert_eq!(summary.bytes_sent, 4 * 4096);
    assert_eq!(summary.device_blocks, 4);
    assert_eq!(summary.blocks_had, 0);
    let entries: Vec<Entry> = m.entries().collect();
    assert_eq!(entries.len(), 5);
    assert_eq!(
        entries[3],
        Entry::Sent {
            t_us: 0,
            file: SMALL,
            index: 0,
            kind: Kind::Stream,
            stream_before: 3
        }
    );
    assert_eq!(
        entries[4],
        Entry::Done {
            t_us: 1_500_000,
            blocks_sent: 4
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
            blocks: 2
        }]
    );
    m.handle(t0, msg(DeviceMsg::HaveEnd { files: 2 })).unwrap();
    let p = match m.poll(t0) {
        Step::Block(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!((p.file, p.index), (BIG, 2));
    // What is left to send: the short last block of "big" and "small".
    let progress = m.block_sent(t0, p, 1808, 1808);
    assert_eq!(progress.bytes_total, 1808 + 5);
    assert_eq!(progress.bytes_sent, 1808);
    let (sent, next) = send_all(&mut m, t0);
    assert_eq!(sent, vec![pick(SMALL, 0, Kind::Stream)]);
    assert_eq!(
        next,
        Step::StreamDone {
            blocks_sent: 2,
            again: false
        }
    );
    m.handle(t0, msg(DeviceMsg::Complete { blocks: 4 }))
        .unwrap();
    assert_eq!(m.finish(t0).blocks_had, 2);
}

#[test]
fn a_bad_have_is_a_protocol_error_told_to_the_device() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    let e = m.handle(t0, have(BIG, 2, 5)).unwrap_err();
    assert!(matches!(e, SessionError::Protocol(_)), "{e}");
    assert_eq!(e.code_for_device(), Some(ErrorCode::Protocol));
}

#[test]
fn demands_before_have_end_are_answered_and_nothing_else() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    m.handle(t0, demand(BIG, 1, 1)).unwrap();
    let (sent, next) = send_all(&mut m, t0);
    assert_eq!(sent, vec![pick(BIG, 1, Kind::Demand)]);
    assert!(matches!(next, Step::Wait(_)), "{next:?}");
    assert_eq!(
        m.entries().next(),
        Some(Entry::Demand {
            t_us: 0,
            file: BIG,
            first: 1,
            count: 1
        })
    );
}

#[test]
fn demands_pre_empt_the_stream_which_then_yields_for_a_moment() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    m.handle(t0, msg(DeviceMsg::HaveEnd { files: 2 })).unwrap();
    let p = match m.poll(t0) {
        Step::Block(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!((p.file, p.index, p.kind), (BIG, 0, Kind::Stream));
    m.block_sent(t0, p, 4096, 4096);
    // A reader wants the last block of "big": it goes next.
    m.handle(t0, demand(BIG, 2, 1)).unwrap();
    assert_eq!(m.poll(t0), pick(BIG, 2, Kind::Demand));
    m.block_sent(
        t0,
        Pick {
            file: BIG,
            index: 2,
            kind: Kind::Demand,
        },
        1808,
        1808,
    );
    // Then the stream holds back, for readers, until STREAM_YIELD has passed.
    let half = STREAM_YIELD / 2;
    assert_eq!(m.poll(t0 + half), Step::Wait(STREAM_YIELD - half));
    assert_eq!(m.poll(t0 + STREAM_YIELD), pick(BIG, 1, Kind::Stream));
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
    m.handle(t0, msg(DeviceMsg::HaveEnd { files: 2 })).unwrap();
    let (_, done) = send_all(&mut m, t0);
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
fn damage_before_the_hello_is_a_banner_until_it_is_too_long() {
    let set = served();
    let t0 = Instant::now();
    let mut m = started(&set, options(), t0);
    let banner = |bytes: u64| Event::Damaged {
        error: FrameError::BadMagic { found: *b"Welc" },
        before_hello: Some(Seen {
            bytes,
            quote: "\"Welcome\\n\"…".into(),
        }),
    };
    m.handle(t0, banner(100)).unwrap();
    m.handle(t0, banner(PREAMBLE_MAX)).unwrap();
    let e = m.handle(t0, banner(PREAMBLE_MAX + 1)).unwrap_err();
    match &e {
        SessionError::NotFeedfs { bytes, quote } => {
            assert_eq!(*bytes, PREAMBLE_MAX + 1);
            assert_eq!(quote, "\"Welcome\\n\"…");
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        e.code_for_device(),
        None,
        "nothing to tell a peer that is not feedfs"
    );
}

#[test]
fn a_wrong_hello_is_refused() {
    let set = served();
    let t0 = Instant::now();
    let mut m = started(&set, options(), t0);
    let e = m.handle(t0, hello(VERSION + 1, VERSION + 2)).unwrap_err();
    assert!(matches!(
        e,
        SessionError::Version { min, max, ours: VERSION } if (min, max) == (VERSION + 1, VERSION + 2)
    ));
    assert_eq!(e.code_for_device(), Some(ErrorCode::Version));
    let mut m = started(&set, options(), t0);
    let host = msg(DeviceMsg::Hello {
        role: Role::Host,
        min_version: VERSION,
        max_version: VERSION,
        agent: "another host".into(),
    });
    let e = m.handle(t0, host).unwrap_err();
    assert!(e.to_string().contains("says it is a host"), "{e}");
    assert!(!m.said_hello());
}

#[test]
fn messages_before_the_hello_are_skipped_but_an_error_is_not() {
    let set = served();
    let t0 = Instant::now();
    let mut m = started(&set, options(), t0);
    // What a USB link may still hold from a host that was killed.
    m.handle(t0, msg(DeviceMsg::Complete { blocks: 9 }))
        .unwrap();
    m.handle(t0, demand(BIG, 0, 1)).unwrap();
    assert!(!m.is_complete());
    assert_eq!(m.entries().count(), 0);
    let e = m
        .handle(
            t0,
            msg(DeviceMsg::Error {
                code: ErrorCode::Manifest,
                text: "bad manifest".into(),
            }),
        )
        .unwrap_err();
    assert!(matches!(
        e,
        SessionError::Device {
            code: ErrorCode::Manifest,
            ..
        }
    ));
}

#[test]
fn a_silent_peer_is_given_up_on_at_the_handshake_timeout() {
    let set = served();
    let t0 = Instant::now();
    let mut m = started(&set, options(), t0);
    assert_eq!(m.poll(t0 + 4 * SECOND), Step::Wait(6 * SECOND));
    assert_eq!(
        m.poll(t0 + 10 * SECOND),
        Step::NoHello {
            waited: 10 * SECOND
        }
    );
}

#[test]
fn a_peer_silent_after_the_handshake_hears_stream_done_again_each_second() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    m.handle(t0, msg(DeviceMsg::HaveEnd { files: 2 })).unwrap();
    let _ = send_all(&mut m, t0);
    let mut now = t0;
    for _ in 0..5 {
        assert_eq!(m.poll(now), Step::Wait(IDLE_RESEND));
        now += IDLE_RESEND;
        assert_eq!(
            m.poll(now),
            Step::StreamDone {
                blocks_sent: 4,
                again: true
            },
            "a stalled device is reminded, never given up on"
        );
    }
    // A word from the device starts the wait again.
    m.handle(now + SECOND / 2, msg(DeviceMsg::HaveEnd { files: 2 }))
        .unwrap();
    assert_eq!(m.poll(now + SECOND / 2), Step::Wait(IDLE_RESEND));
}

#[test]
fn a_device_error_or_goodbye_ends_the_session() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    let e = m
        .handle(
            t0,
            msg(DeviceMsg::Error {
                code: ErrorCode::NoSpace,
                text: "store is full".into(),
            }),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "device reported an error: NoSpace: store is full"
    );
    assert_eq!(e.code_for_device(), None, "the device knows already");
    assert!(!e.is_link());
    let mut m = connected(&set, t0);
    let e = m.handle(t0, msg(DeviceMsg::Goodbye)).unwrap_err();
    assert!(matches!(e, SessionError::DeviceEnded));
}

#[test]
fn a_host_message_from_the_device_is_a_protocol_error() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    let e = m
        .handle(t0, msg(DeviceMsg::Unexpected(MessageType::Block)))
        .unwrap_err();
    assert!(e.to_string().contains("which only a host sends"), "{e}");
    // A second Hello is not an error.
    let mut m = connected(&set, t0);
    m.handle(t0, hello(VERSION, VERSION)).unwrap();
}

#[test]
fn the_readers_end_and_a_signal_end_the_session() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    let e = m.handle(t0, Event::End(None)).unwrap_err();
    assert!(matches!(e, SessionError::LinkClosed) && e.is_link());
    let cut = FrameError::Truncated {
        needed: 20,
        available: 3,
    };
    let e = m
        .handle(t0, Event::End(Some(ReadError::Frame(cut))))
        .unwrap_err();
    assert!(matches!(e, SessionError::Truncated(_)) && e.is_link());
    let old = FrameError::UnsupportedVersion {
        found: 9,
        supported: VERSION,
    };
    let e = m
        .handle(t0, Event::End(Some(ReadError::Frame(old))))
        .unwrap_err();
    assert_eq!(e.code_for_device(), Some(ErrorCode::Version));
    let e = m.handle(t0, Event::Signal(15)).unwrap_err();
    assert_eq!(e.signal(), Some(15));
    assert!(!e.is_link());
}

#[test]
fn under_a_rate_limit_the_machine_waits_for_the_budget() {
    let set = served();
    let t0 = Instant::now();
    // 4096 bytes a second: the bucket holds one block.
    let options = Options {
        rate: Some(4096),
        ..options()
    };
    let mut m = started(&set, options, t0);
    m.handle(t0, hello(VERSION, VERSION)).unwrap();
    m.handle(t0, msg(DeviceMsg::HaveEnd { files: 2 })).unwrap();
    let p = match m.poll(t0) {
        Step::Block(p) => p,
        other => panic!("{other:?}"),
    };
    m.block_sent(t0, p, 4096, 4096);
    assert_eq!(m.poll(t0), Step::Wait(SECOND));
    assert_eq!(m.poll(t0 + SECOND / 2), Step::Wait(SECOND / 2));
    assert_eq!(m.poll(t0 + SECOND), pick(BIG, 1, Kind::Stream));
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
    m.handle(t0, msg(DeviceMsg::HaveEnd { files: 2 })).unwrap();
    m.handle(t0, demand(SMALL, 0, 1)).unwrap();
    let (sent, _) = send_all(&mut m, t0);
    assert_eq!(sent, vec![pick(SMALL, 0, Kind::Demand)]);
}
