//! The device's request log: fixed-size binary records, with no I/O.
//!
//! A log file is a 32-byte header ([`LOG_MAGIC`], [`LOG_VERSION`]) followed
//! by 32-byte records, each closed by the CRC-32 of its first 28 bytes. The
//! device writes it (`feedfs-device`, in its store); the host reads copies
//! of it (`feedfs-host log`, `feedfs-host plan`). Two levels, as for frames:
//! [`Record`] parses and emits one record, and [`decode`] checks a whole
//! file and resolves its records into [`MountLog`]s: the files each mount
//! served, with their paths, and what readers did with them.
//!
//! Everything is counted in pages (4 KiB): page indexes fit a `u32`, as a
//! file is at most 2^44 bytes. [`decode`] also reads logs of format 1,
//! which counted in blocks of a size per file (4 KiB to 1 MiB), and gives
//! their records in pages too. After [`Record::parse`] checks the CRC and the kind, no
//! accessor panics; [`Record::emit`] always gives 32 bytes. [`decode`]
//! refuses damage with an error naming the record and the problem; only an
//! incomplete last record (a write cut short) is tolerated and reported.
//! `docs/store.md` gives the layout byte by byte.

use byteorder::{ByteOrder, LittleEndian as LE};

use crate::message::FileId;

/// First 8 bytes of every log file.
pub const LOG_MAGIC: [u8; 8] = *b"FDFSRLOG";
/// Version of the log format this build writes (2: pages; 1, blocks of a
/// size per file, is still read).
pub const LOG_VERSION: u16 = 2;
/// The oldest version [`decode`] reads.
pub const OLDEST_LOG_VERSION: u16 = 1;
/// log2 of the largest unit a format-1 log counted in (1 MiB blocks).
pub const MAX_UNIT_SHIFT: u8 = 20;
/// Length of the file header and of every record.
pub const RECORD_LEN: usize = 32;
/// Bytes of path (and identity tail) carried by one `Name` record.
pub const NAME_CHUNK: usize = 20;
/// Largest log file [`decode`] reads (the device keeps far less).
pub const MAX_LOG_BYTES: usize = 64 << 20;
/// Longest path a `File` record may announce (as in a manifest Entry).
pub const MAX_PATH: usize = 4096;

/// What became of a read that had to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Its blocks arrived and it was answered with data.
    Served,
    /// It failed with an error (the link went down, the store failed).
    Failed,
    /// It failed because its blocks did not arrive within the read timeout.
    TimedOut,
}

impl Outcome {
    fn code(self) -> u8 {
        match self {
            Outcome::Served => 0,
            Outcome::Failed => 1,
            Outcome::TimedOut => 2,
        }
    }

    /// The word used in summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Served => "served",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed out",
        }
    }
}

impl TryFrom<u8> for Outcome {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            0 => Ok(Outcome::Served),
            1 => Ok(Outcome::Failed),
            2 => Ok(Outcome::TimedOut),
            other => Err(other),
        }
    }
}

/// Record kinds (byte 0 of a record).
mod kind {
    pub const MOUNT: u8 = 1;
    pub const FILE: u8 = 2;
    pub const NAME: u8 = 3;
    pub const LINK: u8 = 4;
    pub const WAIT: u8 = 5;
    pub const TOUCH: u8 = 6;
    pub const SERVED: u8 = 7;
}

/// Flag bits of a `Wait` record (byte 1): bits 0-1 are the outcome.
const WAIT_OUTCOME: u8 = 0b11;
const WAIT_DEMANDED: u8 = 0b100;

/// One 32-byte record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// A daemon mounted (or, `continued`, a log file was rotated mid-mount):
    /// times in the records after it count from `unix_us`.
    Mount {
        unix_us: u64,
        pid: u32,
        files: u32,
        continued: bool,
    },
    /// A served file, announced before the first record that names it; the
    /// rest of its identity and its path follow in `Name` records.
    /// `unit_shift` is log2 of the unit its records count in: 12 (pages)
    /// in format 2, 12 to 20 (the file's block size) in format 1.
    File {
        file: FileId,
        size: u64,
        unit_shift: u8,
        path_len: u16,
        identity_head: [u8; 12],
    },
    /// The next [`NAME_CHUNK`] bytes of identity tail and path of a file.
    Name {
        file: FileId,
        bytes: [u8; NAME_CHUNK],
    },
    /// The link to the host came up or went down.
    Link { t_us: u64, up: bool },
    /// A read that had to wait for missing pages `first..first+count`.
    Wait {
        t_us: u64,
        file: FileId,
        first: u32,
        count: u16,
        wait_us: u32,
        pid: u32,
        outcome: Outcome,
        /// This read asked the host itself (others joined a request already made).
        demanded: bool,
    },
    /// Pages read for the first time in this mount, served at once because
    /// they were present.
    Touch {
        t_us: u64,
        file: FileId,
        first: u32,
        count: u32,
    },
    /// Reads served at once from present pages since the mount (running totals).
    Served {
        t_us: u64,
        file: FileId,
        reads: u32,
        bytes: u64,
    },
}

/// Why one record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("bad checksum (stored {stored:#010x}, computed {computed:#010x})")]
    BadChecksum { stored: u32, computed: u32 },
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("bad value {value} in field {field}")]
    BadValue { field: &'static str, value: u64 },
}

impl Record {
    /// Parse one record, checking its CRC first.
    pub fn parse(b: &[u8; RECORD_LEN]) -> Result<Record, RecordError> {
        let stored = LE::read_u32(&b[28..32]);
        let computed = crc32fast::hash(&b[..28]);
        if stored != computed {
            return Err(RecordError::BadChecksum { stored, computed });
        }
        let file = FileId(LE::read_u32(&b[4..8]));
        let t_us = LE::read_u64(&b[8..16]);
        let bad = |field, value: u64| RecordError::BadValue { field, value };
        Ok(match b[0] {
            kind::MOUNT => Record::Mount {
                unix_us: t_us,
                pid: LE::read_u32(&b[16..20]),
                files: LE::read_u32(&b[4..8]),
                continued: match b[1] {
                    0 => false,
                    1 => true,
                    v => return Err(bad("continued", v.into())),
                },
            },
            kind::FILE => {
                let unit_shift = b[1];
                if !(crate::PAGE_SHIFT as u8..=MAX_UNIT_SHIFT).contains(&unit_shift) {
                    return Err(bad("unit size (log2)", unit_shift.into()));
                }
                let mut identity_head = [0; 12];
                identity_head.copy_from_slice(&b[16..28]);
                Record::File {
                    file,
                    size: t_us,
                    unit_shift,
                    path_len: LE::read_u16(&b[2..4]),
                    identity_head,
                }
            }
            kind::NAME => {
                let mut bytes = [0; NAME_CHUNK];
                bytes.copy_from_slice(&b[8..28]);
                Record::Name { file, bytes }
            }
            kind::LINK => Record::Link {
                t_us,
                up: match b[1] {
                    0 => false,
                    1 => true,
                    v => return Err(bad("link state", v.into())),
                },
            },
            kind::WAIT => {
                let flags = b[1];
                if flags & !(WAIT_OUTCOME | WAIT_DEMANDED) != 0 {
                    return Err(bad("wait flags", flags.into()));
                }
                Record::Wait {
                    t_us,
                    file,
                    first: LE::read_u32(&b[16..20]),
                    count: LE::read_u16(&b[2..4]),
                    wait_us: LE::read_u32(&b[20..24]),
                    pid: LE::read_u32(&b[24..28]),
                    outcome: Outcome::try_from(flags & WAIT_OUTCOME)
                        .map_err(|v| bad("outcome", v.into()))?,
                    demanded: flags & WAIT_DEMANDED != 0,
                }
            }
            kind::TOUCH => Record::Touch {
                t_us,
                file,
                first: LE::read_u32(&b[16..20]),
                count: LE::read_u32(&b[20..24]),
            },
            kind::SERVED => Record::Served {
                t_us,
                file,
                reads: LE::read_u32(&b[16..20]),
                bytes: LE::read_u64(&b[20..28]),
            },
            other => return Err(RecordError::UnknownKind(other)),
        })
    }

    /// The record's 32 bytes, CRC included. Reserved bytes are zero.
    pub fn emit(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        match *self {
            Record::Mount {
                unix_us,
                pid,
                files,
                continued,
            } => {
                b[0] = kind::MOUNT;
                b[1] = u8::from(continued);
                LE::write_u32(&mut b[4..8], files);
                LE::write_u64(&mut b[8..16], unix_us);
                LE::write_u32(&mut b[16..20], pid);
            }
            Record::File {
                file,
                size,
                unit_shift,
                path_len,
                identity_head,
            } => {
                b[0] = kind::FILE;
                b[1] = unit_shift;
                LE::write_u16(&mut b[2..4], path_len);
                LE::write_u32(&mut b[4..8], file.0);
                LE::write_u64(&mut b[8..16], size);
                b[16..28].copy_from_slice(&identity_head);
            }
            Record::Name { file, bytes } => {
                b[0] = kind::NAME;
                LE::write_u32(&mut b[4..8], file.0);
                b[8..28].copy_from_slice(&bytes);
            }
            Record::Link { t_us, up } => {
                b[0] = kind::LINK;
                b[1] = u8::from(up);
                LE::write_u64(&mut b[8..16], t_us);
            }
            Record::Wait {
                t_us,
                file,
                first,
                count,
                wait_us,
                pid,
                outcome,
                demanded,
            } => {
                b[0] = kind::WAIT;
                b[1] = outcome.code() | if demanded { WAIT_DEMANDED } else { 0 };
                LE::write_u16(&mut b[2..4], count);
                LE::write_u32(&mut b[4..8], file.0);
                LE::write_u64(&mut b[8..16], t_us);
                LE::write_u32(&mut b[16..20], first);
                LE::write_u32(&mut b[20..24], wait_us);
                LE::write_u32(&mut b[24..28], pid);
            }
            Record::Touch {
                t_us,
                file,
                first,
                count,
            } => {
                b[0] = kind::TOUCH;
                LE::write_u32(&mut b[4..8], file.0);
                LE::write_u64(&mut b[8..16], t_us);
                LE::write_u32(&mut b[16..20], first);
                LE::write_u32(&mut b[20..24], count);
            }
            Record::Served {
                t_us,
                file,
                reads,
                bytes,
            } => {
                b[0] = kind::SERVED;
                LE::write_u32(&mut b[4..8], file.0);
                LE::write_u64(&mut b[8..16], t_us);
                LE::write_u32(&mut b[16..20], reads);
                LE::write_u64(&mut b[20..28], bytes);
            }
        }
        let crc = crc32fast::hash(&b[..28]);
        LE::write_u32(&mut b[28..32], crc);
        b
    }
}

/// The 32-byte header of a log file.
pub fn header() -> [u8; RECORD_LEN] {
    let mut h = [0u8; RECORD_LEN];
    h[..8].copy_from_slice(&LOG_MAGIC);
    LE::write_u16(&mut h[8..10], LOG_VERSION);
    LE::write_u16(&mut h[10..12], RECORD_LEN as u16);
    h
}

/// The records announcing a file: one `File`, then `Name`s carrying the
/// last 4 bytes of the identity followed by the path.
pub fn file_records(file: FileId, size: u64, identity: &[u8; 16], path: &str) -> Vec<Record> {
    let path = &path.as_bytes()[..path.len().min(MAX_PATH)];
    let mut identity_head = [0; 12];
    identity_head.copy_from_slice(&identity[..12]);
    let mut out = vec![Record::File {
        file,
        size,
        unit_shift: crate::PAGE_SHIFT as u8,
        path_len: path.len() as u16,
        identity_head,
    }];
    let tail: Vec<u8> = identity[12..].iter().chain(path).copied().collect();
    for chunk in tail.chunks(NAME_CHUNK) {
        let mut bytes = [0; NAME_CHUNK];
        bytes[..chunk.len()].copy_from_slice(chunk);
        out.push(Record::Name { file, bytes });
    }
    out
}

mod decode;
mod decoded;

pub use decode::decode;
pub use decoded::{join, Decoded, Event, LogError, LogFile, MountLog};

#[cfg(test)]
mod tests;
