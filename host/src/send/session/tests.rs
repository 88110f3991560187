//! Whole sessions against a scripted device over a socket pair: the loop
//! around the state machine, with real bytes, threads and timeouts.

mod handshake;

use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;

use feedfs_protocol::frame::Frame;
use feedfs_protocol::io::FrameReader;
use feedfs_protocol::message::crc_table;
use feedfs_protocol::{ErrorCode, MessageType, PageRange, PAGE_SIZE, VERSION};

use super::*;
use crate::files::manifest::walk;
use crate::logs::record::tests::Shared;
use crate::send::progress::Progress;
use crate::testutil::TempDir;

/// The device end of a socket pair, driven by a test script on its own thread.
struct FakeDevice {
    r: FrameReader<UnixStream>,
    w: FrameWriter<UnixStream>,
}

/// A run of pages with data as the host sends it with `--compress none`.
fn raw_run(file: u32, first: u64, data: &[u8]) -> OwnedMessage {
    let crcs: Vec<u32> = data
        .chunks(PAGE_SIZE as usize)
        .map(crc32fast::hash)
        .collect();
    OwnedMessage::Run {
        file: FileId(file),
        first,
        count: crcs.len() as u32,
        encoding: Encoding::Raw,
        crcs: crc_table(&crcs),
        data: data.to_vec(),
    }
}

/// A run of pages of zeros: no CRC table, no data.
fn zero_run(file: u32, first: u64, count: u32) -> OwnedMessage {
    OwnedMessage::Run {
        file: FileId(file),
        first,
        count,
        encoding: Encoding::Zero,
        crcs: Vec::new(),
        data: Vec::new(),
    }
}

fn stream_done(pages_sent: u64) -> OwnedMessage {
    OwnedMessage::StreamDone { pages_sent }
}

impl FakeDevice {
    /// The host's next message, checked as the device checks it: a Hello
    /// from a host, a run each of whose pages matches its CRC.
    fn recv(&mut self) -> Option<OwnedMessage> {
        let frame: Frame<&[u8]> = self.r.next_frame().ok()??;
        let m = Message::parse(frame).unwrap().into_owned();
        match &m {
            OwnedMessage::Hello { role, .. } => assert_eq!(*role, Role::Host),
            OwnedMessage::Run {
                encoding: Encoding::Zero,
                crcs,
                data,
                ..
            } => assert!(
                crcs.is_empty() && data.is_empty(),
                "a zero run carries nothing"
            ),
            OwnedMessage::Run {
                count,
                crcs,
                encoding,
                data,
                ..
            } => {
                assert_eq!(*encoding, Encoding::Raw, "--compress none");
                let table = feedfs_protocol::PageCrcs::new(crcs).unwrap();
                assert_eq!(table.len(), *count as usize);
                for (i, page) in data.chunks(PAGE_SIZE as usize).enumerate() {
                    assert_eq!(table.get(i), crc32fast::hash(page), "page {i}'s CRC");
                }
            }
            _ => {}
        }
        Some(m)
    }

    fn send(&mut self, m: Message) {
        self.w.send(&m).unwrap();
    }

    fn hello(&mut self, min: u8, max: u8) {
        self.send(Message::Hello {
            role: Role::Device,
            min_version: min,
            max_version: max,
            agent: "fake-device",
        });
    }

    /// Read the host's Hello and manifest; returns the number of entries.
    fn read_manifest(&mut self) -> u32 {
        assert!(
            matches!(self.recv(), Some(OwnedMessage::Hello { min_version: VERSION, max_version: VERSION, agent, .. }) if agent.starts_with("feedfs-host "))
        );
        let mut n = 0;
        loop {
            match self.recv().unwrap() {
                OwnedMessage::Entry { id, .. } => {
                    assert_eq!(id, FileId(n));
                    n += 1;
                }
                OwnedMessage::ManifestEnd { entries, .. } => {
                    assert_eq!(entries, n);
                    return n;
                }
                m => panic!("unexpected {m:?} in the manifest"),
            }
        }
    }
}

struct Run {
    result: Result<Summary, SessionError>,
    record: String,
}

/// Serve `set` to a device running `script`; returns the host's outcome,
/// the record, and what the script returned.
fn session<T: Send + 'static>(
    set: &ServedSet,
    readahead: u64,
    script: impl FnOnce(&mut FakeDevice) -> T + Send + 'static,
) -> (Run, T) {
    session_with(set, readahead, Duration::from_secs(10), script)
}

/// [`session`] with another handshake timeout.
fn session_with<T: Send + 'static>(
    set: &ServedSet,
    readahead: u64,
    handshake_timeout: Duration,
    script: impl FnOnce(&mut FakeDevice) -> T + Send + 'static,
) -> (Run, T) {
    let (host, device) = UnixStream::pair().unwrap();
    let dev: JoinHandle<T> = std::thread::spawn(move || {
        let mut d = FakeDevice {
            r: FrameReader::new(device.try_clone().unwrap()),
            w: FrameWriter::new(device),
        };
        script(&mut d)
    });
    let buf = Shared::default();
    let mut record = Recorder::from_writer(Box::new(buf.clone())).unwrap();
    let start = Instant::now();
    let mut progress = Progress::new(false, start);
    let ctl = host.try_clone().unwrap();
    let result = Session::new(
        set,
        Options {
            readahead,
            run_size: 256 << 10,
            rate: None,
            stream: true,
            compress: Mode::None,
            handshake_timeout,
        },
        &mut record,
        &mut progress,
        start,
    )
    .run(host.try_clone().unwrap(), host);
    // Unblock a script still reading, and the session's reader thread.
    let _ = ctl.shutdown(std::net::Shutdown::Both);
    drop(record);
    let out = dev.join().unwrap();
    (
        Run {
            result,
            record: buf.text(),
        },
        out,
    )
}

/// Record lines of one kind, with the timestamp (field 1) dropped.
fn lines(record: &str, kind: &str) -> Vec<String> {
    record
        .lines()
        .filter(|l| l.split('\t').next() == Some(kind))
        .map(|l| {
            let mut f: Vec<&str> = l.split('\t').collect();
            f.remove(1);
            f.join(" ")
        })
        .collect()
}

fn two_files(t: &TempDir) -> (ServedSet, Vec<u8>) {
    let big: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    t.write("tree/big", &big);
    t.write("tree/small", b"small");
    (walk(&[t.join("tree")]).unwrap(), big)
}

#[test]
fn demands_before_have_end_then_stream_then_complete() {
    let t = TempDir::new("session");
    let (set, big) = two_files(&t);
    let (run, got) = session(&set, 8, |d| {
        assert_eq!(d.read_manifest(), 3);
        d.hello(VERSION, VERSION);
        // The device holds page 1 of "big" (id 1), and a reader wants page 2.
        d.send(Message::Have {
            file: FileId(1),
            ranges: vec![PageRange { first: 1, count: 1 }],
        });
        d.send(Message::Demand {
            file: FileId(1),
            first: 2,
            count: 1,
            again: false,
        });
        let first = d.recv().unwrap();
        d.send(Message::HaveEnd { files: 2 });
        let mut got = vec![first];
        loop {
            let m = d.recv().unwrap();
            let done = matches!(m, OwnedMessage::StreamDone { .. });
            got.push(m);
            if done {
                break;
            }
        }
        d.send(Message::Complete { pages: 4 });
        got.push(d.recv().unwrap());
        got
    });
    let summary = run.result.unwrap();
    assert_eq!(
        got,
        vec![
            raw_run(1, 2, &big[8192..]),
            raw_run(1, 0, &big[..4096]),
            raw_run(2, 0, b"small"),
            stream_done(3),
            OwnedMessage::Goodbye,
        ]
    );
    assert_eq!(summary.counters.sent(), 3);
    assert_eq!(summary.bytes_sent, (10_000 - 8192) + 4096 + 5);
    assert_eq!(summary.device_pages, 4);
    assert!(run.record.starts_with("# feedfs-host record v3\n"));
    assert_eq!(lines(&run.record, "demand"), vec!["demand 1 2 1"]);
    assert_eq!(
        lines(&run.record, "sent"),
        vec![
            "sent 1 2 1 demand 0",
            "sent 1 0 1 stream 0",
            "sent 2 0 1 stream 1"
        ]
    );
    assert_eq!(lines(&run.record, "done"), vec!["done 3"]);
}

#[test]
fn a_run_goes_as_parts_of_data_pages_and_of_zero_pages() {
    let t = TempDir::new("zeros");
    let mut data = vec![0u8; 4096 * 5 + 100];
    data[..4096].fill(7);
    data[3 * 4096..4 * 4096].fill(9);
    t.write("img", &data);
    let set = walk(&[t.join("img")]).unwrap();
    let (run, got) = session(&set, 0, |d| {
        d.read_manifest();
        d.hello(VERSION, VERSION);
        d.send(Message::HaveEnd { files: 1 });
        let mut got = Vec::new();
        loop {
            match d.recv().unwrap() {
                OwnedMessage::StreamDone { .. } => break,
                m => got.push(m),
            }
        }
        d.send(Message::Complete { pages: 6 });
        got
    });
    assert_eq!(
        got,
        vec![
            raw_run(0, 0, &[7; 4096]),
            zero_run(0, 1, 2),
            raw_run(0, 3, &[9; 4096]),
            zero_run(0, 4, 2),
        ]
    );
    // Page bytes delivered, whatever went on the wire; one run picked.
    let summary = run.result.unwrap();
    assert_eq!(summary.bytes_sent, data.len() as u64);
    assert_eq!(summary.counters.runs, 1);
    assert_eq!(lines(&run.record, "sent"), vec!["sent 0 0 6 stream 0"]);
}

#[test]
fn a_re_demand_after_stream_done_is_answered() {
    let t = TempDir::new("redemand");
    let (set, big) = two_files(&t);
    let (run, got) = session(&set, 0, move |d| {
        d.read_manifest();
        d.hello(VERSION, VERSION);
        d.send(Message::HaveEnd { files: 0 });
        while !matches!(
            d.recv().unwrap(),
            OwnedMessage::StreamDone { pages_sent: 4 }
        ) {}
        // After StreamDone a missing page was lost on the way: asked again.
        d.send(Message::Demand {
            file: FileId(1),
            first: 1,
            count: 1,
            again: true,
        });
        let again = d.recv().unwrap();
        d.send(Message::Complete { pages: 4 });
        again
    });
    assert_eq!(got, raw_run(1, 1, &big[4096..8192]));
    assert_eq!(run.result.unwrap().counters.sent(), 5);
    assert_eq!(lines(&run.record, "sent")[2], "sent 1 1 1 demand 4");
}

#[test]
fn device_error_is_reported() {
    let t = TempDir::new("deverr");
    let (set, _) = two_files(&t);
    let (run, ()) = session(&set, 8, |d| {
        d.read_manifest();
        d.hello(VERSION, VERSION);
        d.send(Message::Error {
            code: ErrorCode::NoSpace,
            text: "store is full",
        });
    });
    let e = run.result.unwrap_err();
    assert_eq!(
        e.to_string(),
        "device reported an error: NoSpace: store is full"
    );
    assert!(!e.is_link());
}

#[test]
fn bad_demand_is_a_protocol_error() {
    let t = TempDir::new("baddemand");
    let (set, _) = two_files(&t);
    let (run, told) = session(&set, 8, |d| {
        d.read_manifest();
        d.hello(VERSION, VERSION);
        // Id 0 is the directory "tree".
        d.send(Message::Demand {
            file: FileId(0),
            first: 0,
            count: 1,
            again: false,
        });
        d.recv()
    });
    let e = run.result.unwrap_err();
    assert!(
        matches!(
            e,
            SessionError::BadRequest {
                what: MessageType::Demand,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        matches!(
            told,
            Some(OwnedMessage::Error {
                code: ErrorCode::Protocol,
                ..
            })
        ),
        "{told:?}"
    );
    let (run, _) = session(&set, 8, |d| {
        d.read_manifest();
        d.hello(VERSION, VERSION);
        d.send(Message::Demand {
            file: FileId(1),
            first: 2,
            count: 2,
            again: false,
        });
        d.recv()
    });
    let e = run.result.unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
}

#[test]
fn goodbye_before_complete_and_hangups_are_errors() {
    let t = TempDir::new("hangup");
    let (set, _) = two_files(&t);
    let (run, ()) = session(&set, 8, |d| {
        d.read_manifest();
        d.hello(VERSION, VERSION);
        d.send(Message::Goodbye);
    });
    assert_eq!(
        run.result.unwrap_err().to_string(),
        "device ended the session before the transfer completed"
    );
    let (run, ()) = session(&set, 8, |d| {
        d.read_manifest();
        d.hello(VERSION, VERSION);
    });
    let e = run.result.unwrap_err();
    assert!(e.is_link(), "{e}");
    // Nothing at all: not even a Hello.
    let (run, ()) = session(&set, 8, |_| {});
    assert!(run.result.unwrap_err().is_link());
}

#[test]
fn damaged_frames_are_skipped() {
    let t = TempDir::new("damaged");
    let (set, _) = two_files(&t);
    let (run, ()) = session(&set, 8, |d| {
        d.read_manifest();
        d.hello(VERSION, VERSION);
        let mut bad = Message::HaveEnd { files: 0 }.to_frame();
        bad[16] ^= 0xff;
        d.w.get_mut().write_all(&bad).unwrap();
        d.w.get_mut().write_all(b"garbage").unwrap();
        d.send(Message::HaveEnd { files: 0 });
        while !matches!(d.recv().unwrap(), OwnedMessage::StreamDone { .. }) {}
        d.send(Message::Complete { pages: 4 });
    });
    assert_eq!(run.result.unwrap().counters.sent_stream, 4);
}

#[test]
fn empty_manifest_completes() {
    let t = TempDir::new("emptyset");
    std::fs::create_dir_all(t.join("empty")).unwrap();
    let set = walk(&[t.join("empty")]).unwrap();
    let (run, got) = session(&set, 8, |d| {
        assert_eq!(d.read_manifest(), 1);
        d.hello(VERSION, VERSION);
        d.send(Message::HaveEnd { files: 0 });
        let m = d.recv();
        d.send(Message::Complete { pages: 0 });
        m
    });
    assert_eq!(got, Some(OwnedMessage::StreamDone { pages_sent: 0 }));
    assert_eq!(run.result.unwrap().counters.sent(), 0);
}

#[test]
fn a_file_changed_since_the_walk_is_told_to_the_device() {
    let t = TempDir::new("changed");
    let (set, _) = two_files(&t);
    t.write("tree/big", b"shorter now");
    let (run, told) = session(&set, 8, |d| {
        d.read_manifest();
        d.hello(VERSION, VERSION);
        d.send(Message::HaveEnd { files: 2 });
        d.recv()
    });
    let e = run.result.unwrap_err();
    assert!(matches!(e, SessionError::Source(_)), "{e}");
    assert!(!e.is_link());
    match told {
        Some(OwnedMessage::Error {
            code: ErrorCode::Internal,
            text,
        }) => assert_eq!(text, e.to_string()),
        other => panic!("{other:?}"),
    }
}
