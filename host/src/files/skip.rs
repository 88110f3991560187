//! What a walk leaves out and why ([`SkipReason`], counted in the push's
//! summary), and paths escaped for the messages that name them.

use std::path::Path;

/// Why something found in a pushed directory is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkipReason {
    Symlink,
    Fifo,
    Socket,
    Device,
    NonUtf8,
    /// An S3 key with an empty, `.` or `..` part after its prefix.
    KeyNotAPath,
}

impl SkipReason {
    /// `1 symlink`, `2 FIFOs`, `1 name not UTF-8`.
    pub fn count(self, n: usize) -> String {
        let (one, many) = match self {
            SkipReason::Symlink => ("symlink", "symlinks"),
            SkipReason::Fifo => ("FIFO", "FIFOs"),
            SkipReason::Socket => ("socket", "sockets"),
            SkipReason::Device => ("device file", "device files"),
            SkipReason::NonUtf8 => ("name not UTF-8", "names not UTF-8"),
            SkipReason::KeyNotAPath => ("S3 key not a path", "S3 keys not paths"),
        };
        format!("{n} {}", if n == 1 { one } else { many })
    }

    /// Why it is left out, for the warning that names it.
    pub fn warning(self) -> &'static str {
        match self {
            SkipReason::Symlink => {
                "a symlink whose target is absolute or leads out of the pushed tree"
            }
            SkipReason::Fifo => "a FIFO",
            SkipReason::Socket => "a socket",
            SkipReason::Device => "a device file",
            SkipReason::NonUtf8 => {
                "its name is not UTF-8 (feedfs paths are UTF-8); rename it to serve it"
            }
            SkipReason::KeyNotAPath => {
                "its key has an empty, '.' or '..' part after the prefix, which no file path can have"
            }
        }
    }
}

/// A path with control characters and bytes that are not UTF-8 escaped
/// (`bad\xff`, `a\nb`), for messages.
pub fn escape_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}
