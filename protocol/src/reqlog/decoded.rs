//! What a decoded request log holds: the mounts it recorded ([`MountLog`]),
//! the files each named ([`LogFile`]) and their [`Event`]s, why a log was
//! refused ([`LogError`]), and [`join`], which puts a rotated file and its
//! successor together.

use super::{Outcome, RecordError, LOG_VERSION, MAX_LOG_BYTES, OLDEST_LOG_VERSION};
use crate::message::FileId;

/// A file as a log names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub id: FileId,
    pub path: String,
    pub size: u64,
    pub identity: [u8; 16],
}

impl LogFile {
    pub fn pages(&self) -> u64 {
        crate::page_count(self.size)
    }
}

/// A record of a mount, with its file resolved to an index into
/// [`MountLog::files`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Link {
        t_us: u64,
        up: bool,
    },
    Wait {
        t_us: u64,
        file: usize,
        first: u64,
        count: u64,
        wait_us: u32,
        pid: u32,
        outcome: Outcome,
        demanded: bool,
    },
    Touch {
        t_us: u64,
        file: usize,
        first: u64,
        count: u64,
    },
    Served {
        t_us: u64,
        file: usize,
        reads: u32,
        bytes: u64,
    },
}

/// What one mount (one daemon's life) recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountLog {
    pub unix_us: u64,
    pub pid: u32,
    pub files: Vec<LogFile>,
    pub events: Vec<Event>,
}

/// A whole decoded log file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    pub mounts: Vec<MountLog>,
    /// Bytes of an incomplete last record that were left out.
    pub torn_tail: usize,
}

/// Why a log file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("not a feedfs request log (it does not start with FDFSRLOG)")]
    BadMagic,
    #[error(
        "request log version {0}, this build reads versions {OLDEST_LOG_VERSION} to {LOG_VERSION}"
    )]
    Version(u16),
    #[error("request log header is damaged: {0}")]
    BadHeader(&'static str),
    #[error("request log is {0} bytes, more than the {MAX_LOG_BYTES} a log may be")]
    TooLarge(usize),
    #[error("record {index} (byte {offset}): {error}")]
    Record {
        index: usize,
        offset: usize,
        error: RecordError,
    },
    #[error("record {index} (byte {offset}): {problem}")]
    Invalid {
        index: usize,
        offset: usize,
        problem: String,
    },
}

/// Join two decoded files, `older` first (a rotated log and its
/// successor): a mount the newer file continues becomes one mount, its
/// files matched by host id.
pub fn join(older: Decoded, newer: Decoded) -> Decoded {
    let mut out = older;
    out.torn_tail += newer.torn_tail;
    for m in newer.mounts {
        let same = out
            .mounts
            .last()
            .is_some_and(|l| l.unix_us == m.unix_us && l.pid == m.pid);
        if !same {
            out.mounts.push(m);
            continue;
        }
        let last = out.mounts.last_mut().expect("checked");
        let map: Vec<usize> = m
            .files
            .iter()
            .map(|f| match last.files.iter().position(|g| g.id == f.id) {
                Some(i) => i,
                None => {
                    last.files.push(f.clone());
                    last.files.len() - 1
                }
            })
            .collect();
        for mut e in m.events {
            match &mut e {
                Event::Link { .. } => {}
                Event::Wait { file, .. }
                | Event::Touch { file, .. }
                | Event::Served { file, .. } => *file = map[*file],
            }
            last.events.push(e);
        }
    }
    out
}
