//! What a Run's frame checksum covers and what its page CRCs cover, for
//! raw and LZ4 data.

use super::super::*;
use crate::frame::{self, Frame};

/// Sixteen pages of `data` as a raw Run with their true CRCs.
fn raw_run(data: &[u8]) -> (Vec<u8>, Vec<u32>) {
    let crcs: Vec<u32> = data.chunks(4096).map(crc32fast::hash).collect();
    (crc_table(&crcs), crcs)
}

#[test]
fn a_runs_checksum_covers_its_table_and_its_pages_crcs_cover_its_data() {
    let data: Vec<u8> = (0..16 * 4096u32).map(|i| (i % 251) as u8).collect();
    let (table, crcs) = raw_run(&data);
    let good = Message::Run {
        file: FileId(1),
        first: 3,
        count: 16,
        encoding: Encoding::Raw,
        crcs: PageCrcs::new(&table).unwrap(),
        data: &data,
    };
    let f = good.to_frame();
    assert_eq!(
        f.len(),
        frame::HEADER_LEN + RUN_HEADER_LEN + 64 + data.len()
    );
    // The frame checksum: header bytes 0..12, then the payload up to the data.
    let covered = crc32fast::hash(&[&f[..12], &f[16..16 + RUN_HEADER_LEN + 64]].concat());
    assert_eq!(u32::from_le_bytes(f[12..16].try_into().unwrap()), covered);
    let mut d = crate::Decoder::new();
    d.feed(&f);
    let r = d.next_frame().unwrap().unwrap();
    assert_eq!(Message::parse(d.frame(r)).unwrap(), good);

    // emit_split gives the same frame without copying the data.
    let mut head = Vec::new();
    let tail = good.emit_split(&mut head);
    assert_eq!([head.as_slice(), tail].concat(), f);
    assert_eq!(head.len(), frame::HEADER_LEN + RUN_HEADER_LEN + 64);

    // Damage to the header or the table fails the frame ...
    for at in [
        6,
        12,
        frame::HEADER_LEN + 12,
        frame::HEADER_LEN + RUN_HEADER_LEN + 5,
    ] {
        let mut bad = f.clone();
        bad[at] ^= 0x10;
        assert!(
            matches!(
                Frame::new_checked(&bad[..]),
                Err(frame::FrameError::BadChecksum { .. })
            ),
            "byte {at}"
        );
    }
    // ... damage to the data leaves the frame whole, and the page it hit
    // (only that one) fails its CRC: the receiver drops and re-demands it.
    let mut bad = f.clone();
    let at = frame::HEADER_LEN + RUN_HEADER_LEN + 64 + 5 * 4096 + 17;
    bad[at] ^= 0x10;
    let Message::Run {
        crcs: got, data: d, ..
    } = Message::parse(Frame::new_checked(&bad[..]).unwrap()).unwrap()
    else {
        unreachable!()
    };
    let failing: Vec<usize> = d
        .chunks(4096)
        .enumerate()
        .filter(|(i, p)| crc32fast::hash(p) != got.get(*i))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failing, [5]);
    assert_eq!(got.iter().collect::<Vec<_>>(), crcs);
}

#[test]
fn an_lz4_run_round_trips_and_its_crcs_are_of_the_plain_pages() {
    let plain: Vec<u8> = (0..16 * 4096u32).map(|i| (i / 100) as u8).collect();
    let packed = lz4_flex::block::compress(&plain);
    assert!(packed.len() < plain.len() / 10, "{} bytes", packed.len());
    let (table, crcs) = raw_run(&plain);
    let msg = Message::Run {
        file: FileId(4),
        first: 9,
        count: 16,
        encoding: Encoding::Lz4,
        crcs: PageCrcs::new(&table).unwrap(),
        data: &packed,
    };
    let f = msg.to_frame();
    assert_eq!(
        f.len(),
        frame::HEADER_LEN + RUN_HEADER_LEN + 64 + packed.len()
    );
    let parsed = Message::parse(Frame::new_checked(&f[..]).unwrap()).unwrap();
    assert_eq!(parsed, msg);
    let Message::Run {
        crcs: got,
        encoding,
        data,
        ..
    } = parsed
    else {
        unreachable!()
    };
    let mut scratch = Vec::new();
    let out = decode_run(encoding, data, plain.len(), &mut scratch).unwrap();
    assert_eq!(out, &plain[..]);
    let page_crcs: Vec<u32> = out.chunks(4096).map(crc32fast::hash).collect();
    assert_eq!(page_crcs, got.iter().collect::<Vec<_>>());
    assert_eq!(page_crcs, crcs);
    // The scratch buffer is reused: a second decode does not allocate.
    let cap = scratch.capacity();
    decode_run(encoding, data, plain.len(), &mut scratch).unwrap();
    assert_eq!(scratch.capacity(), cap);
}
