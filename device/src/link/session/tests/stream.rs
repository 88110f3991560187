//! Blocks: checked, decoded, demanded again or refused; the stream's end.

use super::*;

#[test]
fn good_blocks_go_to_the_core_raw_lz4_and_zero_decoded() {
    let files = one_file(0);
    let mut s = streaming(&files);
    let block0: Vec<u8> = (0..4096u32).map(|i| (i % 13) as u8).collect();
    let crc0 = crc32fast::hash(&block0);
    assert_eq!(
        feed(&mut s, block(0, crc0, Encoding::Raw, &block0), &files),
        Some((0, block0.clone()))
    );
    // The CRC the frame check computed is trusted, not computed again.
    let from_frame = Input::Message {
        msg: Message::Block {
            file: FileId(0),
            index: 0,
            crc: 0x1234,
            encoding: Encoding::Raw,
            data: &block0,
        },
        data_crc: Some(0x1234),
    };
    assert!(feed(&mut s, from_frame, &files).is_some());
    let packed = lz4_flex::block::compress(&block0);
    assert_eq!(
        feed(&mut s, block(0, crc0, Encoding::Lz4, &packed), &files),
        Some((0, block0))
    );
    // A zero block is the manifest's length of zeros: 1904 for the last one.
    let crc1 = crc32fast::hash(&[0; 1904]);
    assert_eq!(
        feed(&mut s, block(1, crc1, Encoding::Zero, &[]), &files),
        Some((1, vec![0; 1904]))
    );
    assert!(said(&mut s).is_empty());
}

#[test]
fn a_damaged_block_is_demanded_again_and_the_stream_goes_on() {
    let files = one_file(0);
    let mut s = streaming(&files);
    let block0: Vec<u8> = (0..4096u32).map(|i| (i % 13) as u8).collect();
    let crc0 = crc32fast::hash(&block0);
    let packed = lz4_flex::block::compress(&block0);
    let mut garbled = packed.clone();
    garbled[0] = 0xff;
    let short = lz4_flex::block::compress(&block0[..1904]);
    let other = lz4_flex::block::compress(&[0u8; 4096]);
    let zeros_crc = crc32fast::hash(&[0; 4096]);
    for (index, input) in [
        (0, block(0, crc0 ^ 1, Encoding::Raw, &block0)),
        (0, block(0, crc0, Encoding::Lz4, &garbled)),
        (0, block(0, crc0, Encoding::Lz4, &short)),
        (0, block(0, crc0, Encoding::Lz4, &other)),
        // The CRC of 4096 zeros for the short last block (1904 bytes).
        (1, block(1, zeros_crc, Encoding::Zero, &[])),
    ] {
        assert!(feed(&mut s, input, &files).is_none());
        assert_eq!(said(&mut s), [format!("demand {index} of #0 again")]);
    }
    assert_eq!(
        feed(&mut s, block(0, crc0, Encoding::Lz4, &packed), &files),
        Some((0, block0))
    );
    assert!(!s.is_ended());
}

#[test]
fn a_block_outside_the_manifest_ends_the_link_with_code_protocol() {
    let files = one_file(0);
    let data = [1u8; 4096];
    let crc = crc32fast::hash(&data);
    let elsewhere = msg(Message::Block {
        file: FileId(5),
        index: 0,
        crc,
        encoding: Encoding::Raw,
        data: &data,
    });
    for (input, text) in [
        (
            block(2, crc, Encoding::Lz4, &data),
            "block 2 of #0 is past its end (2 blocks)",
        ),
        (
            elsewhere,
            "block for #5, which is not a file of the manifest",
        ),
        (
            block(1, crc, Encoding::Raw, &data),
            "block 1 of #0 has 4096 bytes, expected 1904",
        ),
    ] {
        let mut s = streaming(&files);
        assert!(feed(&mut s, input, &files).is_none());
        assert_eq!(
            said(&mut s),
            [
                format!("send Error {{ code: Protocol, text: {text:?} }}"),
                "stop blocks".into(),
                format!("end: host sent a bad block: {text}"),
            ]
        );
    }
}

#[test]
fn a_block_the_core_refuses_is_demanded_again_or_ends_the_link() {
    let files = one_file(0);
    let mut s = streaming(&files);
    let (file, index) = (FileId(0), 1);
    s.refused(LandError::BadCrc {
        file,
        index,
        sent: 1,
        actual: 2,
    });
    assert_eq!(said(&mut s), ["demand 1 of #0 again"]);
    s.refused(LandError::NoSuchFile(FileId(9)));
    let told = said(&mut s);
    assert!(
        told[0].starts_with("send Error { code: Protocol"),
        "{told:?}"
    );
    assert_eq!(
        told[1..],
        [
            "stop blocks",
            "end: host sent a bad block: block for #9, which is not a file of the manifest"
        ]
    );
}

#[test]
fn damaged_frames_during_the_stream_are_dropped_and_the_stream_goes_on() {
    let files = one_file(0);
    let mut s = streaming(&files);
    let start = Instant::now();
    for i in 0..100 {
        let e = if i % 2 == 0 {
            damaged()
        } else {
            FrameError::UnknownType(0x40)
        };
        s.handle(start + Duration::from_millis(i), Input::Damaged(e), &files);
        let bad = ParseError::TrailingBytes {
            ty: feedfs_protocol::MessageType::Complete,
            extra: 3,
        };
        s.handle(
            start + Duration::from_millis(i),
            Input::Unparsable(bad),
            &files,
        );
    }
    assert!(said(&mut s).is_empty());
    let data = [3u8; 1904];
    let crc = crc32fast::hash(&data);
    assert_eq!(
        feed(&mut s, block(1, crc, Encoding::Raw, &data), &files),
        Some((1, data.to_vec()))
    );
}

#[test]
fn a_cut_during_the_stream_ends_the_link_without_an_error_frame() {
    let files = one_file(0);
    let mut s = streaming(&files);
    let cut = FrameError::Truncated {
        needed: 100,
        available: 7,
    };
    feed(&mut s, Input::Damaged(cut.clone()), &files);
    assert_eq!(
        said(&mut s),
        [
            "stop blocks".to_string(),
            format!("end: link from host failed: {cut}")
        ]
    );
}

#[test]
fn stream_done_demands_what_is_missing_and_a_repeat_when_complete_says_complete_again() {
    let done = || msg(Message::StreamDone { blocks_sent: 2 });
    let mut s = streaming(&one_file(1));
    feed(&mut s, done(), &one_file(1));
    assert_eq!(said(&mut s), ["demand the missing"]);
    // Now complete: the Core said Complete; a StreamDone after it means it was lost.
    feed(&mut s, done(), &one_file(2));
    assert_eq!(said(&mut s), ["send Complete { blocks: 2 }"]);
    // Complete before the first StreamDone: the Core already said so.
    let mut s = streaming(&one_file(2));
    feed(&mut s, done(), &one_file(2));
    assert!(said(&mut s).is_empty());
}

#[test]
fn a_silent_host_is_waited_for_however_long() {
    let files = one_file(0);
    let mut s = streaming(&files);
    // No deadline of the session's own: nothing happens without input.
    assert!(s.next_action().is_none());
    let later = Instant::now() + Duration::from_secs(3600);
    s.handle(later, msg(Message::StreamDone { blocks_sent: 0 }), &files);
    assert_eq!(said(&mut s), ["demand the missing"]);
    assert!(!s.is_ended());
}

#[test]
fn the_hosts_error_ends_the_link_and_is_not_answered() {
    let files = one_file(0);
    let mut s = streaming(&files);
    let text = "cannot read src/a";
    feed(
        &mut s,
        msg(Message::Error {
            code: ErrorCode::Internal,
            text,
        }),
        &files,
    );
    assert_eq!(
        said(&mut s),
        [
            "stop blocks",
            "end: host reported an error (Internal): cannot read src/a"
        ]
    );
}

#[test]
fn a_message_only_a_device_sends_is_ignored_in_the_stream() {
    let files = one_file(0);
    let mut s = streaming(&files);
    feed(
        &mut s,
        msg(Message::Demand {
            file: FileId(0),
            first: 0,
            count: 1,
        }),
        &files,
    );
    feed(&mut s, msg(Message::HaveEnd { files: 1 }), &files);
    assert!(said(&mut s).is_empty());
    assert!(!s.is_ended());
}
