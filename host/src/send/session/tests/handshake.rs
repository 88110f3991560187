//! The handshake over a socket pair: versions, an earlier session's
//! leftovers, a banner, silence and a peer that is not feedfs.

use std::io::Write as _;

use feedfs_protocol::HelloError;

use super::*;

#[test]
fn version_mismatch_is_explained_to_both_sides() {
    let t = TempDir::new("version");
    let (set, _) = two_files(&t);
    let (run, told) = session(&set, 8, |d| {
        d.read_manifest();
        d.hello(VERSION + 1, VERSION + 2);
        d.recv()
    });
    let e = run.result.unwrap_err();
    assert!(matches!(
        e,
        SessionError::Hello(HelloError::Version {
            min,
            max,
            ours: VERSION,
            ..
        }) if (min, max) == (VERSION + 1, VERSION + 2)
    ));
    assert!(e.to_string().contains("install matching versions"), "{e}");
    assert!(
        matches!(
            told,
            Some(OwnedMessage::Error {
                code: ErrorCode::Version,
                ..
            })
        ),
        "{told:?}"
    );
}

#[test]
fn messages_before_the_hello_are_an_earlier_session_and_skipped() {
    let t = TempDir::new("nohello");
    std::fs::create_dir_all(t.join("empty")).unwrap();
    let set = walk(&[t.join("empty")]).unwrap();
    let (run, got) = session(&set, 8, |d| {
        d.read_manifest();
        // What a USB link may still hold from a host that was killed.
        d.send(Message::Complete { pages: 9 });
        d.send(Message::HaveEnd { files: 0 });
        d.hello(VERSION, VERSION);
        d.send(Message::HaveEnd { files: 0 });
        let m = d.recv();
        d.send(Message::Complete { pages: 0 });
        m
    });
    assert_eq!(got, Some(OwnedMessage::StreamDone { pages_sent: 0 }));
    assert_eq!(run.result.unwrap().device_pages, 0);
}

#[test]
fn a_device_that_never_says_hello_is_given_up_on() {
    let t = TempDir::new("nohello");
    std::fs::create_dir_all(t.join("d")).unwrap();
    let set = walk(&[t.join("d")]).unwrap();
    let (run, _) = session_with(&set, 8, Duration::from_millis(200), |d| {
        d.read_manifest();
        // Wait, silent, until the host hangs up.
        while d.recv().is_some() {}
    });
    let err = run.result.unwrap_err();
    assert!(
        matches!(err, SessionError::NoHello { bytes: 0, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("within 0.2s (it sent nothing)"),
        "{err}"
    );
}

#[test]
fn a_banner_before_the_hello_is_skipped() {
    let t = TempDir::new("banner");
    std::fs::create_dir_all(t.join("d")).unwrap();
    let set = walk(&[t.join("d")]).unwrap();
    let (run, _) = session(&set, 8, |d| {
        d.read_manifest();
        d.w.get_mut().write_all(b"Welcome to the board\n").unwrap();
        d.hello(VERSION, VERSION);
        d.send(Message::HaveEnd { files: 0 });
        d.recv();
        d.send(Message::Complete { pages: 0 });
    });
    assert!(run.result.is_ok(), "{:?}", run.result.err());
}

#[test]
fn a_peer_printing_in_a_loop_is_not_feedfs() {
    let t = TempDir::new("babble");
    std::fs::create_dir_all(t.join("d")).unwrap();
    let set = walk(&[t.join("d")]).unwrap();
    let (run, _) = session(&set, 8, |d| {
        d.read_manifest();
        let line = b"garbage\n".repeat(1024);
        while d.w.get_mut().write_all(&line).is_ok() {}
    });
    let err = run.result.unwrap_err();
    match &err {
        SessionError::NotFeedfs { bytes, quote } => {
            assert!(*bytes > PREAMBLE_MAX, "{bytes}");
            assert!(quote.starts_with("\"garbage\\ngarbage"), "{quote}");
        }
        e => panic!("{e}"),
    }
}
