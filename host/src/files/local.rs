//! Sources on this machine: a regular file, and a block device (`/dev/sdb`,
//! `/dev/loop0`) named on the command line, served as a file of the
//! device's size, read-only, with the same page-aligned positioned reads.
//!
//! A block device's size is where a seek to its end lands (the size
//! `BLKGETSIZE64` gives, without an ioctl). Its stamp is that size and its
//! device number; its identity is the 128-bit xxh3 of its served name, its
//! size, its device number, its first and last 64 KiB and, for a loop
//! device, the path of its backing file with that file's inode,
//! modification and status-change times. So a store never resumes from
//! pages of another disk put behind the same node, nor of a loop device
//! set up on another image or after its image was written. A device
//! written while it is pushed is not noticed unless its size changes:
//! push a device nothing writes to (a partition unmounted, or mounted
//! read-only).

use std::fs::{self, File, Metadata};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3Default;

use crate::files::backend::{Backend, SourceError};
use crate::files::stamp::{describe_change, Stamp, IDENTITY_EDGE};

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SourceError + '_ {
    move |error| SourceError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// An open regular file, checked against its stamp around every read.
pub struct LocalFile {
    file: File,
    path: PathBuf,
    stamp: Stamp,
}

impl LocalFile {
    /// Open `path`, promised as `stamp` in the manifest.
    pub fn open(path: &Path, stamp: &Stamp) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(io_err(path))?;
        let f = LocalFile {
            file,
            path: path.to_path_buf(),
            stamp: *stamp,
        };
        f.check()?;
        Ok(f)
    }

    fn check(&self) -> Result<(), SourceError> {
        let meta = self.file.metadata().map_err(io_err(&self.path))?;
        changed(&self.path, &self.stamp, &Stamp::of(&meta))
    }
}

impl Backend for LocalFile {
    fn read_exact_at(
        &mut self,
        buf: &mut [u8],
        offset: u64,
        _wanted: &dyn Fn(u64, u64) -> bool,
    ) -> Result<(), SourceError> {
        let read = self.file.read_exact_at(buf, offset);
        // Checked after the read too, and after a failed one: a file
        // rewritten in place while it is being pushed must not reach the
        // device as a mix of two versions, and one cut short is a change.
        self.check()?;
        read.map_err(io_err(&self.path))
    }
}

fn changed(path: &Path, was: &Stamp, now: &Stamp) -> Result<(), SourceError> {
    if was == now {
        return Ok(());
    }
    Err(SourceError::Changed {
        path: path.to_path_buf(),
        change: describe_change(was, now),
    })
}

/// An open block device, its size checked after every read.
pub struct BlockDevice {
    file: File,
    path: PathBuf,
    stamp: Stamp,
}

impl BlockDevice {
    /// Open the device at `path`, promised as `was` in the manifest.
    pub fn open(path: &Path, was: &Stamp) -> Result<Self, SourceError> {
        let (file, stamp) = open_device(path).map_err(io_err(path))?;
        changed(path, was, &stamp)?;
        Ok(BlockDevice {
            file,
            path: path.to_path_buf(),
            stamp,
        })
    }
}

impl Backend for BlockDevice {
    fn read_exact_at(
        &mut self,
        buf: &mut [u8],
        offset: u64,
        _wanted: &dyn Fn(u64, u64) -> bool,
    ) -> Result<(), SourceError> {
        let read = self.file.read_exact_at(buf, offset);
        let size = (&self.file)
            .seek(SeekFrom::End(0))
            .map_err(io_err(&self.path))?;
        changed(&self.path, &self.stamp, &Stamp { size, ..self.stamp })?;
        read.map_err(io_err(&self.path))
    }
}

/// Whether `meta` is a block device's.
pub fn is_block_device(meta: &Metadata) -> bool {
    meta.file_type().is_block_device()
}

/// Open a block device read-only, with its stamp: its size, and its
/// device number in place of an inode (no times: a device node's are not
/// its content's).
pub fn open_device(path: &Path) -> io::Result<(File, Stamp)> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    if !is_block_device(&meta) {
        return Err(io::Error::other("it is no longer a block device"));
    }
    let size = file.seek(SeekFrom::End(0))?;
    let stamp = Stamp {
        size,
        mtime_ns: 0,
        ctime_ns: 0,
        ino: meta.rdev(),
    };
    Ok((file, stamp))
}

/// The identity of an open block device; see the module documentation.
pub fn device_identity(rel: &str, stamp: &Stamp, file: &File) -> io::Result<[u8; 16]> {
    let mut h = Xxh3Default::new();
    h.update(b"block device");
    h.update(&(rel.len() as u64).to_le_bytes());
    h.update(rel.as_bytes());
    h.update(&stamp.size.to_le_bytes());
    h.update(&stamp.ino.to_le_bytes());
    let edge = IDENTITY_EDGE.min(stamp.size);
    let mut buf = vec![0u8; edge as usize];
    file.read_exact_at(&mut buf, 0)?;
    h.update(&buf);
    file.read_exact_at(&mut buf, stamp.size - edge)?;
    h.update(&buf);
    if let Some((backing, meta)) = loop_backing(stamp.ino) {
        let b = Stamp::of(&meta);
        h.update(backing.as_bytes());
        h.update(&b.ino.to_le_bytes());
        h.update(&b.mtime_ns.to_le_bytes());
        h.update(&b.ctime_ns.to_le_bytes());
    }
    Ok(h.digest128().to_le_bytes())
}

/// A loop device's backing file (from sysfs) and its metadata, for the device `rdev`.
fn loop_backing(rdev: u64) -> Option<(String, Metadata)> {
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let sys = format!("/sys/dev/block/{major}:{minor}/loop/backing_file");
    let backing = fs::read_to_string(sys).ok()?.trim_end().to_string();
    let meta = fs::metadata(&backing).ok()?;
    Some((backing, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_not_a_block_device() {
        let meta = fs::metadata("/proc/self/exe").unwrap();
        assert!(!is_block_device(&meta));
        let err = open_device(Path::new("/proc/self/exe")).unwrap_err();
        assert_eq!(err.to_string(), "it is no longer a block device");
    }

    #[test]
    fn an_unchanged_stamp_passes_and_a_changed_one_says_what() {
        let was = Stamp {
            size: 8192,
            ino: 7,
            ..Stamp::default()
        };
        assert!(changed(Path::new("/dev/x"), &was, &was).is_ok());
        let err = changed(Path::new("/dev/x"), &was, &Stamp { size: 4096, ..was }).unwrap_err();
        assert!(
            err.to_string().contains(
                "/dev/x changed while it was being pushed: its size went from 8192 to 4096 bytes"
            ),
            "{err}"
        );
    }
}
