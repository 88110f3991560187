//! Reading a whole request log: [`decode`] checks every record of a file
//! and resolves them into [`MountLog`]s (the files each mount served, with
//! their paths, and what readers did with them); [`join`] puts a rotated
//! file and its successor together. Damage is refused with the record's
//! index and byte offset; only an incomplete last record is tolerated.

use byteorder::{ByteOrder, LittleEndian as LE};

use super::{
    Outcome, Record, RecordError, LOG_MAGIC, LOG_VERSION, MAX_LOG_BYTES, MAX_PATH, NAME_CHUNK,
    RECORD_LEN,
};
use crate::manifest::check_path;
use crate::message::FileId;

/// A file as a log names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub id: FileId,
    pub path: String,
    pub size: u64,
    pub block_size: u32,
    pub identity: [u8; 16],
}

impl LogFile {
    pub fn blocks(&self) -> u64 {
        crate::block_count(self.size, self.block_size)
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
    #[error("request log version {0}, this build reads version {LOG_VERSION}")]
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

/// A file being announced: its `File` record and the `Name` bytes so far.
struct Announcing {
    file: FileId,
    size: u64,
    block_size: u32,
    path_len: usize,
    head: [u8; 12],
    tail: Vec<u8>,
}

/// Check a whole log file and resolve its records. Files are named by a
/// `File` record (and its `Name`s) before any other record of them; a
/// `continued` mount record in a rotated file joins the mount it continues
/// when the older file came before it in the same call.
pub fn decode(bytes: &[u8]) -> Result<Decoded, LogError> {
    if bytes.len() > MAX_LOG_BYTES {
        return Err(LogError::TooLarge(bytes.len()));
    }
    if bytes.len() < 8 || bytes[..8] != LOG_MAGIC {
        return Err(LogError::BadMagic);
    }
    if bytes.len() < RECORD_LEN {
        return Err(LogError::BadHeader("shorter than 32 bytes"));
    }
    let version = LE::read_u16(&bytes[8..10]);
    if version != LOG_VERSION {
        return Err(LogError::Version(version));
    }
    if LE::read_u16(&bytes[10..12]) as usize != RECORD_LEN {
        return Err(LogError::BadHeader("record length is not 32"));
    }
    let body = &bytes[RECORD_LEN..];
    let mut out = Decoded {
        mounts: Vec::new(),
        torn_tail: body.len() % RECORD_LEN,
    };
    // Host file id -> index into the current mount's files.
    let mut ids: std::collections::HashMap<u32, usize> = Default::default();
    let mut announcing: Option<Announcing> = None;
    for (index, chunk) in body.chunks_exact(RECORD_LEN).enumerate() {
        let offset = RECORD_LEN * (index + 1);
        let invalid = |problem: String| LogError::Invalid {
            index,
            offset,
            problem,
        };
        let raw: &[u8; RECORD_LEN] = chunk.try_into().expect("chunks_exact");
        let rec = Record::parse(raw).map_err(|error| LogError::Record {
            index,
            offset,
            error,
        })?;
        if let Some(a) = &announcing {
            let Record::Name { file, bytes } = rec else {
                return Err(invalid(format!(
                    "file {} is announced without all of its name",
                    a.file
                )));
            };
            if file != a.file {
                return Err(invalid(format!(
                    "name record of {file} inside the announcement of {}",
                    a.file
                )));
            }
            let mut a = announcing.take().expect("checked");
            let need = 4 + a.path_len - a.tail.len();
            a.tail.extend_from_slice(&bytes[..need.min(NAME_CHUNK)]);
            if a.tail.len() < 4 + a.path_len {
                announcing = Some(a);
                continue;
            }
            let mount = out.mounts.last_mut().expect("a mount came first");
            let file = finish_file(a).map_err(invalid)?;
            if let Some(&i) = ids.get(&file.id.0) {
                if mount.files[i] != file {
                    return Err(invalid(format!(
                        "{} is announced twice, differently",
                        file.id
                    )));
                }
            } else {
                ids.insert(file.id.0, mount.files.len());
                mount.files.push(file);
            }
            continue;
        }
        if let Record::Mount {
            unix_us,
            pid,
            continued,
            ..
        } = rec
        {
            let same = out
                .mounts
                .last()
                .is_some_and(|m| m.unix_us == unix_us && m.pid == pid);
            if !(continued && same) {
                ids.clear();
                out.mounts.push(MountLog {
                    unix_us,
                    pid,
                    ..MountLog::default()
                });
            }
            continue;
        }
        let Some(mount) = out.mounts.last_mut() else {
            return Err(invalid("the first record is not a mount record".into()));
        };
        let lookup = |file: FileId| {
            ids.get(&file.0)
                .copied()
                .ok_or_else(|| format!("names {file}, which was not announced"))
        };
        let check = |mount: &MountLog, i: usize, first: u64, count: u64| {
            let f = &mount.files[i];
            if count == 0 || first + count > f.blocks() {
                Err(format!(
                    "blocks {first}..{} of {} are out of range: it has {} blocks",
                    first + count,
                    f.path,
                    f.blocks()
                ))
            } else {
                Ok(())
            }
        };
        let event = match rec {
            Record::Mount { .. } => unreachable!("handled above"),
            Record::File {
                file,
                size,
                block_size,
                path_len,
                identity_head,
            } => {
                if path_len as usize > MAX_PATH {
                    return Err(invalid(format!("path of {path_len} bytes")));
                }
                announcing = Some(Announcing {
                    file,
                    size,
                    block_size,
                    path_len: path_len.into(),
                    head: identity_head,
                    tail: Vec::with_capacity(4 + path_len as usize),
                });
                continue;
            }
            Record::Name { file, .. } => {
                return Err(invalid(format!(
                    "name record of {file} outside an announcement"
                )))
            }
            Record::Link { t_us, up } => Event::Link { t_us, up },
            Record::Wait {
                t_us,
                file,
                first,
                count,
                wait_us,
                pid,
                outcome,
                demanded,
            } => {
                let i = lookup(file).map_err(invalid)?;
                check(mount, i, first.into(), count.into()).map_err(invalid)?;
                Event::Wait {
                    t_us,
                    file: i,
                    first: first.into(),
                    count: count.into(),
                    wait_us,
                    pid,
                    outcome,
                    demanded,
                }
            }
            Record::Touch {
                t_us,
                file,
                first,
                count,
            } => {
                let i = lookup(file).map_err(invalid)?;
                check(mount, i, first.into(), count.into()).map_err(invalid)?;
                Event::Touch {
                    t_us,
                    file: i,
                    first: first.into(),
                    count: count.into(),
                }
            }
            Record::Served {
                t_us,
                file,
                reads,
                bytes,
            } => Event::Served {
                t_us,
                file: lookup(file).map_err(invalid)?,
                reads,
                bytes,
            },
        };
        mount.events.push(event);
    }
    if let Some(a) = announcing {
        // The file was cut short while announcing: as torn as a half record.
        // It joins the files only once named in full, so there is nothing to
        // take back; an earlier, complete announcement of it stays, as the
        // records naming it by index rely on.
        out.torn_tail += RECORD_LEN * (1 + a.tail.len().div_ceil(NAME_CHUNK));
    }
    Ok(out)
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

fn finish_file(a: Announcing) -> Result<LogFile, String> {
    let mut identity = [0u8; 16];
    identity[..12].copy_from_slice(&a.head);
    identity[12..].copy_from_slice(&a.tail[..4]);
    let path = std::str::from_utf8(&a.tail[4..4 + a.path_len])
        .map_err(|_| format!("the path of {} is not UTF-8", a.file))?;
    check_path(path).map_err(|e| format!("{e}"))?;
    if a.size > crate::manifest::MAX_FILE_SIZE {
        return Err(format!("{path} has a size of {} bytes", a.size));
    }
    Ok(LogFile {
        id: a.file,
        path: path.to_string(),
        size: a.size,
        block_size: a.block_size,
        identity,
    })
}

#[cfg(test)]
mod tests {
    use super::super::file_records;
    use super::super::tests::{log_of, sample};
    use super::*;

    #[test]
    fn round_trips() {
        for r in sample() {
            assert_eq!(Record::parse(&r.emit()), Ok(r));
        }
        let d = decode(&log_of(&sample())).unwrap();
        assert_eq!(d.torn_tail, 0);
        assert_eq!(d.mounts.len(), 1);
        let m = &d.mounts[0];
        assert_eq!((m.pid, m.unix_us), (42, 1_700_000_000_000_000));
        assert_eq!(
            m.files,
            vec![LogFile {
                id: FileId(3),
                path: "dir/a-rather-long-file-name.apk".into(),
                size: 10_000,
                block_size: 4096,
                identity: [9; 16],
            }]
        );
        assert_eq!(m.events.len(), 4);
        assert!(matches!(
            m.events[1],
            Event::Wait {
                file: 0,
                first: 1,
                count: 2,
                wait_us: 2500,
                ..
            }
        ));
    }

    #[test]
    fn a_rotated_file_continues_its_mount_and_a_new_mount_starts_afresh() {
        let mut recs = sample();
        recs.push(Record::Mount {
            unix_us: 1_700_000_000_000_000,
            pid: 42,
            files: 2,
            continued: true,
        });
        recs.extend(file_records(
            FileId(3),
            10_000,
            4096,
            &[9; 16],
            "dir/a-rather-long-file-name.apk",
        ));
        recs.push(Record::Mount {
            unix_us: 1_800_000_000_000_000,
            pid: 43,
            files: 1,
            continued: false,
        });
        let d = decode(&log_of(&recs)).unwrap();
        assert_eq!(d.mounts.len(), 2);
        assert_eq!(d.mounts[0].files.len(), 1);
        assert!(d.mounts[1].files.is_empty());

        // The same split over two files, joined.
        let older = decode(&log_of(&sample())).unwrap();
        let mut rest = vec![Record::Mount {
            unix_us: 1_700_000_000_000_000,
            pid: 42,
            files: 2,
            continued: true,
        }];
        rest.extend(file_records(FileId(5), 4096, 4096, &[1; 16], "other"));
        rest.extend(file_records(
            FileId(3),
            10_000,
            4096,
            &[9; 16],
            "dir/a-rather-long-file-name.apk",
        ));
        rest.push(Record::Touch {
            t_us: 9,
            file: FileId(3),
            first: 2,
            count: 1,
        });
        let joined = join(older, decode(&log_of(&rest)).unwrap());
        assert_eq!(joined.mounts.len(), 1);
        let m = &joined.mounts[0];
        assert_eq!(m.files.len(), 2);
        assert_eq!(m.events.len(), 5);
        assert!(matches!(
            m.events[4],
            Event::Touch {
                file: 0,
                first: 2,
                ..
            }
        ));
    }

    #[test]
    fn damage_is_refused_with_the_record_named() {
        let good = log_of(&sample());
        assert_eq!(decode(b"nothing"), Err(LogError::BadMagic));
        let mut v = good.clone();
        v[8] = 2;
        assert_eq!(decode(&v), Err(LogError::Version(2)));
        // A flipped bit in record 4 (the Wait).
        let mut v = good.clone();
        v[32 * 5 + 16] ^= 1;
        let e = decode(&v).unwrap_err();
        assert!(
            matches!(
                e,
                LogError::Record {
                    index: 4,
                    error: RecordError::BadChecksum { .. },
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("record 4 (byte 160): bad checksum"),
            "{e}"
        );
        // An unknown kind, with a good CRC.
        let mut rec = [0u8; 32];
        rec[0] = 99;
        let crc = crc32fast::hash(&rec[..28]);
        rec[28..].copy_from_slice(&crc.to_le_bytes());
        let mut v = good.clone();
        v.extend_from_slice(&rec);
        assert!(decode(&v)
            .unwrap_err()
            .to_string()
            .contains("unknown record kind 99"));
        // A record naming a file never announced.
        let mut recs = sample();
        recs.push(Record::Touch {
            t_us: 1,
            file: FileId(8),
            first: 0,
            count: 1,
        });
        assert!(decode(&log_of(&recs))
            .unwrap_err()
            .to_string()
            .contains("not announced"));
        // Blocks past a file's end.
        let mut recs = sample();
        recs.push(Record::Touch {
            t_us: 1,
            file: FileId(3),
            first: 2,
            count: 2,
        });
        assert!(decode(&log_of(&recs))
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        // Records before any mount.
        let v = log_of(&[Record::Link { t_us: 1, up: true }]);
        assert!(decode(&v)
            .unwrap_err()
            .to_string()
            .contains("not a mount record"));
        // A hostile path.
        let mut recs = sample()[..1].to_vec();
        recs.extend(file_records(FileId(0), 1, 4096, &[0; 16], "../etc/passwd"));
        assert!(decode(&log_of(&recs))
            .unwrap_err()
            .to_string()
            .contains(".."));
    }

    #[test]
    fn a_torn_tail_is_left_out_and_reported() {
        let mut v = log_of(&sample());
        v.extend_from_slice(&[5, 0, 0]);
        let d = decode(&v).unwrap();
        assert_eq!(d.torn_tail, 3);
        assert_eq!(d.mounts[0].events.len(), 4);
        // Cut inside a file's announcement: the file is left out.
        let recs = sample();
        let v = log_of(&recs[..3]);
        let d = decode(&v).unwrap();
        assert!(d.mounts[0].files.is_empty());
        assert_eq!(d.torn_tail, 64);
    }

    #[test]
    fn a_torn_announcement_of_a_file_already_named_keeps_every_file() {
        // A rotated file announces its files again; the write is cut inside
        // the announcement of the first one, already named in full.
        let mut recs = sample();
        recs.extend(file_records(FileId(5), 4096, 4096, &[1; 16], "other"));
        recs.push(Record::Touch {
            t_us: 300,
            file: FileId(5),
            first: 0,
            count: 1,
        });
        recs.push(Record::Mount {
            unix_us: 1_700_000_000_000_000,
            pid: 42,
            files: 2,
            continued: true,
        });
        recs.extend(file_records(
            FileId(3),
            10_000,
            4096,
            &[9; 16],
            "dir/a-rather-long-file-name.apk",
        ));
        let cut = recs.len() - 1;
        let d = decode(&log_of(&recs[..cut])).unwrap();
        assert_eq!(d.torn_tail, 2 * RECORD_LEN);
        let m = &d.mounts[0];
        let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["dir/a-rather-long-file-name.apk", "other"]);
        let Event::Touch { file, .. } = m.events[4] else {
            panic!("{:?}", m.events[4]);
        };
        assert_eq!(m.files[file].path, "other", "the touch names its own file");
    }
}
