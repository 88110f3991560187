//! The link's loop over a real store, with the main thread's part played
//! by a thread that answers "mounted" (no FUSE): bytes in, frames out.

use super::*;
use std::io::Cursor;

use feedfs_protocol::message::{crc_table, Encoding};
use feedfs_protocol::{EntryKind, ErrorCode, Mtime, PageCrcs, Role, VERSION};

use crate::testutil::TempDir;

fn hello() -> Message<'static> {
    Message::Hello {
        role: Role::Host,
        min_version: VERSION,
        max_version: VERSION,
        agent: "feedfs-host test",
    }
}

/// Hello and a manifest of one file "f" of `size` bytes.
fn opening(size: u64) -> Vec<Message<'static>> {
    vec![
        hello(),
        Message::Entry {
            id: FileId(0),
            kind: EntryKind::File,
            size,
            mode: 0o644,
            mtime: Mtime {
                sec: 1_700_000_000,
                nsec: 0,
            },
            identity: [7; 16],
            path: "f",
            target: "",
        },
        Message::ManifestEnd {
            entries: 1,
            total_bytes: size,
        },
    ]
}

/// Serve one link that brings `msgs`, with the mount answered `mounted`:
/// the link's result and the frames it sent, as text.
fn serve_link(
    dir: &TempDir,
    msgs: &[Message],
    mounted: bool,
) -> (Result<(), LinkError>, Vec<String>) {
    let store = Store::open(&dir.join("store")).unwrap();
    let (events_tx, events) = mpsc::channel::<SharedCore>();
    let (mounted_tx, mounted_rx) = mpsc::channel();
    let main = thread::spawn(move || {
        for _manifest in events {
            let _ = mounted_tx.send(mounted);
        }
    });
    let on_manifest = Box::new(move |core| events_tx.send(core).is_ok());
    let daemon = Daemon::new(store, Duration::from_secs(1), on_manifest, mounted_rx, None);
    let input: Vec<u8> = msgs.iter().flat_map(|m| m.to_frame()).collect();
    let out_path = dir.join("out");
    let link = LinkIo {
        input: Box::new(Cursor::new(input)),
        output: File::create(&out_path).unwrap(),
        zlp_packet: None,
        name: "test".into(),
    };
    let result = serve(&daemon, link);
    drop(daemon);
    main.join().unwrap();
    let out = std::fs::read(&out_path).unwrap();
    let mut reader = FrameReader::new(&out[..]);
    let mut sent = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        sent.push(format!("{:?}", Message::parse(frame).unwrap()));
    }
    (result, sent)
}

const DEVICE_HELLO: &str = concat!(
    "Hello { role: Device, min_version: 4, max_version: 4, agent: \"feedfs-device ",
    env!("CARGO_PKG_VERSION"),
    "\" }"
);

#[test]
fn a_link_stores_a_stream_then_serves_the_next_session_from_the_store() {
    let dir = TempDir::new("serve");
    let page0: Vec<u8> = (0..4096u32).map(|i| (i % 13) as u8).collect();
    let page1: Vec<u8> = (0..1904u32).map(|i| (i % 5) as u8).collect();
    let both = [page0.clone(), page1.clone()].concat();
    let packed = lz4_flex::block::compress(&both);
    let table = crc_table(&[crc32fast::hash(&page0), crc32fast::hash(&page1)]);
    let mut bad_page1 = both.clone();
    bad_page1[5000] ^= 1;
    let run = |first, count, encoding, table, data| Message::Run {
        file: FileId(0),
        first,
        count,
        encoding,
        crcs: PageCrcs::new(table).unwrap(),
        data,
    };
    let mut msgs = opening(6000);
    msgs.extend([
        // Damaged inside a good frame: page 1 fails its CRC, page 0 lands.
        run(0, 2, Encoding::Raw, &table[..], &bad_page1[..]),
        // LZ4 data that does not decode: both pages asked for again.
        run(0, 2, Encoding::Lz4, &table[..], &[0xff; 9][..]),
        run(0, 2, Encoding::Lz4, &table[..], &packed[..]),
        Message::StreamDone { pages_sent: 6 },
        Message::Goodbye,
    ]);
    // The next host, on the same link: everything is here already.
    msgs.extend(opening(6000));
    msgs.push(Message::Goodbye);
    // And one with other files: refused, the link ends.
    msgs.extend(opening(8192));
    let (result, sent) = serve_link(&dir, &msgs, true);
    assert!(
        matches!(result, Err(LinkError::OtherManifest)),
        "{result:?}"
    );
    let refusal = format!(
        "Error {{ code: Manifest, text: {:?} }}",
        LinkError::OtherManifest.to_string()
    );
    assert_eq!(
        sent,
        [
            DEVICE_HELLO,
            "HaveEnd { files: 1 }",
            "Demand { file: FileId(0), first: 1, count: 1, again: true }",
            "Demand { file: FileId(0), first: 0, count: 2, again: true }",
            "Complete { pages: 2 }",
            DEVICE_HELLO,
            "Have { file: FileId(0), ranges: [PageRange { first: 0, count: 2 }] }",
            "HaveEnd { files: 1 }",
            "Complete { pages: 2 }",
            DEVICE_HELLO,
            &refusal,
        ]
    );
    let stored = Store::open(&dir.join("store")).unwrap();
    let manifest = stored.load_manifest().unwrap();
    let core: Core = Core::new(manifest, &stored, Duration::from_secs(1)).unwrap();
    let f = core.file(FileId(0)).unwrap();
    assert_eq!(f.read_at(0, 6000).unwrap(), both);
}

#[test]
fn a_mount_that_fails_is_told_to_the_host_and_ends_the_link() {
    let dir = TempDir::new("nomount");
    let (result, sent) = serve_link(&dir, &opening(6000), false);
    assert!(matches!(result, Err(LinkError::MountFailed)), "{result:?}");
    assert_eq!(
        sent,
        [
            DEVICE_HELLO,
            "Error { code: Internal, text: \"the device could not mount the files\" }",
        ]
    );
    assert_eq!(LinkError::MountFailed.code(), Some(ErrorCode::Internal));
}
