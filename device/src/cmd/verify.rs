//! `feedfs-device verify`: re-check every present page of a store against
//! its recorded CRC, and drop the bad ones so they are fetched again.
//!
//! It opens the store as a daemon would (taking its lock, so never while a
//! daemon uses it) and reads every page marked present, a group of pages
//! at a time with their CRCs from the map file, so its memory stays that of
//! the page bitmaps whatever the store's size. A page whose content does
//! not match its CRC (a torn write after a power cut, a damaged disk) has
//! its bit cleared on disk; nothing is repaired in place. A page written on
//! the device (`--writable`) that matches neither its old nor its new
//! content was torn by a crash: it is reported, and kept as it is (it is
//! the device's own: no host can send it again).

use std::path::Path;

use anyhow::Context;
use feedfs_protocol::FileId;

use crate::store::Store;

/// What `verify` found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    pub path: String,
    pub pages: u64,
    /// Present pages that passed their check.
    pub present: u64,
    /// Pages that failed it, now dropped.
    pub bad: Vec<u64>,
    /// Written pages a crash tore (never served until rewritten or discarded).
    pub torn: Vec<u64>,
}

/// Check every present page of every file the store's manifest lists.
pub fn verify(dir: &Path) -> anyhow::Result<Vec<FileReport>> {
    let store = Store::open_existing(dir)?;
    let manifest = store.load_manifest()?;
    let mut reports = Vec::new();
    for i in 0..manifest.host_entries() {
        let entry = manifest.get(FileId(i)).expect("ids are dense");
        if entry.kind != feedfs_protocol::EntryKind::File {
            continue;
        }
        let file = store.open_file(entry)?;
        let bad = file
            .check_all()
            .with_context(|| format!("cannot read the pages of {}", entry.path))?;
        reports.push(FileReport {
            path: entry.path.clone(),
            pages: file.pages(),
            present: file.present_count(),
            bad,
            torn: file.torn_pages(),
        });
    }
    Ok(reports)
}
