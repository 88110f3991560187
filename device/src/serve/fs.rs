//! The FUSE adapter: a fixed tree built from the manifest, reads (and, on a
//! `--writable` mount, writes and fsyncs) handed to
//! [`Core`](crate::serve::core::Core).
//!
//! It never blocks a worker thread on the link: a read of missing pages
//! is parked in the core with its reply. Content is immutable for the
//! life of a mount, so attributes and entries get long timeouts and opened
//! files keep the kernel's page cache across opens. Every entry shows the
//! modification time the host gave it (as its access and change times
//! too), so they stay the same across restarts; the root, which has no
//! entry, shows the newest of them. A symbolic link is served as one, with
//! its target. Every call that would change the tree answers EROFS, and
//! every ioctl ENOTTY. On a writable mount a served file takes writes in
//! place but keeps its size: a truncate or an extension answers EPERM or
//! EFBIG.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

use feedfs_protocol::EntryKind;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, InitFlags, IoctlFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::serve::core::SharedCore;
use crate::serve::opens::Opens;
use crate::serve::tree::{Node, Tree};

/// Attributes never change while mounted.
const TTL: Duration = Duration::from_secs(24 * 3600);

pub struct FeedFs {
    core: SharedCore,
    tree: Tree,
    /// Tells the daemon the FUSE session ended.
    on_unmount: Box<dyn Fn() + Send + Sync>,
    opens: Opens,
    /// Served files take writes (`mount --writable`).
    writable: bool,
}

impl FeedFs {
    pub fn new(
        core: SharedCore,
        writable: bool,
        on_unmount: impl Fn() + Send + Sync + 'static,
    ) -> FeedFs {
        FeedFs {
            tree: Tree::new(core.manifest()),
            core,
            on_unmount: Box::new(on_unmount),
            opens: Opens::default(),
            writable,
        }
    }

    fn node(&self, ino: INodeNo) -> Option<&Node> {
        self.tree.node(ino)
    }

    fn attr(&self, ino: u64, n: &Node) -> FileAttr {
        self.tree.attr(ino, n)
    }
}

impl Filesystem for FeedFs {
    fn destroy(&mut self) {
        (self.on_unmount)();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(p) = self.node(parent) else {
            return reply.error(Errno::ENOENT);
        };
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        match p.children.binary_search_by(|c| c.0.as_str().cmp(name)) {
            Ok(i) => {
                let ino = p.children[i].1;
                match self.tree.node(INodeNo(ino)) {
                    Some(n) => reply.entry(&TTL, &self.attr(ino, n), Generation(0)),
                    None => reply.error(Errno::ENOENT),
                }
            }
            Err(_) => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.node(ino) {
            Some(n) => reply.attr(&TTL, &self.attr(ino.0, n)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Passthrough needs a stacking depth of 1 (0 makes every backing open
        // fail) and must not be combined with the writeback cache.
        match config.add_capabilities(InitFlags::FUSE_PASSTHROUGH) {
            Ok(()) if config.set_max_stack_depth(1).is_ok() => self.opens.enable_passthrough(),
            _ => log::info!("kernel passthrough not available; reads go through the daemon"),
        }
        Ok(())
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let Some(n) = self.node(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match n.kind {
            EntryKind::File => {}
            EntryKind::Dir => return reply.error(Errno::EISDIR),
            // The kernel follows links before it opens: not reached.
            EntryKind::Symlink => return reply.error(Errno::ELOOP),
        }
        let writing = flags.acc_mode() != OpenAccMode::O_RDONLY;
        if writing && !self.writable {
            return reply.error(Errno::EROFS);
        }
        let Some(id) = n.id else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(why) = self.core.held(id) {
            log::warn!("open of {} refused: {why}", self.core.path_of(id));
            return reply.error(Errno::EIO);
        }
        match self.core.file(id) {
            Some(file) if writing => match file.prepare_writes() {
                Ok(()) => self.opens.open(ino.0, file, false, reply),
                Err(e) => {
                    log::error!(
                        "cannot make the writes file of {}: {e}",
                        self.core.path_of(id)
                    );
                    reply.error(Errno::EIO)
                }
            },
            Some(file) => self.opens.open(ino.0, file, !self.writable, reply),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.opens.release(ino.0, fh);
        reply.ok();
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.node(ino).and_then(|n| n.id) {
            Some(id) => self.core.read_by(id, offset, size, req.pid(), reply),
            None => reply.error(Errno::EISDIR),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.node(ino) {
            Some(n) if n.kind == EntryKind::Symlink => reply.data(n.target.as_bytes()),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(n) = self.node(ino) else {
            return reply.error(Errno::ENOENT);
        };
        if n.kind != EntryKind::Dir {
            return reply.error(Errno::ENOTDIR);
        }
        let fixed = [(".".to_string(), ino.0), ("..".to_string(), n.parent)];
        for (i, (name, child)) in fixed
            .iter()
            .chain(n.children.iter())
            .enumerate()
            .skip(offset as usize)
        {
            let kind = match self
                .tree
                .node(INodeNo(*child))
                .map_or(EntryKind::File, |c| c.kind)
            {
                EntryKind::File => FileType::RegularFile,
                EntryKind::Dir => FileType::Directory,
                EntryKind::Symlink => FileType::Symlink,
            };
            if reply.add(INodeNo(*child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let bytes = self.core.manifest().total_bytes();
        reply.statfs(
            bytes.div_ceil(4096),
            0,
            0,
            self.tree.inodes(),
            0,
            4096,
            255,
            4096,
        );
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.node(ino).and_then(|n| n.id) {
            Some(id) => match self.core.fsync(id) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            },
            None => reply.ok(),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    /// No ioctl applies to a served file. Programs ask anyway (isatty(3),
    /// so every Python `open()`, sends TCGETS): answer what a regular file
    /// answers, quietly.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        // Not ENODATA: ENOSYS tells the kernel that no entry has extended
        // attributes, so it stops asking (it asks for security.capability
        // before every write, a round trip to the daemon each time).
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let Some(n) = self.node(ino) else {
            return reply.error(Errno::ENOENT);
        };
        // A writable mount answers a truncate to the same size (as
        // `open(O_TRUNC)` of an empty file sends) and refuses any other:
        // sizes are fixed. Mode, owner and times stay the host's.
        match size {
            _ if !self.writable || mode.is_some() || uid.is_some() || gid.is_some() => {
                reply.error(Errno::EROFS)
            }
            Some(s) if s != n.size => reply.error(Errno::EPERM),
            _ => reply.attr(&TTL, &self.attr(ino.0, n)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if !self.writable {
            return reply.error(Errno::EROFS);
        }
        match self.node(ino).and_then(|n| n.id) {
            Some(id) => self
                .core
                .write(id, offset, data, req.pid(), Box::new(reply)),
            None => reply.error(Errno::EISDIR),
        }
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _r: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _l: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _np: INodeNo,
        _nn: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }
}
