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
    EntryKind, ErrorCode, FileId, Message, MessageType, Mtime, OwnedMessage, PageCrcs, PageRange,
    ParseError, Role,
};

/// Bytes per page: the unit of integrity (one CRC-32 each), of presence
/// (one bit each, in the store and on the wire) and of demand. Fixed: it is
/// not a setting, and every file of a manifest is cut the same way.
pub const PAGE_SIZE: u32 = 4096;
/// `log2(PAGE_SIZE)`.
pub const PAGE_SHIFT: u32 = 12;
/// Most pages one Run frame carries.
pub const MAX_RUN_PAGES: u32 = 256;
/// Most bytes of data one Run carries: [`MAX_RUN_PAGES`] whole pages (1 MiB).
pub const MAX_RUN_BYTES: u32 = MAX_RUN_PAGES * PAGE_SIZE;

/// Number of pages of a file of `size` bytes.
pub fn page_count(size: u64) -> u64 {
    size.div_ceil(u64::from(PAGE_SIZE))
}

/// Byte offset of page `index` (saturating).
pub fn page_offset(index: u64) -> u64 {
    index.saturating_mul(u64::from(PAGE_SIZE))
}

/// Length in bytes of page `index` of a file of `size` bytes (the last one
/// may be short; 0 past the end).
pub fn page_len(size: u64, index: u64) -> usize {
    run_len(size, index, 1)
}

/// Length in bytes of the `count` pages from `first` of a file of `size`
/// bytes, clamped to the file's end (0 past it).
pub fn run_len(size: u64, first: u64, count: u64) -> usize {
    let start = page_offset(first);
    let end = page_offset(first.saturating_add(count)).min(size);
    end.saturating_sub(start) as usize
}

/// The pages a byte range `[offset, offset + len)` touches, as
/// `(first, count)`; `count` is 0 for an empty range.
pub fn pages_of(offset: u64, len: u64) -> (u64, u64) {
    if len == 0 {
        return (offset >> PAGE_SHIFT, 0);
    }
    let first = offset >> PAGE_SHIFT;
    let last = offset.saturating_add(len - 1) >> PAGE_SHIFT;
    (first, last - first + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_arithmetic() {
        assert_eq!(page_count(0), 0);
        assert_eq!(page_count(1), 1);
        assert_eq!(page_count(4096), 1);
        assert_eq!(page_count(4097), 2);
        assert_eq!(page_len(4097, 0), 4096);
        assert_eq!(page_len(4097, 1), 1);
        assert_eq!(page_len(4097, 2), 0);
        assert_eq!(page_len(u64::MAX, u64::MAX), 0);
        assert_eq!(run_len(10_000, 0, 3), 10_000);
        assert_eq!(run_len(10_000, 1, 5), 10_000 - 4096);
        assert_eq!(run_len(10_000, 3, 1), 0);
        assert_eq!(run_len(u64::MAX, u64::MAX - 1, 5), 0);
        assert_eq!(pages_of(0, 0), (0, 0));
        assert_eq!(pages_of(0, 4096), (0, 1));
        assert_eq!(pages_of(4095, 2), (0, 2));
        assert_eq!(pages_of(8192, 131_072), (2, 32));
        assert_eq!(pages_of(u64::MAX, 1), (u64::MAX >> 12, 1));
    }
}
