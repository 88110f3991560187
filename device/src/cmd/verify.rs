//! `feedfs-device verify`: re-check every present block of a store against
//! its recorded CRC, and drop the bad ones so they are fetched again.
//!
//! It opens the store as a daemon would (taking its lock, so never while a
//! daemon uses it) and reads every block marked present. A block whose
//! content does not match its CRC (a torn write after a power cut, a
//! damaged disk) has its bit cleared on disk; nothing is repaired in place.

use std::path::Path;

use anyhow::Context;
use feedfs_protocol::FileId;

use crate::store::{BlockState, Store};

/// What `verify` found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    pub path: String,
    pub blocks: u64,
    pub present: u64,
    pub bad: Vec<u64>,
}

/// Check every present block of every file the store's manifest lists.
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
        let mut report = FileReport {
            path: entry.path.clone(),
            blocks: file.blocks(),
            present: 0,
            bad: Vec::new(),
        };
        for (first, count) in file.present_ranges() {
            for b in first..first + count {
                match file
                    .check(b)
                    .with_context(|| format!("cannot read block {b} of {}", entry.path))?
                {
                    BlockState::Ready => report.present += 1,
                    BlockState::Dropped => report.bad.push(b),
                    BlockState::Missing => {}
                }
            }
        }
        reports.push(report);
    }
    Ok(reports)
}
