//! Why a host session ended without `Complete`: one typed error, with what
//! the push reports (a broken link, a signal) and what the device is told.

use std::io;
use std::time::Duration;

use feedfs_protocol::io::ReadError;
use feedfs_protocol::{ErrorCode, FrameError, HelloError, MessageType};

use crate::files::source::SourceError;
use crate::send::scheduler::SchedError;
use crate::send::stop::signal_name;

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the link closed before the transfer completed")]
    LinkClosed,
    #[error("reading from the device failed: {0}")]
    ReadFailed(io::Error),
    #[error("sending to the device failed: {0}")]
    SendFailed(io::Error),
    #[error("the link was cut inside a frame: {0}")]
    Truncated(FrameError),
    #[error(transparent)]
    Frame(FrameError),
    /// The device's Hello was refused ([`feedfs_protocol::hello::check`]).
    #[error("{}", hello_refused(.0))]
    Hello(HelloError),
    #[error("device reported an error: {code:?}: {text}")]
    Device { code: ErrorCode, text: String },
    #[error("device ended the session before the transfer completed")]
    DeviceEnded,
    /// A Have or a Demand that does not fit the manifest.
    #[error("protocol error: device sent a bad {what:?}: {error}")]
    BadRequest {
        what: MessageType,
        error: SchedError,
    },
    /// A message only a host sends.
    #[error("protocol error: the device sent a {0:?} message, which only a host sends")]
    HostMessage(MessageType),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot write the record file: {0}")]
    Record(io::Error),
    #[error("cannot start the link reader thread: {0}")]
    Thread(io::Error),
    #[error("the peer is not speaking feedfs: before any Hello it sent {bytes} bytes of something else, starting with {quote}; the device side must be `feedfs-device mount … --stdio` with nothing else writing to its stdout")]
    NotFeedfs { bytes: u64, quote: String },
    #[error("no Hello from the device within {}s ({}); is the device side `feedfs-device mount … --stdio`? A slow start (an ssh asking for a password) needs a longer --handshake-timeout", .waited.as_secs_f64(), describe_preamble(*.bytes, .quote))]
    NoHello {
        waited: Duration,
        bytes: u64,
        quote: String,
    },
    #[error("stopped by {}", signal_name(*.0))]
    Interrupted(i32),
}

/// A refused Hello in the words the host has always used: a version
/// mismatch says what to install, anything else is a protocol error.
fn hello_refused(e: &HelloError) -> String {
    match e {
        HelloError::Version { .. } => e.to_string(),
        HelloError::NotHello(_) | HelloError::WrongRole { .. } => format!("protocol error: {e}"),
    }
}

fn describe_preamble(bytes: u64, quote: &str) -> String {
    match bytes {
        0 => "it sent nothing".to_string(),
        n => format!("it sent {n} bytes that are not feedfs, starting with {quote}"),
    }
}

impl SessionError {
    /// True when the link itself broke (the peer may have exited).
    pub fn is_link(&self) -> bool {
        matches!(
            self,
            SessionError::LinkClosed
                | SessionError::ReadFailed(_)
                | SessionError::SendFailed(_)
                | SessionError::Truncated(_)
        )
    }

    /// How the reader's end ends the session: `None` at a clean end of stream.
    pub fn from_end(end: Option<ReadError>) -> Self {
        match end {
            None => SessionError::LinkClosed,
            Some(ReadError::Io(e)) => SessionError::ReadFailed(e),
            Some(ReadError::Frame(e @ FrameError::Truncated { .. })) => SessionError::Truncated(e),
            Some(ReadError::Frame(e)) => SessionError::Frame(e),
        }
    }

    /// The signal that stopped the session, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self {
            SessionError::Interrupted(sig) => Some(*sig),
            _ => None,
        }
    }

    /// The error code to tell the device, when the device should be told.
    pub fn code_for_device(&self) -> Option<ErrorCode> {
        match self {
            SessionError::Hello(e) => Some(e.code()),
            SessionError::Frame(FrameError::UnsupportedVersion { .. }) => Some(ErrorCode::Version),
            SessionError::Frame(_)
            | SessionError::BadRequest { .. }
            | SessionError::HostMessage(_) => Some(ErrorCode::Protocol),
            SessionError::Source(_) | SessionError::Record(_) | SessionError::Thread(_) => {
                Some(ErrorCode::Internal)
            }
            SessionError::NotFeedfs { .. }
            | SessionError::NoHello { .. }
            | SessionError::Interrupted(_)
            | SessionError::LinkClosed
            | SessionError::ReadFailed(_)
            | SessionError::SendFailed(_)
            | SessionError::Truncated(_)
            | SessionError::Device { .. }
            | SessionError::DeviceEnded => None,
        }
    }
}
