//! The mount point, before the daemon mounts on it and when it lets go.
//!
//! [`prepare`] makes sure the daemon never stacks on another mount: a
//! directory that is a live mount of anything (another feedfs daemon
//! included) is refused, saying what is mounted there (from
//! `/proc/self/mountinfo`); a mount left dead by a killed feedfs daemon
//! (every access fails with ENOTCONN) is detached lazily first, since the
//! caller holds the store's lock; a directory with files in it is used,
//! with a warning that they are hidden while mounted. [`detach_lazily`]
//! takes a mount out of the tree even while files are open on it.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// One line of `/proc/self/mountinfo`, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Where it is mounted, unescaped.
    pub mount_point: PathBuf,
    /// Filesystem type, for example `fuse.feedfs` or `tmpfs`.
    pub fs_type: String,
    /// What is mounted (the device, or a FUSE daemon's fsname).
    pub source: String,
}

impl MountInfo {
    /// Whether a feedfs daemon mounted this.
    pub fn is_feedfs(&self) -> bool {
        self.fs_type.starts_with("fuse") && self.source == "feedfs"
    }

    /// `a feedfs mount` or `tmpfs (tmpfs)`: what is there, for a message.
    fn describe(&self) -> String {
        if self.is_feedfs() {
            "a feedfs mount (another feedfs-device serves it)".to_string()
        } else {
            format!("a mount of {} ({})", self.source, self.fs_type)
        }
    }
}

/// Parse the text of `/proc/self/mountinfo`; lines that do not parse are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|&x| x == "-")?;
            Some(MountInfo {
                mount_point: PathBuf::from(unescape(f.get(4)?)),
                fs_type: unescape(f.get(sep + 1)?),
                source: unescape(f.get(sep + 2)?),
            })
        })
        .collect()
}

/// Undo mountinfo's octal escapes (`\040` for a space, `\134` for `\`).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount on top at `path` (the last one mounted there), if any.
pub fn top_mount<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    mounts.iter().rev().find(|m| m.mount_point == path)
}

/// `path` made absolute without touching its last component, which may
/// be a dead mount that fails every access.
fn absolute(path: &Path) -> io::Result<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Ok(p);
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            Ok(parent.canonicalize()?.join(name))
        }
        _ => path.canonicalize(),
    }
}

/// Check that the daemon may mount at `path`; detach a dead feedfs mount
/// left there. Call it holding the store's lock.
pub fn prepare(path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    let dead = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => false,
        Ok(_) => bail!("mount point {shown} is not a directory"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("mount point {shown} does not exist: create it (mkdir {shown}) or name another")
        }
        Err(e) if lost_daemon(&e) => true,
        Err(e) => return Err(e).with_context(|| format!("cannot use mount point {shown}")),
    };
    let abs = absolute(path).with_context(|| format!("cannot use mount point {shown}"))?;
    let mounts = parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo")?);
    match top_mount(&mounts, &abs) {
        Some(m) if m.is_feedfs() && (dead || is_dead(path)) => {
            log::warn!(
                "{shown} is a mount left by a feedfs-device that died; detaching it lazily"
            );
            detach_lazily(path)?;
            // A mount below the dead one, now on top, is checked like any other.
            return prepare(path);
        }
        Some(m) => bail!(
            "{shown} is already {}: refusing to mount over it; stop what serves it (umount {shown}) \
             or choose another mount point",
            m.describe()
        ),
        None if dead => {
            bail!("mount point {shown}: transport endpoint is not connected, and no mount is there to detach")
        }
        None => {}
    }
    let hidden = std::fs::read_dir(path)
        .with_context(|| format!("cannot list mount point {shown}"))?
        .count();
    if hidden > 0 {
        log::warn!("mount point {shown} is not empty: its {hidden} entries are hidden while feedfs is mounted there");
    }
    Ok(())
}

/// Whether the FUSE mount at `path` has lost its daemon: listing it fails
/// with ENOTCONN or ECONNABORTED (a `stat` of its root may still be
/// answered from the kernel's cache).
fn is_dead(path: &Path) -> bool {
    std::fs::read_dir(path).is_err_and(|e| lost_daemon(&e))
}

/// What an access to a FUSE mount whose daemon died fails with.
fn lost_daemon(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED))
}

/// Take a mount out of the tree even while files are open on it (as root
/// `umount2(MNT_DETACH)`, otherwise `fusermount3 -u -z`); open files on a
/// feedfs mount then get ENOTCONN once its daemon exits.
pub fn detach_lazily(mountpoint: &Path) -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() {
        nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH)
            .with_context(|| format!("cannot detach {}", mountpoint.display()))?;
        return Ok(());
    }
    let status = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(mountpoint)
        .status()
        .context("cannot run fusermount3 (from the fuse3 package)")?;
    anyhow::ensure!(
        status.success(),
        "fusermount3 -u -z {} failed",
        mountpoint.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
35 22 0:30 / /tmp/a\\040b rw,nosuid - tmpfs tmpfs rw
36 22 0:31 / /tmp/mnt rw - tmpfs scratch rw
37 36 0:32 / /tmp/mnt ro,nosuid,nodev - fuse.feedfs feedfs ro,user_id=0
not a mountinfo line
";

    #[test]
    fn mountinfo_fields_are_read_and_unescaped() {
        let m = parse_mountinfo(INFO);
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].mount_point, PathBuf::from("/tmp/a b"));
        assert_eq!(
            (m[1].fs_type.as_str(), m[1].source.as_str()),
            ("tmpfs", "tmpfs")
        );
        assert!(m[3].is_feedfs() && !m[2].is_feedfs());
        assert_eq!(unescape(r"a\134b\011c\"), "a\\b\tc\\");
        assert_eq!(unescape(r"x\09"), r"x\09", "not an octal escape");
    }

    #[test]
    fn the_last_mount_at_a_path_is_on_top() {
        let m = parse_mountinfo(INFO);
        let top = top_mount(&m, Path::new("/tmp/mnt")).unwrap();
        assert!(top.is_feedfs());
        assert_eq!(
            top.describe(),
            "a feedfs mount (another feedfs-device serves it)"
        );
        assert_eq!(
            top_mount(&m, Path::new("/tmp/a b")).unwrap().describe(),
            "a mount of tmpfs (tmpfs)"
        );
        assert!(top_mount(&m, Path::new("/tmp")).is_none());
    }

    #[test]
    fn a_missing_mount_point_says_so() {
        let e = prepare(Path::new("/nonexistent-feedfs-mount-point")).unwrap_err();
        assert!(format!("{e:#}").contains("does not exist"), "{e:#}");
    }
}
