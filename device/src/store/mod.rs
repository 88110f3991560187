//! The on-device store: backing data plus a persisted map of present pages
//! and the CRC-32 of each, one pair of files per served file.
//!
//! Layout (see `docs/store.md`): `DIR/lock` is held with an exclusive lock by
//! the one daemon using the store and holds its pid; `DIR/files/<key>.data`
//! is the file's content (sparse, full size) and `DIR/files/<key>.map` its
//! map, where `<key>` is a hash of the relative path, so no name from the
//! wire ever becomes a path on the device.
//!
//! This module owns the store directory: its lock, the saved manifest and
//! pruning. One served file's copy is [`file`], how a run from the host
//! lands in it [`land`], the pages written on the device (`--writable`)
//! [`writes`], the checks of what an
//! earlier daemon stored [`check`], its map's format [`layout`], how the
//! map reaches the disk [`persist`] and how a map of store format 1 is
//! converted [`convert`]; the descriptors open at once are bounded by
//! [`open`] (a manifest of a million entries runs under the default
//! `ulimit -n` of 1024); holes and zero pages are [`holes`], disk usage
//! and free space [`space`], the request log and state file [`reqlog`].
//!
//! The saved manifest (`DIR/manifest`) is the host's Entry frames and its
//! ManifestEnd: one written by an older feedfs (frames of another protocol
//! version) is refused with a message that says what to do, never
//! misread, and replaced by the next host's.

pub mod bitmap;
mod check;
mod convert;
mod file;
mod holes;
mod land;
mod layout;
mod open;
mod persist;
pub mod reqlog;
mod space;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_v1;
pub mod writes;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use feedfs_protocol::io::FrameReader;
use feedfs_protocol::{Entry, FileId, Manifest, ManifestBuilder, Message};

pub use check::RangeCheck;
pub use file::{zero_crc, Opened, StoredFile, GROUP_PAGES, MAP_BATCH};
pub use layout::{present_on_disk, MAP_MAGIC, MAP_VERSION};
pub use open::{raise_open_file_limit, DataFile, OPEN_FILES};
pub use space::{disk_usage, free_space};
pub use writes::{WriteError, WriteTarget};

use open::OpenFiles;

/// An open store directory, locked for this process.
pub struct Store {
    dir: PathBuf,
    _lock: File,
    open: Arc<OpenFiles>,
}

impl Store {
    /// Open (creating if needed) and lock a store directory.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        fs::create_dir_all(dir.join("files"))
            .with_context(|| format!("cannot create store directory {}", dir.display()))?;
        let lock_path = dir.join("lock");
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            let pid = fs::read_to_string(&lock_path).unwrap_or_default();
            bail!(
                "store {dir} is in use by another feedfs-device (pid {pid}): to feed that \
                 daemon from a new host, use `feedfs-device attach --store {dir} --stdio` as \
                 the device command; otherwise stop it (kill {pid}) or use another --store",
                dir = dir.display(),
                pid = pid.trim()
            );
        }
        lock.set_len(0)?;
        writeln!(lock, "{}", std::process::id())?;
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: lock,
            open: Arc::new(OpenFiles::new(OPEN_FILES)),
        })
    }

    /// Open and lock a store a daemon made earlier, creating nothing (for
    /// commands that work on an existing store, such as `verify`).
    pub fn open_existing(dir: &Path) -> anyhow::Result<Store> {
        must_exist(dir)?;
        if !dir.join("lock").is_file() {
            bail!(
                "{} is not a feedfs store (it has no lock file): name the directory given to `feedfs-device mount --store`",
                dir.display()
            );
        }
        Store::open(dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Remember the manifest, so a daemon restarted without a link can mount it.
    /// Written in the wire format (Entry frames, then ManifestEnd) to a
    /// temporary file, then renamed over the old one.
    pub fn save_manifest(&self, m: &Manifest) -> anyhow::Result<()> {
        let mut buf = Vec::new();
        for i in 0..m.host_entries() {
            let e = m.get(FileId(i)).expect("ids are dense");
            e.message().expect("a host entry has an id").emit(&mut buf);
        }
        Message::ManifestEnd {
            entries: m.host_entries(),
            total_bytes: m.total_bytes(),
        }
        .emit(&mut buf);
        let tmp = self.dir.join("manifest.tmp");
        let path = self.dir.join("manifest");
        // Synced before and after the rename: once this returns, the new
        // manifest is what a restart finds, even after a power cut, so the
        // store files of the old one may be pruned.
        File::create(&tmp)
            .and_then(|mut f| f.write_all(&buf).and_then(|()| f.sync_all()))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, &path)
            .and_then(|()| File::open(&self.dir)?.sync_all())
            .with_context(|| format!("cannot save the manifest as {}", path.display()))?;
        Ok(())
    }

    /// Remove the store files of every path `m` does not serve (files of an
    /// earlier manifest: renamed, deleted, or now empty), and anything else
    /// in `DIR/files` that is not a store file of `m`. Call it only once `m`
    /// is saved ([`Store::save_manifest`]): until then a restart would look
    /// for the old files. Returns how many files went and the bytes they
    /// took on disk.
    pub fn prune(&self, m: &Manifest) -> anyhow::Result<(u64, u64)> {
        use std::collections::HashSet;
        use std::os::unix::fs::MetadataExt;
        let mut keep: HashSet<String> = m
            .files()
            .filter(|e| e.size > 0)
            .flat_map(|e| {
                let key = key_of(&e.path);
                [
                    format!("{key}.data"),
                    format!("{key}.map"),
                    format!("{key}.writes"),
                ]
            })
            .collect();
        let files = self.dir.join("files");
        // A file written on the device is never removed with its pages,
        // even when the host no longer serves it: `overlay` lists it, and
        // exports or discards it.
        let written = fs::read_dir(&files)
            .with_context(|| format!("cannot list {}", files.display()))?
            .filter_map(|item| {
                let name = item.ok()?.file_name().into_string().ok()?;
                Some(name.strip_suffix(".writes")?.to_string())
            });
        let mut orphans = 0;
        for key in written {
            if keep.insert(format!("{key}.writes")) {
                orphans += 1;
                keep.insert(format!("{key}.data"));
                keep.insert(format!("{key}.map"));
            }
        }
        if orphans > 0 {
            log::warn!(
                "store: {orphans} files written on the device are no longer served by the \
                 host; they stay in the store (see `feedfs-device overlay --store {} list`)",
                self.dir.display()
            );
        }
        let list =
            fs::read_dir(&files).with_context(|| format!("cannot list {}", files.display()))?;
        let (mut count, mut bytes) = (0, 0);
        for item in list {
            let item = item.with_context(|| format!("cannot list {}", files.display()))?;
            if item.file_name().to_str().is_some_and(|n| keep.contains(n)) {
                continue;
            }
            let path = item.path();
            let size = item.metadata().map_or(0, |md| md.blocks() * 512);
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            count += 1;
            bytes += size;
        }
        Ok((count, bytes))
    }

    /// The manifest saved by the last daemon, checked again as if it came from the wire.
    pub fn load_manifest(&self) -> anyhow::Result<Manifest> {
        read_manifest(&self.dir)
    }

    /// Open the stored copy of a manifest file entry, resetting it if it
    /// does not match the entry.
    pub fn open_file(&self, entry: &Entry) -> anyhow::Result<StoredFile> {
        let key = key_of(&entry.path);
        let base = self.dir.join("files").join(key);
        StoredFile::open(
            base.with_extension("data"),
            base.with_extension("map"),
            entry,
            self.open.clone(),
        )
    }
}

/// The manifest saved in the store at `dir`, checked again as if it came
/// from the wire. Reads only: no lock is taken, so a running daemon may own
/// the store.
pub fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    must_exist(dir)?;
    let path = dir.join("manifest");
    let file = File::open(&path).with_context(|| {
        format!(
            "store {} holds no manifest yet: connect a host first",
            dir.display()
        )
    })?;
    refuse_older(&file, dir)?;
    let mut reader = FrameReader::new(file);
    let mut builder = ManifestBuilder::new();
    loop {
        let frame = reader
            .next_frame()
            .with_context(|| format!("{} is damaged", path.display()))?
            .with_context(|| format!("{} ends before its ManifestEnd", path.display()))?;
        match Message::parse(frame).with_context(|| format!("{} is damaged", path.display()))? {
            Message::ManifestEnd {
                entries,
                total_bytes,
            } => {
                return Ok(builder.finish(entries, total_bytes)?);
            }
            msg => builder.push_message(&msg)?,
        }
    }
}

/// Refuse a manifest written by an older feedfs: its frames carry an older
/// protocol version, which this build cannot read.
fn refuse_older(file: &File, dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 5];
    if file.read_exact_at(&mut head, 0).is_ok()
        && head[..4] == feedfs_protocol::MAGIC
        && head[4] < feedfs_protocol::VERSION
    {
        bail!(
            "the store's manifest was written by an older feedfs (protocol {}); mount it \
             once with a host to bring it to the new format (its files, of store format 1, \
             are then converted to format {MAP_VERSION}; store {})",
            head[4],
            dir.display()
        );
    }
    Ok(())
}

/// Refuse a store directory that is not there, before anything looks inside.
fn must_exist(dir: &Path) -> anyhow::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!("store {} is not a directory", dir.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("store {} does not exist", dir.display())
        }
        Err(e) => Err(e).with_context(|| format!("cannot use store {}", dir.display())),
    }
}

/// The store's file name for a relative path: 32 hex digits.
pub fn key_of(path: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(path.as_bytes()))
}
