//! Manifest entries for the device's unit tests, built whole as the host
//! sends them (a fixed modification time, no link target).

use feedfs_protocol::{Entry, EntryKind, FileId, Mtime};

/// A fixed modification time: the tests' files never change.
pub(crate) const MTIME: Mtime = Mtime {
    sec: 1_700_000_000,
    nsec: 250,
};

/// A file entry of `size` bytes with host id `id`.
pub(crate) fn file_entry(id: u32, path: &str, size: u64, identity: [u8; 16]) -> Entry {
    Entry {
        id: Some(FileId(id)),
        kind: EntryKind::File,
        path: path.into(),
        size,
        mode: 0o644,
        mtime: MTIME,
        identity,
        target: String::new(),
    }
}

/// A directory entry with host id `id`.
pub(crate) fn dir_entry(id: u32, path: &str) -> Entry {
    Entry {
        id: Some(FileId(id)),
        kind: EntryKind::Dir,
        path: path.into(),
        size: 0,
        mode: 0o755,
        mtime: MTIME,
        identity: [0; 16],
        target: String::new(),
    }
}
