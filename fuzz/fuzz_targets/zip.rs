//! Fuzz target: a file the host serves, read as a zip for its built-in send
//! order (`ziporder`), as `feedfs-host push` reads every file it serves
//! without a plan.
//!
//! The input is the file. What runs: `zip_order` over the bytes in
//! memory, and `zip_pages` over them as a real file. Checked invariants:
//! nothing panics; no read goes past the end; a file that does not start
//! with a zip signature gets no order; every byte range is ordered and
//! inside the file, and the first runs to its end; both give an order for
//! the same files; every page range is non-empty and inside the file's
//! pages. The file lives in a scratch directory under /dev/shm
//! (or the temp dir) named after the process.
#![no_main]

use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::sync::OnceLock;

use feedfs_host::prefetch::ziporder::{zip_order, zip_pages};
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("feedfs-fuzz-zip-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("scratch directory");
        dir.join("file.zip")
    })
}

fuzz_target!(|data: &[u8]| {
    let zip = data;
    let size = zip.len() as u64;

    let mut read = |off: u64, buf: &mut [u8]| -> io::Result<()> {
        let src = usize::try_from(off)
            .ok()
            .and_then(|o| zip.get(o..o.checked_add(buf.len())?))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    };
    let order = zip_order(size, &mut read).expect("every read is inside the file");
    let zip_magic = zip.starts_with(b"PK\x03\x04") || zip.starts_with(b"PK\x05\x06");
    if let Some(order) = &order {
        assert!(zip_magic, "an order for a file without a zip signature");
        assert_eq!(
            order.first().map(|r| r.1),
            Some(size),
            "the end record first"
        );
        for &(start, end) in order {
            assert!(
                start <= end && end <= size,
                "{start}..{end} of {size} bytes"
            );
        }
    }

    let path = scratch();
    fs::write(path, zip).expect("scratch file");
    let file = File::open(path).expect("scratch file opens");
    let pages = zip_pages(&file, size);
    assert_eq!(
        pages.is_some(),
        order.is_some(),
        "the same answer from a file"
    );
    let total = feedfs_protocol::page_count(size);
    for (first, count) in pages.into_iter().flatten() {
        assert!(
            count > 0 && first + count <= total,
            "{first}+{count} of {total} pages"
        );
    }
});
