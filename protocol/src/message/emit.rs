//! Emission: a [`Message`] appended to a buffer as one whole frame; a Run's
//! data is not hashed here (its pages' CRCs, which the caller computed
//! once, cover it, and the frame checksum covers them).

use super::{truncate_utf8, Message, MAX_AGENT_LEN};
use crate::frame;

impl<'a> Message<'a> {
    /// Append this message as one whole frame (header and payload) to `out`.
    ///
    /// The sender is responsible for the limits a receiver checks (path
    /// length, range count, run length): a message over them is still
    /// emitted, and the receiver refuses it with a clear error. A Run's
    /// `crcs` are not checked against its data here: a wrong one makes the
    /// receiver drop that page and demand it again.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(frame::HEADER_LEN + self.buffer_len());
        let ty = self.message_type() as u8;
        match self {
            Message::Run { data, .. } => frame::emit(out, ty, |o| {
                self.emit_payload(o);
                o.extend_from_slice(data);
            }),
            _ => frame::emit(out, ty, |o| self.emit_payload(o)),
        }
    }

    /// Like [`Message::emit`], but a Run's data is not copied: `out` gets
    /// the frame up to its data, and the data to write right after it is
    /// returned (empty for every other message).
    pub fn emit_split(&self, out: &mut Vec<u8>) -> &'a [u8] {
        match *self {
            Message::Run { data, .. } => {
                let ty = self.message_type() as u8;
                frame::emit_head(out, ty, |o| self.emit_payload(o), data.len());
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
                mtime,
                identity,
                path,
                target,
            } => {
                u32le(o, id.0);
                o.extend_from_slice(&[*kind as u8, 0, 0, 0]);
                u64le(o, *size);
                u32le(o, *mode);
                u32le(o, mtime.nsec);
                u64le(o, mtime.sec as u64);
                o.extend_from_slice(identity);
                u16le(o, path.len().min(u16::MAX as usize) as u16);
                u16le(o, target.len().min(u16::MAX as usize) as u16);
                o.extend_from_slice(path.as_bytes());
                o.extend_from_slice(target.as_bytes());
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
            Message::Demand {
                file,
                first,
                count,
                again,
            } => {
                u32le(o, file.0);
                u64le(o, *first);
                u32le(o, *count);
                o.extend_from_slice(&[u8::from(*again), 0, 0, 0]);
            }
            // The data follows, appended by `emit` (see there).
            Message::Run {
                file,
                first,
                count,
                encoding,
                crcs,
                ..
            } => {
                u32le(o, file.0);
                u64le(o, *first);
                u32le(o, *count);
                o.extend_from_slice(&[*encoding as u8, super::HASH_CRC32, 0, 0]);
                o.extend_from_slice(crcs.as_bytes());
            }
            Message::StreamDone { pages_sent } => u64le(o, *pages_sent),
            Message::Complete { pages } => u64le(o, *pages),
            Message::Error { code, text } => {
                u16le(o, code.to_u16());
                o.extend_from_slice(text.as_bytes());
            }
            Message::Goodbye => {}
        }
    }
}
