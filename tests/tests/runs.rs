//! Runs from a host played by the test, into the real `feedfs-device mount
//! --stdio`: a page whose bytes do not match its CRC is dropped and demanded
//! again while the other pages of its run land and are served, whatever
//! the run's encoding; a run of zeros lands as zeros. The frame checksum of
//! a Run stops at its data, so damaged data reaches the device whole and
//! only the page CRCs can catch it. These tests need /dev/fuse and the
//! right to mount (root); they fail without.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use feedfs_protocol::message::{crc_table, Encoding};
use feedfs_protocol::{EntryKind, FileId, Message, Mtime, OwnedMessage, PageCrcs, Role, VERSION};
use feedfs_tests::peers::{stop_device, FakeHost};
use feedfs_tests::*;

/// Size of the one file served: 64 whole pages and a short one.
const SIZE: u64 = 64 * PAGE + 1000;
const SEED: u64 = 61;

/// A daemon mounted with one file `f.bin` of [`SIZE`] bytes.
fn mounted(s: &Scratch) -> FakeHost {
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let mut host = FakeHost::start(&mnt, &store, &["--read-timeout", "20s"]);
    let mut f = Message::Hello {
        role: Role::Host,
        min_version: VERSION,
        max_version: VERSION,
        agent: "runs",
    }
    .to_frame();
    Message::Entry {
        id: FileId(0),
        kind: EntryKind::File,
        size: SIZE,
        mode: 0o644,
        mtime: Mtime {
            sec: 1_650_000_000,
            nsec: 0,
        },
        identity: [6; 16],
        path: "f.bin",
        target: "",
    }
    .emit(&mut f);
    Message::ManifestEnd {
        entries: 1,
        total_bytes: SIZE,
    }
    .emit(&mut f);
    assert!(host.send(&f));
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    host
}

/// The CRC table of `bytes`, page by page.
fn table(bytes: &[u8]) -> Vec<u8> {
    let crcs: Vec<u32> = bytes.chunks(PAGE as usize).map(crc32fast::hash).collect();
    crc_table(&crcs)
}

/// A Run frame of `count` pages from `first`.
fn run_frame(first: u64, count: u32, encoding: Encoding, crcs: &[u8], data: &[u8]) -> Vec<u8> {
    Message::Run {
        file: FileId(0),
        first,
        count,
        encoding,
        crcs: PageCrcs::new(crcs).expect("whole CRCs"),
        data,
    }
    .to_frame()
}

/// A file opened with the kernel's readahead off, so each read asks the
/// daemon for the pages it covers and no others.
fn open_random(path: &Path) -> File {
    let f = File::open(path).unwrap();
    let advised =
        nix::fcntl::posix_fadvise(&f, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_RANDOM);
    assert_eq!(advised, Ok(()));
    f
}

/// Pages of the store's files its map marks present, from `feedfs-device
/// status --json` (up to a second behind the daemon, which writes its map
/// in batches): how the test knows that a run has landed.
fn present_pages(store: &Path) -> u64 {
    let out = std::process::Command::new(bin("feedfs-device"))
        .args(["status", "--json", "--store"])
        .arg(store)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("\"present_pages\":")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<u64>().ok()
        })
        .sum()
}

/// Wait until the store holds `pages` pages.
fn wait_landed(store: &Path, pages: u64, what: &str) {
    wait_for(
        &format!("{what}: {pages} pages in the store"),
        Duration::from_secs(10),
        || present_pages(store) == pages,
    );
}

/// Every Demand the device sent so far, as page ranges of the file.
fn demands(host: &FakeHost, within: Duration) -> Vec<(u64, u64)> {
    std::iter::from_fn(|| host.next(within))
        .filter_map(|m| match m {
            Ok(OwnedMessage::Demand { file, first, count }) => {
                assert_eq!(file, FileId(0));
                Some((first, u64::from(count)))
            }
            _ => None,
        })
        .collect()
}

/// Send pages 0 to 15 as one run whose page `bad` fails its CRC (as `frame`
/// makes it), then check: `bad` alone is demanded again, at once; the
/// others land and are served without a demand; once `bad` is sent whole,
/// a read of it waiting meanwhile is served.
fn one_bad_page_in_a_run(name: &str, data: &[u8], bad: u64, frame: Vec<u8>) {
    let s = Scratch::new(&format!("runs-{name}"));
    let mut host = mounted(&s);
    let (mnt, store) = (s.root.join("mnt"), s.root.join("store"));
    let path = mnt.join("f.bin");
    assert!(host.send(&frame));
    let mut asked = Vec::new();
    wait_for(
        &format!("{name}: page {bad} demanded again"),
        Duration::from_secs(10),
        || {
            asked.extend(demands(&host, Duration::from_millis(50)));
            asked.iter().any(|&(a, n)| (a..a + n).contains(&bad))
        },
    );
    wait_landed(&store, 15, name);
    // Each good page, read alone: served from the store at once.
    let f = open_random(&path);
    for p in (0..16).filter(|&p| p != bad) {
        let mut buf = vec![0u8; PAGE as usize];
        f.read_exact_at(&mut buf, p * PAGE)
            .unwrap_or_else(|e| panic!("{name}: page {p}: {e}"));
        assert!(
            buf == data[(p * PAGE) as usize..((p + 1) * PAGE) as usize],
            "{name}: page {p}"
        );
    }
    // The bad page: a reader waits for it.
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; PAGE as usize];
        let got = f.read_exact_at(&mut buf, bad * PAGE).map(|()| buf);
        let _ = tx.send(());
        got
    });
    asked.extend(demands(&host, Duration::from_millis(200)));
    for &(a, n) in &asked {
        let wrongly: Vec<u64> = (a..a + n).filter(|&p| p < 16 && p != bad).collect();
        assert!(
            wrongly.is_empty(),
            "{name}: pages {wrongly:?} of the run landed, yet were demanded: {asked:?}"
        );
    }
    assert!(
        rx.try_recv().is_err(),
        "{name}: the read of page {bad} returned before the page came"
    );
    let good = data[(bad * PAGE) as usize..((bad + 1) * PAGE) as usize].to_vec();
    assert!(host.send(&run_frame(bad, 1, Encoding::Raw, &table(&good), &good)));
    let got = reader
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(got == good, "{name}: page {bad} after it was sent again");
    assert_eq!(
        read_at(&path, 0, 16 * PAGE as usize).unwrap(),
        data,
        "{name}: the whole run"
    );
    stop_device(host.device.id() as i32, &mnt);
    let (status, _, stderr) = host.wait(Duration::from_secs(10));
    assert!(status.success(), "{name}: {status}: {stderr}");
}

#[test]
fn a_damaged_page_inside_a_run_is_demanded_again_while_the_others_land() {
    let data = content(SEED, 0, 16 * PAGE as usize);
    // Raw: a byte of page 5's data changed on the way (the frame checksum
    // does not cover the data, so the frame passes).
    let crcs = table(&data);
    let mut frame = run_frame(0, 16, Encoding::Raw, &crcs, &data);
    let data_at = frame.len() - data.len();
    frame[data_at + 5 * PAGE as usize + 77] ^= 0x20;
    feedfs_protocol::frame::Frame::new_checked(&frame[..]).expect("the frame itself checks");
    one_bad_page_in_a_run("raw", &data, 5, frame);

    // LZ4 (of text, which compresses): the run's data decodes, but page 9's
    // CRC in the table is not that of its bytes.
    let mut text = Vec::new();
    while text.len() < 16 * PAGE as usize {
        text.extend_from_slice(format!("line {} of a compressible page\n", text.len()).as_bytes());
    }
    text.truncate(16 * PAGE as usize);
    let packed = lz4_flex::block::compress(&text);
    assert!(packed.len() < text.len());
    let mut crcs: Vec<u32> = text.chunks(PAGE as usize).map(crc32fast::hash).collect();
    crcs[9] ^= 1;
    let frame = run_frame(0, 16, Encoding::Lz4, &crc_table(&crcs), &packed);
    one_bad_page_in_a_run("lz4", &text, 9, frame);

    // The last page of a run, short data and all.
    let crcs = table(&data);
    let mut frame = run_frame(0, 16, Encoding::Raw, &crcs, &data);
    let last = frame.len() - 1;
    frame[last] ^= 0x01;
    one_bad_page_in_a_run("raw-last", &data, 15, frame);
}

#[test]
fn a_run_of_zeros_and_a_short_last_page_land_as_they_are() {
    let s = Scratch::new("runs-zeros");
    let mut host = mounted(&s);
    let (mnt, store) = (s.root.join("mnt"), s.root.join("store"));
    let path = mnt.join("f.bin");
    // Pages 0 to 63 as zeros (no table, no data), the short page 64 raw.
    let mut frames = run_frame(0, 64, Encoding::Zero, &[], &[]);
    let tail = content(SEED, 64 * PAGE, 1000);
    frames.extend(run_frame(64, 1, Encoding::Raw, &table(&tail), &tail));
    assert!(host.send(&frames));
    wait_landed(&store, 65, "zeros");
    let f = open_random(&path);
    for p in [0, 31, 63] {
        let mut buf = vec![0xffu8; PAGE as usize];
        f.read_exact_at(&mut buf, p * PAGE).unwrap();
        assert!(buf.iter().all(|&b| b == 0), "page {p} of zeros");
    }
    assert_eq!(read_at(&path, 64 * PAGE, 4096).unwrap(), tail);
    assert!(
        demands(&host, Duration::from_millis(300)).is_empty(),
        "a page that landed was demanded"
    );
    stop_device(host.device.id() as i32, &mnt);
    let (status, _, stderr) = host.wait(Duration::from_secs(10));
    assert!(status.success(), "{status}: {stderr}");
}
