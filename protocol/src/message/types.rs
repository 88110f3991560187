//! The small types messages carry: file ids, page ranges, modification
//! times, roles, error codes and entry kinds, each converting totally from
//! its wire value.

/// Index of an entry in the manifest, as sent by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A run of `count` pages starting at page `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRange {
    pub first: u64,
    pub count: u64,
}

impl PageRange {
    /// One past the last page of the range (saturating).
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
    /// A symbolic link: its target is carried with the entry, it has no pages.
    Symlink = 2,
}

/// A modification time as the host's filesystem gave it: seconds since
/// 1970 (negative before) and nanoseconds within the second (below 10^9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct Mtime {
    pub sec: i64,
    pub nsec: u32,
}

impl Mtime {
    /// Nanoseconds in a second: `nsec` is always below it.
    pub const NANOS: u32 = 1_000_000_000;

    /// The time of a [`std::time::SystemTime`] (clamped to what fits).
    pub fn of(t: std::time::SystemTime) -> Mtime {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Mtime {
                sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nsec: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let sec = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                match d.subsec_nanos() {
                    0 => Mtime { sec: -sec, nsec: 0 },
                    n => Mtime {
                        sec: -sec - 1,
                        nsec: Self::NANOS - n,
                    },
                }
            }
        }
    }

    /// This time as a [`std::time::SystemTime`] (clamped to what it can hold).
    pub fn to_system_time(self) -> std::time::SystemTime {
        let nanos = std::time::Duration::from_nanos(u64::from(self.nsec.min(Self::NANOS - 1)));
        let secs = std::time::Duration::from_secs(self.sec.unsigned_abs());
        let t = if self.sec >= 0 {
            std::time::UNIX_EPOCH.checked_add(secs)
        } else {
            std::time::UNIX_EPOCH.checked_sub(secs)
        };
        t.and_then(|t| t.checked_add(nanos))
            .unwrap_or(std::time::UNIX_EPOCH)
    }
}

/// The CRC-32 of each page of a Run, as the frame carries them: `4 × count`
/// bytes, little-endian, borrowed from the frame (or from the sender's
/// buffer). Empty for a run of zeros, whose pages' CRCs are those of their
/// zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageCrcs<'a>(&'a [u8]);

impl<'a> PageCrcs<'a> {
    /// The table in `bytes`; `None` unless its length is a multiple of 4.
    pub fn new(bytes: &'a [u8]) -> Option<PageCrcs<'a>> {
        bytes.len().is_multiple_of(4).then_some(PageCrcs(bytes))
    }
    /// Number of CRCs.
    pub fn len(&self) -> usize {
        self.0.len() / 4
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The CRC of page `i` of the run (0 past the end).
    pub fn get(&self, i: usize) -> u32 {
        self.0
            .get(4 * i..4 * i + 4)
            .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    /// Every CRC, in page order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.0
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    /// The table as it is on the wire.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// The wire form of the CRC-32 of each 4 KiB page of `data` (the last may
/// be short), for [`PageCrcs::new`].
pub fn page_crcs(data: &[u8]) -> Vec<u8> {
    data.chunks(crate::PAGE_SIZE as usize)
        .flat_map(|p| crc32fast::hash(p).to_le_bytes())
        .collect()
}

/// The wire form of a list of CRCs, for [`PageCrcs::new`].
pub fn crc_table(crcs: &[u32]) -> Vec<u8> {
    crcs.iter().flat_map(|c| c.to_le_bytes()).collect()
}
