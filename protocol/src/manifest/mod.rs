//! The manifest check: a host's file list, accepted entry by entry, before
//! anything is created from it. Here: what an accepted manifest is, its
//! caps, and why one is refused; `check` holds the checks.
//!
//! Paths come from the other end of a cable, so each one is checked here
//! (relative, no `..`, `.` or empty components, no NUL, names of at most 255
//! bytes) and the list as a whole too (ids in order, no duplicates, no entry
//! inside a file, entry count, file sizes and pages under their caps), and
//! each symbolic link's target (relative, resolving inside the mount).
//! Directories a path implies are added with mode 0o755. Each refusal is its
//! own [`ManifestError`] naming the path. Permission bits above 0o777
//! (setuid, setgid, sticky) are dropped.

use crate::message::{EntryKind, FileId, Mtime};

pub use check::{check_path, check_target, ManifestBuilder};

mod check;
#[cfg(test)]
mod tests;

/// Most entries a manifest may hold (files and directories).
pub const MAX_ENTRIES: u32 = 1_000_000;
/// Most pages all files of a manifest may have together: 1 Gi pages, 4 TiB.
/// The device keeps about 1.06 bits per page in memory (a presence bit, and
/// one bit per 16 pages for what it has checked), so this bounds its maps
/// to about 136 MiB; 1 TiB takes 34 MiB.
pub const MAX_TOTAL_PAGES: u64 = 1 << 30;
/// Largest file a manifest may describe (16 TiB: page numbers fit a `u32`).
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
    /// The modification time the host gave (an implied directory: that of
    /// the entry that implied it).
    pub mtime: Mtime,
    pub identity: [u8; 16],
    /// A symbolic link's target, checked; empty for other kinds.
    pub target: String,
}

impl Entry {
    /// Number of pages of a file entry (0 for a directory or a link).
    pub fn pages(&self) -> u64 {
        match self.kind {
            EntryKind::File => crate::page_count(self.size),
            EntryKind::Dir | EntryKind::Symlink => 0,
        }
    }

    /// This entry as the host's Entry message (`None` for an implied
    /// directory, which has no id).
    pub fn message(&self) -> Option<crate::Message<'_>> {
        Some(crate::Message::Entry {
            id: self.id?,
            kind: self.kind,
            size: self.size,
            mode: self.mode,
            mtime: self.mtime,
            identity: self.identity,
            path: &self.path,
            target: &self.target,
        })
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
    #[error("manifest link {path:?} points to {target:?}, outside the mount (a link's target must be relative and stay inside what is served)")]
    LinkOutside { path: String, target: String },
    #[error("manifest entry {0:?} has a link target but is not a link")]
    TargetOfNonLink(String),
    #[error("manifest entry {path:?} is {size} bytes, over the {MAX_FILE_SIZE}-byte cap")]
    FileTooLarge { path: String, size: u64 },
    #[error("manifest entry {path:?} brings the pages of all files to {total}, over the cap of {MAX_TOTAL_PAGES} (4 TiB): serve fewer bytes per daemon")]
    TooManyPages { path: String, total: u64 },
    #[error("manifest entry {0:?} is a directory or a link but has a nonzero size")]
    NotAFileWithSize(String),
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
