//! feedfs wire format, with no I/O of its own.
//!
//! Two levels, in the manner of a network stack's wire module:
//! - [`frame`]: the 16-byte frame header (magic, version, type, length, CRC32)
//!   and the message type codes it carries, as a checked view over bytes,
//!   and [`decoder::Decoder`], which accepts arbitrary chunks and yields
//!   whole, checked frames;
//! - [`message`]: the parsed [`Message`] enum with `parse`, `emit` and
//!   `buffer_len`, built on `frame` (never the reverse), and its owned form
//!   [`OwnedMessage`].
//!
//! [`hello`] is the Hello exchange both ends run: the Hello they send and
//! the one check of the peer's.
//!
//! [`manifest`] checks a host's file list before anything is created from
//! it, and [`io`] is the thin adapter over `Read`/`Write` used by both
//! binaries. [`usb`] holds the USB binding's numbers and FunctionFS
//! descriptors. The format is described byte by byte in `docs/protocol.md`.
//! [`reqlog`] is the device's request log format (`docs/store.md`), shared
//! by the device that writes it and the host that reads copies of it.
//! [`units`] reads and writes the sizes and durations of both command
//! lines, so the two binaries accept the same things. [`warn`] limits
//! repeated warnings on both sides.
#![deny(unsafe_code)]

pub mod decoder;
pub mod frame;
pub mod hello;
pub mod io;
pub mod manifest;
pub mod message;
pub mod reqlog;
pub mod units;
pub mod usb;
pub mod warn;

pub use decoder::Decoder;
pub use frame::{FrameError, Recovery, HEADER_LEN, MAGIC, MAX_PAYLOAD, VERSION};
pub use hello::HelloError;
pub use manifest::{Entry, Manifest, ManifestBuilder, ManifestError};
pub use message::{
    BlockRange, EntryKind, ErrorCode, FileId, Message, MessageType, OwnedMessage, ParseError, Role,
};

/// Smallest block size a manifest may use.
pub const MIN_BLOCK_SIZE: u32 = 4096;
/// Largest block size a manifest may use; one block always fits one frame.
pub const MAX_BLOCK_SIZE: u32 = 1 << 20;

/// Number of blocks of a file of `size` bytes cut in blocks of `block_size`.
pub fn block_count(size: u64, block_size: u32) -> u64 {
    size.div_ceil(u64::from(block_size.max(1)))
}

/// Length in bytes of block `index` of a file of `size` bytes (the last one may be short).
pub fn block_len(size: u64, block_size: u32, index: u64) -> usize {
    let bs = u64::from(block_size);
    let start = index.saturating_mul(bs);
    size.saturating_sub(start).min(bs) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_arithmetic() {
        assert_eq!(block_count(0, 4096), 0);
        assert_eq!(block_count(1, 4096), 1);
        assert_eq!(block_count(4096, 4096), 1);
        assert_eq!(block_count(4097, 4096), 2);
        assert_eq!(block_len(4097, 4096, 0), 4096);
        assert_eq!(block_len(4097, 4096, 1), 1);
        assert_eq!(block_len(4097, 4096, 2), 0);
        assert_eq!(block_len(u64::MAX, 4096, u64::MAX), 0);
    }
}
