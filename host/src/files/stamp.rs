//! A file's stamp (the facts that, if they change, mean it is no longer
//! the file served), its identity, and a change between two stamps in words.
//!
//! The identity of a file is described in [`crate::files::manifest`]; a
//! block device's in [`crate::files::local`], a URL's in
//! [`crate::files::http`].

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use xxhash_rust::xxh3::Xxh3Default;

/// How much of each end of a large file goes into its identity.
pub const IDENTITY_EDGE: u64 = 64 * 1024;

/// Largest file whose identity is a digest of its whole content.
pub const FULL_DIGEST_MAX: u64 = 2 * IDENTITY_EDGE;

/// The facts about a file that, if they change, mean it is no longer the file served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
    /// The status-change time, which no call can set back.
    pub ctime_ns: i128,
    pub ino: u64,
}

impl Stamp {
    pub fn of(meta: &Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Stamp {
            size: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
        }
    }
}

/// The identity of an open file; see the module documentation.
pub fn identity(rel: &str, stamp: &Stamp, file: &File) -> io::Result<[u8; 16]> {
    let mut h = Xxh3Default::new();
    h.update(&(rel.len() as u64).to_le_bytes());
    h.update(rel.as_bytes());
    h.update(&stamp.size.to_le_bytes());
    if stamp.size <= FULL_DIGEST_MAX {
        let mut buf = vec![0u8; stamp.size as usize];
        file.read_exact_at(&mut buf, 0)?;
        h.update(&buf);
        return Ok(h.digest128().to_le_bytes());
    }
    h.update(&stamp.mtime_ns.to_le_bytes());
    h.update(&stamp.ctime_ns.to_le_bytes());
    h.update(&stamp.ino.to_le_bytes());
    let edge = IDENTITY_EDGE;
    let mut buf = vec![0u8; edge as usize];
    file.read_exact_at(&mut buf, 0)?;
    h.update(&buf);
    file.read_exact_at(&mut buf, stamp.size - edge)?;
    h.update(&buf);
    Ok(h.digest128().to_le_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;

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
