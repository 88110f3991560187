//! What a test can see happening, so that it waits on conditions rather
//! than on time: a thread of ours blocked in a system call (a read parked
//! in the mount), and what the device recorded in its request log
//! (`STORE/log/requests.log`, decoded by `feedfs_protocol::reqlog`).

use std::path::Path;

use feedfs_protocol::reqlog::{self, Event, MountLog};

/// The calling thread's id, as the kernel names it in `/proc/self/task`.
pub fn thread_id() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Whether thread `tid` of this process is asleep inside `pread64` on
/// descriptor `fd`: `/proc/self/task/TID/syscall` names the call a
/// sleeping thread is in, and its arguments (it says `running` for a
/// thread on a CPU, so a read that is not waiting does not count).
pub fn blocked_in_pread(tid: i32, fd: i32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")) else {
        return false;
    };
    let mut fields = text.split_whitespace();
    let number = fields.next().and_then(|n| n.parse::<i64>().ok());
    let first_arg = fields.next();
    number == Some(libc::SYS_pread64) && first_arg == Some(&format!("{fd:#x}"))
}

/// The last mount recorded in a store's request log, if the log holds one.
/// Panics on a damaged log: the device wrote it, and it must be readable.
pub fn last_mount_log(store: &Path) -> Option<MountLog> {
    let bytes = std::fs::read(store.join("log/requests.log")).ok()?;
    let decoded =
        reqlog::decode(&bytes).unwrap_or_else(|e| panic!("{}: request log: {e}", store.display()));
    decoded.mounts.into_iter().last()
}

/// The index, in `log.files`, of the file served at `path`.
pub fn log_file_index(log: &MountLog, path: &str) -> Option<usize> {
    log.files.iter().position(|f| f.path == path)
}

/// The `Wait` records of `log` for page `page` of file `file` (an index
/// into `log.files`): (t_us when the read arrived, µs waited, outcome).
pub fn waits_for(log: &MountLog, file: usize, page: u64) -> Vec<(u64, u64, reqlog::Outcome)> {
    log.events
        .iter()
        .filter_map(|e| match *e {
            Event::Wait {
                t_us,
                file: f,
                first,
                count,
                wait_us,
                outcome,
                ..
            } if f == file && (first..first + count).contains(&page) => {
                Some((t_us, u64::from(wait_us), outcome))
            }
            _ => None,
        })
        .collect()
}

/// The times (µs since the mount) at which the link came up (`true`) or went down.
pub fn link_changes(log: &MountLog) -> Vec<(u64, bool)> {
    log.events
        .iter()
        .filter_map(|e| match *e {
            Event::Link { t_us, up } => Some((t_us, up)),
            _ => None,
        })
        .collect()
}

/// Whether the daemon on `store` has recorded that no link is up: its
/// state file (docs/store.md) says `link down`, rewritten as soon as a
/// link ends.
pub fn link_down(store: &Path) -> bool {
    std::fs::read_to_string(store.join("state")).is_ok_and(|s| s.lines().any(|l| l == "link down"))
}
