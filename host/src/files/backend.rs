//! What the sender needs of a served file once the manifest is built,
//! whatever kind of source it is: "read exactly these bytes", and a typed
//! error when the file is no longer the one announced.

use std::io;
use std::path::PathBuf;

use feedfs_protocol::FileId;

use crate::files::http::error::HttpError;

/// Why a run could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {}: {error}", .path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{} changed while it was being pushed: {change}; the device keeps serving the files of this push as they were announced and refuses a changed set, so stop the daemon on the device (SIGTERM, or umount its mount point), then push again", .path.display())]
    Changed {
        /// The file's path, or a URL without its secrets.
        path: PathBuf,
        /// What changed, in words ([`crate::files::stamp::describe_change`]).
        change: String,
    },
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("file id {0} is not a file of the manifest")]
    NotAFile(FileId),
}

/// One opened served file, of whatever kind; sent between the sessions
/// of several devices ([`crate::files::shared`]).
pub trait Backend: Send {
    /// Fill `buf` with the file's bytes from `offset` (page-aligned),
    /// exactly, or say why not; a file that is no longer the one announced
    /// is [`SourceError::Changed`]. A source that fetches ahead may fetch
    /// the pages `(first, count)` for which `wanted` is true, and no others.
    fn read_exact_at(
        &mut self,
        buf: &mut [u8],
        offset: u64,
        wanted: &dyn Fn(u64, u64) -> bool,
    ) -> Result<(), SourceError>;
}

/// For reads that want nothing fetched ahead.
pub fn nothing_ahead(_first: u64, _count: u64) -> bool {
    false
}
