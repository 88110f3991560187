//! Why a link to a host ended badly, and what the host is told about it.
//!
//! Every way a link can fail is one [`LinkError`] variant, carrying the
//! numbers and the peer's words it needs. [`LinkError::code`] is the one
//! decision each forces: the [`ErrorCode`] of the Error frame that tells the
//! host, or `None` when the host is not told (it went away, it reported the
//! error itself, or the daemon is stopping). A new variant must make it.

use std::io;

use feedfs_protocol::{ErrorCode, FrameError, HelloError, ManifestError, ParseError};

use crate::serve::core::{CoreError, LandError};

/// Where in a host session the link was when a read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a host's Hello.
    BeforeHello,
    /// Taking the manifest.
    Manifest,
    /// Taking runs of pages.
    Pages,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::BeforeHello => "before the host said hello",
            Phase::Manifest => "during the manifest",
            Phase::Pages => "during the stream",
        })
    }
}

/// How a link to a host failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A frame of another protocol version: no session is possible.
    #[error(transparent)]
    FrameVersion(FrameError),
    /// A Hello from a peer that is not a host, or shares no version with us.
    #[error(transparent)]
    Hello(HelloError),
    /// A damaged frame among the manifest's: an Entry may be lost.
    #[error("damaged frame in the manifest: {0}")]
    DamagedManifest(FrameError),
    /// A frame among the manifest's whose payload is not a message.
    #[error(transparent)]
    BadManifestMessage(ParseError),
    /// An entry of the manifest was refused.
    #[error("manifest refused: {0}")]
    ManifestEntry(ManifestError),
    /// The manifest's closing counts do not match its entries.
    #[error(transparent)]
    ManifestEnd(ManifestError),
    /// The link closed before the manifest was whole.
    #[error("link closed during the manifest")]
    ClosedInManifest,
    /// A later host brought another manifest than the mounted one.
    #[error(
        "this device has other files mounted from an earlier host; unmount them \
         (stop the daemon) before serving a different set"
    )]
    OtherManifest,
    /// The store could not open the manifest's files.
    #[error("cannot open the store: {0}")]
    StoreOpen(CoreError),
    /// The main thread could not mount the files.
    #[error("the device could not mount the files")]
    MountFailed,
    /// A second first manifest (the main thread's answer was taken already).
    #[error("mounted twice")]
    MountedTwice,
    /// The daemon's main thread is gone.
    #[error("daemon is stopping")]
    DaemonStopping,
    /// A Run that is not pages of the manifest, or has the wrong length.
    #[error("host sent a bad run: {0}")]
    BadRun(LandError),
    /// A frame error the stream cannot go on after (a cut, another version).
    #[error("link from host failed: {0}")]
    Frame(FrameError),
    /// The host stopped the session with an Error of its own.
    #[error("host reported an error ({code:?}): {text}")]
    Host { code: ErrorCode, text: String },
    /// Reading the link failed.
    #[error("link read failed {phase}: {error}")]
    Read { phase: Phase, error: io::Error },
    /// The store writer thread is gone.
    #[error("the store writer stopped")]
    WriterStopped,
    /// A thread of the link could not be started.
    #[error("cannot start the {name} thread: {error}")]
    Thread {
        name: &'static str,
        error: io::Error,
    },
}

impl LinkError {
    /// The code of the Error frame that tells the host, or `None` when the
    /// host is not to be told.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            LinkError::Hello(e) => Some(e.code()),
            LinkError::FrameVersion(_) => Some(ErrorCode::Version),
            LinkError::DamagedManifest(_)
            | LinkError::BadManifestMessage(_)
            | LinkError::BadRun(_) => Some(ErrorCode::Protocol),
            LinkError::ManifestEntry(_) | LinkError::ManifestEnd(_) | LinkError::OtherManifest => {
                Some(ErrorCode::Manifest)
            }
            LinkError::StoreOpen(_) => Some(ErrorCode::Store),
            LinkError::MountFailed => Some(ErrorCode::Internal),
            LinkError::ClosedInManifest
            | LinkError::MountedTwice
            | LinkError::DaemonStopping
            | LinkError::Frame(_)
            | LinkError::Host { .. }
            | LinkError::Read { .. }
            | LinkError::WriterStopped
            | LinkError::Thread { .. } => None,
        }
    }

    /// The text of the Error frame: what went wrong, in the host's terms
    /// (a bad run is named, without "host sent").
    pub fn host_text(&self) -> String {
        match self {
            LinkError::BadRun(e) => e.to_string(),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feedfs_protocol::{FileId, Role};

    #[test]
    fn the_host_is_told_the_code_that_names_the_fault() {
        let version = LinkError::Hello(HelloError::Version {
            peer: Role::Host,
            agent: "feedfs-host 9".into(),
            min: 7,
            max: 9,
            ours: 3,
        });
        assert_eq!(version.code(), Some(ErrorCode::Version));
        assert_eq!(
            version.host_text(),
            "host feedfs-host 9 speaks protocol versions 7..=9, this device speaks 3"
        );
        let device = LinkError::Hello(HelloError::WrongRole {
            expected: Role::Host,
            found: Role::Device,
            agent: "feedfs-device 1".into(),
        });
        assert_eq!(device.code(), Some(ErrorCode::Protocol));
        assert_eq!(LinkError::OtherManifest.code(), Some(ErrorCode::Manifest));
        let store = LinkError::StoreOpen(CoreError::OpenFile {
            path: "a/b".into(),
            cause: io::Error::other("disk on fire").into(),
        });
        assert_eq!(store.code(), Some(ErrorCode::Store));
        assert_eq!(store.host_text(), "cannot open the store: disk on fire");
        assert_eq!(LinkError::MountFailed.code(), Some(ErrorCode::Internal));
    }

    #[test]
    fn a_bad_run_is_named_to_the_host_without_blaming_it_twice() {
        let e = LinkError::BadRun(LandError::PastEnd {
            file: FileId(0),
            first: 2,
            count: 3,
            pages: 4,
        });
        assert_eq!(e.code(), Some(ErrorCode::Protocol));
        assert_eq!(
            e.host_text(),
            "run of 3 pages from page 2 of #0 is past its end (4 pages)"
        );
        assert_eq!(
            e.to_string(),
            "host sent a bad run: run of 3 pages from page 2 of #0 is past its end (4 pages)"
        );
    }

    #[test]
    fn a_host_that_left_or_spoke_first_is_not_told() {
        let gone = LinkError::Read {
            phase: Phase::Pages,
            error: io::Error::from(io::ErrorKind::BrokenPipe),
        };
        assert_eq!(gone.code(), None);
        assert!(gone
            .to_string()
            .starts_with("link read failed during the stream"));
        let host = LinkError::Host {
            code: ErrorCode::Internal,
            text: "disk gone".into(),
        };
        assert_eq!(host.code(), None);
        assert_eq!(
            host.to_string(),
            "host reported an error (Internal): disk gone"
        );
        assert_eq!(LinkError::ClosedInManifest.code(), None);
    }
}
