//! [`OwnedMessage`]: a [`Message`] that owns its strings and data, to keep
//! or to pass to another thread, and its way back to a [`Message`] to emit.
//!
//! It has the same variants and fields as [`Message`], with `String` and
//! `Vec<u8>` where a parsed message borrows from its frame. Converting
//! either way keeps every field, so a message emitted from its owned form is
//! the same frame, byte for byte, as emitted from the message it came from.

use super::{
    Encoding, EntryKind, ErrorCode, FileId, Message, MessageType, Mtime, PageCrcs, PageRange, Role,
};

/// One message that owns what it carries (see [`Message`] for each variant's
/// meaning). Made by [`Message::to_owned`] or [`Message::into_owned`];
/// [`OwnedMessage::as_message`] borrows it back as a [`Message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedMessage {
    Hello {
        role: Role,
        min_version: u8,
        max_version: u8,
        agent: String,
    },
    Entry {
        id: FileId,
        kind: EntryKind,
        size: u64,
        mode: u32,
        mtime: Mtime,
        identity: [u8; 16],
        path: String,
        target: String,
    },
    ManifestEnd {
        entries: u32,
        total_bytes: u64,
    },
    Have {
        file: FileId,
        ranges: Vec<PageRange>,
    },
    HaveEnd {
        files: u32,
    },
    Demand {
        file: FileId,
        first: u64,
        count: u32,
        again: bool,
    },
    /// `crcs` is the CRC table as on the wire (see [`PageCrcs`]).
    Run {
        file: FileId,
        first: u64,
        count: u32,
        encoding: Encoding,
        crcs: Vec<u8>,
        data: Vec<u8>,
    },
    StreamDone {
        pages_sent: u64,
    },
    Complete {
        pages: u64,
    },
    Error {
        code: ErrorCode,
        text: String,
    },
    Goodbye,
}

impl Message<'_> {
    /// This message with its strings and data copied, to keep past its frame.
    pub fn to_owned(&self) -> OwnedMessage {
        self.clone().into_owned()
    }

    /// This message with its strings and data copied; a `Have`'s ranges are
    /// moved, not copied.
    pub fn into_owned(self) -> OwnedMessage {
        match self {
            Message::Hello {
                role,
                min_version,
                max_version,
                agent,
            } => OwnedMessage::Hello {
                role,
                min_version,
                max_version,
                agent: agent.to_string(),
            },
            Message::Entry {
                id,
                kind,
                size,
                mode,
                mtime,
                identity,
                path,
                target,
            } => OwnedMessage::Entry {
                id,
                kind,
                size,
                mode,
                mtime,
                identity,
                path: path.to_string(),
                target: target.to_string(),
            },
            Message::ManifestEnd {
                entries,
                total_bytes,
            } => OwnedMessage::ManifestEnd {
                entries,
                total_bytes,
            },
            Message::Have { file, ranges } => OwnedMessage::Have { file, ranges },
            Message::HaveEnd { files } => OwnedMessage::HaveEnd { files },
            Message::Demand {
                file,
                first,
                count,
                again,
            } => OwnedMessage::Demand {
                file,
                first,
                count,
                again,
            },
            Message::Run {
                file,
                first,
                count,
                encoding,
                crcs,
                data,
            } => OwnedMessage::Run {
                file,
                first,
                count,
                encoding,
                crcs: crcs.as_bytes().to_vec(),
                data: data.to_vec(),
            },
            Message::StreamDone { pages_sent } => OwnedMessage::StreamDone { pages_sent },
            Message::Complete { pages } => OwnedMessage::Complete { pages },
            Message::Error { code, text } => OwnedMessage::Error {
                code,
                text: text.to_string(),
            },
            Message::Goodbye => OwnedMessage::Goodbye,
        }
    }
}

impl From<Message<'_>> for OwnedMessage {
    fn from(m: Message<'_>) -> Self {
        m.into_owned()
    }
}

impl OwnedMessage {
    /// This message borrowed as a [`Message`], to emit it or to match on it
    /// with code written for parsed messages. A `Have`'s ranges are copied
    /// (a [`Message::Have`] owns its list).
    pub fn as_message(&self) -> Message<'_> {
        match self {
            OwnedMessage::Hello {
                role,
                min_version,
                max_version,
                agent,
            } => Message::Hello {
                role: *role,
                min_version: *min_version,
                max_version: *max_version,
                agent,
            },
            OwnedMessage::Entry {
                id,
                kind,
                size,
                mode,
                mtime,
                identity,
                path,
                target,
            } => Message::Entry {
                id: *id,
                kind: *kind,
                size: *size,
                mode: *mode,
                mtime: *mtime,
                identity: *identity,
                path,
                target,
            },
            OwnedMessage::ManifestEnd {
                entries,
                total_bytes,
            } => Message::ManifestEnd {
                entries: *entries,
                total_bytes: *total_bytes,
            },
            OwnedMessage::Have { file, ranges } => Message::Have {
                file: *file,
                ranges: ranges.clone(),
            },
            OwnedMessage::HaveEnd { files } => Message::HaveEnd { files: *files },
            OwnedMessage::Demand {
                file,
                first,
                count,
                again,
            } => Message::Demand {
                file: *file,
                first: *first,
                count: *count,
                again: *again,
            },
            OwnedMessage::Run {
                file,
                first,
                count,
                encoding,
                crcs,
                data,
            } => Message::Run {
                file: *file,
                first: *first,
                count: *count,
                encoding: *encoding,
                // A table of another length than a multiple of 4 is cut to
                // whole CRCs: only tests build one by hand.
                crcs: PageCrcs::new(&crcs[..crcs.len() / 4 * 4]).expect("whole CRCs"),
                data,
            },
            OwnedMessage::StreamDone { pages_sent } => Message::StreamDone {
                pages_sent: *pages_sent,
            },
            OwnedMessage::Complete { pages } => Message::Complete { pages: *pages },
            OwnedMessage::Error { code, text } => Message::Error { code: *code, text },
            OwnedMessage::Goodbye => Message::Goodbye,
        }
    }

    /// The type code of this message.
    pub fn message_type(&self) -> MessageType {
        match self {
            OwnedMessage::Hello { .. } => MessageType::Hello,
            OwnedMessage::Entry { .. } => MessageType::Entry,
            OwnedMessage::ManifestEnd { .. } => MessageType::ManifestEnd,
            OwnedMessage::Have { .. } => MessageType::Have,
            OwnedMessage::HaveEnd { .. } => MessageType::HaveEnd,
            OwnedMessage::Demand { .. } => MessageType::Demand,
            OwnedMessage::Run { .. } => MessageType::Run,
            OwnedMessage::StreamDone { .. } => MessageType::StreamDone,
            OwnedMessage::Complete { .. } => MessageType::Complete,
            OwnedMessage::Error { .. } => MessageType::Error,
            OwnedMessage::Goodbye => MessageType::Goodbye,
        }
    }

    /// Append this message as one whole frame to `out` ([`Message::emit`]).
    pub fn emit(&self, out: &mut Vec<u8>) {
        self.as_message().emit(out)
    }

    /// This message as a new frame.
    pub fn to_frame(&self) -> Vec<u8> {
        self.as_message().to_frame()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;

    /// One message of every type, and every Run encoding.
    fn one_of_each() -> Vec<Message<'static>> {
        vec![
            Message::Hello {
                role: Role::Device,
                min_version: 2,
                max_version: 3,
                agent: "feedfs-device 9.9",
            },
            Message::Entry {
                id: FileId(7),
                kind: EntryKind::File,
                size: 1 << 33,
                mode: 0o640,
                mtime: Mtime {
                    sec: 1_700_000_000,
                    nsec: 999_999_999,
                },
                identity: [0x11; 16],
                path: "dir/é.bin",
                target: "",
            },
            Message::Entry {
                id: FileId(1),
                kind: EntryKind::Symlink,
                size: 0,
                mode: 0o777,
                mtime: Mtime { sec: -1, nsec: 5 },
                identity: [0; 16],
                path: "dir/link",
                target: "é.bin",
            },
            Message::Entry {
                id: FileId(0),
                kind: EntryKind::Dir,
                size: 0,
                mode: 0o755,
                mtime: Mtime::default(),
                identity: [0; 16],
                path: "dir",
                target: "",
            },
            Message::ManifestEnd {
                entries: 2,
                total_bytes: 1 << 33,
            },
            Message::Have {
                file: FileId(7),
                ranges: vec![
                    PageRange { first: 0, count: 3 },
                    PageRange {
                        first: 10,
                        count: u64::MAX - 10,
                    },
                ],
            },
            Message::Have {
                file: FileId(8),
                ranges: vec![],
            },
            Message::HaveEnd { files: 2 },
            Message::Demand {
                file: FileId(7),
                first: 5,
                count: u32::MAX,
                again: true,
            },
            Message::Run {
                file: FileId(7),
                first: 1,
                count: 1,
                encoding: Encoding::Raw,
                crcs: PageCrcs::new(&[0x5e, 0x1f, 0x58, 0x61]).unwrap(),
                data: b"raw bytes",
            },
            Message::Run {
                file: FileId(7),
                first: 2,
                count: 1,
                encoding: Encoding::Lz4,
                crcs: PageCrcs::new(&[0xaa, 0xcf, 0xea, 0xfa]).unwrap(),
                data: &[
                    0x2c, b'a', b'b', 2, 0, 0x60, b'a', b'b', b'a', b'b', b'a', b'b',
                ],
            },
            Message::Run {
                file: FileId(7),
                first: 3,
                count: 256,
                encoding: Encoding::Zero,
                crcs: PageCrcs::default(),
                data: &[],
            },
            Message::StreamDone { pages_sent: 12 },
            Message::Complete { pages: 13 },
            Message::Error {
                code: ErrorCode::Unknown(77),
                text: "out of luck",
            },
            Message::Error {
                code: ErrorCode::Version,
                text: "",
            },
            Message::Goodbye,
        ]
    }

    #[test]
    fn the_samples_cover_every_message_type() {
        let mut seen: Vec<u8> = one_of_each()
            .iter()
            .map(|m| m.message_type() as u8)
            .collect();
        seen.dedup();
        assert_eq!(seen, (0x01..=0x0b).collect::<Vec<u8>>());
    }

    #[test]
    fn every_message_round_trips_through_its_owned_form() {
        for msg in one_of_each() {
            let owned = msg.to_owned();
            assert_eq!(owned.as_message(), msg);
            assert_eq!(owned.message_type(), msg.message_type());
            assert_eq!(msg.clone().into_owned(), owned);
            assert_eq!(OwnedMessage::from(msg.clone()), owned);
        }
    }

    #[test]
    fn an_owned_message_emits_the_same_frame_and_parses_back_to_itself() {
        for msg in one_of_each() {
            let owned = msg.to_owned();
            let f = owned.to_frame();
            assert_eq!(f, msg.to_frame(), "frame of {msg:?}");
            let mut appended = vec![0xee];
            owned.emit(&mut appended);
            assert_eq!(&appended[1..], &f[..]);
            let parsed = Message::parse(Frame::new_checked(&f[..]).unwrap()).unwrap();
            assert_eq!(parsed.into_owned(), owned);
        }
    }

    #[test]
    fn an_owned_message_outlives_its_frame() {
        let owned = {
            let f = Message::Error {
                code: ErrorCode::Store,
                text: "disk gone",
            }
            .to_frame();
            Message::parse(Frame::new_checked(&f[..]).unwrap())
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            owned,
            OwnedMessage::Error {
                code: ErrorCode::Store,
                text: "disk gone".to_string()
            }
        );
        // And it can cross to another thread.
        let back = std::thread::spawn(move || owned).join().unwrap();
        assert_eq!(back.message_type(), MessageType::Error);
    }
}
