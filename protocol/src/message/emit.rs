//! Emission: a [`Message`] appended to a buffer as one whole frame, a raw
//! Block's data hashed once (its `crc` is combined into the frame checksum).

use super::{truncate_utf8, Encoding, Message, MAX_AGENT_LEN};
use crate::frame;

impl<'a> Message<'a> {
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
