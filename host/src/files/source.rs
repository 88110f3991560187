//! Reading runs of pages from the served files: one page-aligned
//! positioned read of exactly a run's bytes, nothing more.
//!
//! Keeps a few files open (the stream goes file by file, demands jump
//! around) and checks each file when it is opened, after each read and
//! after a failed read: if its size, inode, modification time or
//! status-change time differ from the manifest's, it is no longer the file
//! the device was promised, and reading it is an error that says in words
//! what changed (a file cut short while being read is such a change, not
//! an I/O error).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use feedfs_protocol::{page_offset, run_len, FileId};

use crate::files::manifest::{ServedSet, Stamp};

/// Most files kept open at once.
const OPEN_FILES: usize = 8;

/// Why a run could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {}: {error}", .path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{} changed while it was being pushed: {change}; the device keeps serving the files of this push as they were announced and refuses a changed set, so stop the daemon on the device (SIGTERM, or umount its mount point), then push again", .path.display())]
    Changed {
        path: PathBuf,
        /// What changed, in words ([`describe_change`]).
        change: String,
    },
    #[error("file id {0} is not a file of the manifest")]
    NotAFile(FileId),
}

/// What differs between two stamps of a file, in words.
pub fn describe_change(was: &Stamp, now: &Stamp) -> String {
    let mut what = Vec::new();
    if was.ino != now.ino {
        what.push("it was replaced by another file".to_string());
    }
    if was.size != now.size {
        what.push(format!(
            "its size went from {} to {} bytes",
            was.size, now.size
        ));
    }
    if was.mtime_ns != now.mtime_ns {
        what.push(format!(
            "it was modified at {} (it had been at {})",
            format_time(now.mtime_ns),
            format_time(was.mtime_ns)
        ));
    }
    if what.is_empty() && was.ctime_ns != now.ctime_ns {
        what.push(format!(
            "it was written or its attributes changed at {}, with its modification time kept",
            format_time(now.ctime_ns)
        ));
    }
    if what.is_empty() {
        what.push("it is no longer the file announced".to_string());
    }
    what.join(", ")
}

/// Nanoseconds since 1970 as `2026-12-01 19:03:40.123 UTC`.
pub fn format_time(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let ms = ns.rem_euclid(1_000_000_000) / 1_000_000;
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_date(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{ms:03} UTC",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01.
pub(crate) fn civil_date(days: i128) -> (i128, i128, i128) {
    // Count from 0000-03-01, so that a leap day ends its year; eras of 400
    // years have 146 097 days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i128::from(m <= 2);
    (y, m, d)
}

/// Reads runs of pages of the files of a served set.
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

    /// The bytes of the `count` pages of `file` from page `first`, read
    /// with one positioned read of exactly those bytes (the last page may
    /// be short).
    pub fn read_run(&mut self, file: FileId, first: u64, count: u32) -> Result<&[u8], SourceError> {
        let entry = self
            .set
            .get(file)
            .filter(|e| e.kind == feedfs_protocol::EntryKind::File)
            .ok_or(SourceError::NotAFile(file))?;
        let len = run_len(entry.size, first, u64::from(count));
        let offset = page_offset(first);
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
                        change: describe_change(&entry.stamp, &now),
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
        // The buffer only grows (zeroed once), so a short demand between
        // long runs does not zero the long runs' bytes again.
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let buf = &mut self.buf[..len];
        let read = self.open[0].1.read_exact_at(buf, offset);
        // Checked after the read too, and after a failed one: a file
        // rewritten in place while it is being pushed must not reach the
        // device as a mix of two versions, and one cut short is a change.
        let now = Stamp::of(&self.open[0].1.metadata().map_err(io_err)?);
        if now != entry.stamp {
            return Err(SourceError::Changed {
                path: entry.source.clone(),
                change: describe_change(&entry.stamp, &now),
            });
        }
        read.map_err(io_err)?;
        Ok(&self.buf[..len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::manifest::walk;
    use crate::testutil::TempDir;

    #[test]
    fn runs_of_pages_and_the_short_last_one() {
        let t = TempDir::new("source");
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let p = t.write("f", &data);
        let set = walk(&[p]).unwrap();
        let mut s = Source::new(&set);
        assert_eq!(s.read_run(FileId(0), 0, 1).unwrap(), &data[..4096]);
        assert_eq!(s.read_run(FileId(0), 2, 1).unwrap(), &data[8192..]);
        assert_eq!(s.read_run(FileId(0), 1, 1).unwrap(), &data[4096..8192]);
        assert_eq!(s.read_run(FileId(0), 0, 3).unwrap(), &data[..]);
        assert_eq!(s.read_run(FileId(0), 1, 2).unwrap(), &data[4096..]);
        assert!(matches!(
            s.read_run(FileId(1), 0, 1),
            Err(SourceError::NotAFile(_))
        ));
    }

    #[test]
    fn a_changed_file_is_refused() {
        let t = TempDir::new("changed");
        let p = t.write("f", b"before");
        let set = walk(std::slice::from_ref(&p)).unwrap();
        std::fs::write(&p, b"after, longer").unwrap();
        let err = Source::new(&set).read_run(FileId(0), 0, 1).unwrap_err();
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
        assert!(s.read_run(FileId(0), 0, 1).is_ok());
        // Same inode and size, new content and mtime: the file is already open.
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[2u8; 4096], 4096).unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        let err = s.read_run(FileId(0), 1, 1).unwrap_err();
        assert!(matches!(err, SourceError::Changed { .. }), "{err}");
        assert!(err.to_string().contains("it was modified at "), "{err}");
    }

    #[test]
    fn a_file_cut_short_while_open_says_so() {
        let t = TempDir::new("cut");
        let p = t.write("f", &[1u8; 10_000]);
        let set = walk(std::slice::from_ref(&p)).unwrap();
        let mut s = Source::new(&set);
        assert!(s.read_run(FileId(0), 0, 1).is_ok());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(5000)
            .unwrap();
        let text = s.read_run(FileId(0), 2, 1).unwrap_err().to_string();
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

    #[test]
    fn changes_in_words() {
        let was = Stamp {
            size: 10,
            mtime_ns: 315_532_800_000_000_000,
            ctime_ns: 1_000_000_000_000_000_000,
            ino: 7,
        };
        assert_eq!(
            describe_change(
                &was,
                &Stamp {
                    ctime_ns: was.ctime_ns + 1,
                    ..was
                }
            ),
            "it was written or its attributes changed at 2001-09-09 01:46:40.000 UTC, \
             with its modification time kept"
        );
        assert_eq!(
            describe_change(
                &was,
                &Stamp {
                    size: 4,
                    ino: 8,
                    ..was
                }
            ),
            "it was replaced by another file, its size went from 10 to 4 bytes"
        );
        let touched = Stamp {
            mtime_ns: was.mtime_ns + 1_500_000_000,
            ..was
        };
        assert_eq!(
            describe_change(&was, &touched),
            "it was modified at 1980-01-01 00:00:01.500 UTC (it had been at \
             1980-01-01 00:00:00.000 UTC)"
        );
        assert_eq!(format_time(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(
            format_time(951_782_400_000_000_000),
            "2000-02-29 00:00:00.000 UTC"
        );
        assert_eq!(format_time(-1_000_000_000), "1969-12-31 23:59:59.000 UTC");
    }
}
