//! The served set: the walk from command-line paths and URLs to manifest
//! entries, and each file's identity.
//!
//! A block device named on the command line is a read-only file of the
//! device's size ([`crate::files::local`]); an HTTP(S) URL is a read-only
//! file named by its last path segment ([`crate::files::http`]); each
//! entry's [`Origin`] says which. Each PATH's basename becomes a top-level entry; directories are walked
//! recursively in sorted byte order, each directory listed before its
//! contents, so the same tree always gives the same manifest. Every entry
//! carries its modification time. Symlinks named on the command line are
//! followed. Inside a directory, a symbolic link whose target (as
//! `readlink` gives it) is relative and resolves, from the link's own
//! directory, inside the pushed tree is served as a link of its own
//! (size 0, mode 0o777, its target as it is); any other link (absolute, or
//! leading out of the tree) is left out, as are special files (FIFOs,
//! sockets, devices) and names that are not UTF-8, with a warning
//! (rate-limited), and listed in [`ServedSet::skipped`] for the push's
//! summary; the wire format carries UTF-8 paths only. Hard links are served once per name, each as a file of its
//! own. A feedfs store (a directory holding `lock` and `files/`) anywhere in
//! the pushed paths is refused at once, as are a non-UTF-8 name given on
//! the command line and duplicate top-level names. Every entry goes through
//! the protocol's [`ManifestBuilder`], so the host refuses before the
//! session whatever the device would refuse.
//!
//! A file's identity is the 128-bit xxh3 of its relative path (length, then
//! bytes) and its size, then:
//! - for a file of at most [`FULL_DIGEST_MAX`] bytes (128 KiB), its whole
//!   content: the identity changes exactly when the bytes do, and touching
//!   or chmod-ing such a file costs nothing;
//! - for a larger file, its modification time and its status-change time
//!   (ctime) in nanoseconds, its inode number and the contents of its first
//!   and last 64 KiB. The ctime is what makes an edit in place that sets the
//!   mtime back (`touch -d`, `touch -r`, `rsync --inplace -t`, reproducible
//!   builds) a new identity: no call can set it back. So a device never
//!   resumes from pages of an older version; the price is that a `touch`,
//!   `chmod` or `chown` of a large file makes the device fetch it again.
//!
//! The small-file digest costs no extra read: the two 64 KiB edges of such
//! a file are its whole content. Every page also carries its own CRC-32,
//! which guards the link, not the version.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::files::http::{self, Client, ClientOptions, HttpError, Remote};
use crate::files::local;
use feedfs_protocol::manifest::{check_path, check_target};
use feedfs_protocol::warn::WarnLimit;
use feedfs_protocol::{EntryKind, FileId, ManifestBuilder, ManifestError, Message, Mtime};

pub use crate::files::skip::{escape_path, SkipReason};
pub use crate::files::stamp::{identity, Stamp, FULL_DIGEST_MAX, IDENTITY_EDGE};

/// Why the served set could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("cannot read {}: {error}", .path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{} has a name that is not valid UTF-8; rename it or leave it out", .0.display())]
    NonUtf8(PathBuf),
    #[error("{} has no name to serve it under; name the directory itself instead", .0.display())]
    NoName(PathBuf),
    #[error("{} and {} would both be served as {name:?}; top-level names must be unique", .first.display(), .second.display())]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{} is neither a regular file, a directory nor a block device", .0.display())]
    NotFileOrDir(PathBuf),
    #[error("{} is a feedfs store (it holds lock and files/); a store is never pushed: leave it out of the paths, or keep it outside the tree you push", .0.display())]
    Store(PathBuf),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{} cannot be served: {reason}", .path.display())]
    Refused {
        path: PathBuf,
        reason: ManifestError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalkError + '_ {
    move |error| WalkError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// One entry of the served set, with where its content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedEntry {
    pub id: FileId,
    pub kind: EntryKind,
    /// The path on the device, relative, `/`-separated.
    pub path: String,
    /// The path on this machine.
    pub source: PathBuf,
    pub size: u64,
    /// Permission bits (`st_mode & 0o777`; 0o777 for a link).
    pub mode: u32,
    /// The modification time the host's filesystem gives.
    pub mtime: Mtime,
    /// Zeros for directories and links.
    pub identity: [u8; 16],
    /// A link's target, as `readlink` gives it; empty for other kinds.
    pub target: String,
    /// What the file looked like when the manifest was built.
    pub stamp: Stamp,
    /// What kind of source the content comes from.
    pub origin: Origin,
}

/// Where a served file's content comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Origin {
    /// A file on this machine (and every directory and link).
    #[default]
    Local,
    /// A block device on this machine, named on the command line.
    BlockDevice,
    /// An HTTP(S) URL, named on the command line.
    Http(Arc<Remote>),
}

impl ServedEntry {
    /// This entry as a manifest `Entry` message.
    pub fn message(&self) -> Message<'_> {
        Message::Entry {
            id: self.id,
            kind: self.kind,
            size: self.size,
            mode: self.mode,
            mtime: self.mtime,
            identity: self.identity,
            path: &self.path,
            target: &self.target,
        }
    }

    /// Number of pages (0 for a directory or a link).
    pub fn pages(&self) -> u64 {
        match self.kind {
            EntryKind::File => feedfs_protocol::page_count(self.size),
            EntryKind::Dir | EntryKind::Symlink => 0,
        }
    }
}

/// Every entry to serve, ids `0..n` in order, checked as the device will check them.
#[derive(Debug, Clone, Default)]
pub struct ServedSet {
    pub entries: Vec<ServedEntry>,
    /// Sum of the file sizes.
    pub total_bytes: u64,
    /// What the walk left out, in the order found.
    pub skipped: Vec<(PathBuf, SkipReason)>,
}

impl ServedSet {
    /// `left out 1 symlink, 2 FIFOs`, or `None` when nothing was.
    pub fn left_out(&self) -> Option<String> {
        let mut reasons: Vec<SkipReason> = self.skipped.iter().map(|s| s.1).collect();
        reasons.sort();
        let mut parts = Vec::new();
        for r in reasons.chunk_by(|a, b| a == b) {
            parts.push(r[0].count(r.len()));
        }
        (!parts.is_empty()).then(|| format!("left out {}", parts.join(", ")))
    }
}

impl ServedSet {
    /// The entry with this id.
    pub fn get(&self, id: FileId) -> Option<&ServedEntry> {
        self.entries.get(id.0 as usize)
    }

    /// The file entries.
    pub fn files(&self) -> impl Iterator<Item = &ServedEntry> {
        self.entries.iter().filter(|e| e.kind == EntryKind::File)
    }

    /// The closing `ManifestEnd` message.
    pub fn manifest_end(&self) -> Message<'static> {
        Message::ManifestEnd {
            entries: self.entries.len() as u32,
            total_bytes: self.total_bytes,
        }
    }
}

/// Build the served set from command-line paths, none of them a URL.
pub fn walk(paths: &[PathBuf]) -> Result<ServedSet, WalkError> {
    walk_with(paths, &ClientOptions::default())
}

/// Build the served set from command-line paths and URLs, fetching
/// with `options`.
pub fn walk_with(paths: &[PathBuf], options: &ClientOptions) -> Result<ServedSet, WalkError> {
    let mut w = Walker {
        set: ServedSet::default(),
        builder: ManifestBuilder::new(),
        warnings: WarnLimit::new(20, Duration::from_secs(1)),
        client: None,
    };
    let mut top: HashMap<String, &PathBuf> = HashMap::new();
    for path in paths {
        if let Some(arg) = path.to_str().filter(|p| p.starts_with("s3://")) {
            let client = w.client(options)?;
            w.s3(&client, options, arg, &mut top, path)?;
            continue;
        }
        if let Some(url) = path.to_str().filter(|p| http::is_url(p)) {
            let client = w.client(options)?;
            let remote = Remote::probe(&client, url)?;
            let name = remote.name().to_string();
            if let Some(first) = top.insert(name.clone(), path) {
                return Err(WalkError::Duplicate {
                    name,
                    first: first.clone(),
                    second: PathBuf::from(remote.shown()),
                });
            }
            w.remote(remote)?;
            continue;
        }
        let name = top_name(path)?;
        if let Some(first) = top.insert(name.clone(), path) {
            return Err(WalkError::Duplicate {
                name,
                first: first.clone(),
                second: path.clone(),
            });
        }
        let meta = fs::metadata(path).map_err(io_err(path))?;
        if meta.is_dir() {
            w.dir(path, name, &meta)?;
        } else if meta.is_file() {
            w.file(path, name)?;
        } else if local::is_block_device(&meta) {
            w.block_device(path, name)?;
        } else {
            return Err(WalkError::NotFileOrDir(path.clone()));
        }
    }
    let held_back = w.warnings.take_held_back();
    if held_back > 0 {
        log::warn!("{held_back} more left out, not named here; the summary counts them");
    }
    let n = w.set.entries.len() as u32;
    let total = w.set.total_bytes;
    // Every entry was accepted one by one; this checks the closing counts too.
    w.builder
        .finish(n, total)
        .map_err(|reason| WalkError::Refused {
            path: PathBuf::from("the manifest"),
            reason,
        })?;
    Ok(w.set)
}

/// The name a command-line path is served under: its last component, or
/// for `.`-like paths the name of the directory it resolves to.
fn top_name(path: &Path) -> Result<String, WalkError> {
    let resolved;
    let name = match path.file_name() {
        Some(n) => n,
        None => {
            resolved = fs::canonicalize(path).map_err(io_err(path))?;
            resolved
                .file_name()
                .ok_or_else(|| WalkError::NoName(path.to_path_buf()))?
        }
    };
    name.to_str()
        .map(str::to_string)
        .ok_or_else(|| WalkError::NonUtf8(path.to_path_buf()))
}

struct Walker {
    set: ServedSet,
    builder: ManifestBuilder,
    warnings: WarnLimit,
    /// Made at the first URL, shared by all.
    client: Option<Arc<Client>>,
}

/// Whether `dir` is a feedfs store: the daemon creates `lock` and `files/`
/// in it before anything else (docs/store.md).
fn is_store(dir: &Path) -> bool {
    dir.join("lock").is_file() && dir.join("files").is_dir()
}

impl Walker {
    fn push(&mut self, mut entry: ServedEntry) -> Result<(), WalkError> {
        entry.id = FileId(self.set.entries.len() as u32);
        check_path(&entry.path)
            .and_then(|_| self.builder.push_message(&entry.message()))
            .map_err(|reason| WalkError::Refused {
                path: entry.source.clone(),
                reason,
            })?;
        self.set.total_bytes = self.set.total_bytes.saturating_add(entry.size);
        self.set.entries.push(entry);
        Ok(())
    }

    fn skip(&mut self, path: PathBuf, why: SkipReason) {
        if self.warnings.check(Instant::now()).is_some() {
            log::warn!("leaving out {}: {}", escape_path(&path), why.warning());
        }
        self.set.skipped.push((path, why));
    }

    fn dir(&mut self, source: &Path, rel: String, meta: &Metadata) -> Result<(), WalkError> {
        if is_store(source) {
            return Err(WalkError::Store(source.to_path_buf()));
        }
        self.push(ServedEntry {
            id: FileId(0),
            kind: EntryKind::Dir,
            path: rel.clone(),
            source: source.to_path_buf(),
            size: 0,
            mode: meta.mode() & 0o777,
            mtime: mtime_of(source, meta)?,
            identity: [0; 16],
            target: String::new(),
            stamp: Stamp::default(),
            origin: Origin::Local,
        })?;
        let mut children = Vec::new();
        for child in fs::read_dir(source).map_err(io_err(source))? {
            let child = child.map_err(io_err(source))?;
            children.push(child);
        }
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let path = child.path();
            let Some(name) = child.file_name().to_str().map(str::to_string) else {
                self.skip(path, SkipReason::NonUtf8);
                continue;
            };
            let rel = format!("{rel}/{name}");
            let ty = child.file_type().map_err(io_err(&path))?;
            if ty.is_dir() {
                let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
                self.dir(&path, rel, &meta)?;
            } else if ty.is_file() {
                self.file(&path, rel)?;
            } else if ty.is_symlink() && self.link(&path, &rel)? {
                continue;
            } else {
                let why = if ty.is_symlink() {
                    SkipReason::Symlink
                } else if ty.is_fifo() {
                    SkipReason::Fifo
                } else if ty.is_socket() {
                    SkipReason::Socket
                } else {
                    SkipReason::Device
                };
                self.skip(path, why);
            }
        }
        Ok(())
    }

    fn file(&mut self, source: &Path, rel: String) -> Result<(), WalkError> {
        let file = File::open(source).map_err(io_err(source))?;
        let meta = file.metadata().map_err(io_err(source))?;
        let stamp = Stamp::of(&meta);
        let identity = identity(&rel, &stamp, &file).map_err(io_err(source))?;
        self.push(ServedEntry {
            id: FileId(0),
            kind: EntryKind::File,
            path: rel,
            source: source.to_path_buf(),
            size: stamp.size,
            mode: meta.mode() & 0o777,
            mtime: mtime_of(source, &meta)?,
            identity,
            target: String::new(),
            stamp,
            origin: Origin::Local,
        })
    }

    fn block_device(&mut self, source: &Path, rel: String) -> Result<(), WalkError> {
        let (file, stamp) = local::open_device(source).map_err(io_err(source))?;
        let meta = file.metadata().map_err(io_err(source))?;
        let identity = local::device_identity(&rel, &stamp, &file).map_err(io_err(source))?;
        self.push(ServedEntry {
            id: FileId(0),
            kind: EntryKind::File,
            path: rel,
            source: source.to_path_buf(),
            size: stamp.size,
            // Read-only on the device, whatever the node's bits say.
            mode: meta.mode() & 0o444,
            mtime: mtime_of(source, &meta)?,
            identity,
            target: String::new(),
            stamp,
            origin: Origin::BlockDevice,
        })
    }

    /// The HTTP client, made at the first URL and shared by all.
    fn client(&mut self, options: &ClientOptions) -> Result<Arc<Client>, WalkError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = Arc::new(Client::new(options)?);
        self.client = Some(c.clone());
        Ok(c)
    }

    fn remote(&mut self, remote: Remote) -> Result<(), WalkError> {
        let rel = remote.name().to_string();
        self.remote_at(remote, rel)
    }

    fn remote_at(&mut self, remote: Remote, rel: String) -> Result<(), WalkError> {
        self.push(ServedEntry {
            id: FileId(0),
            kind: EntryKind::File,
            source: PathBuf::from(remote.shown()),
            size: remote.size(),
            mode: 0o444,
            mtime: remote.mtime(),
            identity: remote.identity(&rel),
            target: String::new(),
            stamp: Stamp {
                size: remote.size(),
                ..Stamp::default()
            },
            path: rel,
            origin: Origin::Http(Arc::new(remote)),
        })
    }

    /// Serve the link at `source` (`rel` on the device) as a link when its
    /// target is relative and stays inside the pushed tree; false when it
    /// is not served that way.
    fn link(&mut self, source: &Path, rel: &str) -> Result<bool, WalkError> {
        let target = fs::read_link(source).map_err(io_err(source))?;
        let Some(target) = target.to_str().filter(|t| inside_tree(rel, t)) else {
            log::debug!(
                "{} -> {}: absolute or out of the pushed tree, not served as a link",
                escape_path(source),
                escape_path(&target)
            );
            return Ok(false);
        };
        log::debug!("{} -> {target}: served as a link", escape_path(source));
        let meta = fs::symlink_metadata(source).map_err(io_err(source))?;
        self.push(ServedEntry {
            id: FileId(0),
            kind: EntryKind::Symlink,
            path: rel.to_string(),
            source: source.to_path_buf(),
            size: 0,
            mode: 0o777,
            mtime: mtime_of(source, &meta)?,
            identity: [0; 16],
            target: target.to_string(),
            stamp: Stamp::default(),
            origin: Origin::Local,
        })?;
        Ok(true)
    }
}

/// The modification time of `meta`, the metadata of `path`.
fn mtime_of(path: &Path, meta: &Metadata) -> Result<Mtime, WalkError> {
    meta.modified().map(Mtime::of).map_err(io_err(path))
}

/// Whether the link at `rel` (its first component the pushed tree's name)
/// with this target resolves, from the link's directory, inside the pushed
/// tree: relative, climbing (with leading `..` only) never above the
/// tree's top, as the device checks it against the mount's root.
fn inside_tree(rel: &str, target: &str) -> bool {
    // The link's path below the pushed tree's top (`rel` starts with the
    // top's own name): the device's own rule, from there.
    let below_top = rel.split_once('/').map_or("", |(_, r)| r);
    !below_top.is_empty() && check_target(below_top, target).is_ok()
}

mod s3walk;
#[cfg(test)]
mod tests;
