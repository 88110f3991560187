//! The prefetch plan file: which pages of which files to stream first, in
//! what order. Encoding and decoding are pure (bytes in, bytes out);
//! [`Plan::resolve`] matches a plan against the files being served.
//!
//! Layout (little-endian; `docs/plan.md` gives it byte by byte): a 32-byte
//! header (magic `FDFSPLAN`, version, counts, the readahead window in
//! pages), one record per file (size, 4 reserved bytes, identity, path),
//! 16-byte steps (file, page count, first page), and the CRC-32 of
//! everything before it. Version 2 counts 4 KiB pages. Version 1 counted
//! blocks, of a size each file record gave where version 2 has its
//! reserved bytes; it is still read, each step converted to the pages its
//! blocks cover. [`Plan::decode`] checks, in this order: length, magic,
//! version, CRC, then every field (limits, paths, ranges), and allocates no
//! more than the input's size.

use std::collections::HashSet;

use byteorder::{ByteOrder, LittleEndian as LE};
use feedfs_protocol::manifest::{check_path, MAX_ENTRIES, MAX_FILE_SIZE, MAX_TOTAL_PAGES};
use feedfs_protocol::{page_count, EntryKind, FileId, MAX_RUN_BYTES, PAGE_SHIFT, PAGE_SIZE};

use crate::files::manifest::ServedSet;

pub const PLAN_MAGIC: [u8; 8] = *b"FDFSPLAN";
pub const PLAN_VERSION: u16 = 2;
/// The version that counted blocks, still read.
pub const PLAN_VERSION_BLOCKS: u16 = 1;
const HEADER: usize = 32;
const FILE_FIXED: usize = 32;
const STEP: usize = 16;
const IDENTITY_KNOWN: u8 = 1;

/// A file the plan names, and the version of it the plan was learned from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanFile {
    pub path: String,
    pub size: u64,
    /// `None` when the logs did not record it (version 1 host records).
    pub identity: Option<[u8; 16]>,
}

impl PlanFile {
    pub fn pages(&self) -> u64 {
        page_count(self.size)
    }
}

/// One step: `count` pages of `files[file]` from page `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub file: u32,
    pub first: u64,
    pub count: u64,
}

/// A decoded plan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub files: Vec<PlanFile>,
    pub steps: Vec<Step>,
    /// How many runs (pushes, mounts) it was learned from.
    pub runs: u32,
    /// The readahead window merged in, in pages.
    pub window: u32,
    /// The version of the file it was read from ([`PLAN_VERSION`] for a
    /// plan made here; [`PLAN_VERSION_BLOCKS`] for one converted from blocks).
    pub read_from: u16,
}

/// Why a plan file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the plan is {0} bytes, too short for a plan")]
    Short(usize),
    #[error("not a feedfs plan (it does not start with FDFSPLAN)")]
    BadMagic,
    #[error("plan version {0}, this build reads versions {PLAN_VERSION_BLOCKS} and {PLAN_VERSION}; make the plan again with `feedfs-host plan LOG... -o PLAN`")]
    Version(u16),
    #[error(
        "the plan is damaged: bad checksum (stored {stored:#010x}, computed {computed:#010x})"
    )]
    BadChecksum { stored: u32, computed: u32 },
    #[error("the plan is damaged: {0}")]
    Invalid(String),
}

impl Plan {
    /// The plan's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER];
        b[..8].copy_from_slice(&PLAN_MAGIC);
        LE::write_u16(&mut b[8..10], PLAN_VERSION);
        LE::write_u32(&mut b[12..16], self.files.len() as u32);
        LE::write_u32(&mut b[16..20], self.steps.len() as u32);
        LE::write_u32(&mut b[20..24], self.runs);
        LE::write_u32(&mut b[24..28], self.window);
        for f in &self.files {
            let mut r = [0u8; FILE_FIXED];
            LE::write_u64(&mut r[0..8], f.size);
            LE::write_u16(&mut r[12..14], f.path.len() as u16);
            if let Some(id) = f.identity {
                r[14] = IDENTITY_KNOWN;
                r[16..32].copy_from_slice(&id);
            }
            b.extend_from_slice(&r);
            b.extend_from_slice(f.path.as_bytes());
            b.resize(b.len().div_ceil(8) * 8, 0);
        }
        for s in &self.steps {
            let mut r = [0u8; STEP];
            LE::write_u32(&mut r[0..4], s.file);
            LE::write_u32(&mut r[4..8], s.count as u32);
            LE::write_u64(&mut r[8..16], s.first);
            b.extend_from_slice(&r);
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Check and decode a plan.
    pub fn decode(b: &[u8]) -> Result<Plan, PlanError> {
        if b.len() < HEADER + 4 {
            return Err(PlanError::Short(b.len()));
        }
        if b[..8] != PLAN_MAGIC {
            return Err(PlanError::BadMagic);
        }
        let version = LE::read_u16(&b[8..10]);
        if version != PLAN_VERSION && version != PLAN_VERSION_BLOCKS {
            return Err(PlanError::Version(version));
        }
        let body = &b[..b.len() - 4];
        let stored = LE::read_u32(&b[b.len() - 4..]);
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(PlanError::BadChecksum { stored, computed });
        }
        let bad = |s: String| PlanError::Invalid(s);
        let nfiles = LE::read_u32(&b[12..16]);
        let nsteps = LE::read_u32(&b[16..20]) as usize;
        if nfiles > MAX_ENTRIES {
            return Err(bad(format!("{nfiles} files, more than {MAX_ENTRIES}")));
        }
        let mut at = HEADER;
        let mut files = Vec::new();
        // Pages per step unit, per file: 1, or a version-1 block's pages.
        let mut units: Vec<u64> = Vec::new();
        let mut paths = HashSet::new();
        for i in 0..nfiles {
            let r = body
                .get(at..at + FILE_FIXED)
                .ok_or_else(|| bad(format!("it ends inside file record {i}")))?;
            let size = LE::read_u64(&r[0..8]);
            let unit = LE::read_u32(&r[8..12]);
            let path_len = LE::read_u16(&r[12..14]) as usize;
            let flags = r[14];
            if size > MAX_FILE_SIZE {
                return Err(bad(format!("file {i} has a size of {size} bytes")));
            }
            if version == PLAN_VERSION && unit != 0 {
                return Err(bad(format!("file {i} has {unit} in its reserved bytes")));
            }
            if version == PLAN_VERSION_BLOCKS
                && (!unit.is_power_of_two() || !(PAGE_SIZE..=MAX_RUN_BYTES).contains(&unit))
            {
                return Err(bad(format!("file {i} has a block size of {unit}")));
            }
            units.push(if version == PLAN_VERSION {
                1
            } else {
                u64::from(unit >> PAGE_SHIFT)
            });
            if flags & !IDENTITY_KNOWN != 0 || r[15] != 0 {
                return Err(bad(format!("file {i} has unknown flags {flags:#x}")));
            }
            let identity = (flags & IDENTITY_KNOWN != 0).then(|| {
                let mut id = [0u8; 16];
                id.copy_from_slice(&r[16..32]);
                id
            });
            let start = at + FILE_FIXED;
            let raw = body
                .get(start..start + path_len)
                .ok_or_else(|| bad(format!("it ends inside the path of file {i}")))?;
            let path = std::str::from_utf8(raw)
                .map_err(|_| bad(format!("the path of file {i} is not UTF-8")))?;
            check_path(path).map_err(|e| bad(format!("file {i}: {e}")))?;
            if !paths.insert(path.to_string()) {
                return Err(bad(format!("{path:?} is listed twice")));
            }
            files.push(PlanFile {
                path: path.to_string(),
                size,
                identity,
            });
            at = (start + path_len).div_ceil(8) * 8;
            if at > body.len() {
                return Err(bad(format!("it ends inside the padding of file {i}")));
            }
        }
        let left = body.len().saturating_sub(at);
        if left != nsteps.saturating_mul(STEP) {
            return Err(bad(format!(
                "{left} bytes of steps, expected {nsteps} steps of {STEP} bytes"
            )));
        }
        if nsteps as u64 > MAX_TOTAL_PAGES {
            return Err(bad(format!("{nsteps} steps, more than {MAX_TOTAL_PAGES}")));
        }
        let mut steps = Vec::with_capacity(nsteps);
        for (i, r) in body[at..].chunks_exact(STEP).enumerate() {
            let file = LE::read_u32(&r[0..4]);
            let count = u64::from(LE::read_u32(&r[4..8]));
            let first = LE::read_u64(&r[8..16]);
            let f = files
                .get(file as usize)
                .ok_or_else(|| bad(format!("step {i} names file {file}; the plan has {nfiles}")))?;
            let unit = units[file as usize];
            let units_of_file = f.pages().div_ceil(unit);
            if count == 0 || first.checked_add(count).is_none_or(|e| e > units_of_file) {
                return Err(bad(format!(
                    "step {i}: {} {first}+{count} of {} are out of range ({units_of_file} {})",
                    if unit == 1 { "pages" } else { "blocks" },
                    f.path,
                    if unit == 1 { "pages" } else { "blocks" },
                )));
            }
            // A version-1 step: the pages its blocks cover.
            let (first, end) = (first * unit, ((first + count) * unit).min(f.pages()));
            steps.push(Step {
                file,
                first,
                count: end - first,
            });
        }
        // A version-1 window was in blocks, of the first file's size (a push had one).
        let window = LE::read_u32(&b[24..28]);
        let window = window.saturating_mul(units.first().map_or(1, |&u| u as u32));
        Ok(Plan {
            files,
            steps,
            runs: LE::read_u32(&b[20..24]),
            window,
            read_from: version,
        })
    }

    /// The plan as the served set's ranges (file id, first page, count),
    /// in order, and a warning for each plan file that is left out: not
    /// served, or changed since (another size or identity).
    pub fn resolve(&self, set: &ServedSet) -> (Vec<(FileId, u64, u64)>, Vec<String>) {
        let mut warnings = Vec::new();
        let by_path: std::collections::HashMap<&str, _> =
            set.files().map(|e| (e.path.as_str(), e)).collect();
        let matched: Vec<Option<FileId>> = self
            .files
            .iter()
            .map(|f| {
                let Some(e) = by_path.get(f.path.as_str()) else {
                    warnings.push(format!("the plan names {}, which is not served; its part of the plan is ignored", f.path));
                    return None;
                };
                if e.kind != EntryKind::File || e.size != f.size {
                    warnings.push(format!(
                        "{} is {} bytes, the plan was made for {} bytes; its part of the plan is ignored",
                        f.path, e.size, f.size
                    ));
                    return None;
                }
                if f.identity.is_some_and(|id| id != e.identity) {
                    warnings.push(format!(
                        "{} changed since the plan was made (another identity); its part of the plan is ignored",
                        f.path
                    ));
                    return None;
                }
                Some(e.id)
            })
            .collect();
        let mut out: Vec<(FileId, u64, u64)> = Vec::new();
        for s in &self.steps {
            let Some(id) = matched[s.file as usize] else {
                continue;
            };
            match out.last_mut() {
                Some((f, a, n)) if *f == id && *a + *n == s.first => *n += s.count,
                _ => out.push((id, s.first, s.count)),
            }
        }
        (out, warnings)
    }

    /// The plan for people: what it was learned from, its files, its steps.
    pub fn render(&self) -> String {
        let mut out = format!(
            "feedfs plan v{}: {} steps over {} files, learned from {} runs, readahead window {} pages\n",
            self.read_from,
            self.steps.len(),
            self.files.len(),
            self.runs,
            self.window
        );
        if self.read_from == PLAN_VERSION_BLOCKS {
            out += "  (a plan in blocks, shown in 4 KiB pages)\n";
        }
        out += "files:\n";
        for (i, f) in self.files.iter().enumerate() {
            let planned: u64 = self
                .steps
                .iter()
                .filter(|s| s.file as usize == i)
                .map(|s| s.count)
                .sum();
            let id = f.identity.map_or("(not recorded)".into(), |id| {
                id.iter().map(|b| format!("{b:02x}")).collect::<String>()
            });
            out += &format!(
                "  [{i}] {}: {} bytes, identity {id}; {planned} pages ({:.1} MiB) planned\n",
                f.path,
                f.size,
                (planned << PAGE_SHIFT).min(f.size) as f64 / (1u64 << 20) as f64
            );
        }
        out += "order:\n";
        for (i, s) in self.steps.iter().enumerate() {
            let f = &self.files[s.file as usize];
            let pages = if s.count == 1 {
                format!("page {}", s.first)
            } else {
                format!("pages {}..{}", s.first, s.first + s.count - 1)
            };
            out += &format!(
                "  {:>5}. [{}] {}  {pages}  (bytes {}..{})\n",
                i + 1,
                s.file,
                f.path,
                s.first << PAGE_SHIFT,
                ((s.first + s.count) << PAGE_SHIFT).min(f.size)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests;
