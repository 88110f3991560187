//! Fixed byte vectors for every message, the complete frames of
//! `docs/protocol.md`, malformed payloads, and what a Run's checksum covers.

use super::*;
use crate::frame::{self, Frame};

mod document;
mod runs;

/// Emit, check the payload against fixed bytes, parse back, compare.
fn vector(msg: Message, ty: u8, payload: &[u8]) {
    let f = msg.to_frame();
    assert_eq!(f[5], ty, "type byte of {msg:?}");
    assert_eq!(&f[frame::HEADER_LEN..], payload, "payload of {msg:?}");
    assert_eq!(msg.buffer_len(), payload.len());
    let parsed = Message::parse(Frame::new_checked(&f[..]).unwrap()).unwrap();
    assert_eq!(parsed, msg);
}

#[test]
fn fixed_vectors_and_round_trips() {
    vector(
        Message::Hello {
            role: Role::Device,
            min_version: 4,
            max_version: 4,
            agent: "fd",
        },
        0x01,
        &[2, 4, 4, 0, 2, 0, b'f', b'd'],
    );
    vector(
        Message::Entry {
            id: FileId(0x0102_0304),
            kind: EntryKind::File,
            size: 0x1_0000_0001,
            mode: 0o644,
            mtime: Mtime {
                sec: 1_700_000_000,
                nsec: 5,
            },
            identity: [0xaa; 16],
            path: "d/f",
            target: "",
        },
        0x02,
        &[
            [4, 3, 2, 1].as_slice(),
            &[0, 0, 0, 0],
            &[1, 0, 0, 0, 1, 0, 0, 0],
            &[0xa4, 0x01, 0, 0],
            &[5, 0, 0, 0],
            &[0x00, 0xf1, 0x53, 0x65, 0, 0, 0, 0],
            &[0xaa; 16],
            &[3, 0],
            &[0, 0],
            b"d/f",
        ]
        .concat(),
    );
    vector(
        Message::Entry {
            id: FileId(1),
            kind: EntryKind::Symlink,
            size: 0,
            mode: 0o777,
            mtime: Mtime { sec: -2, nsec: 0 },
            identity: [0; 16],
            path: "d/l",
            target: "f",
        },
        0x02,
        &[
            [1, 0, 0, 0].as_slice(),
            &[2, 0, 0, 0],
            &[0; 8],
            &[0xff, 0x01, 0, 0],
            &[0, 0, 0, 0],
            &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0; 16],
            &[3, 0],
            &[1, 0],
            b"d/l",
            b"f",
        ]
        .concat(),
    );
    vector(
        Message::ManifestEnd {
            entries: 2,
            total_bytes: 300,
        },
        0x03,
        &[2, 0, 0, 0, 0x2c, 1, 0, 0, 0, 0, 0, 0],
    );
    vector(
        Message::Have {
            file: FileId(1),
            ranges: vec![PageRange { first: 5, count: 2 }],
        },
        0x04,
        &[
            1, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    vector(Message::HaveEnd { files: 3 }, 0x05, &[3, 0, 0, 0]);
    vector(
        Message::Demand {
            file: FileId(2),
            first: 0x100,
            count: 4,
            again: false,
        },
        0x06,
        &[2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0],
    );
    vector(
        Message::Demand {
            file: FileId(2),
            first: 0x100,
            count: 4,
            again: true,
        },
        0x06,
        &[2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0],
    );
    vector(
        Message::Run {
            file: FileId(2),
            first: 7,
            count: 1,
            encoding: Encoding::Raw,
            crcs: PageCrcs::new(&[0x67, 0xba, 0x8e, 0xeb]).unwrap(),
            data: b"xyz",
        },
        0x07,
        &[
            2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0x67, 0xba, 0x8e, 0xeb,
            b'x', b'y', b'z',
        ],
    );
    assert_eq!(crc32fast::hash(b"xyz"), 0xeb8e_ba67);
    // "ab" 12 times (24 bytes) in LZ4: a token (2 literals, then a match
    // of 4 + 12 bytes), the literals, the match offset 2, then a token
    // for the last 6 literals and the literals.
    vector(
        Message::Run {
            file: FileId(2),
            first: 7,
            count: 1,
            encoding: Encoding::Lz4,
            crcs: PageCrcs::new(&[0xaa, 0xcf, 0xea, 0xfa]).unwrap(),
            data: &[
                0x2c, b'a', b'b', 2, 0, 0x60, b'a', b'b', b'a', b'b', b'a', b'b',
            ],
        },
        0x07,
        &[
            2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0xaa, 0xcf, 0xea, 0xfa,
            0x2c, b'a', b'b', 2, 0, 0x60, b'a', b'b', b'a', b'b', b'a', b'b',
        ],
    );
    // Sixteen pages of zeros: no CRC table, no data.
    vector(
        Message::Run {
            file: FileId(2),
            first: 7,
            count: 16,
            encoding: Encoding::Zero,
            crcs: PageCrcs::default(),
            data: &[],
        },
        0x07,
        &[2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 2, 1, 0, 0],
    );
    assert_eq!(crc32fast::hash(&[0; 4096]), 0xc71c_0011);
    let mut scratch = Vec::new();
    let lz4 = [
        0x2c, b'a', b'b', 2, 0, 0x60, b'a', b'b', b'a', b'b', b'a', b'b',
    ];
    let plain = decode_run(Encoding::Lz4, &lz4, 24, &mut scratch).unwrap();
    assert_eq!(plain, "ab".repeat(12).as_bytes());
    assert_eq!(crc32fast::hash(plain), 0xfaea_cfaa);
    assert_eq!(lz4_flex::block::compress(plain), lz4);
    vector(
        Message::StreamDone { pages_sent: 9 },
        0x08,
        &[9, 0, 0, 0, 0, 0, 0, 0],
    );
    vector(
        Message::Complete { pages: 10 },
        0x09,
        &[10, 0, 0, 0, 0, 0, 0, 0],
    );
    vector(
        Message::Error {
            code: ErrorCode::NoSpace,
            text: "full",
        },
        0x0a,
        &[5, 0, b'f', b'u', b'l', b'l'],
    );
    vector(Message::Goodbye, 0x0b, &[]);
}

fn parse_payload(ty: u8, payload: &[u8]) -> Result<(), ParseError> {
    let mut f = Vec::new();
    frame::emit(&mut f, ty, |o| o.extend_from_slice(payload));
    Message::parse(Frame::new_checked(&f[..]).unwrap()).map(|_| ())
}

#[test]
fn malformed_payloads_are_clear_errors() {
    assert_eq!(
        parse_payload(0x06, &[1, 2, 3]),
        Err(ParseError::TooShort {
            ty: MessageType::Demand,
            need: 4,
            got: 3
        })
    );
    assert_eq!(
        parse_payload(0x05, &[1, 0, 0, 0, 9]),
        Err(ParseError::TrailingBytes {
            ty: MessageType::HaveEnd,
            extra: 1
        })
    );
    assert_eq!(
        parse_payload(0x01, &[9, 1, 1, 0, 0, 0]),
        Err(ParseError::BadValue {
            ty: MessageType::Hello,
            field: "role",
            value: 9
        })
    );
    let mut entry = vec![0u8; ENTRY_HEADER_LEN];
    entry[48] = 2;
    entry.extend_from_slice(&[0xff, 0xfe]);
    assert_eq!(
        parse_payload(0x02, &entry),
        Err(ParseError::BadUtf8 {
            ty: MessageType::Entry,
            field: "path"
        })
    );
    // A range count that claims more than the payload holds fails before allocating.
    assert_eq!(
        parse_payload(0x04, &[0, 0, 0, 0, 0xff, 0xff, 0, 0]),
        Err(ParseError::TooShort {
            ty: MessageType::Have,
            need: 8 + 16 * 0xffff,
            got: 8
        })
    );
    // A Run's fixed part: file 0, page 0, `count` pages, `encoding`, `hash`.
    let run_head = |count: u32, encoding: u8, hash: u8| {
        let mut p = vec![0u8; RUN_HEADER_LEN];
        p[12..16].copy_from_slice(&count.to_le_bytes());
        p[16] = encoding;
        p[17] = hash;
        p
    };
    // One page: its CRC and `len` bytes of data (none for zeros).
    let one_page = |encoding: u8, len: usize| {
        let mut p = run_head(1, encoding, HASH_CRC32);
        if encoding != Encoding::Zero as u8 {
            p.extend_from_slice(&[0; 4]);
        }
        p.extend(std::iter::repeat_n(7u8, len));
        parse_payload(0x07, &p)
    };
    assert_eq!(one_page(0, 1), Ok(()));
    assert_eq!(one_page(0, 4096), Ok(()));
    assert_eq!(one_page(1, 12), Ok(()));
    assert_eq!(one_page(2, 0), Ok(()));
    let bad = |field, value: u64| {
        Err(ParseError::BadValue {
            ty: MessageType::Run,
            field,
            value,
        })
    };
    for v in [3u8, 0x80, 0xff] {
        assert_eq!(one_page(v, 1), bad("encoding", v.into()));
    }
    // Raw data is the run's bytes: at most its pages, and the last page at
    // least one byte. A run of zeros carries none; LZ4 data is not empty.
    assert_eq!(one_page(0, 0), bad("data length", 0));
    assert_eq!(one_page(0, 4097), bad("data length", 4097));
    assert_eq!(one_page(2, 1), bad("data length", 1));
    assert_eq!(one_page(1, 0), bad("data length", 0));
    // No empty run, none past the cap, none that wraps; only CRC-32 tables.
    for count in [0, crate::MAX_RUN_PAGES + 1] {
        assert_eq!(
            parse_payload(0x07, &run_head(count, 2, HASH_CRC32)),
            bad("count", count.into())
        );
    }
    let mut wraps = run_head(2, 2, HASH_CRC32);
    wraps[4..12].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(parse_payload(0x07, &wraps), bad("count", 2));
    for hash in [0u8, 2, 0xff] {
        assert_eq!(
            parse_payload(0x07, &run_head(1, 2, hash)),
            bad("hash", hash.into())
        );
    }
    // A table cut short is too short, not a misread.
    let mut short = run_head(4, 0, HASH_CRC32);
    short.extend_from_slice(&[0; 8]);
    assert_eq!(
        parse_payload(0x07, &short),
        Err(ParseError::TooShort {
            ty: MessageType::Run,
            need: RUN_HEADER_LEN + 16,
            got: RUN_HEADER_LEN + 8
        })
    );
    // An entry's time and kind, and a target only for a link.
    let entry_with = |kind: u8, nsec: u32, target: &[u8]| {
        let mut p = vec![0u8; ENTRY_HEADER_LEN];
        p[4] = kind;
        p[20..24].copy_from_slice(&nsec.to_le_bytes());
        p[48] = 1;
        p[50..52].copy_from_slice(&(target.len() as u16).to_le_bytes());
        p.push(b'x');
        p.extend_from_slice(target);
        parse_payload(0x02, &p)
    };
    assert_eq!(entry_with(2, 0, b"y"), Ok(()));
    assert_eq!(entry_with(0, 999_999_999, b""), Ok(()));
    let bad_entry = |field, value: u64| {
        Err(ParseError::BadValue {
            ty: MessageType::Entry,
            field,
            value,
        })
    };
    assert_eq!(entry_with(3, 0, b""), bad_entry("kind", 3));
    assert_eq!(
        entry_with(0, 1_000_000_000, b""),
        bad_entry("mtime", 1_000_000_000)
    );
    // Which kinds may carry a target is the manifest's rule, not the parser's.
    assert_eq!(entry_with(2, 0, b""), Ok(()));
    assert_eq!(entry_with(0, 0, b"y"), Ok(()));
    let mut long = vec![0u8; ENTRY_HEADER_LEN];
    long[4] = 2;
    long[50..52].copy_from_slice(&4097u16.to_le_bytes());
    assert_eq!(parse_payload(0x02, &long), bad_entry("target length", 4097));
    // A Demand's flags: only `again` (bit 0) is defined.
    let mut demand = vec![0u8; 20];
    demand[12] = 1;
    demand[16] = 2;
    assert_eq!(
        parse_payload(0x06, &demand),
        Err(ParseError::BadValue {
            ty: MessageType::Demand,
            field: "flags",
            value: 2
        })
    );
    assert_eq!(
        parse_payload(0x7f, &[]),
        Err(ParseError::Frame(frame::FrameError::UnknownType(0x7f)))
    );
}

#[test]
fn long_agent_is_cut_on_a_char_boundary() {
    let agent = "é".repeat(200);
    let f = Message::Hello {
        role: Role::Host,
        min_version: 1,
        max_version: 1,
        agent: &agent,
    }
    .to_frame();
    match Message::parse(Frame::new_checked(&f[..]).unwrap()).unwrap() {
        Message::Hello { agent: a, .. } => assert_eq!(a.len(), 256),
        m => panic!("{m:?}"),
    }
}
