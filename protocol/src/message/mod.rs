//! The parsed messages: [`Message`] with `parse`, `emit` and `buffer_len`.
//!
//! Every message is the payload of one frame ([`crate::frame`]). Parsing
//! borrows from the frame (paths, texts, page data are slices into it) and
//! checks every length before reading, so it never panics and never
//! allocates more than the payload's size. Values that a message type
//! defines (roles, entry kinds, encodings) convert totally: an unknown value
//! is a [`ParseError::BadValue`], never a panic. `docs/protocol.md` gives
//! each layout byte by byte.
//!
//! A Run carries consecutive pages of a file with the CRC-32 of each, its
//! data as it is on the wire: raw, compressed in the LZ4 block format, or
//! not at all for pages of zeros ([`Encoding`]). [`decode_run`] turns it
//! back into the pages' bytes, bounded by the length the receiver expects
//! from the manifest, never by anything the sender says.
//!
//! [`OwnedMessage`] is the one owned form of a message, for code that keeps
//! a message past its frame or passes it to another thread.
//!
//! Where each part lives: `types` the small types messages carry (file
//! ids, page ranges, times, CRC tables, roles, error codes, entry kinds);
//! `run` how a Run's data is encoded and decoded; `parse` and `emit` the two
//! directions of the byte layout; `owned` the owned form; `tests` the
//! fixed byte vectors of every message.

pub use crate::frame::{MessageType, RUN_HEADER_LEN};
pub use owned::OwnedMessage;
pub use run::{decode_run, is_zero, DecodeError, Encoding, HASH_CRC32};
pub use types::{
    crc_table, page_crcs, EntryKind, ErrorCode, FileId, Mtime, PageCrcs, PageRange, Role,
};

use crate::frame;

mod emit;
mod owned;
mod parse;
mod run;
mod types;

#[cfg(test)]
mod tests;

/// Length of an `Entry` message's fixed part, before the path.
pub const ENTRY_HEADER_LEN: usize = 52;
/// Longest path an `Entry` may carry, in bytes; also the longest symbolic
/// link target.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest text a `Hello` agent string may carry, in bytes.
pub const MAX_AGENT_LEN: usize = 256;
/// Most ranges one `Have` message carries; longer lists are split.
pub const MAX_RANGES_PER_HAVE: usize = (crate::MAX_PAYLOAD as usize - 8) / 16;

/// One message, borrowing strings and data from the frame it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// First message from each side: who it is and which versions it speaks.
    Hello {
        role: Role,
        min_version: u8,
        max_version: u8,
        agent: &'a str,
    },
    /// One manifest entry (host to device). `target` is a symbolic link's
    /// target (empty for other kinds).
    Entry {
        id: FileId,
        kind: EntryKind,
        size: u64,
        mode: u32,
        mtime: Mtime,
        identity: [u8; 16],
        path: &'a str,
        target: &'a str,
    },
    /// End of the manifest: how many entries and file bytes it had.
    ManifestEnd { entries: u32, total_bytes: u64 },
    /// Pages of a file the device already holds (device to host).
    Have {
        file: FileId,
        ranges: Vec<PageRange>,
    },
    /// End of the device's resume state: every file has been reported.
    HaveEnd { files: u32 },
    /// A reader waits for these pages (device to host). `again`: send them
    /// even if they were sent a moment ago (they arrived damaged, or never
    /// arrived); without it, pages the host sent moments ago are taken as
    /// on their way.
    Demand {
        file: FileId,
        first: u64,
        count: u32,
        again: bool,
    },
    /// `count` consecutive pages of a file from page `first`, with the
    /// CRC-32 of each page's bytes (host to device). `data` is as it is on
    /// the wire, in `encoding` (empty for pages of zeros, which carry no
    /// CRC table either); `crcs` are over the pages' bytes after decoding
    /// (see [`decode_run`]).
    Run {
        file: FileId,
        first: u64,
        count: u32,
        encoding: Encoding,
        crcs: PageCrcs<'a>,
        data: &'a [u8],
    },
    /// The host has sent every page the device lacked.
    StreamDone { pages_sent: u64 },
    /// The device holds every page of every file.
    Complete { pages: u64 },
    /// The sender stops because of this error.
    Error { code: ErrorCode, text: &'a str },
    /// The sender ends the session cleanly.
    Goodbye,
}

/// Why a frame's payload is not a valid message of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{ty:?} message too short: {got} bytes, need {need}")]
    TooShort {
        ty: MessageType,
        need: usize,
        got: usize,
    },
    #[error("{ty:?} message has {extra} unexpected trailing bytes")]
    TrailingBytes { ty: MessageType, extra: usize },
    #[error("{ty:?} message: {field} is not valid UTF-8")]
    BadUtf8 {
        ty: MessageType,
        field: &'static str,
    },
    #[error("{ty:?} message: {field} has invalid value {value}")]
    BadValue {
        ty: MessageType,
        field: &'static str,
        value: u64,
    },
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
}

impl Message<'_> {
    /// The type code of this message.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Hello { .. } => MessageType::Hello,
            Message::Entry { .. } => MessageType::Entry,
            Message::ManifestEnd { .. } => MessageType::ManifestEnd,
            Message::Have { .. } => MessageType::Have,
            Message::HaveEnd { .. } => MessageType::HaveEnd,
            Message::Demand { .. } => MessageType::Demand,
            Message::Run { .. } => MessageType::Run,
            Message::StreamDone { .. } => MessageType::StreamDone,
            Message::Complete { .. } => MessageType::Complete,
            Message::Error { .. } => MessageType::Error,
            Message::Goodbye => MessageType::Goodbye,
        }
    }

    /// Length of this message's payload in bytes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Message::Hello { agent, .. } => 6 + truncate_utf8(agent, MAX_AGENT_LEN).len(),
            Message::Entry { path, target, .. } => ENTRY_HEADER_LEN + path.len() + target.len(),
            Message::ManifestEnd { .. } => 12,
            Message::Have { ranges, .. } => 8 + 16 * ranges.len(),
            Message::HaveEnd { .. } => 4,
            Message::Demand { .. } => 20,
            Message::Run { crcs, data, .. } => RUN_HEADER_LEN + crcs.as_bytes().len() + data.len(),
            Message::StreamDone { .. } | Message::Complete { .. } => 8,
            Message::Error { text, .. } => 2 + text.len(),
            Message::Goodbye => 0,
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
