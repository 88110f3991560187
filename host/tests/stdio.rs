//! A whole push over `--stdio`, with this test playing the device.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use feedfs_protocol::io::{FrameReader, FrameWriter};
use feedfs_protocol::message::{decode_run, Encoding};
use feedfs_protocol::{run_len, ErrorCode, FileId, Message, PageCrcs, Role, PAGE_SIZE, VERSION};

/// Check each page of a run's decoded bytes against its CRC.
fn check_pages(pages: &[u8], crcs: &PageCrcs, count: u32) {
    assert_eq!(crcs.len(), count as usize, "one CRC per page");
    for (i, page) in pages.chunks(PAGE_SIZE as usize).enumerate() {
        assert_eq!(crcs.get(i), crc32fast::hash(page), "page {i}'s CRC");
    }
}

/// A scratch directory for one test, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(tag: &str) -> Scratch {
    let p = std::env::temp_dir().join(format!("feedfs-host-stdio-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(p.join("tree/sub")).unwrap();
    Scratch(p)
}

#[test]
fn push_over_stdio_to_completion() {
    let s = scratch("ok");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(s.0.join("tree/big"), &big).unwrap();
    std::fs::write(s.0.join("tree/sub/small"), b"hello").unwrap();
    let record = s.0.join("record.tsv");
    let mut child = Command::new(env!("CARGO_BIN_EXE_feedfs-host"))
        .args(["push", "--stdio", "--run-size", "64K", "--record"])
        .arg(&record)
        .arg(s.0.join("tree"))
        .env("RUST_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Every byte on stdout must be a frame: the reader refuses anything else.
    let mut r = FrameReader::new(child.stdout.take().unwrap());
    let mut w = FrameWriter::new(child.stdin.take().unwrap());

    let mut paths = Vec::new();
    loop {
        let m = Message::parse(r.next_frame().unwrap().unwrap()).unwrap();
        match m {
            Message::Hello { role, .. } => assert_eq!(role, Role::Host),
            Message::Entry { path, .. } => paths.push(path.to_string()),
            Message::ManifestEnd {
                entries,
                total_bytes,
            } => {
                assert_eq!(entries, 4);
                assert_eq!(total_bytes, 300_005);
                break;
            }
            m => panic!("unexpected {m:?}"),
        }
    }
    assert_eq!(paths, ["tree", "tree/big", "tree/sub", "tree/sub/small"]);
    w.send(&Message::Hello {
        role: Role::Device,
        min_version: VERSION,
        max_version: VERSION,
        agent: "test-device",
    })
    .unwrap();
    // A reader waits for the last page of "big" before the host knows what is here.
    w.send(&Message::Demand {
        file: FileId(1),
        first: 73,
        count: 1,
        again: false,
    })
    .unwrap();
    w.send(&Message::HaveEnd { files: 2 }).unwrap();
    let mut got = vec![0u8; big.len()];
    let mut order = Vec::new();
    loop {
        match Message::parse(r.next_frame().unwrap().unwrap()).unwrap() {
            Message::Run {
                file,
                first,
                count,
                encoding,
                crcs,
                data,
            } => {
                // --compress auto without --rate judges the link over 16
                // runs before it compresses any: these seven go raw.
                assert_eq!(encoding, Encoding::Raw);
                check_pages(data, &crcs, count);
                order.push((file.0, first, count));
                if file == FileId(1) {
                    let at = first as usize * 4096;
                    got[at..at + data.len()].copy_from_slice(data);
                } else {
                    assert_eq!(data, b"hello");
                }
            }
            Message::StreamDone { pages_sent } => {
                assert_eq!(pages_sent, 75);
                break;
            }
            m => panic!("unexpected {m:?}"),
        }
    }
    // The demand first, as exactly the page asked for; then the stream in
    // runs of --run-size, skipping the page already sent.
    assert_eq!(
        order,
        [
            (1, 73, 1),
            (1, 0, 16),
            (1, 16, 16),
            (1, 32, 16),
            (1, 48, 16),
            (1, 64, 9),
            (3, 0, 1)
        ]
    );
    assert_eq!(got, big);
    w.send(&Message::Complete { pages: 75 }).unwrap();
    assert_eq!(
        Message::parse(r.next_frame().unwrap().unwrap()).unwrap(),
        Message::Goodbye
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");

    let text = std::fs::read_to_string(&record).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "# feedfs-host record v3");
    assert!(lines[1].starts_with("file\t1\t300000\ttree/big\t"));
    assert!(lines[2].starts_with("file\t3\t5\ttree/sub/small\t"));
    assert!(lines[3].starts_with("demand\t") && lines[3].ends_with("\t1\t73\t1"));
    let sent: Vec<Vec<&str>> = lines
        .iter()
        .filter(|l| l.starts_with("sent\t"))
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(sent.len(), 7);
    assert_eq!(sent[0][2..], ["1", "73", "1", "demand", "0"]);
    assert_eq!(sent[6][2..], ["3", "0", "1", "stream", "73"]);
    let done: Vec<&str> = lines.last().unwrap().split('\t').collect();
    assert_eq!((done[0], done[2]), ("done", "75"));
}

#[test]
fn device_error_fails_the_push() {
    let s = scratch("err");
    std::fs::write(s.0.join("tree/f"), b"x").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_feedfs-host"))
        .args(["push", "--stdio"])
        .arg(s.0.join("tree/f"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = FrameWriter::new(child.stdin.take().unwrap());
    w.send(&Message::Hello {
        role: Role::Device,
        min_version: VERSION,
        max_version: VERSION,
        agent: "test-device",
    })
    .unwrap();
    w.send(&Message::Error {
        code: ErrorCode::Manifest,
        text: "no thanks",
    })
    .unwrap();
    w.get_mut().flush().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("device reported an error: Manifest: no thanks"),
        "{err}"
    );
}

#[test]
fn compress_lz4_sends_lz4_frames_that_decode_to_the_files_bytes() {
    let s = scratch("lz4");
    // Text-like data (shrinks), then noise (does not): the noise goes raw.
    let text: Vec<u8> = b"feedfs streams file pages over a pipe. "
        .iter()
        .cycle()
        .take(200_000)
        .copied()
        .collect();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..70_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(s.0.join("tree/text"), &text).unwrap();
    std::fs::write(s.0.join("tree/sub/noise"), &noise).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_feedfs-host"))
        .args(["push", "--stdio", "--run-size", "64K", "--compress", "lz4"])
        .arg(s.0.join("tree"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut r = FrameReader::new(child.stdout.take().unwrap());
    let mut w = FrameWriter::new(child.stdin.take().unwrap());
    // The sizes from the manifest: what the device knows a run's length by.
    let mut sizes = std::collections::HashMap::new();
    loop {
        match Message::parse(r.next_frame().unwrap().unwrap()).unwrap() {
            Message::Hello { .. } => {}
            Message::Entry { id, size, path, .. } => {
                sizes.insert(id, (path.to_string(), size));
            }
            Message::ManifestEnd { .. } => break,
            m => panic!("unexpected {m:?}"),
        }
    }
    w.send(&Message::Hello {
        role: Role::Device,
        min_version: VERSION,
        max_version: VERSION,
        agent: "test-device",
    })
    .unwrap();
    w.send(&Message::HaveEnd { files: 2 }).unwrap();
    let mut got: std::collections::HashMap<String, Vec<u8>> = Default::default();
    let (mut lz4, mut raw, mut wire) = (0, 0, 0);
    let mut plain = Vec::new();
    loop {
        match Message::parse(r.next_frame().unwrap().unwrap()).unwrap() {
            Message::Run {
                file,
                first,
                count,
                encoding,
                crcs,
                data,
            } => {
                let (path, size) = &sizes[&file];
                let len = run_len(*size, first, count.into());
                match encoding {
                    Encoding::Lz4 => {
                        lz4 += 1;
                        assert!(
                            data.len() * 20 < len * 19,
                            "sent compressed only when it pays"
                        );
                    }
                    Encoding::Raw => raw += 1,
                    Encoding::Zero => panic!("neither file has a page of zeros"),
                }
                wire += data.len();
                let pages = decode_run(encoding, data, len, &mut plain).unwrap();
                assert_eq!(pages.len(), len);
                // The CRCs are of the decoded pages.
                check_pages(pages, &crcs, count);
                let out = got.entry(path.clone()).or_default();
                out.resize(*size as usize, 0);
                let at = first as usize * 4096;
                out[at..at + len].copy_from_slice(pages);
            }
            Message::StreamDone { pages_sent } => {
                assert_eq!(pages_sent, 49 + 18);
                break;
            }
            m => panic!("unexpected {m:?}"),
        }
    }
    assert_eq!((lz4, raw), (4, 2), "text in LZ4, noise raw");
    assert!(wire < 70_000 + 20_000, "{wire} bytes on the wire");
    assert_eq!(got["tree/text"], text);
    assert_eq!(got["tree/sub/noise"], noise);
    w.send(&Message::Complete { pages: 67 }).unwrap();
    assert_eq!(
        Message::parse(r.next_frame().unwrap().unwrap()).unwrap(),
        Message::Goodbye
    );
    assert!(child.wait().unwrap().success());
}
