//! From the Hello to the attached manifest, sessions one after another,
//! and the ways a link ends.

use super::*;

#[test]
fn a_host_hello_is_answered_and_its_manifest_is_handed_on_to_attach() {
    let files = one_file(0);
    let mut s = Session::new(AGENT);
    feed(&mut s, host_hello(), &files);
    assert_eq!(said(&mut s), [OUR_HELLO]);
    feed(&mut s, entry(0, "f", SIZE), &files);
    assert!(said(&mut s).is_empty(), "entries are taken in silence");
    feed(&mut s, manifest_end(1, SIZE), &files);
    assert_eq!(said(&mut s), ["attach 1 entries, 10000 bytes"]);
    s.attached(Vec::new(), 0);
    assert_eq!(said(&mut s), ["send HaveEnd { files: 1 }", "start pages"]);
    assert!(!s.is_ended());
}

#[test]
fn a_resume_reports_the_pages_held_in_have_messages_split_at_the_cap() {
    let files = one_file(0);
    let mut s = Session::new(AGENT);
    feed(&mut s, host_hello(), &files);
    feed(&mut s, entry(0, "a", 1 << 30), &files);
    feed(&mut s, entry(1, "b", 6000), &files);
    feed(&mut s, manifest_end(2, (1 << 30) + 6000), &files);
    said(&mut s);
    // Every other page of "a": one range more than a Have may carry.
    let many: Vec<PageRange> = (0..MAX_RANGES_PER_HAVE as u64 + 1)
        .map(|i| PageRange {
            first: 2 * i,
            count: 1,
        })
        .collect();
    let one = vec![PageRange { first: 1, count: 1 }];
    s.attached(vec![(FileId(0), many.clone()), (FileId(1), one.clone())], 0);
    let mut haves = Vec::new();
    let mut rest = Vec::new();
    while let Some(a) = s.next_action() {
        match a {
            Action::Send(OwnedMessage::Have { file, ranges }) => haves.push((file, ranges)),
            Action::Send(other) => rest.push(format!("{other:?}")),
            other => rest.push(format!("{other:?}")),
        }
    }
    assert_eq!(
        haves,
        [
            (FileId(0), many[..MAX_RANGES_PER_HAVE].to_vec()),
            (FileId(0), many[MAX_RANGES_PER_HAVE..].to_vec()),
            (FileId(1), one),
        ]
    );
    assert_eq!(rest, ["HaveEnd { files: 2 }", "StartPages"]);
}

#[test]
fn frames_before_a_hello_are_skipped_damaged_or_not() {
    let files = one_file(0);
    let mut s = Session::new(AGENT);
    let zeros = [0u8; 4096];
    let table = crc_table(&[crc32fast::hash(&zeros)]);
    // The tail of an earlier session: a run, its end, noise, a host's Error.
    assert!(feed(&mut s, run(0, 1, Encoding::Raw, &table, &zeros), &files).is_none());
    feed(&mut s, msg(Message::Goodbye), &files);
    feed(&mut s, Input::Damaged(damaged()), &files);
    feed(
        &mut s,
        Input::Damaged(FrameError::UnknownType(0x7f)),
        &files,
    );
    let bad = ParseError::TrailingBytes {
        ty: feedfs_protocol::MessageType::Goodbye,
        extra: 1,
    };
    feed(&mut s, Input::Unparsable(bad), &files);
    let text = "an earlier host's last word";
    feed(
        &mut s,
        msg(Message::Error {
            code: ErrorCode::Internal,
            text,
        }),
        &files,
    );
    assert!(said(&mut s).is_empty());
    feed(&mut s, host_hello(), &files);
    assert_eq!(said(&mut s), [OUR_HELLO]);
}

#[test]
fn a_frame_of_another_version_is_refused_with_code_version() {
    let mut s = Session::new(AGENT);
    let e = FrameError::UnsupportedVersion {
        found: 4,
        supported: 3,
    };
    feed(&mut s, Input::Damaged(e.clone()), &one_file(0));
    assert_eq!(
        said(&mut s),
        [
            format!("send Error {{ code: Version, text: {:?} }}", e.to_string()),
            format!("end: {e}")
        ]
    );
    assert!(s.is_ended());
}

#[test]
fn a_hello_from_a_device_is_refused_with_code_protocol() {
    let mut s = Session::new(AGENT);
    feed(&mut s, hello(Role::Device, VERSION, VERSION), &one_file(0));
    let text = "expected a host's Hello, got one from a Device";
    assert_eq!(
        said(&mut s),
        [
            format!("send Error {{ code: Protocol, text: {text:?} }}"),
            format!("end: {text}")
        ]
    );
}

#[test]
fn a_hello_without_our_version_is_refused_with_code_version() {
    let mut s = Session::new(AGENT);
    feed(
        &mut s,
        hello(Role::Host, VERSION + 1, VERSION + 2),
        &one_file(0),
    );
    let text = "host feedfs-host test speaks protocol versions 5..=6, this device speaks 4";
    assert_eq!(
        said(&mut s),
        [
            format!("send Error {{ code: Version, text: {text:?} }}"),
            format!("end: {text}")
        ]
    );
}

#[test]
fn any_damage_in_the_manifest_ends_the_link_with_code_protocol() {
    let files = one_file(0);
    let bad = ParseError::TooShort {
        ty: feedfs_protocol::MessageType::Entry,
        need: 42,
        got: 3,
    };
    let e = damaged();
    for (input, text) in [
        (
            Input::Damaged(e.clone()),
            format!("damaged frame in the manifest: {e}"),
        ),
        (Input::Unparsable(bad.clone()), bad.to_string()),
    ] {
        let mut s = Session::new(AGENT);
        feed(&mut s, host_hello(), &files);
        feed(&mut s, entry(0, "f", SIZE), &files);
        said(&mut s);
        feed(&mut s, input, &files);
        assert_eq!(
            said(&mut s),
            [
                format!("send Error {{ code: Protocol, text: {text:?} }}"),
                format!("end: {text}")
            ]
        );
    }
}

#[test]
fn a_refused_manifest_is_told_with_code_manifest() {
    let files = one_file(0);
    // An entry out of order; then counts that do not match the entries.
    for last in [entry(2, "g", 10), manifest_end(2, SIZE)] {
        let mut s = Session::new(AGENT);
        feed(&mut s, host_hello(), &files);
        feed(&mut s, entry(0, "f", SIZE), &files);
        said(&mut s);
        feed(&mut s, last, &files);
        let told = said(&mut s);
        assert_eq!(told.len(), 2, "{told:?}");
        assert!(
            told[0].starts_with("send Error { code: Manifest"),
            "{told:?}"
        );
        assert!(s.is_ended());
    }
}

#[test]
fn the_link_closing_during_the_manifest_is_an_error_the_host_is_not_told() {
    let mut s = Session::new(AGENT);
    feed(&mut s, host_hello(), &one_file(0));
    said(&mut s);
    feed(&mut s, Input::Closed, &one_file(0));
    assert_eq!(said(&mut s), ["end: link closed during the manifest"]);
}

#[test]
fn goodbye_ends_the_host_session_and_the_next_hello_starts_another() {
    let files = one_file(0);
    let mut s = streaming(&files);
    feed(&mut s, msg(Message::Goodbye), &files);
    assert_eq!(said(&mut s), ["stop pages"]);
    // Between sessions, a run is a leftover: skipped.
    let data = [3u8; 1808];
    let table = crc_table(&[crc32fast::hash(&data)]);
    assert!(feed(&mut s, run(2, 1, Encoding::Raw, &table, &data), &files).is_none());
    feed(&mut s, host_hello(), &files);
    feed(&mut s, entry(0, "f", SIZE), &files);
    feed(&mut s, manifest_end(1, SIZE), &files);
    assert_eq!(said(&mut s), [OUR_HELLO, "attach 1 entries, 10000 bytes"]);
}

#[test]
fn a_hello_during_the_stream_starts_the_next_session_at_once() {
    let files = one_file(0);
    let mut s = streaming(&files);
    feed(&mut s, host_hello(), &files);
    assert_eq!(said(&mut s), ["stop pages", OUR_HELLO]);
    // A run now is part of nothing: the manifest comes first.
    let data = [3u8; 1808];
    let table = crc_table(&[crc32fast::hash(&data)]);
    feed(&mut s, run(2, 1, Encoding::Raw, &table, &data), &files);
    let told = said(&mut s);
    assert!(
        told[0].starts_with("send Error { code: Manifest"),
        "{told:?}"
    );
}

#[test]
fn a_hello_during_the_manifest_starts_it_over() {
    let files = one_file(0);
    let mut s = Session::new(AGENT);
    feed(&mut s, host_hello(), &files);
    feed(&mut s, entry(0, "old", 1), &files);
    feed(&mut s, host_hello(), &files);
    // Id 0 again: the first manifest was dropped with its session.
    feed(&mut s, entry(0, "f", SIZE), &files);
    feed(&mut s, manifest_end(1, SIZE), &files);
    assert_eq!(
        said(&mut s),
        [OUR_HELLO, OUR_HELLO, "attach 1 entries, 10000 bytes"]
    );
}

#[test]
fn the_link_closing_between_sessions_or_in_the_stream_ends_it_cleanly() {
    let files = one_file(0);
    let mut s = Session::new(AGENT);
    feed(&mut s, Input::Closed, &files);
    assert_eq!(said(&mut s), ["end"]);
    let mut s = streaming(&files);
    feed(&mut s, Input::Closed, &files);
    assert_eq!(said(&mut s), ["stop pages", "end"]);
    // After the end nothing more is done.
    feed(&mut s, host_hello(), &files);
    assert!(said(&mut s).is_empty());
}

#[test]
fn a_failure_outside_the_session_tells_the_host_when_it_has_a_code() {
    let files = one_file(0);
    let mut s = Session::new(AGENT);
    feed(&mut s, host_hello(), &files);
    feed(&mut s, entry(0, "f", SIZE), &files);
    feed(&mut s, manifest_end(1, SIZE), &files);
    said(&mut s);
    s.fail(LinkError::MountFailed);
    assert_eq!(
        said(&mut s),
        [
            "send Error { code: Internal, text: \"the device could not mount the files\" }",
            "end: the device could not mount the files",
        ]
    );
    let mut s = streaming(&files);
    let error = io::Error::from(io::ErrorKind::ConnectionReset);
    feed(&mut s, Input::ReadFailed(error), &files);
    let told = said(&mut s);
    assert_eq!(told[0], "stop pages");
    assert!(
        told[1].starts_with("end: link read failed during the stream"),
        "{told:?}"
    );
}
