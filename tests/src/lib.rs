//! Helpers for the end-to-end tests: scratch directories that clean up
//! their mounts, deterministic source trees, the real binaries, waits on
//! conditions (never plain sleeps), and the host's record file, in pages.
//!
//! The binaries are the ones `cargo test --workspace` builds next to the
//! test executables (`target/<profile>/feedfs-host` and `feedfs-device`).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod nginx;
pub mod peers;
pub mod relay;
pub mod s3s;
pub mod sourced;
pub mod watch;

/// Bytes per page, the unit the store and the wire count in.
pub const PAGE: u64 = feedfs_protocol::PAGE_SIZE as u64;

/// Path of a workspace binary built by `cargo test --workspace`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not found: run the tests with `cargo test --workspace`, which builds it",
        p.display()
    );
    p
}

/// A scratch directory that unmounts anything below it and removes itself.
pub struct Scratch {
    pub root: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let root = std::env::temp_dir().join(format!("feedfs-e2e-{name}-{}", std::process::id()));
        if root.exists() {
            detach_mounts_below(&root);
            let _ = fs::remove_dir_all(&root);
        }
        fs::create_dir_all(&root).unwrap();
        Scratch { root }
    }

    /// A new empty directory inside the scratch area.
    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.root.join(name);
        fs::create_dir_all(&d).unwrap();
        d
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        detach_mounts_below(&self.root);
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// (mount point, filesystem type, source) of every mount.
fn mount_points() -> Vec<(PathBuf, String, String)> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|&x| x == "-")?;
            Some((
                PathBuf::from(f.get(4)?),
                f.get(sep + 1)?.to_string(),
                f.get(sep + 2)?.to_string(),
            ))
        })
        .collect()
}

fn detach_mounts_below(root: &Path) {
    for (p, _, _) in mount_points() {
        if p.starts_with(root) {
            detach(&p);
        }
    }
}

/// Lazily unmount `mnt` (what a dead daemon leaves behind).
pub fn detach(mnt: &Path) {
    // Nothing may be mounted there any more: that is fine.
    let _ = nix::mount::umount2(mnt, nix::mount::MntFlags::MNT_DETACH);
}

/// Mount a tmpfs of `size` bytes at `dir` (it needs root, as CI has; it
/// fails, never skips, without). [`Scratch`] detaches it when dropped.
pub fn mount_tmpfs(dir: &Path, size: u64) {
    let opts = format!("size={size},mode=0755");
    let mounted = nix::mount::mount(
        Some("feedfs-test"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    );
    assert_eq!(
        mounted,
        Ok(()),
        "cannot mount a tmpfs at {} (this test needs root)",
        dir.display(),
    );
}

/// Whether a feedfs FUSE filesystem is mounted at `mnt`.
pub fn is_mounted(mnt: &Path) -> bool {
    mount_points()
        .iter()
        .any(|(p, ty, src)| p == mnt && ty.starts_with("fuse") && src == "feedfs")
}

/// Poll `cond` every few milliseconds until it holds; panic after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Deterministic pseudo-random bytes for a file.
pub fn content(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    // A counter-based generator, so any range can be produced on its own.
    let mut out = Vec::with_capacity(len + 8);
    let mut word = offset / 8;
    while out.len() < len + (offset % 8) as usize {
        let mut x = word.wrapping_add(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        out.extend_from_slice(&x.to_le_bytes());
        word += 1;
    }
    out.drain(..(offset % 8) as usize);
    out.truncate(len);
    out
}

/// Write a file of `size` deterministic bytes with the given mode.
pub fn write_file(path: &Path, size: u64, seed: u64, mode: u32) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    let mut f = File::create(path).unwrap();
    let mut off = 0;
    while off < size {
        let n = (size - off).min(8 << 20) as usize;
        f.write_all(&content(seed, off, n)).unwrap();
        off += n as u64;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Read `len` bytes at `offset` of a file (fewer at its end).
pub fn read_at(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let f = File::open(path)?;
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match f.read_at(&mut buf[got..], offset + got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Drop a file's pages from the kernel's cache, so the next read reaches the daemon.
pub fn drop_cache(path: &Path) {
    let f = File::open(path).unwrap();
    let advised = nix::fcntl::posix_fadvise(
        &f,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    assert_eq!(advised, Ok(()), "posix_fadvise");
}

/// Compare every file, directory and symbolic link below `src` with the
/// same path below `dst`: kind, permission bits, a file's size, every byte
/// and modification time (to the nanosecond), a link's target.
pub fn assert_same_tree(src: &Path, dst: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let mut checked = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let join = |root: &Path| {
            if rel.as_os_str().is_empty() {
                root.to_path_buf()
            } else {
                root.join(&rel)
            }
        };
        let (s, d) = (join(src), join(dst));
        let (sm, dm) = (
            fs::symlink_metadata(&s).unwrap(),
            fs::symlink_metadata(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())),
        );
        let kind = |m: &fs::Metadata| (m.is_dir(), m.file_type().is_symlink());
        assert_eq!(kind(&sm), kind(&dm), "kind of {}", rel.display());
        if sm.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(&s).unwrap(),
                fs::read_link(&d).unwrap(),
                "target of the link {}",
                rel.display()
            );
            checked += 1;
            continue;
        }
        assert_eq!(
            sm.permissions().mode() & 0o777,
            dm.permissions().mode() & 0o777,
            "mode of {}",
            rel.display()
        );
        if sm.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&s)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            let mut theirs: Vec<_> = fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            theirs.sort();
            assert_eq!(names, theirs, "entries of {}", rel.display());
            stack.extend(names.into_iter().map(|n| rel.join(n)));
        } else {
            assert_eq!(sm.len(), dm.len(), "size of {}", rel.display());
            assert_eq!(
                (sm.mtime(), sm.mtime_nsec()),
                (dm.mtime(), dm.mtime_nsec()),
                "modification time of {}",
                rel.display()
            );
            let (mut a, mut b) = (File::open(&s).unwrap(), File::open(&d).unwrap());
            let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
            let mut off = 0u64;
            loop {
                let n = read_full(&mut a, &mut ba);
                let m = read_full(&mut b, &mut bb);
                assert_eq!(n, m, "length read from {} at {off}", rel.display());
                assert!(
                    ba[..n] == bb[..n],
                    "content of {} differs in the MiB at {off}",
                    rel.display()
                );
                if n == 0 {
                    break;
                }
                off += n as u64;
            }
        }
        checked += 1;
    }
    checked
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]).unwrap() {
            0 => break,
            n => got += n,
        }
    }
    got
}

/// The pid written in a store's lock file by the daemon using it.
pub fn device_pid(store: &Path) -> i32 {
    fs::read_to_string(store.join("lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Whether a process exists and is not a zombie. A process whose main
/// thread has exited is a zombie only once its last thread is gone too:
/// until then those threads may still hold its files (a store's lock).
pub fn alive(pid: i32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or("")
            .to_string()
    };
    let zombie = field("State:").starts_with('Z');
    let threads: u32 = field("Threads:").parse().unwrap_or(1);
    !zombie || threads > 1
}

pub fn signal(pid: i32, sig: i32) {
    let sig = nix::sys::signal::Signal::try_from(sig).expect("a signal number");
    // The process may have exited already: that is fine.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// One event of a host record file (`feedfs-host push --record`), in
/// pages: a `sent` line is one Run, `count` pages from page `first`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordEvent {
    File {
        id: u32,
        size: u64,
        path: String,
    },
    Have {
        file: u32,
        pages: u64,
    },
    Demand {
        t_us: u64,
        file: u32,
        first: u64,
        count: u64,
    },
    Sent {
        t_us: u64,
        file: u32,
        first: u64,
        count: u64,
        kind: String,
        stream_sent: u64,
    },
    Done {
        t_us: u64,
        pages_sent: u64,
    },
}

/// One page the host sent: (file id, page index, why it was sent, pages
/// the stream had sent before its Run).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SentPage {
    pub file: u32,
    pub page: u64,
    pub kind: String,
    pub stream_sent: u64,
}

/// Every page of every Run the host sent, in the order it sent them.
pub fn sent_pages(events: &[RecordEvent]) -> Vec<SentPage> {
    events
        .iter()
        .filter_map(|e| match e {
            RecordEvent::Sent {
                file,
                first,
                count,
                kind,
                stream_sent,
                ..
            } => Some((*first..first + count).map(move |page| SentPage {
                file: *file,
                page,
                kind: kind.clone(),
                stream_sent: *stream_sent,
            })),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Pages the device said it held, over all `have` lines.
pub fn had_pages(events: &[RecordEvent]) -> u64 {
    events
        .iter()
        .map(|e| match e {
            RecordEvent::Have { pages, .. } => *pages,
            _ => 0,
        })
        .sum()
}

/// Pages of all the files of a record.
pub fn total_pages(events: &[RecordEvent]) -> u64 {
    events
        .iter()
        .map(|e| match e {
            RecordEvent::File { size, .. } => feedfs_protocol::page_count(*size),
            _ => 0,
        })
        .sum()
}

/// `(id, pages)` of the file recorded at `path`.
pub fn record_file(events: &[RecordEvent], path: &str) -> (u32, u64) {
    events
        .iter()
        .find_map(|e| match e {
            RecordEvent::File { id, size, path: p } if p == path => {
                Some((*id, feedfs_protocol::page_count(*size)))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{path} not in the record"))
}

/// Parse a host record file. A `file` line may carry a unit after the
/// size (`file ID SIZE [UNIT] PATH [IDENTITY]`, the unit being the page
/// size), a `sent` line is `sent T FILE FIRST COUNT KIND STREAM_SENT` (a
/// line without COUNT is one page).
pub fn read_record(path: &Path) -> Vec<RecordEvent> {
    let text = fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next();
    assert!(
        header.is_some_and(|h| h.starts_with("# feedfs-host record v")),
        "record header {header:?}"
    );
    let numeric = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit());
    lines
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let n = |i: usize| -> u64 {
                f.get(i)
                    .and_then(|w| w.parse().ok())
                    .unwrap_or_else(|| panic!("bad number {i} in {l:?}"))
            };
            match f[0] {
                "file" => RecordEvent::File {
                    id: n(1) as u32,
                    size: n(2),
                    path: f[if numeric(f[3]) { 4 } else { 3 }].into(),
                },
                "have" => RecordEvent::Have {
                    file: n(2) as u32,
                    pages: n(3),
                },
                "demand" => RecordEvent::Demand {
                    t_us: n(1),
                    file: n(2) as u32,
                    first: n(3),
                    count: n(4),
                },
                "sent" => {
                    let counted = numeric(f[4]);
                    let at = if counted { 5 } else { 4 };
                    RecordEvent::Sent {
                        t_us: n(1),
                        file: n(2) as u32,
                        first: n(3),
                        count: if counted { n(4) } else { 1 },
                        kind: f[at].into(),
                        stream_sent: n(at + 1),
                    }
                }
                "done" => RecordEvent::Done {
                    t_us: n(1),
                    pages_sent: n(2),
                },
                other => panic!("unknown record line {other:?}"),
            }
        })
        .collect()
}
