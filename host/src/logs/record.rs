//! The `--record` file: a text log of what the host sent and why, for tests
//! and for tuning.
//!
//! One event per line, fields separated by tabs, after a version line:
//!
//! ```text
//! # feedfs-host record v3
//! file    <id> <size> <path> <identity>          one per file, before the session
//! have    <t_us> <file_id> <pages>               the device already holds these
//! demand  <t_us> <file_id> <first> <count>       a Demand message arrived (pages)
//! sent    <t_us> <file_id> <first> <count> <kind> <stream_sent>   a run went out
//! done    <t_us> <pages_sent>                    the device reported Complete
//! ```
//!
//! Every count is of 4 KiB pages. `t_us` is microseconds since the push
//! started; `identity` is the file's content identity in 32 hex digits;
//! `kind` is `demand`, `readahead`, `plan` or `stream`; `stream_sent` is
//! how many `stream` pages were sent before this run. Versions 1 and 2
//! counted blocks of a size given on each `file` line (version 1 without
//! the identity); they are still read, converted to pages. In paths, backslash, tab, newline and carriage
//! return are written as `\\`, `\t`, `\n` and `\r`. Lines go through a
//! buffer that is flushed at the end of the session and again on drop, so
//! the file is whole however the process ends short of a crash. The
//! recorder takes times from its caller and reads no clock.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use feedfs_protocol::FileId;

use crate::send::scheduler::Kind;

/// The first line of every record file.
pub const HEADER: &str = "# feedfs-host record v3";
/// The first line of record files in blocks, with identities.
pub const HEADER_V2: &str = "# feedfs-host record v2";
/// The first line of record files in blocks, written before identities were recorded.
pub const HEADER_V1: &str = "# feedfs-host record v1";

/// Writes the record file, or nothing when no file was asked for.
pub struct Recorder {
    out: Option<BufWriter<Box<dyn Write + Send>>>,
}

impl Recorder {
    /// A recorder that writes nothing.
    pub fn disabled() -> Self {
        Recorder { out: None }
    }

    /// Create (or truncate) `path` and write the version line.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = File::create(path)?;
        Self::from_writer(Box::new(file))
    }

    /// Record into any writer (tests use a shared buffer).
    pub fn from_writer(w: Box<dyn Write + Send>) -> io::Result<Self> {
        let mut out = BufWriter::with_capacity(64 * 1024, w);
        writeln!(out, "{HEADER}")?;
        Ok(Recorder { out: Some(out) })
    }

    fn line(&mut self, args: std::fmt::Arguments) -> io::Result<()> {
        match &mut self.out {
            Some(out) => out.write_fmt(args),
            None => Ok(()),
        }
    }

    pub fn file(
        &mut self,
        id: FileId,
        size: u64,
        path: &str,
        identity: &[u8; 16],
    ) -> io::Result<()> {
        let path = escape(path);
        let identity: String = identity.iter().map(|b| format!("{b:02x}")).collect();
        self.line(format_args!("file\t{}\t{size}\t{path}\t{identity}\n", id.0))
    }

    pub fn have(&mut self, t_us: u64, file: FileId, pages: u64) -> io::Result<()> {
        self.line(format_args!("have\t{t_us}\t{}\t{pages}\n", file.0))
    }

    pub fn demand(&mut self, t_us: u64, file: FileId, first: u64, count: u64) -> io::Result<()> {
        self.line(format_args!(
            "demand\t{t_us}\t{}\t{first}\t{count}\n",
            file.0
        ))
    }

    /// A run of `count` pages from `first` went out.
    pub fn sent(
        &mut self,
        t_us: u64,
        file: FileId,
        first: u64,
        count: u32,
        kind: Kind,
        stream_sent: u64,
    ) -> io::Result<()> {
        self.line(format_args!(
            "sent\t{t_us}\t{}\t{first}\t{count}\t{}\t{stream_sent}\n",
            file.0,
            kind.as_str()
        ))
    }

    pub fn done(&mut self, t_us: u64, pages_sent: u64) -> io::Result<()> {
        self.line(format_args!("done\t{t_us}\t{pages_sent}\n"))
    }

    /// Push everything written so far to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            log::warn!("could not finish the record file: {e}");
        }
    }
}

/// A path with the record's separators escaped.
fn escape(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains(['\\', '\t', '\n', '\r']) {
        return path.into();
    }
    let mut s = String::with_capacity(path.len() + 8);
    for c in path.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\t' => s.push_str("\\t"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            c => s.push(c),
        }
    }
    s.into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer whose bytes can be read after it is handed away.
    #[derive(Clone, Default)]
    pub(crate) struct Shared(pub Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn exact_format() {
        let buf = Shared::default();
        let mut r = Recorder::from_writer(Box::new(buf.clone())).unwrap();
        r.file(FileId(0), 5000, "a.img", &[0xab; 16]).unwrap();
        let mut id = [0; 16];
        id[15] = 1;
        r.file(FileId(2), 0, "tree/odd\tname", &id).unwrap();
        r.sent(35, FileId(0), 0, 1, Kind::Plan, 0).unwrap();
        r.demand(15, FileId(0), 1, 1).unwrap();
        r.have(16, FileId(2), 0).unwrap();
        r.sent(20, FileId(0), 1, 1, Kind::Demand, 0).unwrap();
        r.sent(31, FileId(0), 0, 2, Kind::Stream, 0).unwrap();
        r.done(40, 4).unwrap();
        drop(r);
        assert_eq!(
            buf.text(),
            "# feedfs-host record v3\n\
             file\t0\t5000\ta.img\tabababababababababababababababab\n\
             file\t2\t0\ttree/odd\\tname\t00000000000000000000000000000001\n\
             sent\t35\t0\t0\t1\tplan\t0\n\
             demand\t15\t0\t1\t1\n\
             have\t16\t2\t0\n\
             sent\t20\t0\t1\t1\tdemand\t0\n\
             sent\t31\t0\t0\t2\tstream\t0\n\
             done\t40\t4\n"
        );
    }

    #[test]
    fn disabled_writes_nothing_and_escapes_are_reversible_by_eye() {
        let mut r = Recorder::disabled();
        r.done(1, 1).unwrap();
        r.flush().unwrap();
        assert_eq!(escape("a\\b\nc\r"), "a\\\\b\\nc\\r");
        assert_eq!(escape("plain/path"), "plain/path");
    }
}
