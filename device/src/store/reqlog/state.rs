//! The daemon's state file (`STORE/state`): which daemon runs, since when,
//! and the link's state, rewritten (write, then rename) when that changes.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use super::{unix_us, Shared};

/// Where the daemon's state file lives in a store.
pub fn state_path(store: &Path) -> PathBuf {
    store.join("state")
}

/// First line of the state file.
pub const STATE_HEADER: &str = "# feedfs-device state v1";

/// Rewrite the state file: which daemon, since when, and the link.
pub(super) fn write_state(shared: &Shared, running: bool, link_up: bool) {
    let text = format!(
        "{STATE_HEADER}\npid {}\nrunning {}\nmounted_unix_us {}\nlink {}\nupdated_unix_us {}\n",
        shared.pid,
        if running { "yes" } else { "no" },
        shared.unix_us,
        if link_up { "up" } else { "down" },
        unix_us(),
    );
    let path = state_path(&shared.dir);
    let tmp = path.with_extension("tmp");
    let Err(e) = fs::write(&tmp, &text).and_then(|()| fs::rename(&tmp, &path)) else {
        return;
    };
    let _ = fs::remove_file(&tmp);
    // A full disk has no block for a new file, but the state file's own
    // block is there: rewrite it in place (a reader may then see a mix for
    // a moment; status believes `running yes` only of a live daemon anyway).
    let in_place = OpenOptions::new().write(true).open(&path).and_then(|f| {
        use std::os::unix::fs::FileExt;
        f.write_all_at(text.as_bytes(), 0)?;
        f.set_len(text.len() as u64)
    });
    match in_place {
        Ok(()) => log::debug!("state file {} rewritten in place: {e}", path.display()),
        Err(e2) => log::warn!(
            "cannot write the state file {}: {e}; nor in place: {e2}",
            path.display()
        ),
    }
}
