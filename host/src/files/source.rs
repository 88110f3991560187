//! Reading runs of pages from the served files, whatever kind of source
//! each is: one page-aligned read of exactly a run's bytes, nothing more.
//!
//! A served file's size, identity and mtime are settled when the manifest
//! is built ([`crate::files::manifest`]); what the sender needs after that
//! is a [`Backend`] ([`crate::files::backend`]): "read exactly these bytes" and "is it still the file
//! announced", the latter as a typed [`SourceError::Changed`] that says in
//! words what changed. The kinds are a local file or block device
//! ([`crate::files::local`]) and an HTTP(S) URL ([`crate::files::http`]).
//!
//! [`Source`] keeps a few backends open (the stream goes file by file,
//! demands jump around), or reads through a [`SharedSource`] that the
//! sessions of several devices share. Each checks its file when it is opened, after
//! each read and after a failed read: a file cut short while being read is
//! a change, not an I/O error.

use feedfs_protocol::{page_offset, run_len, FileId};

pub use crate::files::backend::{nothing_ahead, Backend, SourceError};
pub use crate::files::kinds::open;
use crate::files::manifest::{ServedEntry, ServedSet};
use crate::files::shared::SharedSource;

/// Most files kept open at once.
const OPEN_FILES: usize = 8;

/// Reads runs of pages of the files of a served set.
pub struct Source<'a> {
    set: &'a ServedSet,
    /// Most recently used first.
    open: Vec<(FileId, Box<dyn Backend>)>,
    shared: Option<&'a SharedSource>,
    buf: Vec<u8>,
    /// Bytes this source read from the files (not from a shared cache).
    read: u64,
}

impl<'a> Source<'a> {
    pub fn new(set: &'a ServedSet) -> Self {
        Source {
            set,
            open: Vec::with_capacity(OPEN_FILES),
            shared: None,
            buf: Vec::new(),
            read: 0,
        }
    }

    /// Read through `shared` (its backends and cache) instead of backends of its own.
    pub fn shared(set: &'a ServedSet, shared: &'a SharedSource) -> Self {
        Source {
            shared: Some(shared),
            ..Source::new(set)
        }
    }

    /// Bytes read from the files so far by this source (those a shared
    /// cache held are not counted).
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The bytes of the `count` pages of `file` from page `first`, read
    /// with one read of exactly those bytes (the last page may be short);
    /// `wanted(first, count)` says which pages of `file` may be fetched
    /// ahead ([`Backend::read_exact_at`]). Through a shared source, a run
    /// the cache lacks is read with this source's own backend when
    /// `demand` (a reader waits for it), else with the shared one.
    pub fn read_run(
        &mut self,
        file: FileId,
        first: u64,
        count: u32,
        demand: bool,
        wanted: &dyn Fn(u64, u64) -> bool,
    ) -> Result<&[u8], SourceError> {
        let entry = self
            .set
            .get(file)
            .filter(|e| e.kind == feedfs_protocol::EntryKind::File)
            .ok_or(SourceError::NotAFile(file))?;
        let len = run_len(entry.size, first, u64::from(count));
        // The buffer only grows (zeroed once), so a short demand between
        // long runs does not zero the long runs' bytes again.
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let buf = &mut self.buf[..len];
        match self.shared {
            Some(shared) => {
                let own = match demand {
                    true => Some(own(&mut self.open, entry)?),
                    false => None,
                };
                self.read += shared.read_run(entry, first, buf, wanted, own)?;
            }
            None => {
                own(&mut self.open, entry)?.read_exact_at(buf, page_offset(first), wanted)?;
                self.read += len as u64;
            }
        }
        Ok(&self.buf[..len])
    }
}

/// The backend of `entry` among the `open` ones (most recently used
/// first), opened (and the least recently used closed) if need be.
fn own<'o>(
    opened: &'o mut Vec<(FileId, Box<dyn Backend>)>,
    entry: &ServedEntry,
) -> Result<&'o mut dyn Backend, SourceError> {
    match opened.iter().position(|(id, _)| *id == entry.id) {
        Some(0) => {}
        Some(p) => {
            let item = opened.remove(p);
            opened.insert(0, item);
        }
        None => {
            let backend = open(entry)?;
            opened.truncate(OPEN_FILES - 1);
            opened.insert(0, (entry.id, backend));
        }
    }
    Ok(opened[0].1.as_mut())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::manifest::walk;
    use crate::testutil::TempDir;

    impl Source<'_> {
        fn read_run_now(
            &mut self,
            file: FileId,
            first: u64,
            count: u32,
        ) -> Result<&[u8], SourceError> {
            self.read_run(file, first, count, false, &nothing_ahead)
        }
    }

    #[test]
    fn runs_of_pages_and_the_short_last_one() {
        let t = TempDir::new("source");
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let p = t.write("f", &data);
        let set = walk(&[p]).unwrap();
        let mut s = Source::new(&set);
        assert_eq!(s.read_run_now(FileId(0), 0, 1).unwrap(), &data[..4096]);
        assert_eq!(s.read_run_now(FileId(0), 2, 1).unwrap(), &data[8192..]);
        assert_eq!(s.read_run_now(FileId(0), 1, 1).unwrap(), &data[4096..8192]);
        assert_eq!(s.read_run_now(FileId(0), 0, 3).unwrap(), &data[..]);
        assert_eq!(s.read_run_now(FileId(0), 1, 2).unwrap(), &data[4096..]);
        assert!(matches!(
            s.read_run_now(FileId(1), 0, 1),
            Err(SourceError::NotAFile(_))
        ));
    }

    #[test]
    fn a_changed_file_is_refused() {
        let t = TempDir::new("changed");
        let p = t.write("f", b"before");
        let set = walk(std::slice::from_ref(&p)).unwrap();
        std::fs::write(&p, b"after, longer").unwrap();
        let err = Source::new(&set).read_run_now(FileId(0), 0, 1).unwrap_err();
        assert!(matches!(err, SourceError::Changed { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("changed while it was being pushed: its size went from 6 to 13 bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_file_rewritten_in_place_while_open_is_refused() {
        let t = TempDir::new("rewritten");
        let p = t.write("f", &[1u8; 10_000]);
        let set = walk(std::slice::from_ref(&p)).unwrap();
        let mut s = Source::new(&set);
        assert!(s.read_run_now(FileId(0), 0, 1).is_ok());
        // Same inode and size, new content and mtime: the file is already open.
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[2u8; 4096], 4096).unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        let err = s.read_run_now(FileId(0), 1, 1).unwrap_err();
        assert!(matches!(err, SourceError::Changed { .. }), "{err}");
        assert!(err.to_string().contains("it was modified at "), "{err}");
    }

    #[test]
    fn a_file_cut_short_while_open_says_so() {
        let t = TempDir::new("cut");
        let p = t.write("f", &[1u8; 10_000]);
        let set = walk(std::slice::from_ref(&p)).unwrap();
        let mut s = Source::new(&set);
        assert!(s.read_run_now(FileId(0), 0, 1).is_ok());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(5000)
            .unwrap();
        let text = s.read_run_now(FileId(0), 2, 1).unwrap_err().to_string();
        assert!(
            text.contains("its size went from 10000 to 5000 bytes"),
            "{text}"
        );
        assert!(
            !text.contains("fill whole buffer") && !text.contains("Stamp"),
            "{text}"
        );
        assert!(text.contains("stop the daemon"), "{text}");
    }
}
