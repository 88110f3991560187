//! Opening a served file's backend, whatever kind of source it is: a
//! local file, a block device or an HTTP(S) URL (S3 objects are URLs).

use crate::files::backend::{Backend, SourceError};
use crate::files::http::ahead::Reader;
use crate::files::local::{BlockDevice, LocalFile};
use crate::files::manifest::{Origin, ServedEntry};

/// Open the backend of a file entry, checking that it is still the file announced.
pub fn open(entry: &ServedEntry) -> Result<Box<dyn Backend>, SourceError> {
    Ok(match &entry.origin {
        Origin::Local => Box::new(LocalFile::open(&entry.source, &entry.stamp)?),
        Origin::BlockDevice => Box::new(BlockDevice::open(&entry.source, &entry.stamp)?),
        Origin::Http(remote) => Box::new(Reader::new(remote.clone())),
    })
}
