//! Fixed byte vectors for every message, the complete frames of
//! `docs/protocol.md`, malformed payloads, and Block hashing.

use super::*;
use crate::frame::{self, Frame};

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
            min_version: 3,
            max_version: 3,
            agent: "fd",
        },
        0x01,
        &[2, 3, 3, 0, 2, 0, b'f', b'd'],
    );
    vector(
        Message::Entry {
            id: FileId(0x0102_0304),
            kind: EntryKind::File,
            size: 0x1_0000_0001,
            mode: 0o644,
            block_size: 65536,
            identity: [0xaa; 16],
            path: "d/f",
        },
        0x02,
        &[
            [4, 3, 2, 1].as_slice(),
            &[0, 0, 0, 0],
            &[1, 0, 0, 0, 1, 0, 0, 0],
            &[0xa4, 0x01, 0, 0],
            &[0, 0, 1, 0],
            &[0xaa; 16],
            &[3, 0],
            b"d/f",
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
            ranges: vec![BlockRange { first: 5, count: 2 }],
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
        },
        0x06,
        &[2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0],
    );
    vector(
        Message::Block {
            file: FileId(2),
            index: 7,
            crc: 0xeb8e_ba67,
            encoding: Encoding::Raw,
            data: b"xyz",
        },
        0x07,
        &[
            2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0x67, 0xba, 0x8e, 0xeb, 0, 0, 0, 0, b'x', b'y',
            b'z',
        ],
    );
    // "ab" 12 times (24 bytes) in LZ4: a token (2 literals, then a match
    // of 4 + 12 bytes), the literals, the match offset 2, then a token
    // for the last 6 literals and the literals.
    vector(
        Message::Block {
            file: FileId(2),
            index: 7,
            crc: 0xfaea_cfaa,
            encoding: Encoding::Lz4,
            data: &[
                0x2c, b'a', b'b', 2, 0, 0x60, b'a', b'b', b'a', b'b', b'a', b'b',
            ],
        },
        0x07,
        &[
            2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xcf, 0xea, 0xfa, 1, 0, 0, 0, 0x2c, b'a',
            b'b', 2, 0, 0x60, b'a', b'b', b'a', b'b', b'a', b'b',
        ],
    );
    // A block of zeros: no data, its CRC that of its 4096 zeros.
    vector(
        Message::Block {
            file: FileId(2),
            index: 7,
            crc: 0xc71c_0011,
            encoding: Encoding::Zero,
            data: &[],
        },
        0x07,
        &[
            2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0x11, 0x00, 0x1c, 0xc7, 2, 0, 0, 0,
        ],
    );
    assert_eq!(crc32fast::hash(&[0; 4096]), 0xc71c_0011);
    let mut scratch = Vec::new();
    let lz4 = [
        0x2c, b'a', b'b', 2, 0, 0x60, b'a', b'b', b'a', b'b', b'a', b'b',
    ];
    let plain = decode_block(Encoding::Lz4, &lz4, 24, &mut scratch).unwrap();
    assert_eq!(plain, "ab".repeat(12).as_bytes());
    assert_eq!(crc32fast::hash(plain), 0xfaea_cfaa);
    assert_eq!(lz4_flex::block::compress(plain), lz4);
    vector(
        Message::StreamDone { blocks_sent: 9 },
        0x08,
        &[9, 0, 0, 0, 0, 0, 0, 0],
    );
    vector(
        Message::Complete { blocks: 10 },
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

/// The complete frames of docs/protocol.md, section 2.3, byte for byte.
#[test]
fn the_complete_frames_of_the_protocol_document() {
    let hex = |f: Vec<u8>| {
        f.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        hex(Message::Goodbye.to_frame()),
        "46 44 46 53 03 0b 00 00 00 00 00 00 5f e7 e9 96"
    );
    let hello = Message::Hello {
        role: Role::Host,
        min_version: 3,
        max_version: 3,
        agent: "fd",
    };
    assert_eq!(
        hex(hello.to_frame()),
        "46 44 46 53 03 01 00 00 08 00 00 00 ce fc 8a 89 01 03 03 00 02 00 66 64"
    );
    let raw = Message::Block {
        file: FileId(2),
        index: 7,
        crc: 0xeb8e_ba67,
        encoding: Encoding::Raw,
        data: b"xyz",
    };
    assert_eq!(
        hex(raw.to_frame()),
        "46 44 46 53 03 07 00 00 17 00 00 00 01 99 7e ea \
         02 00 00 00 07 00 00 00 00 00 00 00 67 ba 8e eb 00 00 00 00 78 79 7a"
    );
    let lz4 = Message::Block {
        file: FileId(2),
        index: 7,
        crc: 0xfaea_cfaa,
        encoding: Encoding::Lz4,
        data: &[
            0x2c, b'a', b'b', 2, 0, 0x60, b'a', b'b', b'a', b'b', b'a', b'b',
        ],
    };
    assert_eq!(
        hex(lz4.to_frame()),
        "46 44 46 53 03 07 00 00 20 00 00 00 61 65 6f 9f \
         02 00 00 00 07 00 00 00 00 00 00 00 aa cf ea fa 01 00 00 00 \
         2c 61 62 02 00 60 61 62 61 62 61 62"
    );
    let zero = Message::Block {
        file: FileId(2),
        index: 7,
        crc: 0xc71c_0011,
        encoding: Encoding::Zero,
        data: &[],
    };
    assert_eq!(
        hex(zero.to_frame()),
        "46 44 46 53 03 07 00 00 14 00 00 00 58 27 3d 11 \
         02 00 00 00 07 00 00 00 00 00 00 00 11 00 1c c7 02 00 00 00"
    );
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
    entry[40] = 2;
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
    let block_with = |encoding: u8| {
        let mut p = vec![0u8; BLOCK_HEADER_LEN];
        p[BLOCK_ENCODING_OFFSET] = encoding;
        parse_payload(0x07, &p)
    };
    assert_eq!(block_with(0), Ok(()));
    assert_eq!(block_with(1), Ok(()));
    assert_eq!(block_with(2), Ok(()));
    for v in [3u8, 0x80, 0xff] {
        assert_eq!(
            block_with(v),
            Err(ParseError::BadValue {
                ty: MessageType::Block,
                field: "encoding",
                value: v.into()
            })
        );
    }
    // A zero block carries no data.
    let mut zero_with_data = vec![0u8; BLOCK_HEADER_LEN];
    zero_with_data[BLOCK_ENCODING_OFFSET] = Encoding::Zero as u8;
    zero_with_data.push(0);
    assert_eq!(
        parse_payload(0x07, &zero_with_data),
        Err(ParseError::BadValue {
            ty: MessageType::Block,
            field: "data length",
            value: 1
        })
    );
    assert_eq!(
        parse_payload(0x7f, &[]),
        Err(ParseError::Frame(frame::FrameError::UnknownType(0x7f)))
    );
}

#[test]
fn a_block_is_hashed_once_and_a_false_crc_cannot_pass() {
    let data = vec![0x5au8; 65536];
    let good = Message::Block {
        file: FileId(1),
        index: 3,
        crc: crc32fast::hash(&data),
        encoding: Encoding::Raw,
        data: &data,
    };
    let f = good.to_frame();
    // The frame checksum is the same as hashing header and payload in a row.
    let whole = crc32fast::hash(&[&f[..12], &f[16..]].concat());
    assert_eq!(u32::from_le_bytes(f[12..16].try_into().unwrap()), whole);
    let checked = Frame::new_checked(&f[..]).unwrap();
    assert_eq!(checked.data_crc(), Some(crc32fast::hash(&data)));
    let mut d = crate::Decoder::new();
    d.feed(&f);
    let r = d.next_frame().unwrap().unwrap();
    assert_eq!(d.frame(r).data_crc(), Some(crc32fast::hash(&data)));
    assert_eq!(Message::parse(d.frame(r)).unwrap(), good);

    let lie = Message::Block {
        file: FileId(1),
        index: 3,
        crc: 42,
        encoding: Encoding::Raw,
        data: &data,
    }
    .to_frame();
    assert!(matches!(
        Frame::new_checked(&lie[..]),
        Err(frame::FrameError::BadChecksum { .. })
    ));
    assert_eq!(
        Frame::new_checked(&Message::Goodbye.to_frame()[..])
            .unwrap()
            .data_crc(),
        None
    );
}

#[test]
fn an_lz4_block_round_trips_and_its_crc_is_of_the_plain_bytes() {
    let plain: Vec<u8> = (0..65536u32).map(|i| (i / 100) as u8).collect();
    let packed = lz4_flex::block::compress(&plain);
    assert!(packed.len() < plain.len() / 10, "{} bytes", packed.len());
    let msg = Message::Block {
        file: FileId(4),
        index: 9,
        crc: crc32fast::hash(&plain),
        encoding: Encoding::Lz4,
        data: &packed,
    };
    let f = msg.to_frame();
    assert_eq!(f.len(), frame::HEADER_LEN + BLOCK_HEADER_LEN + packed.len());
    // The frame checksum covers the compressed bytes as sent.
    let whole = crc32fast::hash(&[&f[..12], &f[16..]].concat());
    assert_eq!(u32::from_le_bytes(f[12..16].try_into().unwrap()), whole);
    // The frame's data CRC is only offered for raw data: here it would
    // be the CRC of the compressed bytes, not the block's.
    let checked = Frame::new_checked(&f[..]).unwrap();
    assert_eq!(checked.data_crc(), None);
    let mut d = crate::Decoder::new();
    d.feed(&f);
    let r = d.next_frame().unwrap().unwrap();
    assert_eq!(d.frame(r).data_crc(), None);
    let parsed = Message::parse(checked).unwrap();
    assert_eq!(parsed, msg);
    let Message::Block {
        crc,
        encoding,
        data,
        ..
    } = parsed
    else {
        unreachable!()
    };
    let mut scratch = Vec::new();
    let out = decode_block(encoding, data, plain.len(), &mut scratch).unwrap();
    assert_eq!(out, &plain[..]);
    assert_eq!(crc32fast::hash(out), crc);
    // The scratch buffer is reused: a second decode does not allocate.
    let cap = scratch.capacity();
    decode_block(encoding, data, plain.len(), &mut scratch).unwrap();
    assert_eq!(scratch.capacity(), cap);
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
