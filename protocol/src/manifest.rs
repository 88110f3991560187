//! The manifest check: a host's file list, accepted entry by entry, before
//! anything is created from it.
//!
//! Paths come from the other end of a cable, so each one is checked here
//! (relative, no `..`, `.` or empty components, no NUL, names of at most 255
//! bytes) and the list as a whole too (ids in order, no duplicates, no entry
//! inside a file, entry count, block sizes, file sizes under their caps).
//! Directories a path implies are added with mode 0o755. Each refusal is its
//! own [`ManifestError`] naming the path. Permission bits above 0o777
//! (setuid, setgid, sticky) are dropped.

use std::collections::HashMap;

use crate::message::{EntryKind, FileId, Message};
use crate::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};

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

/// Check one relative path; returns it unchanged when it is safe.
pub fn check_path(path: &str) -> Result<&str, ManifestError> {
    if path.is_empty() {
        return Err(ManifestError::EmptyPath);
    }
    if path.contains('\0') {
        return Err(ManifestError::NulByte(path.replace('\0', "\\0")));
    }
    if path.starts_with('/') {
        return Err(ManifestError::AbsolutePath(path.into()));
    }
    for part in path.split('/') {
        match part {
            ".." => return Err(ManifestError::DotDot(path.into())),
            "" | "." => return Err(ManifestError::EmptyComponent(path.into())),
            p if p.len() > NAME_MAX => {
                return Err(ManifestError::NameTooLong {
                    path: path.into(),
                    len: p.len(),
                })
            }
            _ => {}
        }
    }
    Ok(path)
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

/// Accepts entries one at a time, then the closing count.
#[derive(Debug, Default)]
pub struct ManifestBuilder {
    m: Manifest,
    /// Blocks of all files accepted so far.
    blocks: u64,
    /// Bytes of path text held so far (entries and implied directories).
    path_bytes: u64,
    kinds: HashMap<String, (EntryKind, usize)>,
}

impl ManifestBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Accept an `Entry` message (or refuse it with the reason).
    pub fn push_message(&mut self, msg: &Message) -> Result<(), ManifestError> {
        match *msg {
            Message::Entry {
                id,
                kind,
                size,
                mode,
                block_size,
                identity,
                path,
            } => self.push(id, kind, path, size, mode, block_size, identity),
            ref other => Err(ManifestError::Unexpected(type_name(other))),
        }
    }

    /// Accept one entry.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        id: FileId,
        kind: EntryKind,
        path: &str,
        size: u64,
        mode: u32,
        block_size: u32,
        identity: [u8; 16],
    ) -> Result<(), ManifestError> {
        let path = check_path(path)?;
        let expected = self.m.by_id.len() as u32;
        if id.0 != expected {
            return Err(ManifestError::BadId {
                path: path.into(),
                expected,
                got: id.0,
            });
        }
        if expected >= MAX_ENTRIES || self.m.entries.len() >= (2 * MAX_ENTRIES) as usize {
            return Err(ManifestError::TooManyEntries);
        }
        match kind {
            EntryKind::File => {
                if !block_size.is_power_of_two()
                    || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
                {
                    return Err(ManifestError::BadBlockSize {
                        path: path.into(),
                        block_size,
                    });
                }
                if size > MAX_FILE_SIZE {
                    return Err(ManifestError::FileTooLarge {
                        path: path.into(),
                        size,
                    });
                }
                let total = self.blocks + crate::block_count(size, block_size);
                if total > MAX_TOTAL_BLOCKS {
                    return Err(ManifestError::TooManyBlocks {
                        path: path.into(),
                        total,
                    });
                }
            }
            EntryKind::Dir if size != 0 => return Err(ManifestError::DirWithSize(path.into())),
            EntryKind::Dir => {}
        }
        self.add_parents(path)?;
        let entry = Entry {
            id: Some(id),
            kind,
            path: path.to_string(),
            size,
            mode: mode & 0o777,
            block_size: if kind == EntryKind::File {
                block_size
            } else {
                0
            },
            identity,
        };
        match self.kinds.get(path).copied() {
            // A directory a path implied earlier, now listed: take the host's mode and id.
            Some((EntryKind::Dir, i))
                if kind == EntryKind::Dir && self.m.entries[i].id.is_none() =>
            {
                self.m.entries[i] = entry;
                self.m.by_id.push(i);
            }
            Some(_) => return Err(ManifestError::Duplicate(path.into())),
            None => {
                self.kinds
                    .insert(path.to_string(), (kind, self.m.entries.len()));
                self.m.by_id.push(self.m.entries.len());
                self.m.total_bytes = self.m.total_bytes.saturating_add(entry.size);
                self.blocks += entry.blocks();
                self.path_bytes += entry.path.len() as u64;
                self.m.entries.push(entry);
            }
        }
        Ok(())
    }

    /// Check the directories `path` implies and add those not yet known.
    ///
    /// Walks up from the deepest parent and stops at the first known
    /// directory: every directory is added after all of its own parents,
    /// and a file is never added below a file, so the ancestors of a known
    /// directory are all known directories. An entry whose parents are
    /// known thus costs one lookup, however deep it is. The new parents are
    /// added shallowest first, so that parents come before children.
    fn add_parents(&mut self, path: &str) -> Result<(), ManifestError> {
        let mut new = Vec::new();
        for (end, _) in path.rmatch_indices('/') {
            let parent = &path[..end];
            match self.kinds.get(parent) {
                Some((EntryKind::File, _)) => {
                    return Err(ManifestError::InsideFile {
                        path: path.into(),
                        parent: parent.into(),
                    })
                }
                Some((EntryKind::Dir, _)) => break,
                None => new.push(parent),
            }
        }
        let text: u64 = new.iter().map(|p| p.len() as u64).sum::<u64>() + path.len() as u64;
        let total = self.path_bytes.saturating_add(text);
        if total > MAX_PATH_BYTES {
            return Err(ManifestError::TooMuchPathText {
                path: path.into(),
                total,
            });
        }
        for parent in new.into_iter().rev() {
            self.kinds
                .insert(parent.to_string(), (EntryKind::Dir, self.m.entries.len()));
            self.m.entries.push(Entry {
                id: None,
                kind: EntryKind::Dir,
                path: parent.to_string(),
                size: 0,
                mode: IMPLIED_DIR_MODE,
                block_size: 0,
                identity: [0; 16],
            });
            self.path_bytes += parent.len() as u64;
        }
        Ok(())
    }

    /// Close the manifest with the host's announced counts.
    pub fn finish(self, announced: u32, announced_bytes: u64) -> Result<Manifest, ManifestError> {
        let received = self.m.by_id.len() as u32;
        if received != announced || self.m.total_bytes != announced_bytes {
            return Err(ManifestError::CountMismatch {
                announced,
                received,
                announced_bytes,
                received_bytes: self.m.total_bytes,
            });
        }
        Ok(self.m)
    }
}

fn type_name(m: &Message) -> &'static str {
    match m.message_type() {
        crate::MessageType::Hello => "Hello",
        crate::MessageType::Entry => "Entry",
        crate::MessageType::ManifestEnd => "ManifestEnd",
        crate::MessageType::Have => "Have",
        crate::MessageType::HaveEnd => "HaveEnd",
        crate::MessageType::Demand => "Demand",
        crate::MessageType::Block => "Block",
        crate::MessageType::StreamDone => "StreamDone",
        crate::MessageType::Complete => "Complete",
        crate::MessageType::Error => "Error",
        crate::MessageType::Goodbye => "Goodbye",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(b: &mut ManifestBuilder, path: &str) -> Result<(), ManifestError> {
        let id = FileId(b.m.by_id.len() as u32);
        b.push(id, EntryKind::File, path, 10, 0o4755, 4096, [1; 16])
    }

    #[test]
    fn hostile_paths_each_get_their_own_error() {
        let mut b = ManifestBuilder::new();
        assert_eq!(file(&mut b, ""), Err(ManifestError::EmptyPath));
        assert_eq!(
            file(&mut b, "/etc/passwd"),
            Err(ManifestError::AbsolutePath("/etc/passwd".into()))
        );
        assert_eq!(
            file(&mut b, "a/../../x"),
            Err(ManifestError::DotDot("a/../../x".into()))
        );
        assert_eq!(file(&mut b, ".."), Err(ManifestError::DotDot("..".into())));
        assert_eq!(
            file(&mut b, "a\0b"),
            Err(ManifestError::NulByte("a\\0b".into()))
        );
        assert_eq!(
            file(&mut b, "a//b"),
            Err(ManifestError::EmptyComponent("a//b".into()))
        );
        assert_eq!(
            file(&mut b, "a/./b"),
            Err(ManifestError::EmptyComponent("a/./b".into()))
        );
        assert_eq!(
            file(&mut b, "a/"),
            Err(ManifestError::EmptyComponent("a/".into()))
        );
        let long = "x".repeat(256);
        assert_eq!(
            file(&mut b, &long),
            Err(ManifestError::NameTooLong {
                path: long.clone(),
                len: 256
            })
        );
        // Nothing was accepted.
        assert!(b.m.entries.is_empty());
    }

    #[test]
    fn tree_rules() {
        let mut b = ManifestBuilder::new();
        file(&mut b, "top/sub/f").unwrap();
        assert_eq!(
            file(&mut b, "top/sub/f"),
            Err(ManifestError::Duplicate("top/sub/f".into()))
        );
        assert_eq!(
            file(&mut b, "top/sub/f/g"),
            Err(ManifestError::InsideFile {
                path: "top/sub/f/g".into(),
                parent: "top/sub/f".into()
            })
        );
        assert_eq!(
            b.push(FileId(7), EntryKind::File, "x", 1, 0, 4096, [0; 16]),
            Err(ManifestError::BadId {
                path: "x".into(),
                expected: 1,
                got: 7
            })
        );
        assert_eq!(
            b.push(FileId(1), EntryKind::File, "x", 1, 0, 3000, [0; 16]),
            Err(ManifestError::BadBlockSize {
                path: "x".into(),
                block_size: 3000
            })
        );
        assert_eq!(
            b.push(FileId(1), EntryKind::File, "x", u64::MAX, 0, 4096, [0; 16]),
            Err(ManifestError::FileTooLarge {
                path: "x".into(),
                size: u64::MAX
            })
        );
        b.push(FileId(1), EntryKind::Dir, "top", 0, 0o700, 0, [0; 16])
            .unwrap();
        let m = b.finish(2, 10).unwrap();
        let paths: Vec<_> = m
            .entries()
            .iter()
            .map(|e| (e.path.as_str(), e.mode))
            .collect();
        assert_eq!(
            paths,
            vec![("top", 0o700), ("top/sub", 0o755), ("top/sub/f", 0o755)]
        );
        assert_eq!(m.get(FileId(0)).unwrap().path, "top/sub/f");
        assert_eq!(m.get(FileId(1)).unwrap().path, "top");
        assert_eq!(m.files().count(), 1);
    }

    #[test]
    fn total_blocks_are_capped() {
        let mut b = ManifestBuilder::new();
        let tib = 1u64 << 40;
        // 4 KiB blocks: 2^28 blocks per TiB, over the cap at once.
        assert_eq!(
            b.push(FileId(0), EntryKind::File, "a", tib, 0o644, 4096, [0; 16]),
            Err(ManifestError::TooManyBlocks {
                path: "a".into(),
                total: 1 << 28
            })
        );
        // In 1 MiB blocks a TiB is 2^20 blocks; 64 of them reach the cap.
        for i in 0..64 {
            b.push(
                FileId(i),
                EntryKind::File,
                &format!("f{i}"),
                tib,
                0o644,
                1 << 20,
                [0; 16],
            )
            .unwrap();
        }
        assert!(matches!(
            b.push(
                FileId(64),
                EntryKind::File,
                "one-more",
                1 << 20,
                0o644,
                1 << 20,
                [0; 16]
            ),
            Err(ManifestError::TooManyBlocks { .. })
        ));
    }

    #[test]
    fn deep_paths_cannot_make_the_device_hold_gigabytes_of_names() {
        // Each path implies about 2000 directories whose names add up to
        // about 4 MB: without a cap, a thousand such entries (4 MB on the
        // wire) would make the device hold gigabytes.
        let deep = "a/".repeat(2000);
        let mut b = ManifestBuilder::new();
        let mut accepted = 0;
        let err = loop {
            match file(&mut b, &format!("d{accepted}/{deep}f")) {
                Ok(()) => accepted += 1,
                Err(e) => break e,
            }
            assert!(accepted < 100, "no cap on path text");
        };
        assert!(
            matches!(err, ManifestError::TooMuchPathText { total, .. } if total > MAX_PATH_BYTES),
            "{err}"
        );
        assert!(b.path_bytes <= MAX_PATH_BYTES);
        assert!((25..40).contains(&accepted), "{accepted} entries accepted");
        let held: u64 = b.m.entries.iter().map(|e| e.path.len() as u64).sum();
        assert_eq!(held, b.path_bytes);
    }

    #[test]
    fn entries_below_known_directories_cost_one_lookup_and_keep_parents_first() {
        let deep = "a/".repeat(2000);
        let mut b = ManifestBuilder::new();
        // Many files in one deep directory: its parents are added once.
        for i in 0..2000 {
            file(&mut b, &format!("{deep}f{i}")).unwrap();
        }
        assert_eq!(b.m.entries.len(), 2000 + 2000);
        assert!(b.path_bytes < MAX_PATH_BYTES);
        file(&mut b, "x/y/z").unwrap();
        assert_eq!(
            file(&mut b, &format!("{deep}f7/g")),
            Err(ManifestError::InsideFile {
                path: format!("{deep}f7/g"),
                parent: format!("{deep}f7"),
            })
        );
        let m = b.finish(2001, 20010).unwrap();
        let mut seen = std::collections::HashSet::new();
        for e in m.entries() {
            assert!(
                e.parent().is_empty() || seen.contains(e.parent()),
                "{} before its parent",
                e.path
            );
            seen.insert(e.path.as_str());
        }
    }

    #[test]
    fn counts_must_match() {
        let mut b = ManifestBuilder::new();
        file(&mut b, "a").unwrap();
        assert!(matches!(
            b.finish(2, 10),
            Err(ManifestError::CountMismatch {
                announced: 2,
                received: 1,
                ..
            })
        ));
    }
}
