//! The host's protocol session driven message by message, with the time
//! passed in: no threads, no sockets, no clock.
//!
//! The set served is a directory "tree" (id 0) with "big" (id 1, 10 000
//! bytes: pages 0 and 1 whole, page 2 of 1808 bytes) and "small" (id 2,
//! 5 bytes: one page). Here: the handshake and how a session ends;
//! [`stream`]: what goes out after it.

mod stream;

use feedfs_protocol::io::ReadError;
use feedfs_protocol::{
    run_len, ErrorCode, FrameError, HelloError, MessageType, PageRange, VERSION,
};

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
    walk(&[t.join("tree")]).unwrap()
}

fn options() -> Options {
    Options {
        readahead: 0,
        run_size: 256 << 10,
        rate: None,
        stream: true,
        compress: Mode::None,
        handshake_timeout: Duration::from_secs(10),
    }
}

fn msg(m: OwnedMessage) -> Event {
    Event::Msg(m)
}

fn hello(min_version: u8, max_version: u8) -> Event {
    msg(OwnedMessage::Hello {
        role: Role::Device,
        min_version,
        max_version,
        agent: "fake-device".into(),
    })
}

fn have(file: FileId, first: u64, count: u64) -> Event {
    msg(OwnedMessage::Have {
        file,
        ranges: vec![PageRange { first, count }],
    })
}

fn demand(file: FileId, first: u64, count: u32) -> Event {
    msg(OwnedMessage::Demand {
        file,
        first,
        count,
        again: false,
    })
}

fn pick(file: FileId, first: u64, count: u32, kind: Kind) -> Step {
    Step::Run(Pick {
        file,
        first,
        count,
        kind,
    })
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

/// Send every run the machine picks at `now`, its bytes as 100 bytes on
/// the wire; what was picked, and the step that ended it.
fn send_all(m: &mut Machine, set: &ServedSet, now: Instant) -> (Vec<Step>, Step) {
    let mut sent = Vec::new();
    loop {
        match m.poll(now) {
            step @ Step::Run(p) => {
                let size = set.get(p.file).map_or(0, |e| e.size);
                let raw = run_len(size, p.first, p.count.into()) as u64;
                m.run_sent(now, p, raw, 100);
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
        SessionError::Hello(HelloError::Version { min, max, ours: VERSION, .. })
            if (min, max) == (VERSION + 1, VERSION + 2)
    ));
    assert_eq!(e.code_for_device(), Some(ErrorCode::Version));
    let mut m = started(&set, options(), t0);
    let host = msg(OwnedMessage::Hello {
        role: Role::Host,
        min_version: VERSION,
        max_version: VERSION,
        agent: "another host".into(),
    });
    let e = m.handle(t0, host).unwrap_err();
    assert_eq!(
        e.to_string(),
        "protocol error: the peer (\"another host\") says it is a host, not a device"
    );
    assert_eq!(e.code_for_device(), Some(ErrorCode::Protocol));
    assert!(!m.said_hello());
}

#[test]
fn messages_before_the_hello_are_skipped_but_an_error_is_not() {
    let set = served();
    let t0 = Instant::now();
    let mut m = started(&set, options(), t0);
    // What a USB link may still hold from a host that was killed.
    m.handle(t0, msg(OwnedMessage::Complete { pages: 9 }))
        .unwrap();
    m.handle(t0, demand(BIG, 0, 1)).unwrap();
    assert!(!m.is_complete());
    assert_eq!(m.entries().count(), 0);
    let e = m
        .handle(
            t0,
            msg(OwnedMessage::Error {
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
fn a_device_error_or_goodbye_ends_the_session() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    let e = m
        .handle(
            t0,
            msg(OwnedMessage::Error {
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
    let e = m.handle(t0, msg(OwnedMessage::Goodbye)).unwrap_err();
    assert!(matches!(e, SessionError::DeviceEnded));
}

#[test]
fn a_host_message_from_the_device_is_a_protocol_error() {
    let set = served();
    let t0 = Instant::now();
    let mut m = connected(&set, t0);
    let e = m
        .handle(t0, msg(OwnedMessage::StreamDone { pages_sent: 0 }))
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
