//! Reading a whole request log: [`decode`] checks every record of a file
//! and resolves them into [`MountLog`]s (the files each mount served, with
//! their paths, and what readers did with them). Damage is refused with the
//! record's index and byte offset; only an incomplete last record is
//! tolerated. A log of format 1 counted in blocks of each file's block
//! size: its ranges are turned into the pages they cover.

use byteorder::{ByteOrder, LittleEndian as LE};

use super::{
    Decoded, Event, LogError, LogFile, MountLog, Record, LOG_MAGIC, LOG_VERSION, MAX_LOG_BYTES,
    MAX_PATH, NAME_CHUNK, OLDEST_LOG_VERSION, RECORD_LEN,
};
use crate::manifest::check_path;
use crate::message::FileId;

/// A file being announced: its `File` record and the `Name` bytes so far.
struct Announcing {
    file: FileId,
    size: u64,
    unit_shift: u8,
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
    if !(OLDEST_LOG_VERSION..=LOG_VERSION).contains(&version) {
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
    // Host file id -> index into the current mount's files, and log2 of
    // the unit its records count in.
    let mut ids: std::collections::HashMap<u32, usize> = Default::default();
    let mut shifts: Vec<u8> = Vec::new();
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
            let shift = a.unit_shift;
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
                shifts.push(shift);
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
                shifts.clear();
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
        // A range as the record gives it (in its file's unit), checked,
        // then in pages.
        let check = |mount: &MountLog, i: usize, first: u64, count: u64| {
            let f = &mount.files[i];
            let extra = u32::from(shifts[i]) - crate::PAGE_SHIFT;
            let units = f.pages().div_ceil(1 << extra);
            if count == 0 || first + count > units {
                return Err(format!(
                    "{} {first}..{} of {} are out of range: it has {units}",
                    if extra == 0 { "pages" } else { "blocks" },
                    first + count,
                    f.path,
                ));
            }
            let first_page = first << extra;
            Ok((
                first_page,
                ((first + count) << extra).min(f.pages()) - first_page,
            ))
        };
        let event = match rec {
            Record::Mount { .. } => unreachable!("handled above"),
            Record::File {
                file,
                size,
                unit_shift,
                path_len,
                identity_head,
            } => {
                if path_len as usize > MAX_PATH {
                    return Err(invalid(format!("path of {path_len} bytes")));
                }
                if version == LOG_VERSION && unit_shift != crate::PAGE_SHIFT as u8 {
                    return Err(invalid(format!(
                        "file {file} counts in units of 2^{unit_shift} bytes, not pages"
                    )));
                }
                announcing = Some(Announcing {
                    file,
                    size,
                    unit_shift,
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
                let (first, count) =
                    check(mount, i, first.into(), count.into()).map_err(invalid)?;
                Event::Wait {
                    t_us,
                    file: i,
                    first,
                    count,
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
                let (first, count) =
                    check(mount, i, first.into(), count.into()).map_err(invalid)?;
                Event::Touch {
                    t_us,
                    file: i,
                    first,
                    count,
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
        identity,
    })
}
