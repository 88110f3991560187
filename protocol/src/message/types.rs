//! The small types messages carry: file ids, block ranges, roles, error
//! codes and entry kinds, each converting totally from its wire value.

/// Index of an entry in the manifest, as sent by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A run of `count` blocks starting at block `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    pub first: u64,
    pub count: u64,
}

impl BlockRange {
    /// One past the last block of the range (saturating).
    pub fn end(&self) -> u64 {
        self.first.saturating_add(self.count)
    }
}

/// Which end of the link a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Host = 1,
    Device = 2,
}

/// What an [`Message::Error`](super::Message::Error) is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A frame or message the receiver could not accept.
    Protocol,
    /// No protocol version in common.
    Version,
    /// The manifest was refused (bad path, duplicate, caps exceeded).
    Manifest,
    /// The device's store failed (I/O error).
    Store,
    /// The device's store is out of space.
    NoSpace,
    /// Anything else.
    Internal,
    /// A code this build does not know.
    Unknown(u16),
}

impl ErrorCode {
    /// The value on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::Protocol => 1,
            ErrorCode::Version => 2,
            ErrorCode::Manifest => 3,
            ErrorCode::Store => 4,
            ErrorCode::NoSpace => 5,
            ErrorCode::Internal => 6,
            ErrorCode::Unknown(v) => v,
        }
    }
    /// The code of a wire value; one this build does not know is [`ErrorCode::Unknown`].
    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => ErrorCode::Protocol,
            2 => ErrorCode::Version,
            3 => ErrorCode::Manifest,
            4 => ErrorCode::Store,
            5 => ErrorCode::NoSpace,
            6 => ErrorCode::Internal,
            v => ErrorCode::Unknown(v),
        }
    }
}

/// Kind of a manifest entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File = 0,
    Dir = 1,
}
