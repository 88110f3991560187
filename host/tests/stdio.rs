//! A whole push over `--stdio`, with this test playing the device.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use feedfs_protocol::io::{FrameReader, FrameWriter};
use feedfs_protocol::message::{decode_block, Encoding};
use feedfs_protocol::{block_len, ErrorCode, FileId, Message, Role, VERSION};

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
        .args(["push", "--stdio", "--block-size", "64K", "--record"])
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
    // A reader waits for the last block of "big" before the host knows what is here.
    w.send(&Message::Demand {
        file: FileId(1),
        first: 4,
        count: 1,
    })
    .unwrap();
    w.send(&Message::HaveEnd { files: 2 }).unwrap();
    let mut got = vec![0u8; big.len()];
    let mut order = Vec::new();
    loop {
        match Message::parse(r.next_frame().unwrap().unwrap()).unwrap() {
            Message::Block {
                file,
                index,
                crc,
                encoding,
                data,
            } => {
                // --compress auto without --rate judges the link over 16
                // blocks before it compresses any: these six go raw.
                assert_eq!(encoding, Encoding::Raw);
                assert_eq!(crc, crc32fast::hash(data));
                order.push((file.0, index));
                if file == FileId(1) {
                    let at = index as usize * 65536;
                    got[at..at + data.len()].copy_from_slice(data);
                } else {
                    assert_eq!(data, b"hello");
                }
            }
            Message::StreamDone { blocks_sent } => {
                assert_eq!(blocks_sent, 6);
                break;
            }
            m => panic!("unexpected {m:?}"),
        }
    }
    assert_eq!(order[0], (1, 4));
    assert_eq!(got, big);
    w.send(&Message::Complete { blocks: 6 }).unwrap();
    assert_eq!(
        Message::parse(r.next_frame().unwrap().unwrap()).unwrap(),
        Message::Goodbye
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");

    let text = std::fs::read_to_string(&record).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "# feedfs-host record v2");
    assert!(lines[1].starts_with("file\t1\t300000\t65536\ttree/big\t"));
    assert!(lines[2].starts_with("file\t3\t5\t65536\ttree/sub/small\t"));
    assert!(lines[3].starts_with("demand\t") && lines[3].ends_with("\t1\t4\t1"));
    let sent: Vec<Vec<&str>> = lines
        .iter()
        .filter(|l| l.starts_with("sent\t"))
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(sent.len(), 6);
    assert_eq!(sent[0][2..], ["1", "4", "demand", "0"]);
    assert_eq!(sent[5][2..], ["3", "0", "stream", "4"]);
    let done: Vec<&str> = lines.last().unwrap().split('\t').collect();
    assert_eq!((done[0], done[2]), ("done", "6"));
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
    let text: Vec<u8> = b"feedfs streams file blocks over a pipe. "
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
        .args([
            "push",
            "--stdio",
            "--block-size",
            "64K",
            "--compress",
            "lz4",
        ])
        .arg(s.0.join("tree"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut r = FrameReader::new(child.stdout.take().unwrap());
    let mut w = FrameWriter::new(child.stdin.take().unwrap());
    // The sizes from the manifest: what the device knows a block's length by.
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
            Message::Block {
                file,
                index,
                crc,
                encoding,
                data,
            } => {
                let (path, size) = &sizes[&file];
                let len = block_len(*size, 65536, index);
                match encoding {
                    Encoding::Lz4 => {
                        lz4 += 1;
                        assert!(
                            data.len() * 20 < len * 19,
                            "sent compressed only when it pays"
                        );
                    }
                    Encoding::Raw => raw += 1,
                    Encoding::Zero => panic!("neither file has a block of zeros"),
                }
                wire += data.len();
                let block = decode_block(encoding, data, len, &mut plain).unwrap();
                assert_eq!(block.len(), len);
                assert_eq!(crc, crc32fast::hash(block), "crc is of the decoded block");
                let out = got.entry(path.clone()).or_default();
                out.resize(*size as usize, 0);
                let at = index as usize * 65536;
                out[at..at + len].copy_from_slice(block);
            }
            Message::StreamDone { blocks_sent } => {
                assert_eq!(blocks_sent, 4 + 2);
                break;
            }
            m => panic!("unexpected {m:?}"),
        }
    }
    assert_eq!((lz4, raw), (4, 2), "text in LZ4, noise raw");
    assert!(wire < 70_000 + 20_000, "{wire} bytes on the wire");
    assert_eq!(got["tree/text"], text);
    assert_eq!(got["tree/sub/noise"], noise);
    w.send(&Message::Complete { blocks: 6 }).unwrap();
    assert_eq!(
        Message::parse(r.next_frame().unwrap().unwrap()).unwrap(),
        Message::Goodbye
    );
    assert!(child.wait().unwrap().success());
}
