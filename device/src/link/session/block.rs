//! A Block's way through the session: decoded (LZ4, zero) into the
//! session's buffer, bounded by the manifest's length for it, and checked
//! against the manifest and its CRC before the Core sees it.

use feedfs_protocol::message::{decode_block, DecodeError, Encoding};
use feedfs_protocol::FileId;

use super::Blocks;
use crate::serve::core::LandError;

/// Where a checked block's bytes are.
pub(super) enum Source {
    /// In the frame (raw data).
    Frame,
    /// In the session's decode buffer (LZ4 or zero data).
    Decoded,
}

/// Why a block does not go to the Core.
pub(super) enum Refusal {
    /// Its data does not decode to the block: demanded again.
    Undecodable {
        file: FileId,
        index: u64,
        error: DecodeError,
    },
    /// Refused by the manifest or its CRC.
    Land(LandError),
}

/// A Block message as it arrived.
pub(super) struct Arrived<'a> {
    pub file: FileId,
    pub index: u64,
    pub crc: u32,
    pub encoding: Encoding,
    pub data: &'a [u8],
    /// The CRC-32 of raw data, computed while its frame was checked.
    pub data_crc: Option<u32>,
}

/// Check a block against the manifest (`blocks`) and its CRC, decoding LZ4
/// or zero data into `plain`, bounded by the block's length.
pub(super) fn check_block(
    b: &Arrived,
    blocks: &dyn Blocks,
    plain: &mut Vec<u8>,
) -> Result<Source, Refusal> {
    let expected = blocks.block_len(b.file, b.index).map_err(Refusal::Land)?;
    let (source, data, actual) = match b.encoding {
        Encoding::Raw => {
            let actual = b.data_crc.unwrap_or_else(|| crc32fast::hash(b.data));
            (Source::Frame, b.data, actual)
        }
        Encoding::Lz4 | Encoding::Zero => {
            let block = decode_block(b.encoding, b.data, expected, plain).map_err(|error| {
                Refusal::Undecodable {
                    file: b.file,
                    index: b.index,
                    error,
                }
            })?;
            (Source::Decoded, block, crc32fast::hash(block))
        }
    };
    if data.len() != expected {
        return Err(Refusal::Land(LandError::BadLength {
            file: b.file,
            index: b.index,
            got: data.len(),
            expected,
        }));
    }
    if actual != b.crc {
        return Err(Refusal::Land(LandError::BadCrc {
            file: b.file,
            index: b.index,
            sent: b.crc,
            actual,
        }));
    }
    Ok(source)
}
