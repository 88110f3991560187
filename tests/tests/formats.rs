//! Older formats met by this build, end to end with the real binaries: a
//! store of format 1 (block maps, a manifest in protocol version 3 frames),
//! built here byte by byte from its documented layout, is converted on
//! open (its good blocks served as pages, nothing else trusted) or refused
//! with a message naming the format; a peer of protocol version 3 is told
//! clearly, by the device (an Error with code 2) and by the host. These
//! tests need /dev/fuse and the right to mount (root); they fail without.

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use feedfs_protocol::{ErrorCode, OwnedMessage};
use feedfs_tests::peers::{checked_read, device_command, stop_device, wait_exit, FakeHost, Read};
use feedfs_tests::*;

const MIB: u64 = 1 << 20;
/// The format-1 store's block size, and its file: 16 whole blocks and a short one.
const BLOCK: u64 = 64 * 1024;
const SIZE: u64 = MIB + 1000;
const SEED: u64 = 71;
/// Block 5 is absent from the old map; block 9 is marked present but its
/// recorded CRC is wrong (a torn write): neither may be served.
const ABSENT: u64 = 5;
const TORN: u64 = 9;

fn device_cmd(mnt: &Path, store: &Path) -> String {
    format!(
        "exec {} mount {} --store {} --stdio",
        bin("feedfs-device").display(),
        mnt.display(),
        store.display()
    )
}

/// A frame as protocol version 3 wrote it: the same 16-byte header, the
/// whole payload under the checksum.
fn v3_frame(ty: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = b"FDFS".to_vec();
    f.extend_from_slice(&[3, ty, 0, 0]);
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc32fast::hash(&[&f[..12], payload].concat());
    f.extend_from_slice(&crc.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// A version 3 Hello from `role` (1 host, 2 device), speaking 3 to 3.
fn v3_hello(role: u8) -> Vec<u8> {
    let agent = b"feedfs 0.3 (protocol 3)";
    let mut p = vec![role, 3, 3, 0];
    p.extend_from_slice(&(agent.len() as u16).to_le_bytes());
    p.extend_from_slice(agent);
    v3_frame(0x01, &p)
}

/// The saved manifest of a format-1 store serving one file: an Entry
/// (version 3: with a block size, without a time) and a ManifestEnd.
fn v3_manifest(path: &str, identity: &[u8; 16]) -> Vec<u8> {
    let mut e = 0u32.to_le_bytes().to_vec();
    e.extend_from_slice(&[0, 0, 0, 0]);
    e.extend_from_slice(&SIZE.to_le_bytes());
    e.extend_from_slice(&0o644u32.to_le_bytes());
    e.extend_from_slice(&(BLOCK as u32).to_le_bytes());
    e.extend_from_slice(identity);
    e.extend_from_slice(&(path.len() as u16).to_le_bytes());
    e.extend_from_slice(path.as_bytes());
    let mut end = 1u32.to_le_bytes().to_vec();
    end.extend_from_slice(&SIZE.to_le_bytes());
    [v3_frame(0x02, &e), v3_frame(0x03, &end)].concat()
}

fn align8(x: usize) -> usize {
    x.div_ceil(8) * 8
}

/// A block map of format 1 (docs/store.md as of format 1): header with
/// magic, version 1, block size, block count, file size, identity, path
/// and header CRC; the bitmap; the CRC table.
fn v1_map(path: &str, identity: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let blocks = SIZE.div_ceil(BLOCK) as usize;
    let mut m = b"FDFSMAP\0".to_vec();
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&(BLOCK as u32).to_le_bytes());
    m.extend_from_slice(&(blocks as u64).to_le_bytes());
    m.extend_from_slice(&SIZE.to_le_bytes());
    m.extend_from_slice(identity);
    m.extend_from_slice(&(path.len() as u16).to_le_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(path.as_bytes());
    let crc = crc32fast::hash(&m);
    m[52..56].copy_from_slice(&crc.to_le_bytes());
    m.resize(align8(m.len()), 0);
    let mut bitmap = vec![0u8; align8(blocks.div_ceil(8))];
    for b in (0..blocks).filter(|&b| b as u64 != ABSENT) {
        bitmap[b / 8] |= 1 << (b % 8);
    }
    m.extend_from_slice(&bitmap);
    for (b, bytes) in data.chunks(BLOCK as usize).enumerate() {
        let crc = match b as u64 {
            ABSENT => 0,
            TORN => crc32fast::hash(bytes) ^ 0xdead_beef,
            _ => crc32fast::hash(bytes),
        };
        m.extend_from_slice(&crc.to_le_bytes());
    }
    m
}

/// The identity the host gives `path`: the last field of its `file` line
/// in a record, 32 hex digits.
fn identity_in_record(record: &Path, path: &str) -> [u8; 16] {
    let text = fs::read_to_string(record).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("file\t") && l.split('\t').any(|f| f == path))
        .unwrap_or_else(|| panic!("no file line for {path} in the record:\n{text}"));
    let hex = line.rsplit('\t').next().unwrap();
    assert_eq!(hex.len(), 32, "the record gives no identity: {line:?}");
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    id
}

/// The one `files/<key>` stem of a store serving one file.
fn stored_key(store: &Path) -> String {
    fs::read_dir(store.join("files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "data"))
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .expect("a data file in the store")
}

/// Whether a daemon's message says that it met store format 1 and refuses it.
fn names_format_1(text: &str) -> bool {
    let t = text.to_lowercase();
    t.contains("format 1") || t.contains("format version 1")
}

#[test]
fn a_store_of_format_1_is_converted_or_refused_clearly() {
    let s = Scratch::new("format1");
    let src = s.root.join("src");
    write_file(&src.join("f.bin"), SIZE, SEED, 0o644);
    let data = content(SEED, 0, SIZE as usize);

    // The identity this host gives the file, and the store key of its path,
    // from a push to a scratch store.
    let (mnt, store0) = (s.dir("mnt"), s.dir("store0"));
    let record0 = s.root.join("r0.tsv");
    let status = Command::new(bin("feedfs-host"))
        .args(["push", "--record", record0.to_str().unwrap()])
        .args(["--exec", &device_cmd(&mnt, &store0)])
        .arg(src.join("f.bin"))
        .status()
        .unwrap();
    assert!(status.success(), "push: {status}");
    stop_device(device_pid(&store0), &mnt);
    let identity = identity_in_record(&record0, "f.bin");
    let key = stored_key(&store0);

    // The store as a daemon of format 1 left it: every block but one
    // stored (the absent one a hole), its map, its manifest.
    let store = s.dir("store");
    let files = s.dir("store/files");
    let d = fs::File::create(files.join(format!("{key}.data"))).unwrap();
    d.set_len(SIZE).unwrap();
    for (b, bytes) in data.chunks(BLOCK as usize).enumerate() {
        if b as u64 != ABSENT {
            d.write_all_at(bytes, b as u64 * BLOCK).unwrap();
        }
    }
    drop(d);
    fs::write(
        files.join(format!("{key}.map")),
        v1_map("f.bin", &identity, &data),
    )
    .unwrap();
    fs::write(store.join("manifest"), v3_manifest("f.bin", &identity)).unwrap();

    // 1. Offline: served as converted, or refused naming the format.
    let mut offline = device_command(&mnt, &store, "--offline")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !is_mounted(&mnt) && offline.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "neither mounted nor refused"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    if is_mounted(&mnt) {
        let f = mnt.join("f.bin");
        for b in 0..SIZE.div_ceil(BLOCK) {
            let (at, len) = (b * BLOCK, BLOCK.min(SIZE - b * BLOCK) as usize);
            let (got, _) = checked_read(
                &f,
                at,
                &data[at as usize..at as usize + len],
                Duration::from_secs(5),
                "format 1, offline",
            );
            let want = if b == ABSENT || b == TORN {
                Read::Eio
            } else {
                Read::Good
            };
            assert_eq!(got, want, "block {b} of the old store, offline");
        }
        stop_device(offline.id() as i32, &mnt);
        offline.wait().unwrap();
        eprintln!("format 1 offline: converted, its good blocks served");
    } else {
        let status = offline.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut offline.stderr.take().unwrap(), &mut err).unwrap();
        assert!(!status.success(), "{err}");
        assert!(names_format_1(&err), "the refusal names format 1: {err}");
        eprintln!("format 1 offline: refused: {err}");
    }

    // 2. With a host: converted (the host sends only the pages of the
    // absent and the torn block), or refused naming the format.
    let record = s.root.join("r1.tsv");
    let out = Command::new(bin("feedfs-host"))
        .args(["push", "--record", record.to_str().unwrap()])
        .args([
            "--exec",
            &format!(
                "{} 2>{}",
                device_cmd(&mnt, &store),
                s.root.join("d.err").display()
            ),
        ])
        .arg(src.join("f.bin"))
        .output()
        .unwrap();
    let device_err = fs::read_to_string(s.root.join("d.err")).unwrap_or_default();
    if out.status.success() {
        assert_same_tree(&src.join("f.bin"), &mnt.join("f.bin"));
        let mut sent: Vec<u64> = sent_pages(&read_record(&record))
            .iter()
            .map(|p| p.page)
            .collect();
        sent.sort();
        let per_block = BLOCK / PAGE;
        let want: Vec<u64> = [ABSENT, TORN]
            .iter()
            .flat_map(|b| b * per_block..(b + 1) * per_block)
            .collect();
        assert_eq!(
            sent, want,
            "the host sent exactly the pages the old store lacked or had torn"
        );
        stop_device(device_pid(&store), &mnt);
    } else {
        let host_err = String::from_utf8_lossy(&out.stderr);
        assert!(
            names_format_1(&device_err),
            "the refusal names format 1: device: {device_err}; host: {host_err}"
        );
        assert!(!is_mounted(&mnt));
    }
}

#[test]
fn a_version_3_peer_is_told_clearly() {
    // A host of version 3, to the device.
    let s = Scratch::new("v3-host");
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let mut host = FakeHost::start(&mnt, &store, &[]);
    assert!(host.send(&v3_hello(1)));
    let mut errors = Vec::new();
    while let Some(m) = host.next(Duration::from_secs(10)) {
        if let Ok(OwnedMessage::Error { code, text }) = m {
            errors.push((code, text));
        }
    }
    let (status, _, stderr) = host.wait(Duration::from_secs(10));
    assert!(!status.success(), "the device must refuse a version 3 host");
    assert_eq!(errors.len(), 1, "one Error to the host: {errors:?}");
    assert_eq!(errors[0].0, ErrorCode::Version, "{errors:?}");
    assert_eq!(ErrorCode::Version.to_u16(), 2);
    for text in [errors[0].1.as_str(), stderr.as_str()] {
        assert!(
            (text.contains("version 3") || text.contains("versions 3"))
                && text.contains(&format!("{}", feedfs_protocol::VERSION)),
            "says which versions: {text}"
        );
    }
    assert!(!is_mounted(&mnt), "nothing mounted for a version 3 host");

    // A device of version 3, to the host: it says so and exits non-zero.
    let s = Scratch::new("v3-device");
    let hello = s.root.join("hello3");
    fs::File::create(&hello)
        .unwrap()
        .write_all(&v3_hello(2))
        .unwrap();
    // The fake device says its Hello, then keeps the link open until the host goes.
    let fake = format!("cat {}; exec cat >/dev/null", hello.display());
    let mut host = Command::new(bin("feedfs-host"))
        .args(["push", "--exec", &fake])
        .arg(&s.root)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut host, Duration::from_secs(20));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut host.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        !status.success(),
        "the host must refuse a version 3 device: {err}"
    );
    assert!(
        (err.contains("version 3") || err.contains("versions 3"))
            && err.contains("install matching"),
        "the host says which versions and what to do: {err}"
    );
}
