//! The device's session driven message by message, with no link, no
//! threads and no store: what it answers is read back as text.

use super::*;
use feedfs_protocol::message::{crc_table, Encoding};
use feedfs_protocol::{EntryKind, ErrorCode, Mtime, PageCrcs, VERSION};

mod handshake;
mod stream;

const AGENT: &str = "feedfs-device test";
/// Our Hello, as the host reads it.
const OUR_HELLO: &str =
    "send Hello { role: Device, min_version: 4, max_version: 4, agent: \"feedfs-device test\" }";

/// Files (`None`: a directory's id), `present` pages held.
struct Files {
    sizes: Vec<Option<u64>>,
    present: u64,
}

impl Pages for Files {
    fn present_pages(&self) -> u64 {
        self.present
    }
    fn run_len(&self, file: FileId, first: u64, count: u64) -> Result<usize, LandError> {
        let size = self
            .sizes
            .get(file.0 as usize)
            .copied()
            .flatten()
            .ok_or(LandError::NoSuchFile(file))?;
        let pages = feedfs_protocol::page_count(size);
        if first + count > pages {
            return Err(LandError::PastEnd {
                file,
                first,
                count,
                pages,
            });
        }
        Ok(feedfs_protocol::run_len(size, first, count))
    }
}

/// Bytes of the one file: two whole pages and a short one of 1808 bytes.
const SIZE: u64 = 10_000;

/// One file of [`SIZE`] bytes, `present` pages held.
fn one_file(present: u64) -> Files {
    Files {
        sizes: vec![Some(SIZE)],
        present,
    }
}

fn msg(msg: Message) -> Input {
    Input::Message(msg)
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
        mtime: Mtime {
            sec: 1_700_000_000,
            nsec: 0,
        },
        identity: [7; 16],
        path,
        target: "",
    })
}

fn manifest_end(entries: u32, total_bytes: u64) -> Input<'static> {
    msg(Message::ManifestEnd {
        entries,
        total_bytes,
    })
}

/// A Run of `count` pages of file 0 from `first`, with the CRC table
/// `table` (see [`crc_table`]).
fn run<'a>(
    first: u64,
    count: u32,
    encoding: Encoding,
    table: &'a [u8],
    data: &'a [u8],
) -> Input<'a> {
    msg(Message::Run {
        file: FileId(0),
        first,
        count,
        encoding,
        crcs: PageCrcs::new(table).expect("whole CRCs"),
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
            Action::StartPages => "start pages".into(),
            Action::Redemand { file, first, count } => {
                format!("demand {count} from {first} of {file} again")
            }
            Action::DemandMissing => "demand the missing".into(),
            Action::StopPages => "stop pages".into(),
            Action::End(Ok(())) => "end".into(),
            Action::End(Err(e)) => format!("end: {e}"),
        })
        .collect()
}

/// A run the session passed to the Core, owned.
#[derive(Debug, PartialEq, Eq)]
struct Passed {
    first: u64,
    crcs: Vec<u32>,
    /// `None`: a run of zeros.
    data: Option<Vec<u8>>,
    good: Vec<bool>,
}

/// Feed one input; the run it passes.
fn feed(s: &mut Session, input: Input, files: &Files) -> Option<Passed> {
    s.handle(Instant::now(), input, files).map(|c| Passed {
        first: c.first,
        crcs: c.crcs.to_vec(),
        data: c.data.map(<[u8]>::to_vec),
        good: c.good.to_vec(),
    })
}

/// A session whose host said Hello and sent a manifest of one file of
/// [`SIZE`] bytes, attached with nothing held: runs flow.
fn streaming(files: &Files) -> Session {
    let mut s = Session::new(AGENT);
    feed(&mut s, host_hello(), files);
    feed(&mut s, entry(0, "f", SIZE), files);
    feed(&mut s, manifest_end(1, SIZE), files);
    s.attached(Vec::new(), files.present);
    said(&mut s);
    s
}
