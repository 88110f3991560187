//! The checks a manifest passes: each path ([`check_path`]) and the list
//! as a whole, entry by entry ([`ManifestBuilder`]).

use std::collections::HashMap;

use super::{
    Entry, Manifest, ManifestError, IMPLIED_DIR_MODE, MAX_ENTRIES, MAX_FILE_SIZE, MAX_PATH_BYTES,
    MAX_TOTAL_PAGES, NAME_MAX,
};
use crate::message::{EntryKind, Message};

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

/// Check a symbolic link's target: relative, without NUL, and resolving
/// (from the link's own directory) to a place inside the mount, so a link
/// from the host never leads a reader on the device outside what it
/// serves. `..` may only come first: the leading ones climb through the
/// link's own parents, which are real directories (nothing lies inside a
/// file or a link), at most to the mount's root; every component after
/// them goes down, and a link met on the way down resolves inside the
/// mount by this same rule. (A `..` after a component could climb out of
/// wherever a link there leads: `d/up -> ..`, `d/x -> up/../..`.)
/// Returns the target unchanged when it is safe.
pub fn check_target<'t>(path: &str, target: &'t str) -> Result<&'t str, ManifestError> {
    let bad = || ManifestError::LinkOutside {
        path: path.into(),
        target: target.replace('\0', "\\0"),
    };
    if target.is_empty() || target.contains('\0') || target.starts_with('/') {
        return Err(bad());
    }
    // Depth of the link's directory below the mount's root.
    let mut depth = path.matches('/').count();
    let mut down = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if down => return Err(bad()),
            ".." => depth = depth.checked_sub(1).ok_or_else(bad)?,
            _ => down = true,
        }
    }
    Ok(target)
}

/// Accepts entries one at a time, then the closing count.
#[derive(Debug, Default)]
pub struct ManifestBuilder {
    pub(super) m: Manifest,
    /// Pages of all files accepted so far.
    pages: u64,
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
                mtime,
                identity,
                path,
                target,
            } => self.push(Entry {
                id: Some(id),
                kind,
                path: path.to_string(),
                size,
                mode,
                mtime,
                identity,
                target: target.to_string(),
            }),
            ref other => Err(ManifestError::Unexpected(type_name(other))),
        }
    }

    /// Accept one entry, the host's: `entry.id` is its id (`None` is
    /// refused as a wrong id).
    pub fn push(&mut self, mut entry: Entry) -> Result<(), ManifestError> {
        let path = check_path(&entry.path)?;
        let expected = self.m.by_id.len() as u32;
        let id = entry.id.map_or(u32::MAX, |i| i.0);
        if id != expected {
            return Err(ManifestError::BadId {
                path: path.into(),
                expected,
                got: id,
            });
        }
        if expected >= MAX_ENTRIES || self.m.entries.len() >= (2 * MAX_ENTRIES) as usize {
            return Err(ManifestError::TooManyEntries);
        }
        let size = entry.size;
        match entry.kind {
            EntryKind::File => {
                if size > MAX_FILE_SIZE {
                    return Err(ManifestError::FileTooLarge {
                        path: path.into(),
                        size,
                    });
                }
                let total = self.pages + crate::page_count(size);
                if total > MAX_TOTAL_PAGES {
                    return Err(ManifestError::TooManyPages {
                        path: path.into(),
                        total,
                    });
                }
            }
            EntryKind::Dir | EntryKind::Symlink if size != 0 => {
                return Err(ManifestError::NotAFileWithSize(path.into()))
            }
            EntryKind::Dir => {}
            EntryKind::Symlink => {
                check_target(path, &entry.target)?;
            }
        }
        if entry.kind != EntryKind::Symlink && !entry.target.is_empty() {
            return Err(ManifestError::TargetOfNonLink(path.into()));
        }
        self.add_parents(&entry)?;
        entry.mode &= 0o777;
        let path = entry.path.clone();
        match self.kinds.get(&path).copied() {
            // A directory a path implied earlier, now listed: take the host's mode and id.
            Some((EntryKind::Dir, i))
                if entry.kind == EntryKind::Dir && self.m.entries[i].id.is_none() =>
            {
                self.m.entries[i] = entry;
                self.m.by_id.push(i);
            }
            Some(_) => return Err(ManifestError::Duplicate(path)),
            None => {
                self.kinds.insert(path, (entry.kind, self.m.entries.len()));
                self.m.by_id.push(self.m.entries.len());
                self.m.total_bytes = self.m.total_bytes.saturating_add(entry.size);
                self.pages += entry.pages();
                self.path_bytes += (entry.path.len() + entry.target.len()) as u64;
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
    fn add_parents(&mut self, entry: &Entry) -> Result<(), ManifestError> {
        let path = entry.path.as_str();
        let mut new = Vec::new();
        for (end, _) in path.rmatch_indices('/') {
            let parent = &path[..end];
            match self.kinds.get(parent) {
                Some((EntryKind::File | EntryKind::Symlink, _)) => {
                    return Err(ManifestError::InsideFile {
                        path: path.into(),
                        parent: parent.into(),
                    })
                }
                Some((EntryKind::Dir, _)) => break,
                None => new.push(parent),
            }
        }
        let text: u64 = new.iter().map(|p| p.len() as u64).sum::<u64>()
            + (path.len() + entry.target.len()) as u64;
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
                // The time of the entry that implied it: the same in
                // every session with this manifest.
                mtime: entry.mtime,
                identity: [0; 16],
                target: String::new(),
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
        crate::MessageType::Run => "Run",
        crate::MessageType::StreamDone => "StreamDone",
        crate::MessageType::Complete => "Complete",
        crate::MessageType::Error => "Error",
        crate::MessageType::Goodbye => "Goodbye",
    }
}
