//! The device's session driven message by message, with no link, no
//! threads and no store: what it answers is read back as text.

use super::*;
use feedfs_protocol::message::Encoding;
use feedfs_protocol::{EntryKind, ErrorCode, VERSION};

mod handshake;
mod stream;

const AGENT: &str = "feedfs-device test";
/// Our Hello, as the host reads it.
const OUR_HELLO: &str =
    "send Hello { role: Device, min_version: 3, max_version: 3, agent: \"feedfs-device test\" }";

/// Files of 4 KiB blocks (`None`: a directory's id), `present` blocks held.
struct Files {
    sizes: Vec<Option<u64>>,
    present: u64,
}

impl Blocks for Files {
    fn present_blocks(&self) -> u64 {
        self.present
    }
    fn block_len(&self, file: FileId, index: u64) -> Result<usize, LandError> {
        let size = self
            .sizes
            .get(file.0 as usize)
            .copied()
            .flatten()
            .ok_or(LandError::NoSuchFile(file))?;
        let blocks = feedfs_protocol::block_count(size, 4096);
        if index >= blocks {
            return Err(LandError::PastEnd {
                file,
                index,
                blocks,
            });
        }
        Ok(feedfs_protocol::block_len(size, 4096, index))
    }
}

/// One file of 6000 bytes: a whole block and a short one of 1904 bytes.
fn one_file(present: u64) -> Files {
    Files {
        sizes: vec![Some(6000)],
        present,
    }
}

fn msg(msg: Message) -> Input {
    Input::Message {
        msg,
        data_crc: None,
    }
}

fn hello(role: Role, min_version: u8, max_version: u8) -> Input<'static> {
    msg(Message::Hello {
        role,
        min_version,
        max_version,
        agent: "feedfs-host test",
    })
}

fn host_hello() -> Input<'static> {
    hello(Role::Host, VERSION, VERSION)
}

fn entry(id: u32, path: &str, size: u64) -> Input<'_> {
    msg(Message::Entry {
        id: FileId(id),
        kind: EntryKind::File,
        size,
        mode: 0o644,
        block_size: 4096,
        identity: [7; 16],
        path,
    })
}

fn manifest_end(entries: u32, total_bytes: u64) -> Input<'static> {
    msg(Message::ManifestEnd {
        entries,
        total_bytes,
    })
}

fn block(index: u64, crc: u32, encoding: Encoding, data: &[u8]) -> Input<'_> {
    msg(Message::Block {
        file: FileId(0),
        index,
        crc,
        encoding,
        data,
    })
}

fn damaged() -> FrameError {
    FrameError::BadChecksum {
        expected: 1,
        actual: 2,
    }
}

/// What the session says to do, in order, as text (frames decoded).
fn said(s: &mut Session) -> Vec<String> {
    std::iter::from_fn(|| s.next_action())
        .map(|a| match a {
            Action::Send(m) => format!("send {m:?}"),
            Action::Attach(m) => format!(
                "attach {} entries, {} bytes",
                m.host_entries(),
                m.total_bytes()
            ),
            Action::StartBlocks => "start blocks".into(),
            Action::Redemand { file, index } => format!("demand {index} of {file} again"),
            Action::DemandMissing => "demand the missing".into(),
            Action::StopBlocks => "stop blocks".into(),
            Action::End(Ok(())) => "end".into(),
            Action::End(Err(e)) => format!("end: {e}"),
        })
        .collect()
}

/// Feed one input; the block it passes, as (index, bytes).
fn feed(s: &mut Session, input: Input, files: &Files) -> Option<(u64, Vec<u8>)> {
    s.handle(Instant::now(), input, files)
        .map(|c| (c.index, c.data.to_vec()))
}

/// A session whose host said Hello and sent a manifest of one 6000-byte
/// file, attached with nothing held: blocks flow.
fn streaming(files: &Files) -> Session {
    let mut s = Session::new(AGENT);
    feed(&mut s, host_hello(), files);
    feed(&mut s, entry(0, "f", 6000), files);
    feed(&mut s, manifest_end(1, 6000), files);
    s.attached(Vec::new(), files.present);
    said(&mut s);
    s
}
