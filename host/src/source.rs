//! Reading blocks from the served files, with positioned reads.
//!
//! Keeps a few files open (the stream goes file by file, demands jump
//! around) and checks each file when it is opened: if its size, inode or
//! modification time differ from the manifest's, it is no longer the file
//! the device was promised, and reading it is an error.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use feedfs_protocol::{block_len, FileId};

use crate::manifest::{ServedSet, Stamp};

/// Most files kept open at once.
const OPEN_FILES: usize = 8;

/// Why a block could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {}: {error}", .path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{} changed after the manifest was sent (it was {was:?}, it is {now:?}); run the push again", .path.display())]
    Changed {
        path: PathBuf,
        was: Stamp,
        now: Stamp,
    },
    #[error("file id {0} is not a file of the manifest")]
    NotAFile(FileId),
}

/// Reads blocks of the files of a served set.
pub struct Source<'a> {
    set: &'a ServedSet,
    /// Most recently used first.
    open: Vec<(FileId, File)>,
    buf: Vec<u8>,
}

impl<'a> Source<'a> {
    pub fn new(set: &'a ServedSet) -> Self {
        Source {
            set,
            open: Vec::with_capacity(OPEN_FILES),
            buf: Vec::new(),
        }
    }

    /// The bytes of block `index` of `file` (the last block may be short).
    pub fn read(&mut self, file: FileId, index: u64) -> Result<&[u8], SourceError> {
        let entry = self
            .set
            .get(file)
            .filter(|e| e.kind == feedfs_protocol::EntryKind::File)
            .ok_or(SourceError::NotAFile(file))?;
        let len = block_len(entry.size, entry.block_size, index);
        let offset = index * u64::from(entry.block_size);
        let io_err = |error| SourceError::Io {
            path: entry.source.clone(),
            error,
        };
        let pos = match self.open.iter().position(|(id, _)| *id == file) {
            Some(p) => p,
            None => {
                let f = File::open(&entry.source).map_err(io_err)?;
                let now = Stamp::of(&f.metadata().map_err(io_err)?);
                if now != entry.stamp {
                    return Err(SourceError::Changed {
                        path: entry.source.clone(),
                        was: entry.stamp,
                        now,
                    });
                }
                if self.open.len() == OPEN_FILES {
                    self.open.pop();
                }
                self.open.push((file, f));
                self.open.len() - 1
            }
        };
        if pos != 0 {
            let item = self.open.remove(pos);
            self.open.insert(0, item);
        }
        self.buf.resize(len, 0);
        self.open[0]
            .1
            .read_exact_at(&mut self.buf, offset)
            .map_err(io_err)?;
        // Checked after the read too: a file rewritten in place while it is
        // being pushed must not reach the device as a mix of two versions.
        let now = Stamp::of(&self.open[0].1.metadata().map_err(io_err)?);
        if now != entry.stamp {
            return Err(SourceError::Changed {
                path: entry.source.clone(),
                was: entry.stamp,
                now,
            });
        }
        Ok(&self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::walk;
    use crate::testutil::TempDir;

    #[test]
    fn blocks_and_the_short_last_one() {
        let t = TempDir::new("source");
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let p = t.write("f", &data);
        let set = walk(&[p], 4096).unwrap();
        let mut s = Source::new(&set);
        assert_eq!(s.read(FileId(0), 0).unwrap(), &data[..4096]);
        assert_eq!(s.read(FileId(0), 2).unwrap(), &data[8192..]);
        assert_eq!(s.read(FileId(0), 1).unwrap(), &data[4096..8192]);
        assert!(matches!(
            s.read(FileId(1), 0),
            Err(SourceError::NotAFile(_))
        ));
    }

    #[test]
    fn a_changed_file_is_refused() {
        let t = TempDir::new("changed");
        let p = t.write("f", b"before");
        let set = walk(std::slice::from_ref(&p), 4096).unwrap();
        std::fs::write(&p, b"after, longer").unwrap();
        let err = Source::new(&set).read(FileId(0), 0).unwrap_err();
        assert!(matches!(err, SourceError::Changed { .. }), "{err}");
        assert!(err.to_string().contains("changed after the manifest"));
    }

    #[test]
    fn a_file_rewritten_in_place_while_open_is_refused() {
        let t = TempDir::new("rewritten");
        let p = t.write("f", &[1u8; 10_000]);
        let set = walk(std::slice::from_ref(&p), 4096).unwrap();
        let mut s = Source::new(&set);
        assert!(s.read(FileId(0), 0).is_ok());
        // Same inode and size, new content and mtime: the file is already open.
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[2u8; 4096], 4096).unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        let err = s.read(FileId(0), 1).unwrap_err();
        assert!(matches!(err, SourceError::Changed { .. }), "{err}");
    }
}
