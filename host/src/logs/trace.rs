//! Logs read back for `log show`, `log plot` and `plan`: a host record
//! (`push --record`) or a device request log copied off a device, as one
//! model, [`Run`].
//!
//! A host record is one run; a device log holds one run per mount. Every
//! file is refused with an error naming the line or record at fault when it
//! is damaged; nothing in it is trusted further than its checks: file
//! indexes are resolved, page ranges lie within their files, and sizes are
//! within the manifest's limits. Everything is in 4 KiB pages: host records
//! of versions 1 and 2 and device logs of format 1, which counted blocks,
//! are converted as they are read. Files larger than [`MAX_RECORD_BYTES`]
//! are refused rather than read into memory.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use feedfs_protocol::manifest::{check_path, MAX_FILE_SIZE};
use feedfs_protocol::reqlog::{self, Event, Outcome, LOG_MAGIC};
use feedfs_protocol::{page_count, MAX_RUN_BYTES, PAGE_SHIFT, PAGE_SIZE};

use crate::logs::record::{HEADER, HEADER_V1, HEADER_V2};

/// Largest log file read.
pub const MAX_RECORD_BYTES: u64 = 1 << 30;

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path} is {size} bytes; logs over {MAX_RECORD_BYTES} bytes are not read")]
    TooLarge { path: String, size: u64 },
    #[error("{path} is neither a feedfs-host record nor a feedfs-device request log")]
    Unknown { path: String },
    #[error("{path}, line {line}: {problem}")]
    Line {
        path: String,
        line: usize,
        problem: String,
    },
    #[error("{path}: {error}")]
    Device {
        path: String,
        error: reqlog::LogError,
    },
}

/// Where a run was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Host,
    Device,
}

/// A file as a log names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceFile {
    pub path: String,
    pub size: u64,
    /// `None` in version 1 host records.
    pub identity: Option<[u8; 16]>,
}

impl TraceFile {
    pub fn pages(&self) -> u64 {
        page_count(self.size)
    }
}

/// A request for missing pages: a host's demand, a device's waiting read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    pub t_us: u64,
    pub file: usize,
    pub first: u64,
    pub count: u64,
    /// How long it waited (device logs), if known.
    pub wait_us: Option<u64>,
    pub outcome: Option<Outcome>,
    pub pid: u32,
}

/// Pages first read, served at once (device logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    pub t_us: u64,
    pub file: usize,
    pub first: u64,
    pub count: u64,
}

/// Why the host sent a run (host records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentKind {
    Demand,
    Readahead,
    Plan,
    Stream,
}

/// A run of pages the host sent (host records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub t_us: u64,
    pub file: usize,
    pub first: u64,
    pub count: u64,
    pub kind: SentKind,
}

impl Sent {
    /// One past the run's last page.
    pub fn end(&self) -> u64 {
        self.first + self.count
    }
}

/// One run: a push (host record) or a mount (device log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub side: Side,
    /// What people call it: the log's path, and the mount for device logs.
    pub label: String,
    pub files: Vec<TraceFile>,
    pub demands: Vec<Demand>,
    pub touches: Vec<Touch>,
    pub sent: Vec<Sent>,
    /// Pages the device already held at the start (host records).
    pub held: Vec<u64>,
    /// Reads served at once and their bytes (device logs).
    pub served_at_once: Vec<(u64, u64)>,
    /// When the device reported every page present (host records).
    pub done_us: Option<u64>,
    /// Bytes of a cut-short last record left out (device logs).
    pub torn_bytes: usize,
}

impl Run {
    fn new(side: Side, label: String) -> Run {
        Run {
            side,
            label,
            files: Vec::new(),
            demands: Vec::new(),
            touches: Vec::new(),
            sent: Vec::new(),
            held: Vec::new(),
            served_at_once: Vec::new(),
            done_us: None,
            torn_bytes: 0,
        }
    }

    /// The time of the last event.
    pub fn end_us(&self) -> u64 {
        let d = self
            .demands
            .iter()
            .map(|d| d.t_us.saturating_add(d.wait_us.unwrap_or(0)));
        let t = self.touches.iter().map(|t| t.t_us);
        let s = self.sent.iter().map(|s| s.t_us);
        d.chain(t).chain(s).chain(self.done_us).max().unwrap_or(0)
    }
}

/// Read a host record or a device request log.
pub fn read_log(path: &Path) -> Result<Vec<Run>, TraceError> {
    let name = path.display().to_string();
    let io = |error| TraceError::Io {
        path: name.clone(),
        error,
    };
    let size = fs::metadata(path).map_err(io)?.len();
    if size > MAX_RECORD_BYTES {
        return Err(TraceError::TooLarge { path: name, size });
    }
    let bytes = fs::read(path).map_err(io)?;
    if bytes.starts_with(&LOG_MAGIC) {
        return device_runs(&name, &bytes);
    }
    if bytes.starts_with(b"# feedfs-host record") {
        let text = std::str::from_utf8(&bytes).map_err(|e| TraceError::Line {
            path: name.clone(),
            line: 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            problem: "not UTF-8 text".into(),
        })?;
        return parse_record(&name, text).map(|r| vec![r]);
    }
    Err(TraceError::Unknown { path: name })
}

fn device_runs(name: &str, bytes: &[u8]) -> Result<Vec<Run>, TraceError> {
    let d = reqlog::decode(bytes).map_err(|error| TraceError::Device {
        path: name.into(),
        error,
    })?;
    let torn = d.torn_tail;
    let mut runs = Vec::new();
    for m in d.mounts {
        let mut run = Run::new(
            Side::Device,
            format!(
                "{name}, mount of daemon pid {} at {}",
                m.pid,
                unix_time(m.unix_us)
            ),
        );
        run.files = m
            .files
            .iter()
            .map(|f| TraceFile {
                path: f.path.clone(),
                size: f.size,
                identity: Some(f.identity),
            })
            .collect();
        run.served_at_once = vec![(0, 0); run.files.len()];
        for e in m.events {
            match e {
                Event::Link { .. } => {}
                Event::Wait {
                    t_us,
                    file,
                    first,
                    count,
                    wait_us,
                    pid,
                    outcome,
                    ..
                } => run.demands.push(Demand {
                    t_us,
                    file,
                    first,
                    count,
                    wait_us: Some(wait_us.into()),
                    outcome: Some(outcome),
                    pid,
                }),
                Event::Touch {
                    t_us,
                    file,
                    first,
                    count,
                } => run.touches.push(Touch {
                    t_us,
                    file,
                    first,
                    count,
                }),
                Event::Served {
                    file, reads, bytes, ..
                } => run.served_at_once[file] = (reads.into(), bytes),
            }
        }
        // Wait records are written when the read ends: put them in arrival order.
        run.demands.sort_by_key(|d| d.t_us);
        runs.push(run);
    }
    if let Some(last) = runs.last_mut() {
        last.torn_bytes = torn;
    }
    Ok(runs)
}

/// A wall-clock time in µs since 1970 as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn unix_time(us: u64) -> String {
    let secs = us / 1_000_000;
    let rem = secs % 86_400;
    let (y, m, d) = crate::files::stamp::civil_date(i128::from(secs / 86_400));
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parse a host record's text.
pub fn parse_record(name: &str, text: &str) -> Result<Run, TraceError> {
    let mut run = Run::new(Side::Host, name.to_string());
    let mut ids: HashMap<u32, usize> = HashMap::new();
    // Pages per recorded unit, per file: 1 from version 3, a block's pages before.
    let mut unit: Vec<u64> = Vec::new();
    let mut lines = text.lines().enumerate();
    let version = match lines.next() {
        Some((_, l)) if l == HEADER => 3,
        Some((_, l)) if l == HEADER_V2 => 2,
        Some((_, l)) if l == HEADER_V1 => 1,
        Some((_, l)) => {
            return Err(TraceError::Line {
                path: name.into(),
                line: 1,
                problem: format!("unknown record version {l:?} (this build reads v1 to v3)"),
            })
        }
        None => unreachable!("the caller checked the first line"),
    };
    for (i, line) in lines {
        let bad = |problem: String| TraceError::Line {
            path: name.into(),
            line: i + 1,
            problem,
        };
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let num = |k: usize| -> Result<u64, TraceError> {
            let s = f
                .get(k)
                .ok_or_else(|| bad(format!("field {} is missing", k + 1)))?;
            s.parse()
                .map_err(|_| bad(format!("field {} ({s:?}) is not a number", k + 1)))
        };
        let fields = |n: usize| -> Result<(), TraceError> {
            if f.len() == n {
                Ok(())
            } else {
                Err(bad(format!("{} fields, expected {n}", f.len())))
            }
        };
        let file_of = |k: usize| -> Result<usize, TraceError> {
            let id = num(k)?;
            u32::try_from(id)
                .ok()
                .and_then(|id| ids.get(&id).copied())
                .ok_or_else(|| bad(format!("file {id} was not listed in a file line")))
        };
        // A recorded range in pages, checked against the file in its own units.
        let pages = |run: &Run, file: usize, first: u64, count: u64| {
            let u = unit[file];
            let units = run.files[file].pages().div_ceil(u);
            if count == 0 || first.checked_add(count).is_none_or(|end| end > units) {
                return Err(bad(format!(
                    "{} {first}+{count} are out of range: {} has {units}",
                    if version < 3 { "blocks" } else { "pages" },
                    run.files[file].path
                )));
            }
            let first_page = first * u;
            Ok((
                first_page,
                ((first + count) * u).min(run.files[file].pages()) - first_page,
            ))
        };
        match f[0] {
            "file" => {
                fields(match version {
                    1 => 5,
                    2 => 6,
                    _ => 5,
                })?;
                let id = u32::try_from(num(1)?).map_err(|_| bad("file id too large".into()))?;
                let size = num(2)?;
                if size > MAX_FILE_SIZE {
                    return Err(bad(format!("size {size} is over the limit")));
                }
                let (u, rest) = if version < 3 {
                    let block_size = num(3)?;
                    let ok = block_size.is_power_of_two()
                        && (u64::from(PAGE_SIZE)..=u64::from(MAX_RUN_BYTES)).contains(&block_size);
                    if !ok {
                        return Err(bad(format!("block size {block_size} is not allowed")));
                    }
                    (block_size >> PAGE_SHIFT, 4)
                } else {
                    (1, 3)
                };
                let path = unescape(f[rest]).map_err(bad)?;
                check_path(&path).map_err(|e| bad(e.to_string()))?;
                let identity = match f.get(rest + 1) {
                    Some(hex) => Some(parse_identity(hex).map_err(bad)?),
                    None => None,
                };
                if ids.insert(id, run.files.len()).is_some() {
                    return Err(bad(format!("file {id} is listed twice")));
                }
                run.files.push(TraceFile {
                    path,
                    size,
                    identity,
                });
                unit.push(u);
                run.held.push(0);
            }
            "have" => {
                fields(4)?;
                let file = file_of(2)?;
                let held = num(3)?.saturating_mul(unit[file]);
                run.held[file] = (run.held[file] + held).min(run.files[file].pages());
            }
            "demand" => {
                fields(5)?;
                let (t_us, file) = (num(1)?, file_of(2)?);
                let (first, count) = pages(&run, file, num(3)?, num(4)?)?;
                run.demands.push(Demand {
                    t_us,
                    file,
                    first,
                    count,
                    wait_us: None,
                    outcome: None,
                    pid: 0,
                });
            }
            "sent" => {
                // Version 3: a run (first, count); before: one block (index).
                let n = if version < 3 { 6 } else { 7 };
                fields(n)?;
                let (t_us, file) = (num(1)?, file_of(2)?);
                let (first, count) = if version < 3 {
                    pages(&run, file, num(3)?, 1)?
                } else {
                    pages(&run, file, num(3)?, num(4)?)?
                };
                let kind = match f[n - 2] {
                    "demand" => SentKind::Demand,
                    "readahead" => SentKind::Readahead,
                    "plan" => SentKind::Plan,
                    "stream" => SentKind::Stream,
                    other => return Err(bad(format!("unknown kind {other:?}"))),
                };
                num(n - 1)?;
                run.sent.push(Sent {
                    t_us,
                    file,
                    first,
                    count,
                    kind,
                });
            }
            "done" => {
                fields(3)?;
                run.done_us = Some(num(1)?);
                num(2)?;
            }
            other => return Err(bad(format!("unknown line kind {other:?}"))),
        }
    }
    Ok(run)
}

fn parse_identity(hex: &str) -> Result<[u8; 16], String> {
    let bad = || format!("identity {hex:?} is not 32 hex digits");
    if hex.len() != 32 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Undo the record's escapes (`\\`, `\t`, `\n`, `\r`).
fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            other => return Err(format!("bad escape \\{} in a path", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
