//! Runs: checked page by page, decoded, demanded again or refused; the
//! stream's end.

use super::*;

/// Page `i` of the one file: bytes that are not zero.
fn page(i: u64) -> Vec<u8> {
    let len = feedfs_protocol::page_len(SIZE, i);
    (0..len)
        .map(|k| (k as u64 * 7 + i * 13 + 1) as u8)
        .collect()
}

/// Pages `first..first + count`, their CRCs and their CRC table.
fn pages(first: u64, count: u64) -> (Vec<u8>, Vec<u32>, Vec<u8>) {
    let mut data = Vec::new();
    let mut crcs = Vec::new();
    for i in first..first + count {
        let p = page(i);
        crcs.push(crc32fast::hash(&p));
        data.extend(p);
    }
    let table = crc_table(&crcs);
    (data, crcs, table)
}

fn good(crcs: &[u32], first: u64, data: Option<Vec<u8>>) -> Passed {
    Passed {
        first,
        crcs: crcs.to_vec(),
        data,
        good: vec![true; crcs.len()],
    }
}

#[test]
fn good_runs_go_to_the_core_raw_lz4_and_zero() {
    let files = one_file(0);
    let mut s = streaming(&files);
    let (data, crcs, table) = pages(0, 3);
    assert_eq!(
        feed(&mut s, run(0, 3, Encoding::Raw, &table, &data), &files),
        Some(good(&crcs, 0, Some(data.clone())))
    );
    let packed = lz4_flex::block::compress(&data[4096..]);
    assert_eq!(
        feed(
            &mut s,
            run(1, 2, Encoding::Lz4, &table[4..], &packed),
            &files
        ),
        Some(good(&crcs[1..], 1, Some(data[4096..].to_vec())))
    );
    // A run of zeros carries no data and no table: each page's CRC is that
    // of its zeros, 1808 of them for the short last page.
    let zeros = [crc32fast::hash(&[0; 4096]), crc32fast::hash(&[0; 1808])];
    assert_eq!(
        feed(&mut s, run(1, 2, Encoding::Zero, &[], &[]), &files),
        Some(good(&zeros, 1, None))
    );
    assert!(said(&mut s).is_empty());
}

#[test]
fn a_damaged_page_is_demanded_again_and_the_good_pages_of_its_run_still_land() {
    let files = one_file(0);
    let mut s = streaming(&files);
    let (mut data, crcs, table) = pages(0, 3);
    data[4096 + 100] ^= 0x40;
    assert_eq!(
        feed(&mut s, run(0, 3, Encoding::Raw, &table, &data), &files),
        Some(Passed {
            first: 0,
            crcs: crcs.clone(),
            data: Some(data.clone()),
            good: vec![true, false, true],
        })
    );
    assert_eq!(said(&mut s), ["demand 1 from 1 of #0 again"]);
    // Two damaged pages side by side: one demand for both.
    data[100] ^= 0x40;
    data[8192] ^= 0x40;
    data[4096 + 100] ^= 0x40;
    let passed = feed(&mut s, run(0, 3, Encoding::Raw, &table, &data), &files).unwrap();
    assert_eq!(passed.good, [false, true, false]);
    assert_eq!(
        said(&mut s),
        ["demand 1 from 0 of #0 again", "demand 1 from 2 of #0 again"]
    );
    // Every page bad: nothing for the Core, the whole run asked for again.
    let wrong = crc_table(&[1, 2, 3]);
    let (data, _, _) = pages(0, 3);
    assert!(feed(&mut s, run(0, 3, Encoding::Raw, &wrong, &data), &files).is_none());
    assert_eq!(said(&mut s), ["demand 3 from 0 of #0 again"]);
    assert!(!s.is_ended());
}

#[test]
fn lz4_data_that_does_not_decode_to_the_run_is_demanded_again() {
    let files = one_file(0);
    let mut s = streaming(&files);
    let (data, crcs, table) = pages(0, 2);
    let packed = lz4_flex::block::compress(&data);
    let mut garbled = packed.clone();
    garbled[0] ^= 0xf0;
    let short = lz4_flex::block::compress(&data[..5000]);
    // More than the run, even with the run's bytes first.
    let long = lz4_flex::block::compress(&[data.clone(), vec![9; 100]].concat());
    for bad in [&garbled, &short, &long] {
        assert!(feed(&mut s, run(0, 2, Encoding::Lz4, &table, bad), &files).is_none());
        assert_eq!(said(&mut s), ["demand 2 from 0 of #0 again"]);
    }
    // Decoded, but to other bytes: each page fails its CRC.
    let other = lz4_flex::block::compress(&[0u8; 8192]);
    assert!(feed(&mut s, run(0, 2, Encoding::Lz4, &table, &other), &files).is_none());
    assert_eq!(said(&mut s), ["demand 2 from 0 of #0 again"]);
    assert_eq!(
        feed(&mut s, run(0, 2, Encoding::Lz4, &table, &packed), &files),
        Some(good(&crcs, 0, Some(data)))
    );
    assert!(!s.is_ended());
}

#[test]
fn a_run_outside_the_manifest_ends_the_link_with_code_protocol() {
    let files = one_file(0);
    let (data, _, table) = pages(0, 2);
    let elsewhere = msg(Message::Run {
        file: FileId(5),
        first: 0,
        count: 1,
        encoding: Encoding::Raw,
        crcs: PageCrcs::new(&table[..4]).unwrap(),
        data: &data[..4096],
    });
    for (input, text) in [
        (
            run(2, 2, Encoding::Lz4, &table, &data),
            "run of 2 pages from page 2 of #0 is past its end (3 pages)",
        ),
        (
            run(3, 1, Encoding::Zero, &[], &[]),
            "run of 1 pages from page 3 of #0 is past its end (3 pages)",
        ),
        (elsewhere, "run for #5, which is not a file of the manifest"),
        (
            run(2, 1, Encoding::Raw, &table[..4], &data[..4096]),
            "run from page 2 of #0 has 4096 bytes, expected 1808",
        ),
    ] {
        let mut s = streaming(&files);
        assert!(feed(&mut s, input, &files).is_none());
        assert_eq!(
            said(&mut s),
            [
                format!("send Error {{ code: Protocol, text: {text:?} }}"),
                "stop pages".into(),
                format!("end: host sent a bad run: {text}"),
            ]
        );
    }
}

#[test]
fn a_run_the_core_refuses_ends_the_link() {
    let files = one_file(0);
    let mut s = streaming(&files);
    s.refused(LandError::NoSuchFile(FileId(9)));
    let told = said(&mut s);
    assert!(
        told[0].starts_with("send Error { code: Protocol"),
        "{told:?}"
    );
    assert_eq!(
        told[1..],
        [
            "stop pages",
            "end: host sent a bad run: run for #9, which is not a file of the manifest"
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
    let (data, crcs, table) = pages(2, 1);
    assert_eq!(
        feed(&mut s, run(2, 1, Encoding::Raw, &table, &data), &files),
        Some(good(&crcs, 2, Some(data)))
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
            "stop pages".to_string(),
            format!("end: link from host failed: {cut}")
        ]
    );
}

#[test]
fn stream_done_demands_what_is_missing_and_a_repeat_when_complete_says_complete_again() {
    let done = || msg(Message::StreamDone { pages_sent: 3 });
    let mut s = streaming(&one_file(2));
    feed(&mut s, done(), &one_file(2));
    assert_eq!(said(&mut s), ["demand the missing"]);
    // Now complete: the Core said Complete; a StreamDone after it means it was lost.
    feed(&mut s, done(), &one_file(3));
    assert_eq!(said(&mut s), ["send Complete { pages: 3 }"]);
    // Complete before the first StreamDone: the Core already said so.
    let mut s = streaming(&one_file(3));
    feed(&mut s, done(), &one_file(3));
    assert!(said(&mut s).is_empty());
}

#[test]
fn a_silent_host_is_waited_for_however_long() {
    let files = one_file(0);
    let mut s = streaming(&files);
    // No deadline of the session's own: nothing happens without input.
    assert!(s.next_action().is_none());
    let later = Instant::now() + Duration::from_secs(3600);
    s.handle(later, msg(Message::StreamDone { pages_sent: 0 }), &files);
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
            "stop pages",
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
            again: false,
        }),
        &files,
    );
    feed(&mut s, msg(Message::HaveEnd { files: 1 }), &files);
    assert!(said(&mut s).is_empty());
    assert!(!s.is_ended());
}
