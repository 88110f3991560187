//! What goes over the link, end to end with the real binaries: frames
//! leave the device in the order it sent them (a resume sends exactly the
//! pages the device lacks), and all-zero pages cost a few bytes on the
//! wire and no space in the store. These tests need /dev/fuse and the
//! right to mount (root in CI); without them they fail, they never skip.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use feedfs_tests::peers::{device_command, host_command, stop_device, wait_exit};
use feedfs_tests::*;

const MIB: u64 = 1 << 20;

/// `--exec` command for a daemon mounting `mnt` over `store`.
fn device_exec(mnt: &Path, store: &Path) -> String {
    let c = device_command(mnt, store, "--stdio");
    let args: Vec<String> = c
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("exec {} {}", c.get_program().display(), args.join(" "))
}

/// The one `.data` file of a store holding one file.
fn data_file(store: &Path) -> PathBuf {
    fs::read_dir(store.join("files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "data"))
        .expect("a data file in the store")
}

/// Stop the daemon on `store` and wait until its store is free: its main
/// thread can be gone while its other threads still hold the store's lock.
fn stop(store: &Path, mnt: &Path) {
    stop_device(device_pid(store), mnt);
    let lock = fs::File::open(store.join("lock")).unwrap();
    wait_for("the store's lock", Duration::from_secs(10), || {
        lock.try_lock().is_ok()
    });
    lock.unlock().unwrap();
}

/// Pages the device reported holding, and the (file, page) of every page sent.
fn haves_and_sends(events: &[RecordEvent]) -> (u64, Vec<(u32, u64)>) {
    let sends = sent_pages(events)
        .iter()
        .map(|p| (p.file, p.page))
        .collect();
    (had_pages(events), sends)
}

#[test]
fn a_resume_with_thousands_of_separate_present_pages_sends_only_the_missing_ones() {
    let s = Scratch::new("order");
    let src = s.root.join("src");
    const PAGES: u64 = 2048;
    write_file(&src.join("f.bin"), PAGES * PAGE, 21, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let push = |record: &Path| {
        let status = Command::new(bin("feedfs-host"))
            .args(["push", "--record"])
            .arg(record)
            .arg("--exec")
            .arg(device_exec(&mnt, &store))
            .arg(src.join("f.bin"))
            .status()
            .unwrap();
        assert!(status.success(), "push: {status}");
    };
    push(&s.root.join("first.tsv"));
    stop(&store, &mnt);

    // Each round leaves every other page present: 1024 separate runs, a
    // Have of 16 KiB (far over PIPE_BUF), then the stream at once.
    for round in 0..4 {
        let data = OpenOptions::new()
            .write(true)
            .open(data_file(&store))
            .unwrap();
        for p in (1..PAGES).step_by(2) {
            data.write_all_at(&[0xff; 16], p * PAGE + 100).unwrap();
        }
        drop(data);
        let verify = Command::new(bin("feedfs-device"))
            .args(["verify", "--store"])
            .arg(&store)
            .output()
            .unwrap();
        assert_eq!(
            verify.status.code(),
            Some(3),
            "round {round}: verify drops the damaged pages: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );

        let record = s.root.join(format!("resume{round}.tsv"));
        push(&record);
        let (had, sends) = haves_and_sends(&read_record(&record));
        assert_eq!(had, PAGES / 2, "round {round}: pages the device reported");
        let present: Vec<_> = sends.iter().filter(|(_, i)| i % 2 == 0).collect();
        assert!(
            present.is_empty(),
            "round {round}: {} pages the device held were sent again, first {:?}",
            present.len(),
            &present[..present.len().min(5)]
        );
        assert_eq!(
            sends.len() as u64,
            PAGES / 2,
            "round {round}: pages sent, exactly the missing ones"
        );
        assert_same_tree(&src.join("f.bin"), &mnt.join("f.bin"));
        stop(&store, &mnt);
    }
}

/// Bytes the files below `dir` take on disk.
fn allocated(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
        .sum()
}

#[test]
fn a_sparse_image_costs_a_few_bytes_a_zero_run_and_stays_sparse_in_the_store() {
    let s = Scratch::new("zeros");
    let src = s.root.join("src");
    fs::create_dir_all(&src).unwrap();
    // 200 MiB, all holes but 3 bytes: at the start, in the middle, at the end.
    const SIZE: u64 = 200 * MIB;
    let img = src.join("disk.img");
    let f = fs::File::create(&img).unwrap();
    f.set_len(SIZE).unwrap();
    for (at, byte) in [(0, 0x11u8), (SIZE / 2 + 12345, 0x22), (SIZE - 1, 0x33)] {
        f.write_all_at(&[byte], at).unwrap();
    }
    drop(f);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));

    // The host's frames pass through this test, which counts them.
    let mut device = device_command(&mnt, &store, "--stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut host = host_command(&[img.to_str().unwrap()])
        .stdin(Stdio::from(device.stdout.take().unwrap()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut from_host, mut to_device) =
        (host.stdout.take().unwrap(), device.stdin.take().unwrap());
    let relay = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            match from_host.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => {
                    total += n as u64;
                    if to_device.write_all(&buf[..n]).is_err() {
                        return total;
                    }
                }
            }
        }
    });
    let status = wait_exit(&mut host, Duration::from_secs(60));
    assert!(status.success(), "push: {status}");
    let wire = relay.join().unwrap();
    // 51 200 pages: three with data, sent at worst in a run of the default
    // run length (256 KiB) each with a CRC per page; the others in runs of
    // zeros of at least that length, 36-byte frames without data or CRCs;
    // then the handshake, the manifest and the goodbye.
    let (run, frame) = (256 * 1024, 16 + 20);
    let bound = 3 * (run + frame + 4 * run / PAGE) + (SIZE / run + 6) * frame + 4096;
    assert!(
        wire <= bound,
        "{wire} bytes on the wire for 3 bytes of data in 200 MiB, expected at most {bound}"
    );
    let stored = allocated(&store.join("files"));
    assert!(
        stored < MIB,
        "the store takes {stored} bytes on disk for 3 bytes of data"
    );
    assert_same_tree(&img, &mnt.join("disk.img"));
    drop_cache(&mnt.join("disk.img"));
    assert_eq!(
        read_at(&mnt.join("disk.img"), SIZE / 2 + 12345, 1).unwrap(),
        [0x22]
    );
    stop(&store, &mnt);
    device.wait().unwrap();

    // The holes pass verify: their CRCs are those of zeros.
    let verify = Command::new(bin("feedfs-device"))
        .args(["verify", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(
        (
            verify.status.code(),
            String::from_utf8_lossy(&verify.stdout).into_owned()
        ),
        (
            Some(0),
            "disk.img: 51200 of 51200 pages present and good, 0 bad\n".into()
        )
    );
}
