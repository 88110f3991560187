//! The frame header: a checked view over bytes, the type codes it carries,
//! the frame errors, and emission.
//!
//! Layout (all integers little-endian), 16 bytes then `length` bytes of payload:
//!
//! | bytes  | field    | meaning                                             |
//! |--------|----------|-----------------------------------------------------|
//! | 0..4   | magic    | `b"FDFS"`                                           |
//! | 4      | version  | protocol version, [`VERSION`]                       |
//! | 5      | type     | message type ([`MessageType`])                      |
//! | 6..8   | reserved | sent as zero, ignored by readers of this version     |
//! | 8..12  | length   | payload length, at most [`MAX_PAYLOAD`]             |
//! | 12..16 | crc32    | CRC-32 (IEEE) of bytes 0..12 followed by the payload (a Run's up to its data) |
//!
//! Invariants: once [`Frame::new_checked`] has succeeded, no accessor panics;
//! [`emit`] never panics on a buffer of any size (it appends).
//! The header's layout is the same in every protocol version; only payloads
//! change. So frames are checked in one fixed order: length, magic, size
//! cap, checksum, version, type, and each outcome is a distinct
//! [`FrameError`]. The version comes after the checksum so that a damaged
//! version byte is damage (resync), while a peer that really speaks another
//! version (its frames pass the checksum) is told apart clearly.
//!
//! The type codes live here, with the header that carries them, and so does
//! the little the frame needs of a Run's payload (its page count and
//! encoding, which say where its data starts): a Run's data is covered by
//! the CRC-32 of each page, which the frame checksum covers, so each byte
//! of data is hashed once on each side. The message module builds on this
//! module and this module never on it.

use byteorder::{ByteOrder, LittleEndian as LE};

/// The four bytes every frame starts with.
pub const MAGIC: [u8; 4] = *b"FDFS";
/// The protocol version this build speaks (2: Block data may be LZ4; 3: a
/// block of zeros is sent without data; 4: 4 KiB pages, sent as Runs of
/// pages with a CRC-32 each; entries carry a modification time, and
/// symbolic links).
pub const VERSION: u8 = 4;
/// Length of the frame header.
pub const HEADER_LEN: usize = 16;
/// Largest payload a frame may carry: a Run of the most pages, its CRC
/// table and its header, rounded up to 1 MiB + 4 KiB.
pub const MAX_PAYLOAD: u32 = crate::MAX_RUN_BYTES + 4096;

/// Type codes, one per message (byte 5 of the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    Hello = 0x01,
    Entry = 0x02,
    ManifestEnd = 0x03,
    Have = 0x04,
    HaveEnd = 0x05,
    Demand = 0x06,
    Run = 0x07,
    StreamDone = 0x08,
    Complete = 0x09,
    Error = 0x0a,
    Goodbye = 0x0b,
}

impl TryFrom<u8> for MessageType {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        use MessageType::*;
        Ok(match v {
            0x01 => Hello,
            0x02 => Entry,
            0x03 => ManifestEnd,
            0x04 => Have,
            0x05 => HaveEnd,
            0x06 => Demand,
            0x07 => Run,
            0x08 => StreamDone,
            0x09 => Complete,
            0x0a => Error,
            0x0b => Goodbye,
            other => return Err(other),
        })
    }
}

/// Length of a `Run` message's fixed part, before its CRC table.
pub const RUN_HEADER_LEN: usize = 20;
/// Where a `Run` message's page count (`u32`) sits in its payload.
pub const RUN_COUNT_OFFSET: usize = 12;
/// Where a `Run` message's `encoding` byte sits in its payload.
pub const RUN_ENCODING_OFFSET: usize = 16;
/// The `encoding` byte of a Run of zeros (`message::Encoding::Zero`), which
/// carries no CRC table and no data.
pub const RUN_ENCODING_ZERO: u8 = 2;

mod field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: usize = 4;
    pub const TYPE: usize = 5;
    pub const LENGTH: Range<usize> = 8..12;
    pub const CRC: Range<usize> = 12..16;
    pub const CRC_COVERED: Range<usize> = 0..12;
}

/// What a reader should do after a frame error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The frame was well formed but not understood: drop it and go on.
    Skip,
    /// The bytes are damaged: drop them and look for the next magic.
    Resync,
    /// The stream ended inside a frame: the link was cut, reconnect.
    Reconnect,
    /// The peer cannot be talked to: stop the session with this error.
    Fatal,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad magic {found:02x?} (expected \"FDFS\"): the peer is not speaking feedfs, or the stream is damaged")]
    BadMagic { found: [u8; 4] },
    #[error("peer speaks feedfs protocol version {found}, this build speaks version {supported}: install matching feedfs-host and feedfs-device")]
    UnsupportedVersion { found: u8, supported: u8 },
    #[error("frame of {len} bytes exceeds the {max}-byte cap")]
    Oversized { len: u32, max: u32 },
    #[error("bad checksum: frame says {expected:#010x}, content gives {actual:#010x}")]
    BadChecksum { expected: u32, actual: u32 },
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    #[error("stream ended inside a frame: {available} of {needed} bytes arrived")]
    Truncated { needed: usize, available: usize },
    #[error("a frame stalled: {available} of {needed} bytes arrived in {waited_ms} ms while later bytes kept coming; dropped as damaged (a damaged length field or a lost piece)")]
    Stalled {
        needed: usize,
        available: usize,
        waited_ms: u64,
    },
}

impl FrameError {
    /// The one decision each error forces; exhaustive on purpose.
    pub fn recovery(&self) -> Recovery {
        match self {
            FrameError::BadMagic { .. }
            | FrameError::BadChecksum { .. }
            | FrameError::Oversized { .. }
            | FrameError::Stalled { .. } => Recovery::Resync,
            FrameError::UnknownType(_) => Recovery::Skip,
            FrameError::Truncated { .. } => Recovery::Reconnect,
            FrameError::UnsupportedVersion { .. } => Recovery::Fatal,
        }
    }
}

/// A view of one frame (header and payload) over a byte buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

/// Outcome of looking at the start of a buffer that may hold a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// Fewer bytes than a header or than the whole frame: this many are needed in all.
    NeedMore(usize),
    /// A whole frame of this many bytes (header and payload) is there.
    Whole(usize),
}

/// Check the header at the start of `buf` up to the size cap (length, magic,
/// size cap), without the checksum or version. Tells how long the frame is.
pub fn peek(buf: &[u8]) -> Result<Peek, FrameError> {
    if buf.len() < HEADER_LEN {
        if buf.len() >= 4 && buf[field::MAGIC] != MAGIC {
            return Err(FrameError::BadMagic {
                found: magic_of(buf),
            });
        }
        return Ok(Peek::NeedMore(HEADER_LEN));
    }
    if buf[field::MAGIC] != MAGIC {
        return Err(FrameError::BadMagic {
            found: magic_of(buf),
        });
    }
    let len = LE::read_u32(&buf[field::LENGTH]);
    if len > MAX_PAYLOAD {
        return Err(FrameError::Oversized {
            len,
            max: MAX_PAYLOAD,
        });
    }
    let total = HEADER_LEN + len as usize;
    if buf.len() < total {
        Ok(Peek::NeedMore(total))
    } else {
        Ok(Peek::Whole(total))
    }
}

fn magic_of(buf: &[u8]) -> [u8; 4] {
    let mut m = [0u8; 4];
    m.copy_from_slice(&buf[..4]);
    m
}

/// How much of a payload of type `ty` the frame checksum covers: all of
/// it, except for a Run with data, where it stops at the data (after the
/// CRC table that covers the data page by page). A payload too short to
/// say is covered whole (it then fails to parse).
pub fn covered_len(ty: u8, payload: &[u8]) -> usize {
    if ty != MessageType::Run as u8 || payload.len() < RUN_HEADER_LEN {
        return payload.len();
    }
    if payload[RUN_ENCODING_OFFSET] == RUN_ENCODING_ZERO {
        return payload.len();
    }
    let count = LE::read_u32(&payload[RUN_COUNT_OFFSET..RUN_COUNT_OFFSET + 4]) as usize;
    RUN_HEADER_LEN
        .saturating_add(count.saturating_mul(4))
        .min(payload.len())
}

/// The frame checksum: CRC-32 of `header12` followed by the covered part of
/// `payload`.
fn checksum_of(header12: &[u8], ty: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header12);
    h.update(&payload[..covered_len(ty, payload)]);
    h.finalize()
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Check a buffer holding exactly one frame, in the fixed order:
    /// length, magic, size cap, checksum, version. The type is checked by
    /// [`Frame::message_type`] so that an unknown type can be skipped whole.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, FrameError> {
        let buf = buffer.as_ref();
        match peek(buf)? {
            Peek::NeedMore(needed) => {
                return Err(FrameError::Truncated {
                    needed,
                    available: buf.len(),
                })
            }
            Peek::Whole(total) if total != buf.len() => {
                return Err(FrameError::Truncated {
                    needed: total,
                    available: buf.len(),
                })
            }
            Peek::Whole(_) => {}
        }
        let expected = LE::read_u32(&buf[field::CRC]);
        let actual = checksum_of(
            &buf[field::CRC_COVERED],
            buf[field::TYPE],
            &buf[HEADER_LEN..],
        );
        if expected != actual && !cfg!(fuzzing) {
            return Err(FrameError::BadChecksum { expected, actual });
        }
        if buf[field::VERSION] != VERSION {
            return Err(FrameError::UnsupportedVersion {
                found: buf[field::VERSION],
                supported: VERSION,
            });
        }
        Ok(Frame { buffer })
    }

    /// A view over bytes that [`Frame::new_checked`] accepted before (the
    /// decoder uses this to hand out a frame it has checked without
    /// hashing it again).
    pub(crate) fn already_checked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// The raw type byte.
    pub fn type_byte(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The message type, or [`FrameError::UnknownType`].
    pub fn message_type(&self) -> Result<MessageType, FrameError> {
        MessageType::try_from(self.type_byte()).map_err(FrameError::UnknownType)
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole frame's length in bytes.
    pub fn total_len(&self) -> usize {
        self.buffer.as_ref().len()
    }
}

/// Append a header with the length and checksum left zero; returns where it starts.
fn begin(out: &mut Vec<u8>, ty: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(ty);
    out.extend_from_slice(&[0; 10]);
    start
}

/// Append one frame (header, then the payload written by `fill`) to `out`.
/// `fill` must append exactly `payload_len` bytes; the length field is taken
/// from what it appended, so a mismatch cannot produce a corrupt frame.
pub fn emit(out: &mut Vec<u8>, ty: u8, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = begin(out, ty);
    fill(out);
    let len = (out.len() - start - HEADER_LEN) as u32;
    LE::write_u32(&mut out[start + 8..start + 12], len);
    let (head, payload) = out[start..].split_at(HEADER_LEN);
    let crc = checksum_of(&head[field::CRC_COVERED], ty, payload);
    LE::write_u32(&mut out[start + 12..start + 16], crc);
}

/// Like [`emit`], for a Run whose data the caller writes itself: `out`
/// gets the header and the payload up to the data (as `fill` appends it:
/// the Run's fixed part and CRC table), with the length of the whole frame;
/// the caller writes the `tail_len` bytes of data right after them, so they
/// need not be copied into `out`. The data is not part of the checksum
/// ([`covered_len`]).
pub fn emit_head(out: &mut Vec<u8>, ty: u8, fill: impl FnOnce(&mut Vec<u8>), tail_len: usize) {
    let start = begin(out, ty);
    fill(out);
    let head_len = out.len() - start - HEADER_LEN;
    let len = (head_len + tail_len) as u32;
    LE::write_u32(&mut out[start + 8..start + 12], len);
    let (head, payload) = out[start..].split_at(HEADER_LEN);
    let crc = checksum_of(&head[field::CRC_COVERED], ty, payload);
    LE::write_u32(&mut out[start + 12..start + 16], crc);
}

#[cfg(test)]
mod tests;
