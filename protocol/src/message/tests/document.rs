//! The complete frames docs/protocol.md prints, byte for byte.

use super::*;

/// The LZ4 example of docs/protocol.md: `"ab"` x 2060 over pages 7 and 8.
fn document_lz4() -> (Vec<u8>, Vec<u8>) {
    let plain = "ab".repeat(2060);
    let table = page_crcs(plain.as_bytes());
    (lz4_flex::block::compress(plain.as_bytes()), table)
}

/// The complete frames of docs/protocol.md, section 2.3, byte for byte.
#[test]
fn the_complete_frames_of_the_protocol_document() {
    let hex = |f: &[u8]| {
        f.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (packed, lz4_table) = document_lz4();
    assert_eq!(packed.len(), 29);
    assert_eq!(
        PageCrcs::new(&lz4_table)
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        [0xe1d1_5c93, 0xfaea_cfaa]
    );
    let frames = [
        (
            Message::Goodbye,
            "46 44 46 53 04 0b 00 00 00 00 00 00 46 ee 2c 9c".to_string(),
        ),
        (
            Message::Hello {
                role: Role::Host,
                min_version: 4,
                max_version: 4,
                agent: "fd",
            },
            "46 44 46 53 04 01 00 00 08 00 00 00 8d 0a d1 ac 01 04 04 00 02 00 66 64".into(),
        ),
        (
            Message::Run {
                file: FileId(2),
                first: 7,
                count: 1,
                encoding: Encoding::Raw,
                crcs: PageCrcs::new(&[0x67, 0xba, 0x8e, 0xeb]).unwrap(),
                data: b"xyz",
            },
            "46 44 46 53 04 07 00 00 1b 00 00 00 cd 1d 0a 56 \
             02 00 00 00 07 00 00 00 00 00 00 00 01 00 00 00 00 01 00 00 67 ba 8e eb 78 79 7a"
                .into(),
        ),
        (
            Message::Run {
                file: FileId(2),
                first: 7,
                count: 2,
                encoding: Encoding::Lz4,
                crcs: PageCrcs::new(&lz4_table).unwrap(),
                data: &packed,
            },
            format!(
                "46 44 46 53 04 07 00 00 39 00 00 00 93 ee 85 94 \
                 02 00 00 00 07 00 00 00 00 00 00 00 02 00 00 00 01 01 00 00 \
                 93 5c d1 e1 aa cf ea fa 2f 61 62 02 00 {} 0d 60 61 62 61 62 61 62",
                ["ff"; 16].join(" ")
            ),
        ),
        (
            Message::Run {
                file: FileId(2),
                first: 7,
                count: 16,
                encoding: Encoding::Zero,
                crcs: PageCrcs::default(),
                data: &[],
            },
            "46 44 46 53 04 07 00 00 14 00 00 00 89 48 7d f7 \
             02 00 00 00 07 00 00 00 00 00 00 00 10 00 00 00 02 01 00 00"
                .into(),
        ),
        (
            Message::Entry {
                id: FileId(0x0102_0304),
                kind: EntryKind::File,
                size: 0x1_0000_0001,
                mode: 0o644,
                mtime: Mtime {
                    sec: 1_700_000_000,
                    nsec: 500_000_000,
                },
                identity: [0xaa; 16],
                path: "d/f",
                target: "",
            },
            format!(
                "46 44 46 53 04 02 00 00 37 00 00 00 7e b3 59 24 \
                 04 03 02 01 00 00 00 00 01 00 00 00 01 00 00 00 \
                 a4 01 00 00 00 65 cd 1d 00 f1 53 65 00 00 00 00 {} 03 00 00 00 64 2f 66",
                ["aa"; 16].join(" ")
            ),
        ),
    ];
    for (msg, want) in frames {
        let f = msg.to_frame();
        // The checksum, computed independently: header bytes 0..12, then
        // the payload up to a Run's data.
        let covered = frame::covered_len(f[5], &f[16..]);
        let crc = crc32fast::hash(&[&f[..12], &f[16..16 + covered]].concat());
        assert_eq!(
            u32::from_le_bytes(f[12..16].try_into().unwrap()),
            crc,
            "{msg:?}"
        );
        assert_eq!(hex(&f), want, "{msg:?}");
        let parsed = Message::parse(Frame::new_checked(&f[..]).unwrap()).unwrap();
        assert_eq!(parsed, msg);
    }
    // The LZ4 run decodes to its pages.
    let mut scratch = Vec::new();
    let plain = decode_run(Encoding::Lz4, &packed, 4120, &mut scratch).unwrap();
    assert_eq!(page_crcs(plain), lz4_table);
}
