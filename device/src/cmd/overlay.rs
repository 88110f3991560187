//! `feedfs-device overlay`: the files of a store written on the device
//! (`mount --writable`): list them, export one as the device sees it, or
//! discard its writes so the host's pages are fetched again.
//!
//! `list` only reads, so it runs beside a daemon. `export` and `discard`
//! take the store's lock, as a daemon does, so they refuse while one runs.
//! An export is written to a temporary file beside its destination and
//! renamed over it when whole: an interrupted or failed export leaves the
//! destination as it was.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use feedfs_protocol::{page_offset, Entry, EntryKind, Manifest, Mtime};
use serde::Serialize;

use crate::store::writes::{writes_path, Writes};
use crate::store::{key_of, read_manifest, Store, StoredFile};

/// One file of the store with writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Written {
    pub path: String,
    pub size: u64,
    /// Bytes written on the device.
    pub written: u64,
    /// `served`, `held` (the host serves another version of the file),
    /// `not served` (the host no longer serves it) or `damaged` (its writes
    /// file cannot be read: `path` is then the store file's name, and
    /// `discard` of the served path it belonged to drops it).
    pub state: &'static str,
}

/// Every file of the store at `dir` that has writes, by path.
pub fn list(dir: &Path) -> anyhow::Result<Vec<Written>> {
    let files = dir.join("files");
    let manifest = read_manifest(dir).ok();
    let mut out = Vec::new();
    let items = fs::read_dir(&files).with_context(|| format!("cannot list {}", files.display()))?;
    for item in items {
        let path = item?.path();
        if path.extension().is_none_or(|e| e != "writes") {
            continue;
        }
        let w = match Writes::open(&path) {
            Ok(Some(w)) => w,
            Ok(None) => continue,
            Err(why) => {
                log::warn!("{}: {why}", path.display());
                out.push(Written {
                    path: path
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    size: 0,
                    written: 0,
                    state: "damaged",
                });
                continue;
            }
        };
        let served = manifest
            .as_ref()
            .and_then(|m| served_entry(m, &w.header.path));
        out.push(Written {
            path: w.header.path.clone(),
            size: w.header.size,
            written: w.written_bytes(),
            state: match served {
                Some(e) if e.identity == w.header.identity && e.size == w.header.size => "served",
                Some(_) => "held",
                None => "not served",
            },
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn served_entry<'m>(m: &'m Manifest, path: &str) -> Option<&'m Entry> {
    m.files().find(|e| e.path == path)
}

/// The stored copy of `path` as the device sees it: the version its
/// writes were made over if it has any, else the one the saved manifest
/// serves.
fn open_stored(store: &Store, path: &str) -> anyhow::Result<StoredFile> {
    let data = store
        .dir()
        .join("files")
        .join(key_of(path))
        .with_extension("data");
    let writes = Writes::open(&writes_path(&data))
        .map_err(|why| anyhow::anyhow!("the writes of {path:?} cannot be read: {why}"))?;
    let entry = match writes {
        Some(w) => Entry {
            id: None,
            kind: EntryKind::File,
            path: w.header.path.clone(),
            size: w.header.size,
            mode: 0o644,
            mtime: Mtime::default(),
            identity: w.header.identity,
            target: String::new(),
        },
        None => {
            let m = store.load_manifest()?;
            served_entry(&m, path).cloned().with_context(|| {
                format!("the store serves no file {path:?} and holds no writes to one")
            })?
        }
    };
    store.open_file(&entry)
}

fn lock(dir: &Path, what: &str) -> anyhow::Result<Store> {
    Store::open_existing(dir)
        .with_context(|| format!("cannot {what} while a daemon runs on the store"))
}

/// Write file `path` of the store at `dir`, as the device sees it, to
/// `out`; returns its size. Fails, naming the missing byte ranges, when
/// the store lacks some of its pages.
pub fn export(dir: &Path, path: &str, out: &Path) -> anyhow::Result<u64> {
    let store = lock(dir, "export (copy the file from its mount instead)")?;
    let file = open_stored(&store, path)?;
    file.check_all()
        .with_context(|| format!("cannot read the pages of {path:?}"))?;
    if file.torn_in(0, file.pages().saturating_sub(1)) {
        bail!("{path:?} has written pages torn by a crash (see the daemon's log); discard its writes or write those pages again");
    }
    let missing = file.missing_ranges();
    if !missing.is_empty() {
        let ranges: Vec<String> = missing
            .iter()
            .take(10)
            .map(|&(f, n)| {
                format!(
                    "{}..{}",
                    page_offset(f),
                    page_offset(f + n).min(file.size())
                )
            })
            .collect();
        bail!(
            "the store lacks {} bytes of {path:?} (bytes {}{}): mount it with a host, which sends them, and export again",
            file.missing_bytes(),
            ranges.join(", "),
            if missing.len() > 10 { ", …" } else { "" }
        );
    }
    copy_out(&file, out)?;
    Ok(file.size())
}

/// Copy `file` to `out` through a temporary file, renamed when whole; an
/// interrupt (SIGINT, SIGTERM) removes the temporary file and fails.
fn copy_out(file: &StoredFile, out: &Path) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let name = out.file_name().context("the output names no file")?;
    let tmp: PathBuf = out.with_file_name(format!(".{}.feedfs-export", name.to_string_lossy()));
    let result = (|| {
        let mut f =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut buf = Vec::new();
        let mut at = 0;
        while at < file.size() {
            if stop.load(Ordering::Relaxed) {
                bail!("interrupted; {} is left as it was", out.display());
            }
            let bytes = file.read_into(at, 1 << 20, &mut buf)?;
            f.write_all(bytes)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            at += bytes.len() as u64;
        }
        f.sync_all()?;
        fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Drop the writes to file `path` of the store at `dir`; returns the bytes
/// dropped.
pub fn discard(dir: &Path, path: &str) -> anyhow::Result<u64> {
    let store = lock(dir, "discard")?;
    let data = store
        .dir()
        .join("files")
        .join(key_of(path))
        .with_extension("data");
    let writes = writes_path(&data);
    if !writes.exists() {
        bail!("{path:?} has no writes in store {}", dir.display());
    }
    if let Err(why) = Writes::open(&writes) {
        // Which pages it marks is unknown: the file starts afresh.
        log::warn!("the writes of {path:?} cannot be read ({why}); dropping the file's pages");
        for f in [writes, data.with_extension("map")] {
            fs::remove_file(&f).with_context(|| format!("cannot remove {}", f.display()))?;
        }
        return Ok(0);
    }
    open_stored(&store, path)?
        .discard_writes()
        .with_context(|| format!("cannot discard the writes of {path:?}"))
}
