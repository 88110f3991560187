//! Parsing: a checked frame's payload to a [`Message`], every length
//! checked before it is read (no panic, no allocation beyond the payload).

use byteorder::{ByteOrder, LittleEndian as LE};

use super::{
    Encoding, EntryKind, ErrorCode, FileId, Message, MessageType, Mtime, PageCrcs, PageRange,
    ParseError, Role, HASH_CRC32, MAX_AGENT_LEN, MAX_PATH_LEN, MAX_RANGES_PER_HAVE,
};
use crate::frame::{self, Frame};

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
                    2 => EntryKind::Symlink,
                    v => return Err(c.bad("kind", v.into())),
                };
                c.take(3)?;
                let size = c.u64()?;
                let mode = c.u32()?;
                let nsec = c.u32()?;
                if nsec >= Mtime::NANOS {
                    return Err(c.bad("mtime", nsec.into()));
                }
                let sec = c.u64()? as i64;
                let mut identity = [0u8; 16];
                identity.copy_from_slice(c.take(16)?);
                let len = c.u16()? as usize;
                if len > MAX_PATH_LEN {
                    return Err(c.bad("path length", len as u64));
                }
                let target_len = c.u16()? as usize;
                // Which kinds carry a target is the manifest's to check
                // (`ManifestError::TargetOfNonLink`, `LinkOutside`).
                if target_len > MAX_PATH_LEN {
                    return Err(c.bad("target length", target_len as u64));
                }
                let path = c.str(len, "path")?;
                let target = c.str(target_len, "target")?;
                Message::Entry {
                    id,
                    kind,
                    size,
                    mode,
                    mtime: Mtime { sec, nsec },
                    identity,
                    path,
                    target,
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
                    ranges.push(PageRange { first, count });
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
                let again = match c.u8()? {
                    0 => false,
                    1 => true,
                    v => return Err(c.bad("flags", v.into())),
                };
                c.take(3)?;
                Message::Demand {
                    file,
                    first,
                    count,
                    again,
                }
            }
            MessageType::Run => {
                let file = FileId(c.u32()?);
                let first = c.u64()?;
                let count = c.u32()?;
                if count == 0
                    || count > crate::MAX_RUN_PAGES
                    || first.checked_add(u64::from(count)).is_none()
                {
                    return Err(c.bad("count", count.into()));
                }
                let encoding = c.u8()?;
                let encoding =
                    Encoding::try_from(encoding).map_err(|v| c.bad("encoding", v.into()))?;
                let hash = c.u8()?;
                if hash != HASH_CRC32 {
                    return Err(c.bad("hash", hash.into()));
                }
                c.take(2)?;
                let table = if encoding == Encoding::Zero {
                    0
                } else {
                    4 * count as usize
                };
                let crcs = PageCrcs::new(c.take(table)?).expect("a multiple of 4");
                let data = c.rest();
                let most = count as usize * crate::PAGE_SIZE as usize;
                let fits = match encoding {
                    // Whole pages, but for a short last page of the file.
                    Encoding::Raw => {
                        data.len() > most - crate::PAGE_SIZE as usize && data.len() <= most
                    }
                    Encoding::Lz4 => !data.is_empty() && data.len() <= most,
                    Encoding::Zero => data.is_empty(),
                };
                if !fits {
                    return Err(c.bad("data length", data.len() as u64));
                }
                Message::Run {
                    file,
                    first,
                    count,
                    encoding,
                    crcs,
                    data,
                }
            }
            MessageType::StreamDone => Message::StreamDone {
                pages_sent: c.u64()?,
            },
            MessageType::Complete => Message::Complete { pages: c.u64()? },
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
}
