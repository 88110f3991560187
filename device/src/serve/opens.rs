//! How each open file is served: through the daemon (with the kernel's page
//! cache kept across opens), or by kernel passthrough straight to the
//! store's data file, and the backing ids that must live while passthrough
//! handles are open.
//!
//! Passthrough skips the daemon, and so its checks: a file gets it only once
//! every page is present and was verified in this daemon's life. The kernel
//! will not mix the two modes on one inode, so a file that still has
//! handles served through the daemon gets more of those until they close.
//! If the kernel refuses passthrough (an older kernel, no CAP_SYS_ADMIN),
//! every file is served through the daemon from then on. The kernel keeps
//! its own reference to a backing file, so passthrough holds no descriptor
//! of the daemon's once the open is answered; an empty file (which has no
//! store file) is always served through the daemon.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use fuser::{BackingId, FileHandle, FopenFlags, ReplyOpen};

use crate::store::StoredFile;

/// File handle of an open served through the daemon.
pub const THROUGH_DAEMON: FileHandle = FileHandle(0);
/// File handle of an open served by kernel passthrough.
pub const PASSTHROUGH: FileHandle = FileHandle(1);

#[derive(Default)]
struct InodeOpens {
    through_daemon: u64,
    passthrough: u64,
    backing: Option<BackingId>,
}

#[derive(Default)]
pub struct Opens {
    enabled: AtomicBool,
    by_inode: Mutex<HashMap<u64, InodeOpens>>,
}

impl Opens {
    /// The kernel accepted passthrough for this mount.
    pub fn enable_passthrough(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    pub fn passthrough_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Answer an open of inode `ino`, whose stored copy is `file`;
    /// `passthrough` may be used for it (not on a writable mount: the
    /// daemon must see every write).
    pub fn open(&self, ino: u64, file: &StoredFile, passthrough: bool, reply: ReplyOpen) {
        let mut all = self.by_inode.lock().unwrap_or_else(|p| p.into_inner());
        let e = all.entry(ino).or_default();
        if passthrough
            && self.passthrough_enabled()
            && e.through_daemon == 0
            && file.size() > 0
            && file.all_verified()
        {
            if e.backing.is_none() {
                match file.data_file() {
                    Ok(data) => match reply.open_backing(data) {
                        Ok(id) => e.backing = Some(id),
                        Err(err) => {
                            log::warn!("kernel passthrough refused ({err}); serving every read through the daemon");
                            self.enabled.store(false, Ordering::Relaxed);
                        }
                    },
                    // This open goes through the daemon, which tries again.
                    Err(err) => log::warn!("{err}; this open is served through the daemon"),
                }
            }
            if let Some(id) = &e.backing {
                log::debug!("inode {ino}: complete and verified, opened by passthrough");
                e.passthrough += 1;
                reply.opened_passthrough(PASSTHROUGH, FopenFlags::empty(), id);
                return;
            }
        }
        e.through_daemon += 1;
        reply.opened(THROUGH_DAEMON, FopenFlags::FOPEN_KEEP_CACHE);
    }

    /// A handle of inode `ino` was closed.
    pub fn release(&self, ino: u64, fh: FileHandle) {
        let mut all = self.by_inode.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = all.get_mut(&ino) else { return };
        if fh == PASSTHROUGH {
            e.passthrough = e.passthrough.saturating_sub(1);
            if e.passthrough == 0 {
                // Dropping the id closes it in the kernel.
                e.backing = None;
            }
        } else {
            e.through_daemon = e.through_daemon.saturating_sub(1);
        }
        if e.passthrough == 0 && e.through_daemon == 0 {
            all.remove(&ino);
        }
    }
}
