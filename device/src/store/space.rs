//! Space: what a store takes on disk and what its filesystem has free.

use std::fs;
use std::io;
use std::path::Path;

/// Bytes allocated on disk (`st_blocks × 512`) to everything in the store
/// at `dir`: the data files (sparse, so only the blocks present), maps,
/// manifest, logs and state.
pub fn disk_usage(dir: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for item in fs::read_dir(&d)? {
            let item = item?;
            let md = match item.metadata() {
                Ok(md) => md,
                // Renamed or removed by a running daemon meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            total += md.blocks() * 512;
            if md.is_dir() {
                stack.push(item.path());
            }
        }
    }
    Ok(total)
}

/// Bytes free for an unprivileged writer on the filesystem holding `dir`.
pub fn free_space(dir: &Path) -> io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir)?;
    // Both are 32 bits wide on some targets.
    #[allow(clippy::useless_conversion)]
    let free = u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size()));
    Ok(free)
}
