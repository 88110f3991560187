//! The mount's tree, built once from the manifest: an inode per entry
//! (the root is inode 1), each directory's children sorted by name, and
//! the attributes the kernel is given for each.

use std::collections::HashMap;
use std::time::SystemTime;

use feedfs_protocol::{EntryKind, FileId, Manifest};
use fuser::{FileAttr, FileType, INodeNo};

/// One entry of the tree.
pub struct Node {
    /// The host's id, for files and listed directories.
    pub id: Option<FileId>,
    pub kind: EntryKind,
    pub size: u64,
    mode: u32,
    mtime: SystemTime,
    /// A symbolic link's target (empty for other kinds).
    pub target: String,
    pub parent: u64,
    /// Children sorted by name: (name, inode).
    pub children: Vec<(String, u64)>,
}

/// Every entry of a manifest by inode, and who owns them.
pub struct Tree {
    /// Inode `i` is `nodes[i - 1]`; inode 1 is the root.
    nodes: Vec<Node>,
    uid: u32,
    gid: u32,
}

impl Tree {
    /// The tree of `manifest`, owned by this process's user. The root,
    /// which has no entry, shows the newest modification time of all.
    pub fn new(manifest: &Manifest) -> Tree {
        let newest = manifest
            .entries()
            .iter()
            .map(|e| e.mtime)
            .max()
            .unwrap_or_default();
        let mut nodes = vec![Node {
            id: None,
            kind: EntryKind::Dir,
            size: 0,
            mode: 0o755,
            mtime: newest.to_system_time(),
            target: String::new(),
            parent: 1,
            children: Vec::new(),
        }];
        let mut ino_of_path: HashMap<&str, u64> = HashMap::new();
        ino_of_path.insert("", 1);
        for e in manifest.entries() {
            let ino = nodes.len() as u64 + 1;
            // Parents come before children in the manifest.
            let parent = ino_of_path.get(e.parent()).copied().unwrap_or(1);
            nodes[(parent - 1) as usize]
                .children
                .push((e.name().to_string(), ino));
            ino_of_path.insert(e.path.as_str(), ino);
            nodes.push(Node {
                id: e.id,
                kind: e.kind,
                size: e.size,
                mode: e.mode,
                mtime: e.mtime.to_system_time(),
                target: e.target.clone(),
                parent,
                children: Vec::new(),
            });
        }
        drop(ino_of_path);
        for n in &mut nodes {
            n.children.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Tree {
            nodes,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }

    pub fn node(&self, ino: INodeNo) -> Option<&Node> {
        self.nodes.get((ino.0 as usize).checked_sub(1)?)
    }

    /// Inodes in the tree, the root included.
    pub fn inodes(&self) -> u64 {
        self.nodes.len() as u64
    }

    /// The attributes of inode `ino`, which is `n`.
    pub fn attr(&self, ino: u64, n: &Node) -> FileAttr {
        let (kind, nlink, size) = match n.kind {
            EntryKind::File => (FileType::RegularFile, 1, n.size),
            EntryKind::Dir => (FileType::Directory, 2, 0),
            EntryKind::Symlink => (FileType::Symlink, 1, n.target.len() as u64),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: n.mtime,
            mtime: n.mtime,
            ctime: n.mtime,
            crtime: n.mtime,
            kind,
            perm: n.mode as u16,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 65536,
            flags: 0,
        }
    }
}
