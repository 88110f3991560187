//! Holes in a data file: whether a range holds data (`SEEK_DATA`), and
//! punching a range out (`fallocate(PUNCH_HOLE | KEEP_SIZE)`), so a page
//! of zeros takes no space.

use std::fs::File;
use std::io;

use nix::errno::Errno;
use nix::fcntl::{fallocate, FallocateFlags};
use nix::unistd::{lseek, Whence};

/// Whether any of `len` bytes at `offset` of `f` is data rather than a
/// hole. A filesystem without SEEK_DATA says data everywhere.
pub(super) fn holds_data(f: &File, offset: u64, len: u64) -> io::Result<bool> {
    let Ok(start) = libc::off_t::try_from(offset) else {
        return Ok(true);
    };
    match lseek(f, start, Whence::SeekData) {
        Ok(next) => Ok((next as u64) < offset + len),
        // No data at or after `offset`.
        Err(Errno::ENXIO) => Ok(false),
        Err(Errno::EINVAL | Errno::EOPNOTSUPP) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Make `len` bytes at `offset` of `f` a hole, keeping the file's size.
pub(super) fn punch_hole(f: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(start), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    let mode = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    fallocate(f, mode, start, len)?;
    Ok(())
}
