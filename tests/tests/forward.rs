//! End to end, a program reading a file forward with no background stream:
//! every page crosses the link once, however the reader's demands overlap
//! the readahead already on its way, and every byte read is the host's.
//! The real binaries over real pipes into a real FUSE mount; this test
//! fails, never skips, without /dev/fuse.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::process::{Command, Stdio};

use feedfs_tests::peers::{device_command, stop_device};
use feedfs_tests::*;

const MIB: u64 = 1 << 20;

#[test]
fn a_forward_reader_with_no_stream_gets_every_page_once() {
    let s = Scratch::new("forward");
    let (src, mnt, store) = (s.dir("src"), s.dir("mnt"), s.dir("store"));
    let size = 96 * MIB + 1234;
    write_file(&src.join("seq.bin"), size, 41, 0o644);
    let record = s.dir("rec").join("record.tsv");
    let err = File::create(s.dir("rec").join("device.err")).unwrap();
    let mut device = device_command(&mnt, &store, "--stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .unwrap();
    let host = Command::new(bin("feedfs-host"))
        .args(["push", "--stdio", "--no-stream", "--record"])
        .arg(&record)
        .arg(src.join("seq.bin"))
        .stdin(Stdio::from(device.stdout.take().unwrap()))
        .stdout(Stdio::from(device.stdin.take().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let file = mnt.join("seq.bin");
    wait_for("the mount", std::time::Duration::from_secs(30), || {
        file.exists()
    });

    // 1 MiB reads from start to end, as `cp` or `dd bs=1M` do; the kernel
    // reads ahead of them, the host too.
    let mut f = File::open(&file).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    let mut at = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert_eq!(buf[..n], content(41, at, n)[..], "bytes at {at}");
        at += n as u64;
    }
    assert_eq!(at, size);
    drop(f);

    // With every page read, the device is complete and the push ends.
    let out = host.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = read_record(&record);
    let mut times: HashMap<u64, u32> = HashMap::new();
    for p in sent_pages(&events) {
        *times.entry(p.page).or_default() += 1;
    }
    let pages = size.div_ceil(4096);
    let twice: Vec<u64> = times
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(&p, _)| p)
        .collect();
    assert_eq!(times.len() as u64, pages, "every page sent");
    assert!(
        twice.is_empty(),
        "{} pages sent twice, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(8)]
    );
    // The reader's demands and the readahead both carried pages.
    let kinds: std::collections::BTreeSet<String> =
        sent_pages(&events).into_iter().map(|p| p.kind).collect();
    assert!(
        kinds.contains("demand") && kinds.contains("readahead"),
        "{kinds:?}"
    );
    stop_device(device.id() as i32, &mnt);
    device.wait().unwrap();
}
