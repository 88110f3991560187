//! A Run's data as it is on the wire ([`Encoding`]: raw, LZ4 or none for
//! pages of zeros), and [`decode_run`], which turns it back into the pages'
//! bytes, bounded by the length the receiver expects.

use crate::frame;

/// The `hash` byte of a Run whose table holds one CRC-32 per page, the one
/// kind version 4 defines. (The byte leaves room for a stronger per-page
/// hash later; a receiver refuses any other value.)
pub const HASH_CRC32: u8 = 1;

/// How a Run's data is carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Encoding {
    /// The pages' bytes as they are.
    Raw = 0,
    /// The pages' bytes compressed as one LZ4 block, without a size
    /// prefix: the receiver knows the run's length from the manifest.
    Lz4 = 1,
    /// Every byte of every page is zero; no CRC table and no data are sent.
    Zero = frame::RUN_ENCODING_ZERO,
}

impl TryFrom<u8> for Encoding {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            0 => Ok(Encoding::Raw),
            1 => Ok(Encoding::Lz4),
            2 => Ok(Encoding::Zero),
            other => Err(other),
        }
    }
}

/// Why a Run's data could not be turned back into the pages' bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("its LZ4 data is damaged: {0}")]
    Damaged(String),
    #[error("its LZ4 data decodes to {got} bytes, the pages have {expected}")]
    Length { got: usize, expected: usize },
    #[error("it is a run of zeros but carries {0} bytes of data")]
    ZeroWithData(usize),
}

/// Whether every byte of `data` is zero: such pages go as
/// [`Encoding::Zero`], and the device keeps them as a hole.
pub fn is_zero(data: &[u8]) -> bool {
    // Whole words at a time: OR-ing a chunk vectorises, and most pages
    // that are not zero show it in their first chunk.
    let mut chunks = data.chunks_exact(64);
    let words_zero = chunks
        .by_ref()
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0);
    words_zero && chunks.remainder().iter().all(|&b| b == 0)
}

/// The bytes of a run whose data arrived with `encoding`, the run being
/// `expected` bytes long (from the manifest).
///
/// Raw data is returned as it is (its length is the caller's to check). LZ4
/// data is decoded into `scratch`, which is reused from call to call and
/// never grows past `expected` (itself capped at [`crate::MAX_RUN_BYTES`]):
/// data that would decode to more, or to less, is an error, as is data that
/// is not valid LZ4. A run of zeros is `expected` zeros in `scratch` (data
/// with it is an error, which the parser already refuses). CRC-32 checks
/// are the caller's: a Run's `crcs` are over the pages returned here.
pub fn decode_run<'d>(
    encoding: Encoding,
    data: &'d [u8],
    expected: usize,
    scratch: &'d mut Vec<u8>,
) -> Result<&'d [u8], DecodeError> {
    let cap = expected.min(crate::MAX_RUN_BYTES as usize);
    match encoding {
        Encoding::Raw => Ok(data),
        Encoding::Lz4 => {
            scratch.resize(cap, 0);
            let got = lz4_flex::block::decompress_into(data, scratch)
                .map_err(|e| DecodeError::Damaged(e.to_string()))?;
            if got != expected {
                return Err(DecodeError::Length { got, expected });
            }
            Ok(&scratch[..])
        }
        Encoding::Zero if !data.is_empty() => Err(DecodeError::ZeroWithData(data.len())),
        Encoding::Zero => {
            scratch.clear();
            scratch.resize(cap, 0);
            Ok(&scratch[..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;
    use crate::message::{FileId, Message, PageCrcs, RUN_HEADER_LEN};

    #[test]
    fn damaged_or_mis_sized_lz4_data_is_refused_within_bounds() {
        let plain: Vec<u8> = (0..4096u32).map(|i| (i % 7) as u8).collect();
        let packed = lz4_flex::block::compress(&plain);
        let mut scratch = Vec::new();
        assert_eq!(
            decode_run(Encoding::Raw, b"as is", 99, &mut scratch),
            Ok(&b"as is"[..])
        );
        assert!(scratch.is_empty(), "raw data is not copied");
        // Expecting more than the data holds: a length error.
        assert_eq!(
            decode_run(Encoding::Lz4, &packed, 8192, &mut scratch),
            Err(DecodeError::Length {
                got: 4096,
                expected: 8192
            })
        );
        // Expecting less: decoding stops at the bound, never writes past it.
        assert!(matches!(
            decode_run(Encoding::Lz4, &packed, 100, &mut scratch),
            Err(DecodeError::Damaged(_))
        ));
        assert_eq!(scratch.len(), 100);
        // A length on the wire cannot make it allocate: the bound is the caller's, capped.
        decode_run(Encoding::Lz4, &packed, usize::MAX, &mut scratch).unwrap_err();
        assert_eq!(scratch.len(), crate::MAX_RUN_BYTES as usize);
        // Damaged data: a match offset pointing before the start, or data cut short.
        assert!(matches!(
            decode_run(Encoding::Lz4, &[0x0f, 0xff, 0xff], 4096, &mut scratch),
            Err(DecodeError::Damaged(_))
        ));
        let cut = &packed[..packed.len() / 2];
        assert!(decode_run(Encoding::Lz4, cut, 4096, &mut scratch).is_err());
        assert!(decode_run(Encoding::Lz4, &[], 4096, &mut scratch).is_err());
        // Every single-byte change is caught here or, failing that, by the block CRC.
        let crc = crc32fast::hash(&plain);
        for i in 0..packed.len() {
            let mut bad = packed.clone();
            bad[i] ^= 0x5a;
            if let Ok(out) = decode_run(Encoding::Lz4, &bad, 4096, &mut scratch) {
                assert_ne!(crc32fast::hash(out), crc, "byte {i}");
            }
        }
    }

    #[test]
    fn zero_pages_are_found_and_decode_to_the_manifest_length() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 65536]));
        assert!(is_zero(&[0; 1000]), "a short last page");
        // A single set bit anywhere, in a whole chunk or in the tail.
        for at in [0, 63, 64, 4095, 65535] {
            let mut b = vec![0u8; 65536];
            b[at] = 0x80;
            assert!(!is_zero(&b), "byte {at}");
        }
        let mut tail = vec![0u8; 1000];
        tail[999] = 1;
        assert!(!is_zero(&tail));

        // Decoding reuses the scratch buffer and clears what an LZ4 run left there.
        let mut scratch = vec![0x5a; 8192];
        assert_eq!(
            decode_run(Encoding::Zero, &[], 4096, &mut scratch),
            Ok(&[0u8; 4096][..])
        );
        assert_eq!(
            decode_run(Encoding::Zero, &[0], 4096, &mut scratch),
            Err(DecodeError::ZeroWithData(1))
        );
        // The length is the caller's, capped.
        let n = decode_run(Encoding::Zero, &[], usize::MAX, &mut scratch)
            .unwrap()
            .len();
        assert_eq!(n, crate::MAX_RUN_BYTES as usize);
        // The frame: header and the 20-byte run header, nothing else, all
        // of it covered by the frame checksum.
        let f = Message::Run {
            file: FileId(0),
            first: 1,
            count: 16,
            encoding: Encoding::Zero,
            crcs: PageCrcs::default(),
            data: &[],
        }
        .to_frame();
        assert_eq!(f.len(), frame::HEADER_LEN + RUN_HEADER_LEN);
        let mut bad = f.clone();
        bad[frame::HEADER_LEN + 13] ^= 1;
        assert!(
            Frame::new_checked(&bad[..]).is_err(),
            "the count is covered"
        );
    }
}
