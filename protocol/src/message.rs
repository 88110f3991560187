//! The parsed messages: [`Message`] with `parse`, `emit` and `buffer_len`.
//!
//! Every message is the payload of one frame ([`crate::frame`]). Parsing
//! borrows from the frame (paths, texts, block data are slices into it) and
//! checks every length before reading, so it never panics and never
//! allocates more than the payload's size. Values that a message type
//! defines (roles, entry kinds, encodings) convert totally: an unknown value
//! is a [`ParseError::BadValue`], never a panic. `docs/protocol.md` gives
//! each layout byte by byte.
//!
//! A Block's data is carried as it is on the wire: raw, compressed in the
//! LZ4 block format, or not at all for a block of zeros ([`Encoding`]).
//! [`decode_block`] turns it back into the block's bytes, bounded by the
//! length the receiver expects from the manifest, never by anything the
//! sender says.
//!
//! [`OwnedMessage`] is the one owned form of a message, for code that keeps
//! a message past its frame or passes it to another thread.

use byteorder::{ByteOrder, LittleEndian as LE};

pub use crate::frame::{MessageType, BLOCK_ENCODING_OFFSET, BLOCK_HEADER_LEN};
pub use owned::OwnedMessage;

mod owned;

use crate::frame::{self, Frame};

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

/// What an [`Message::Error`] is about.
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
    fn to_u16(self) -> u16 {
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
    fn from_u16(v: u16) -> Self {
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

/// How a Block's data is carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Encoding {
    /// The block's bytes as they are.
    Raw = frame::BLOCK_ENCODING_RAW,
    /// The block's bytes compressed in the LZ4 block format, without a
    /// size prefix: the receiver knows the block's length from the manifest.
    Lz4 = 1,
    /// Every byte of the block is zero; no data is sent (the block's length
    /// is the manifest's).
    Zero = 2,
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

/// Why a Block's data could not be turned back into the block's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("its LZ4 data is damaged: {0}")]
    Damaged(String),
    #[error("its LZ4 data decodes to {got} bytes, the block has {expected}")]
    Length { got: usize, expected: usize },
    #[error("it is a block of zeros but carries {0} bytes of data")]
    ZeroWithData(usize),
}

/// Whether every byte of `data` is zero: such a block goes as
/// [`Encoding::Zero`], and the device keeps it as a hole.
pub fn is_zero(data: &[u8]) -> bool {
    // Whole words at a time: OR-ing a chunk vectorises, and most blocks
    // that are not zero show it in their first chunk.
    let mut chunks = data.chunks_exact(64);
    let words_zero = chunks
        .by_ref()
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0);
    words_zero && chunks.remainder().iter().all(|&b| b == 0)
}

/// The bytes of a block whose data arrived with `encoding`, the block being
/// `expected` bytes long (from the manifest).
///
/// Raw data is returned as it is (its length is the caller's to check). LZ4
/// data is decoded into `scratch`, which is reused from call to call and
/// never grows past `expected` (itself capped at [`crate::MAX_BLOCK_SIZE`]):
/// data that would decode to more, or to less, is an error, as is data that
/// is not valid LZ4. A zero block is `expected` zeros in `scratch` (data
/// with it is an error, which the parser already refuses). CRC-32 checks
/// are the caller's: a Block's `crc` is over the bytes returned here.
pub fn decode_block<'d>(
    encoding: Encoding,
    data: &'d [u8],
    expected: usize,
    scratch: &'d mut Vec<u8>,
) -> Result<&'d [u8], DecodeError> {
    match encoding {
        Encoding::Raw => Ok(data),
        Encoding::Lz4 => {
            let expected = expected.min(crate::MAX_BLOCK_SIZE as usize);
            scratch.resize(expected, 0);
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
            scratch.resize(expected.min(crate::MAX_BLOCK_SIZE as usize), 0);
            Ok(&scratch[..])
        }
    }
}
/// Length of an `Entry` message's fixed part, before the path.
pub const ENTRY_HEADER_LEN: usize = 42;
/// Longest path an `Entry` may carry, in bytes.
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
    /// One manifest entry (host to device).
    Entry {
        id: FileId,
        kind: EntryKind,
        size: u64,
        mode: u32,
        block_size: u32,
        identity: [u8; 16],
        path: &'a str,
    },
    /// End of the manifest: how many entries and file bytes it had.
    ManifestEnd { entries: u32, total_bytes: u64 },
    /// Blocks of a file the device already holds (device to host).
    Have {
        file: FileId,
        ranges: Vec<BlockRange>,
    },
    /// End of the device's resume state: every file has been reported.
    HaveEnd { files: u32 },
    /// A reader waits for these blocks (device to host).
    Demand {
        file: FileId,
        first: u64,
        count: u32,
    },
    /// One block of data with the CRC-32 of its content (host to device).
    /// `data` is as it is on the wire, in `encoding` (empty for a zero
    /// block); `crc` is the CRC-32 of the block's bytes (after decoding, see
    /// [`decode_block`]).
    Block {
        file: FileId,
        index: u64,
        crc: u32,
        encoding: Encoding,
        data: &'a [u8],
    },
    /// The host has sent every block the device lacked.
    StreamDone { blocks_sent: u64 },
    /// The device holds every block of every file.
    Complete { blocks: u64 },
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

/// Bounds-checked little-endian reads over a payload.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    ty: MessageType,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(ParseError::TooShort {
                ty: self.ty,
                need: self.pos + n,
                got: self.buf.len(),
            });
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ParseError> {
        Ok(LE::read_u16(self.take(2)?))
    }
    fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(LE::read_u32(self.take(4)?))
    }
    fn u64(&mut self) -> Result<u64, ParseError> {
        Ok(LE::read_u64(self.take(8)?))
    }
    fn str(&mut self, n: usize, field: &'static str) -> Result<&'a str, ParseError> {
        let ty = self.ty;
        std::str::from_utf8(self.take(n)?).map_err(|_| ParseError::BadUtf8 { ty, field })
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    fn end(self) -> Result<(), ParseError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            extra => Err(ParseError::TrailingBytes { ty: self.ty, extra }),
        }
    }
    fn bad(&self, field: &'static str, value: u64) -> ParseError {
        ParseError::BadValue {
            ty: self.ty,
            field,
            value,
        }
    }
}

impl<'a> Message<'a> {
    /// The type code of this message.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Hello { .. } => MessageType::Hello,
            Message::Entry { .. } => MessageType::Entry,
            Message::ManifestEnd { .. } => MessageType::ManifestEnd,
            Message::Have { .. } => MessageType::Have,
            Message::HaveEnd { .. } => MessageType::HaveEnd,
            Message::Demand { .. } => MessageType::Demand,
            Message::Block { .. } => MessageType::Block,
            Message::StreamDone { .. } => MessageType::StreamDone,
            Message::Complete { .. } => MessageType::Complete,
            Message::Error { .. } => MessageType::Error,
            Message::Goodbye => MessageType::Goodbye,
        }
    }

    /// Parse the message carried by a checked frame.
    pub fn parse(f: Frame<&'a [u8]>) -> Result<Message<'a>, ParseError> {
        let ty = f.message_type()?;
        let payload: &'a [u8] = &f.into_inner()[frame::HEADER_LEN..];
        let mut c = Cursor {
            buf: payload,
            pos: 0,
            ty,
        };
        let msg = match ty {
            MessageType::Hello => {
                let role = match c.u8()? {
                    1 => Role::Host,
                    2 => Role::Device,
                    v => return Err(c.bad("role", v.into())),
                };
                let min_version = c.u8()?;
                let max_version = c.u8()?;
                let _reserved = c.u8()?;
                let len = c.u16()? as usize;
                if len > MAX_AGENT_LEN {
                    return Err(c.bad("agent length", len as u64));
                }
                let agent = c.str(len, "agent")?;
                Message::Hello {
                    role,
                    min_version,
                    max_version,
                    agent,
                }
            }
            MessageType::Entry => {
                let id = FileId(c.u32()?);
                let kind = match c.u8()? {
                    0 => EntryKind::File,
                    1 => EntryKind::Dir,
                    v => return Err(c.bad("kind", v.into())),
                };
                c.take(3)?;
                let size = c.u64()?;
                let mode = c.u32()?;
                let block_size = c.u32()?;
                let mut identity = [0u8; 16];
                identity.copy_from_slice(c.take(16)?);
                let len = c.u16()? as usize;
                if len > MAX_PATH_LEN {
                    return Err(c.bad("path length", len as u64));
                }
                let path = c.str(len, "path")?;
                Message::Entry {
                    id,
                    kind,
                    size,
                    mode,
                    block_size,
                    identity,
                    path,
                }
            }
            MessageType::ManifestEnd => Message::ManifestEnd {
                entries: c.u32()?,
                total_bytes: c.u64()?,
            },
            MessageType::Have => {
                let file = FileId(c.u32()?);
                let n = c.u32()? as usize;
                if n > MAX_RANGES_PER_HAVE {
                    return Err(c.bad("range count", n as u64));
                }
                // The length check comes before the allocation, so it is bounded by the payload.
                let need = n * 16;
                if payload.len() < 8 + need {
                    return Err(ParseError::TooShort {
                        ty,
                        need: 8 + need,
                        got: payload.len(),
                    });
                }
                let mut ranges = Vec::with_capacity(n);
                for _ in 0..n {
                    let first = c.u64()?;
                    let count = c.u64()?;
                    if count == 0 || first.checked_add(count).is_none() {
                        return Err(c.bad("range", count));
                    }
                    ranges.push(BlockRange { first, count });
                }
                Message::Have { file, ranges }
            }
            MessageType::HaveEnd => Message::HaveEnd { files: c.u32()? },
            MessageType::Demand => {
                let file = FileId(c.u32()?);
                let first = c.u64()?;
                let count = c.u32()?;
                if count == 0 || first.checked_add(u64::from(count)).is_none() {
                    return Err(c.bad("count", count.into()));
                }
                Message::Demand { file, first, count }
            }
            MessageType::Block => {
                let file = FileId(c.u32()?);
                let index = c.u64()?;
                let crc = c.u32()?;
                let encoding = c.u8()?;
                let encoding =
                    Encoding::try_from(encoding).map_err(|v| c.bad("encoding", v.into()))?;
                c.take(3)?;
                let data = c.rest();
                if data.len() > crate::MAX_BLOCK_SIZE as usize
                    || (encoding == Encoding::Zero && !data.is_empty())
                {
                    return Err(c.bad("data length", data.len() as u64));
                }
                Message::Block {
                    file,
                    index,
                    crc,
                    encoding,
                    data,
                }
            }
            MessageType::StreamDone => Message::StreamDone {
                blocks_sent: c.u64()?,
            },
            MessageType::Complete => Message::Complete { blocks: c.u64()? },
            MessageType::Error => {
                let code = ErrorCode::from_u16(c.u16()?);
                let len = c.buf.len().saturating_sub(2);
                let text = c.str(len, "text")?;
                Message::Error { code, text }
            }
            MessageType::Goodbye => Message::Goodbye,
        };
        c.end()?;
        Ok(msg)
    }

    /// Length of this message's payload in bytes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Message::Hello { agent, .. } => 6 + truncate_utf8(agent, MAX_AGENT_LEN).len(),
            Message::Entry { path, .. } => ENTRY_HEADER_LEN + path.len(),
            Message::ManifestEnd { .. } => 12,
            Message::Have { ranges, .. } => 8 + 16 * ranges.len(),
            Message::HaveEnd { .. } => 4,
            Message::Demand { .. } => 16,
            Message::Block { data, .. } => BLOCK_HEADER_LEN + data.len(),
            Message::StreamDone { .. } | Message::Complete { .. } => 8,
            Message::Error { text, .. } => 2 + text.len(),
            Message::Goodbye => 0,
        }
    }

    /// Append this message as one whole frame (header and payload) to `out`.
    ///
    /// The sender is responsible for the limits a receiver checks (path
    /// length, range count, block size): a message over them is still
    /// emitted, and the receiver refuses it with a clear error.
    ///
    /// A raw Block's data is not hashed here: its `crc` (the CRC-32 the
    /// sender computed once) is combined into the frame checksum. A `crc`
    /// that is not its data's CRC therefore yields a frame that fails its
    /// checksum. An LZ4 Block's `crc` is that of the block before
    /// compression, so the frame checksum hashes the compressed data (one
    /// pass over the smaller bytes); a zero Block's `crc` is that of its
    /// zeros, and its frame has no data to hash.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(frame::HEADER_LEN + self.buffer_len());
        let ty = self.message_type() as u8;
        match self {
            Message::Block {
                crc,
                encoding: Encoding::Raw,
                data,
                ..
            } => frame::emit_with_tail(out, ty, |o| self.emit_payload(o), data, *crc),
            Message::Block { data, .. } => frame::emit(out, ty, |o| {
                self.emit_payload(o);
                o.extend_from_slice(data);
            }),
            _ => frame::emit(out, ty, |o| self.emit_payload(o)),
        }
    }

    /// Like [`Message::emit`], but a raw Block's data is not copied: `out`
    /// gets the frame up to its data, and the data to write right after it
    /// is returned (empty for every other message).
    pub fn emit_split(&self, out: &mut Vec<u8>) -> &'a [u8] {
        match *self {
            Message::Block {
                crc,
                encoding: Encoding::Raw,
                data,
                ..
            } => {
                let ty = self.message_type() as u8;
                frame::emit_head(out, ty, |o| self.emit_payload(o), data.len(), crc);
                data
            }
            _ => {
                self.emit(out);
                &[]
            }
        }
    }

    /// This message as a new frame.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.emit(&mut v);
        v
    }

    fn emit_payload(&self, o: &mut Vec<u8>) {
        let u16le = |o: &mut Vec<u8>, v: u16| o.extend_from_slice(&v.to_le_bytes());
        let u32le = |o: &mut Vec<u8>, v: u32| o.extend_from_slice(&v.to_le_bytes());
        let u64le = |o: &mut Vec<u8>, v: u64| o.extend_from_slice(&v.to_le_bytes());
        match self {
            Message::Hello {
                role,
                min_version,
                max_version,
                agent,
            } => {
                let agent = truncate_utf8(agent, MAX_AGENT_LEN);
                o.extend_from_slice(&[*role as u8, *min_version, *max_version, 0]);
                u16le(o, agent.len() as u16);
                o.extend_from_slice(agent.as_bytes());
            }
            Message::Entry {
                id,
                kind,
                size,
                mode,
                block_size,
                identity,
                path,
            } => {
                u32le(o, id.0);
                o.extend_from_slice(&[*kind as u8, 0, 0, 0]);
                u64le(o, *size);
                u32le(o, *mode);
                u32le(o, *block_size);
                o.extend_from_slice(identity);
                u16le(o, path.len().min(u16::MAX as usize) as u16);
                o.extend_from_slice(path.as_bytes());
            }
            Message::ManifestEnd {
                entries,
                total_bytes,
            } => {
                u32le(o, *entries);
                u64le(o, *total_bytes);
            }
            Message::Have { file, ranges } => {
                u32le(o, file.0);
                u32le(o, ranges.len() as u32);
                for r in ranges {
                    u64le(o, r.first);
                    u64le(o, r.count);
                }
            }
            Message::HaveEnd { files } => u32le(o, *files),
            Message::Demand { file, first, count } => {
                u32le(o, file.0);
                u64le(o, *first);
                u32le(o, *count);
            }
            // The data follows, appended by `emit` (see there).
            Message::Block {
                file,
                index,
                crc,
                encoding,
                ..
            } => {
                u32le(o, file.0);
                u64le(o, *index);
                u32le(o, *crc);
                o.extend_from_slice(&[*encoding as u8, 0, 0, 0]);
            }
            Message::StreamDone { blocks_sent } => u64le(o, *blocks_sent),
            Message::Complete { blocks } => u64le(o, *blocks),
            Message::Error { code, text } => {
                u16le(o, code.to_u16());
                o.extend_from_slice(text.as_bytes());
            }
            Message::Goodbye => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Emit, check the payload against fixed bytes, parse back, compare.
    fn vector(msg: Message, ty: u8, payload: &[u8]) {
        let f = msg.to_frame();
        assert_eq!(f[5], ty, "type byte of {msg:?}");
        assert_eq!(&f[frame::HEADER_LEN..], payload, "payload of {msg:?}");
        assert_eq!(msg.buffer_len(), payload.len());
        let parsed = Message::parse(Frame::new_checked(&f[..]).unwrap()).unwrap();
        assert_eq!(parsed, msg);
    }

    #[test]
    fn fixed_vectors_and_round_trips() {
        vector(
            Message::Hello {
                role: Role::Device,
                min_version: 3,
                max_version: 3,
                agent: "fd",
            },
            0x01,
            &[2, 3, 3, 0, 2, 0, b'f', b'd'],
        );
        vector(
            Message::Entry {
                id: FileId(0x0102_0304),
                kind: EntryKind::File,
                size: 0x1_0000_0001,
                mode: 0o644,
                block_size: 65536,
                identity: [0xaa; 16],
                path: "d/f",
            },
            0x02,
            &[
                [4, 3, 2, 1].as_slice(),
                &[0, 0, 0, 0],
                &[1, 0, 0, 0, 1, 0, 0, 0],
                &[0xa4, 0x01, 0, 0],
                &[0, 0, 1, 0],
                &[0xaa; 16],
                &[3, 0],
                b"d/f",
            ]
            .concat(),
        );
        vector(
            Message::ManifestEnd {
                entries: 2,
                total_bytes: 300,
            },
            0x03,
            &[2, 0, 0, 0, 0x2c, 1, 0, 0, 0, 0, 0, 0],
        );
        vector(
            Message::Have {
                file: FileId(1),
                ranges: vec![BlockRange { first: 5, count: 2 }],
            },
            0x04,
            &[
                1, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
            ],
        );
        vector(Message::HaveEnd { files: 3 }, 0x05, &[3, 0, 0, 0]);
        vector(
            Message::Demand {
                file: FileId(2),
                first: 0x100,
                count: 4,
            },
            0x06,
            &[2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0],
        );
        vector(
            Message::Block {
                file: FileId(2),
                index: 7,
                crc: 0xeb8e_ba67,
                encoding: Encoding::Raw,
                data: b"xyz",
            },
            0x07,
            &[
                2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0x67, 0xba, 0x8e, 0xeb, 0, 0, 0, 0, b'x', b'y',
                b'z',
            ],
        );
        // "ab" 12 times (24 bytes) in LZ4: a token (2 literals, then a match
        // of 4 + 12 bytes), the literals, the match offset 2, then a token
        // for the last 6 literals and the literals.
        vector(
            Message::Block {
                file: FileId(2),
                index: 7,
                crc: 0xfaea_cfaa,
                encoding: Encoding::Lz4,
                data: &[
                    0x2c, b'a', b'b', 2, 0, 0x60, b'a', b'b', b'a', b'b', b'a', b'b',
                ],
            },
            0x07,
            &[
                2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xcf, 0xea, 0xfa, 1, 0, 0, 0, 0x2c, b'a',
                b'b', 2, 0, 0x60, b'a', b'b', b'a', b'b', b'a', b'b',
            ],
        );
        // A block of zeros: no data, its CRC that of its 4096 zeros.
        vector(
            Message::Block {
                file: FileId(2),
                index: 7,
                crc: 0xc71c_0011,
                encoding: Encoding::Zero,
                data: &[],
            },
            0x07,
            &[
                2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0x11, 0x00, 0x1c, 0xc7, 2, 0, 0, 0,
            ],
        );
        assert_eq!(crc32fast::hash(&[0; 4096]), 0xc71c_0011);
        let mut scratch = Vec::new();
        let lz4 = [
            0x2c, b'a', b'b', 2, 0, 0x60, b'a', b'b', b'a', b'b', b'a', b'b',
        ];
        let plain = decode_block(Encoding::Lz4, &lz4, 24, &mut scratch).unwrap();
        assert_eq!(plain, "ab".repeat(12).as_bytes());
        assert_eq!(crc32fast::hash(plain), 0xfaea_cfaa);
        assert_eq!(lz4_flex::block::compress(plain), lz4);
        vector(
            Message::StreamDone { blocks_sent: 9 },
            0x08,
            &[9, 0, 0, 0, 0, 0, 0, 0],
        );
        vector(
            Message::Complete { blocks: 10 },
            0x09,
            &[10, 0, 0, 0, 0, 0, 0, 0],
        );
        vector(
            Message::Error {
                code: ErrorCode::NoSpace,
                text: "full",
            },
            0x0a,
            &[5, 0, b'f', b'u', b'l', b'l'],
        );
        vector(Message::Goodbye, 0x0b, &[]);
    }

    /// The complete frames of docs/protocol.md, section 2.3, byte for byte.
    #[test]
    fn the_complete_frames_of_the_protocol_document() {
        let hex = |f: Vec<u8>| {
            f.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            hex(Message::Goodbye.to_frame()),
            "46 44 46 53 03 0b 00 00 00 00 00 00 5f e7 e9 96"
        );
        let hello = Message::Hello {
            role: Role::Host,
            min_version: 3,
            max_version: 3,
            agent: "fd",
        };
        assert_eq!(
            hex(hello.to_frame()),
            "46 44 46 53 03 01 00 00 08 00 00 00 ce fc 8a 89 01 03 03 00 02 00 66 64"
        );
        let raw = Message::Block {
            file: FileId(2),
            index: 7,
            crc: 0xeb8e_ba67,
            encoding: Encoding::Raw,
            data: b"xyz",
        };
        assert_eq!(
            hex(raw.to_frame()),
            "46 44 46 53 03 07 00 00 17 00 00 00 01 99 7e ea \
             02 00 00 00 07 00 00 00 00 00 00 00 67 ba 8e eb 00 00 00 00 78 79 7a"
        );
        let lz4 = Message::Block {
            file: FileId(2),
            index: 7,
            crc: 0xfaea_cfaa,
            encoding: Encoding::Lz4,
            data: &[
                0x2c, b'a', b'b', 2, 0, 0x60, b'a', b'b', b'a', b'b', b'a', b'b',
            ],
        };
        assert_eq!(
            hex(lz4.to_frame()),
            "46 44 46 53 03 07 00 00 20 00 00 00 61 65 6f 9f \
             02 00 00 00 07 00 00 00 00 00 00 00 aa cf ea fa 01 00 00 00 \
             2c 61 62 02 00 60 61 62 61 62 61 62"
        );
        let zero = Message::Block {
            file: FileId(2),
            index: 7,
            crc: 0xc71c_0011,
            encoding: Encoding::Zero,
            data: &[],
        };
        assert_eq!(
            hex(zero.to_frame()),
            "46 44 46 53 03 07 00 00 14 00 00 00 58 27 3d 11 \
             02 00 00 00 07 00 00 00 00 00 00 00 11 00 1c c7 02 00 00 00"
        );
    }

    fn parse_payload(ty: u8, payload: &[u8]) -> Result<(), ParseError> {
        let mut f = Vec::new();
        frame::emit(&mut f, ty, |o| o.extend_from_slice(payload));
        Message::parse(Frame::new_checked(&f[..]).unwrap()).map(|_| ())
    }

    #[test]
    fn malformed_payloads_are_clear_errors() {
        assert_eq!(
            parse_payload(0x06, &[1, 2, 3]),
            Err(ParseError::TooShort {
                ty: MessageType::Demand,
                need: 4,
                got: 3
            })
        );
        assert_eq!(
            parse_payload(0x05, &[1, 0, 0, 0, 9]),
            Err(ParseError::TrailingBytes {
                ty: MessageType::HaveEnd,
                extra: 1
            })
        );
        assert_eq!(
            parse_payload(0x01, &[9, 1, 1, 0, 0, 0]),
            Err(ParseError::BadValue {
                ty: MessageType::Hello,
                field: "role",
                value: 9
            })
        );
        let mut entry = vec![0u8; ENTRY_HEADER_LEN];
        entry[40] = 2;
        entry.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(
            parse_payload(0x02, &entry),
            Err(ParseError::BadUtf8 {
                ty: MessageType::Entry,
                field: "path"
            })
        );
        // A range count that claims more than the payload holds fails before allocating.
        assert_eq!(
            parse_payload(0x04, &[0, 0, 0, 0, 0xff, 0xff, 0, 0]),
            Err(ParseError::TooShort {
                ty: MessageType::Have,
                need: 8 + 16 * 0xffff,
                got: 8
            })
        );
        let block_with = |encoding: u8| {
            let mut p = vec![0u8; BLOCK_HEADER_LEN];
            p[BLOCK_ENCODING_OFFSET] = encoding;
            parse_payload(0x07, &p)
        };
        assert_eq!(block_with(0), Ok(()));
        assert_eq!(block_with(1), Ok(()));
        assert_eq!(block_with(2), Ok(()));
        for v in [3u8, 0x80, 0xff] {
            assert_eq!(
                block_with(v),
                Err(ParseError::BadValue {
                    ty: MessageType::Block,
                    field: "encoding",
                    value: v.into()
                })
            );
        }
        // A zero block carries no data.
        let mut zero_with_data = vec![0u8; BLOCK_HEADER_LEN];
        zero_with_data[BLOCK_ENCODING_OFFSET] = Encoding::Zero as u8;
        zero_with_data.push(0);
        assert_eq!(
            parse_payload(0x07, &zero_with_data),
            Err(ParseError::BadValue {
                ty: MessageType::Block,
                field: "data length",
                value: 1
            })
        );
        assert_eq!(
            parse_payload(0x7f, &[]),
            Err(ParseError::Frame(frame::FrameError::UnknownType(0x7f)))
        );
    }

    #[test]
    fn a_block_is_hashed_once_and_a_false_crc_cannot_pass() {
        let data = vec![0x5au8; 65536];
        let good = Message::Block {
            file: FileId(1),
            index: 3,
            crc: crc32fast::hash(&data),
            encoding: Encoding::Raw,
            data: &data,
        };
        let f = good.to_frame();
        // The frame checksum is the same as hashing header and payload in a row.
        let whole = crc32fast::hash(&[&f[..12], &f[16..]].concat());
        assert_eq!(u32::from_le_bytes(f[12..16].try_into().unwrap()), whole);
        let checked = Frame::new_checked(&f[..]).unwrap();
        assert_eq!(checked.data_crc(), Some(crc32fast::hash(&data)));
        let mut d = crate::Decoder::new();
        d.feed(&f);
        let r = d.next_frame().unwrap().unwrap();
        assert_eq!(d.frame(r).data_crc(), Some(crc32fast::hash(&data)));
        assert_eq!(Message::parse(d.frame(r)).unwrap(), good);

        let lie = Message::Block {
            file: FileId(1),
            index: 3,
            crc: 42,
            encoding: Encoding::Raw,
            data: &data,
        }
        .to_frame();
        assert!(matches!(
            Frame::new_checked(&lie[..]),
            Err(frame::FrameError::BadChecksum { .. })
        ));
        assert_eq!(
            Frame::new_checked(&Message::Goodbye.to_frame()[..])
                .unwrap()
                .data_crc(),
            None
        );
    }

    #[test]
    fn an_lz4_block_round_trips_and_its_crc_is_of_the_plain_bytes() {
        let plain: Vec<u8> = (0..65536u32).map(|i| (i / 100) as u8).collect();
        let packed = lz4_flex::block::compress(&plain);
        assert!(packed.len() < plain.len() / 10, "{} bytes", packed.len());
        let msg = Message::Block {
            file: FileId(4),
            index: 9,
            crc: crc32fast::hash(&plain),
            encoding: Encoding::Lz4,
            data: &packed,
        };
        let f = msg.to_frame();
        assert_eq!(f.len(), frame::HEADER_LEN + BLOCK_HEADER_LEN + packed.len());
        // The frame checksum covers the compressed bytes as sent.
        let whole = crc32fast::hash(&[&f[..12], &f[16..]].concat());
        assert_eq!(u32::from_le_bytes(f[12..16].try_into().unwrap()), whole);
        // The frame's data CRC is only offered for raw data: here it would
        // be the CRC of the compressed bytes, not the block's.
        let checked = Frame::new_checked(&f[..]).unwrap();
        assert_eq!(checked.data_crc(), None);
        let mut d = crate::Decoder::new();
        d.feed(&f);
        let r = d.next_frame().unwrap().unwrap();
        assert_eq!(d.frame(r).data_crc(), None);
        let parsed = Message::parse(checked).unwrap();
        assert_eq!(parsed, msg);
        let Message::Block {
            crc,
            encoding,
            data,
            ..
        } = parsed
        else {
            unreachable!()
        };
        let mut scratch = Vec::new();
        let out = decode_block(encoding, data, plain.len(), &mut scratch).unwrap();
        assert_eq!(out, &plain[..]);
        assert_eq!(crc32fast::hash(out), crc);
        // The scratch buffer is reused: a second decode does not allocate.
        let cap = scratch.capacity();
        decode_block(encoding, data, plain.len(), &mut scratch).unwrap();
        assert_eq!(scratch.capacity(), cap);
    }

    #[test]
    fn damaged_or_mis_sized_lz4_data_is_refused_within_bounds() {
        let plain: Vec<u8> = (0..4096u32).map(|i| (i % 7) as u8).collect();
        let packed = lz4_flex::block::compress(&plain);
        let mut scratch = Vec::new();
        assert_eq!(
            decode_block(Encoding::Raw, b"as is", 99, &mut scratch),
            Ok(&b"as is"[..])
        );
        assert!(scratch.is_empty(), "raw data is not copied");
        // Expecting more than the data holds: a length error.
        assert_eq!(
            decode_block(Encoding::Lz4, &packed, 8192, &mut scratch),
            Err(DecodeError::Length {
                got: 4096,
                expected: 8192
            })
        );
        // Expecting less: decoding stops at the bound, never writes past it.
        assert!(matches!(
            decode_block(Encoding::Lz4, &packed, 100, &mut scratch),
            Err(DecodeError::Damaged(_))
        ));
        assert_eq!(scratch.len(), 100);
        // A length on the wire cannot make it allocate: the bound is the caller's, capped.
        decode_block(Encoding::Lz4, &packed, usize::MAX, &mut scratch).unwrap_err();
        assert_eq!(scratch.len(), crate::MAX_BLOCK_SIZE as usize);
        // Damaged data: a match offset pointing before the start, or data cut short.
        assert!(matches!(
            decode_block(Encoding::Lz4, &[0x0f, 0xff, 0xff], 4096, &mut scratch),
            Err(DecodeError::Damaged(_))
        ));
        let cut = &packed[..packed.len() / 2];
        assert!(decode_block(Encoding::Lz4, cut, 4096, &mut scratch).is_err());
        assert!(decode_block(Encoding::Lz4, &[], 4096, &mut scratch).is_err());
        // Every single-byte change is caught here or, failing that, by the block CRC.
        let crc = crc32fast::hash(&plain);
        for i in 0..packed.len() {
            let mut bad = packed.clone();
            bad[i] ^= 0x5a;
            if let Ok(out) = decode_block(Encoding::Lz4, &bad, 4096, &mut scratch) {
                assert_ne!(crc32fast::hash(out), crc, "byte {i}");
            }
        }
    }

    #[test]
    fn zero_blocks_are_found_and_decode_to_the_manifest_length() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 65536]));
        assert!(is_zero(&[0; 1000]), "a short last block");
        // A single set bit anywhere, in a whole chunk or in the tail.
        for at in [0, 63, 64, 4095, 65535] {
            let mut b = vec![0u8; 65536];
            b[at] = 0x80;
            assert!(!is_zero(&b), "byte {at}");
        }
        let mut tail = vec![0u8; 1000];
        tail[999] = 1;
        assert!(!is_zero(&tail));

        // Decoding reuses the scratch buffer and clears what an LZ4 block left there.
        let mut scratch = vec![0x5a; 8192];
        assert_eq!(
            decode_block(Encoding::Zero, &[], 4096, &mut scratch),
            Ok(&[0u8; 4096][..])
        );
        assert_eq!(
            decode_block(Encoding::Zero, &[0], 4096, &mut scratch),
            Err(DecodeError::ZeroWithData(1))
        );
        // The length is the caller's, capped.
        let n = decode_block(Encoding::Zero, &[], usize::MAX, &mut scratch)
            .unwrap()
            .len();
        assert_eq!(n, crate::MAX_BLOCK_SIZE as usize);
        // The frame: header and the 20-byte block header, nothing else.
        let f = Message::Block {
            file: FileId(0),
            index: 1,
            crc: crc32fast::hash(&[0; 65536]),
            encoding: Encoding::Zero,
            data: &[],
        }
        .to_frame();
        assert_eq!(f.len(), frame::HEADER_LEN + BLOCK_HEADER_LEN);
        assert_eq!(Frame::new_checked(&f[..]).unwrap().data_crc(), None);
    }

    #[test]
    fn long_agent_is_cut_on_a_char_boundary() {
        let agent = "é".repeat(200);
        let f = Message::Hello {
            role: Role::Host,
            min_version: 1,
            max_version: 1,
            agent: &agent,
        }
        .to_frame();
        match Message::parse(Frame::new_checked(&f[..]).unwrap()).unwrap() {
            Message::Hello { agent: a, .. } => assert_eq!(a.len(), 256),
            m => panic!("{m:?}"),
        }
    }
}
