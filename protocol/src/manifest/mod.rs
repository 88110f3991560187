//! The manifest check: a host's file list, accepted entry by entry, before
//! anything is created from it. Here: what an accepted manifest is, its
//! caps, and why one is refused; `check` holds the checks.
//!
//! Paths come from the other end of a cable, so each one is checked here
//! (relative, no `..`, `.` or empty components, no NUL, names of at most 255
//! bytes) and the list as a whole too (ids in order, no duplicates, no entry
//! inside a file, entry count, block sizes, file sizes under their caps).
//! Directories a path implies are added with mode 0o755. Each refusal is its
//! own [`ManifestError`] naming the path. Permission bits above 0o777
//! (setuid, setgid, sticky) are dropped.

use crate::message::{EntryKind, FileId};
use crate::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};

pub use check::{check_path, ManifestBuilder};

mod check;
#[cfg(test)]
mod tests;

/// Most entries a manifest may hold (files and directories).
pub const MAX_ENTRIES: u32 = 1_000_000;
/// Most blocks all files of a manifest may have together. The device keeps
/// about 4.25 bytes of map per block in memory, so this bounds it to about
/// 285 MiB (64 Mi blocks: 4 TiB in 64 KiB blocks, 256 GiB in 4 KiB blocks).
pub const MAX_TOTAL_BLOCKS: u64 = 1 << 26;
/// Largest file a manifest may describe (16 TiB).
pub const MAX_FILE_SIZE: u64 = 1 << 44;
/// Most bytes of path text a manifest may hold: the paths of its entries
/// and of the directories they imply, added up. Without it a few thousand
/// deep paths (`x/a/a/a/…`, 4096 bytes each, every one implying two
/// thousand directories) would make the device hold gigabytes of directory
/// names; with it a manifest's paths take at most this much memory (twice:
/// the entries and their index).
pub const MAX_PATH_BYTES: u64 = 128 << 20;
/// Longest path component, as on Linux.
pub const NAME_MAX: usize = 255;
/// Mode given to directories that a path implies but the manifest does not list.
pub const IMPLIED_DIR_MODE: u32 = 0o755;

/// One accepted manifest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The host's id; `None` for a directory implied by a path.
    pub id: Option<FileId>,
    pub kind: EntryKind,
    /// Relative path, `/`-separated, checked.
    pub path: String,
    pub size: u64,
    /// Permission bits only (at most 0o777).
    pub mode: u32,
    pub block_size: u32,
    pub identity: [u8; 16],
}

impl Entry {
    /// Number of blocks of a file entry (0 for a directory).
    pub fn blocks(&self) -> u64 {
        match self.kind {
            EntryKind::File => crate::block_count(self.size, self.block_size),
            EntryKind::Dir => 0,
        }
    }

    /// The parent directory's path, or `""` for the top level.
    pub fn parent(&self) -> &str {
        self.path.rsplit_once('/').map_or("", |(p, _)| p)
    }

    /// The last path component.
    pub fn name(&self) -> &str {
        self.path.rsplit_once('/').map_or(&self.path, |(_, n)| n)
    }
}

/// Why a manifest entry or the manifest as a whole was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest paths reach {total} bytes with {path:?} and the directories it implies, over the cap of {MAX_PATH_BYTES}")]
    TooMuchPathText { path: String, total: u64 },
    #[error("manifest path is empty")]
    EmptyPath,
    #[error("manifest path {0:?} is absolute; only relative paths are served")]
    AbsolutePath(String),
    #[error("manifest path {0:?} contains \"..\"; it could reach outside the mount")]
    DotDot(String),
    #[error("manifest path {0:?} contains a NUL byte")]
    NulByte(String),
    #[error("manifest path {0:?} has an empty or \".\" component")]
    EmptyComponent(String),
    #[error("manifest path {path:?} has a component of {len} bytes (at most {NAME_MAX})")]
    NameTooLong { path: String, len: usize },
    #[error("manifest lists {0:?} twice")]
    Duplicate(String),
    #[error("manifest entry {path:?} lies inside {parent:?}, which is a file")]
    InsideFile { path: String, parent: String },
    #[error("manifest entry {path:?} has id {got}, expected {expected} (ids go in order from 0)")]
    BadId {
        path: String,
        expected: u32,
        got: u32,
    },
    #[error("manifest has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("manifest entry {path:?} has block size {block_size} (a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE})")]
    BadBlockSize { path: String, block_size: u32 },
    #[error("manifest entry {path:?} is {size} bytes, over the {MAX_FILE_SIZE}-byte cap")]
    FileTooLarge { path: String, size: u64 },
    #[error("manifest entry {path:?} brings the blocks of all files to {total}, over the cap of {MAX_TOTAL_BLOCKS}: use a larger block size")]
    TooManyBlocks { path: String, total: u64 },
    #[error("manifest directory {0:?} has a nonzero size")]
    DirWithSize(String),
    #[error("manifest announced {announced} entries and {announced_bytes} bytes, but {received} entries and {received_bytes} bytes arrived")]
    CountMismatch {
        announced: u32,
        received: u32,
        announced_bytes: u64,
        received_bytes: u64,
    },
    #[error("expected a manifest entry, got a {0} message")]
    Unexpected(&'static str),
}

/// The accepted manifest: every entry, parents before children.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    entries: Vec<Entry>,
    /// Index into `entries` of each host id (`files[id]`).
    by_id: Vec<usize>,
    total_bytes: u64,
}

impl Manifest {
    /// All entries, implied directories included, each parent before its children.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
    /// The entry the host calls `id`.
    pub fn get(&self, id: FileId) -> Option<&Entry> {
        self.by_id.get(id.0 as usize).map(|&i| &self.entries[i])
    }
    /// Number of entries the host sent (implied directories not counted).
    pub fn host_entries(&self) -> u32 {
        self.by_id.len() as u32
    }
    /// The file entries, in the host's order.
    pub fn files(&self) -> impl Iterator<Item = &Entry> {
        self.by_id
            .iter()
            .map(|&i| &self.entries[i])
            .filter(|e| e.kind == EntryKind::File)
    }
    /// Sum of the file sizes.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }
}
