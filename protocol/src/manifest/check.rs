//! The checks a manifest passes: each path ([`check_path`]) and the list
//! as a whole, entry by entry ([`ManifestBuilder`]).

use std::collections::HashMap;

use super::{
    Entry, Manifest, ManifestError, IMPLIED_DIR_MODE, MAX_ENTRIES, MAX_FILE_SIZE, MAX_PATH_BYTES,
    MAX_TOTAL_BLOCKS, NAME_MAX,
};
use crate::message::{EntryKind, FileId, Message};
use crate::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};

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

/// Accepts entries one at a time, then the closing count.
#[derive(Debug, Default)]
pub struct ManifestBuilder {
    pub(super) m: Manifest,
    /// Blocks of all files accepted so far.
    blocks: u64,
    /// Bytes of path text held so far (entries and implied directories).
    pub(super) path_bytes: u64,
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
