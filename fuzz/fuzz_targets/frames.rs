//! Fuzz target: bytes from a link, through everything the device and the
//! host do with them before any state changes.
//!
//! The input is a byte stream (the first two bytes choose how it is cut into
//! reads). It is fed to the [`Decoder`] in those chunks; every frame it
//! yields is parsed as a [`Message`]; an Entry or ManifestEnd goes to a
//! [`ManifestBuilder`], a Run's data (raw, LZ4 or a run of zeros) through
//! `decode_run` and its pages against the Run's CRC table, as a receiver
//! checks them. Checked invariants: nothing panics; the decoder never
//! holds more than its fixed buffer; a message that parses emits a frame of
//! exactly `buffer_len()` payload bytes and parses back to itself; a Run
//! that parses has 1 to `MAX_RUN_PAGES` pages, a CRC for each unless it is
//! a run of zeros (then no table and no data); its data never decodes past
//! the run's length, and decodes to exactly that length when it decodes;
//! the frame emitted without copying its data (`emit_split`) is the same
//! frame.
//! Frame checksums are bypassed under `cfg(fuzzing)` (see
//! `protocol/src/frame/mod.rs`), so mutated frames reach the parser.
#![no_main]

use feedfs_protocol::decoder::CAPACITY;
use feedfs_protocol::frame::Frame;
use feedfs_protocol::message::{decode_run, Encoding};
use feedfs_protocol::{Decoder, ManifestBuilder, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (cut, stream) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => return,
    };
    let mut decoder = Decoder::new();
    let mut manifest = Some(ManifestBuilder::new());
    let mut scratch = Vec::new();
    let mut rng = u32::from(cut) | 1;
    let mut fed = 0;
    while fed < stream.len() {
        // Reads of 1 byte up to a whole chunk, as a pipe or USB gives them.
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let want = 1 + (rng as usize % (1 + usize::from(cut >> 4)));
        let end = (fed + want).min(stream.len());
        let took = decoder.feed(&stream[fed..end]);
        fed += took;
        assert!(decoder.buffered() <= CAPACITY);
        while let Some(r) = decoder.next_frame() {
            let Ok(r) = r else { continue };
            check_message(decoder.frame(r), &mut manifest, &mut scratch);
        }
        if took == 0 {
            // A full buffer that yields nothing can only be garbage the
            // decoder has already dropped; it must make room.
            assert!(
                decoder.spare().len() > 0,
                "decoder stuck with a full buffer"
            );
        }
    }
    let _ = decoder.finish();
});

fn check_message(
    frame: Frame<&[u8]>,
    manifest: &mut Option<ManifestBuilder>,
    scratch: &mut Vec<u8>,
) {
    let total = frame.total_len();
    let Ok(msg) = Message::parse(frame) else {
        return;
    };
    let emitted = msg.to_frame();
    assert_eq!(
        emitted.len(),
        feedfs_protocol::HEADER_LEN + msg.buffer_len(),
        "buffer_len (the payload's) of {msg:?}"
    );
    assert_eq!(emitted.len(), total, "re-emitted length of {msg:?}");
    let back = Message::parse(Frame::new_checked(&emitted[..]).expect("own frame checks"))
        .expect("own frame parses");
    assert_eq!(back, msg);
    match msg {
        Message::Entry { .. } => {
            if let Some(b) = manifest.as_mut() {
                if b.push_message(&msg).is_err() {
                    *manifest = None;
                }
            }
        }
        Message::ManifestEnd {
            entries,
            total_bytes,
        } => {
            if let Some(b) = manifest.take() {
                if let Ok(m) = b.finish(entries, total_bytes) {
                    for e in m.entries() {
                        assert!(feedfs_protocol::manifest::check_path(&e.path).is_ok());
                        assert!(e.mode <= 0o777);
                    }
                }
            }
            *manifest = Some(ManifestBuilder::new());
        }
        Message::Run {
            count,
            encoding,
            crcs,
            data,
            ..
        } => {
            let mut split = Vec::new();
            let tail = msg.emit_split(&mut split);
            split.extend_from_slice(tail);
            assert_eq!(split, emitted, "emit_split of {msg:?}");
            check_run(count, encoding, crcs, data, scratch);
        }
        _ => {}
    }
}

/// What a receiver does with a Run: decode its data to the run's length
/// (whole pages here; a short last page when the raw data says so) and
/// check each page against its CRC.
fn check_run(
    count: u32,
    encoding: Encoding,
    crcs: feedfs_protocol::PageCrcs,
    data: &[u8],
    scratch: &mut Vec<u8>,
) {
    let page = feedfs_protocol::PAGE_SIZE as usize;
    assert!((1..=feedfs_protocol::MAX_RUN_PAGES).contains(&count));
    match encoding {
        Encoding::Zero => assert!(crcs.is_empty() && data.is_empty()),
        Encoding::Raw | Encoding::Lz4 => assert_eq!(crcs.len(), count as usize),
    }
    let expected = match encoding {
        Encoding::Raw => data.len(),
        Encoding::Lz4 | Encoding::Zero => count as usize * page,
    };
    let Ok(pages) = decode_run(encoding, data, expected, scratch) else {
        return;
    };
    assert_eq!(pages.len(), expected, "decoded length");
    assert!(pages.len() <= feedfs_protocol::MAX_RUN_BYTES as usize);
    let zeros = crc32fast::hash(&[0u8; 4096]);
    for (i, bytes) in pages.chunks(page).enumerate() {
        let crc = crc32fast::hash(bytes);
        match encoding {
            Encoding::Zero => assert_eq!(crc, zeros, "page {i} of a run of zeros"),
            // A page whose CRC differs is dropped and demanded again, the
            // rest of its run lands: the table reads the same either way.
            Encoding::Raw | Encoding::Lz4 => {
                assert_eq!(crcs.iter().nth(i), Some(crcs.get(i)), "CRC {i} of {crc:#x}")
            }
        }
    }
}
