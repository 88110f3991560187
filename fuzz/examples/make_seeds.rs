//! Writes the seed corpus of both fuzz targets from the real code: a whole
//! session's frames for `frames`, and maps and manifests written by the real
//! store for `store_map`. Run from the fuzz directory:
//! `cargo run --example make-seeds` (stable is enough); it fills `corpus/`.

use std::fs;
use std::path::Path;

use feedfs_device::store::{key_of, Store};
use feedfs_protocol::message::{BlockRange, Encoding};
use feedfs_protocol::{
    Entry, EntryKind, ErrorCode, FileId, ManifestBuilder, Message, Role, VERSION,
};

fn block(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i as usize * 131 + k * 7) as u8).collect()
}

fn save(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let out = Path::new("corpus");
    frames(&out.join("frames"));
    store(&out.join("store_map"));
}

fn frames(dir: &Path) {
    let text: Vec<u8> = b"feedfs ".iter().cycle().take(5000).copied().collect();
    let lz4 = lz4_block(&text);
    let msgs = [
        Message::Hello {
            role: Role::Host,
            min_version: VERSION,
            max_version: VERSION,
            agent: "feedfs-host",
        },
        Message::Entry {
            id: FileId(0),
            kind: EntryKind::Dir,
            size: 0,
            mode: 0o755,
            block_size: 0,
            identity: [0; 16],
            path: "a",
        },
        Message::Entry {
            id: FileId(1),
            kind: EntryKind::File,
            size: 5000,
            mode: 0o644,
            block_size: 4096,
            identity: [1; 16],
            path: "a/b.bin",
        },
        Message::ManifestEnd {
            entries: 2,
            total_bytes: 5000,
        },
        Message::Have {
            file: FileId(1),
            ranges: vec![BlockRange { first: 0, count: 1 }],
        },
        Message::HaveEnd { files: 1 },
        Message::Demand {
            file: FileId(1),
            first: 1,
            count: 1,
        },
        Message::Block {
            file: FileId(1),
            index: 1,
            crc: crc32fast::hash(&text[4096..]),
            encoding: Encoding::Raw,
            data: &text[4096..],
        },
        Message::Block {
            file: FileId(1),
            index: 0,
            crc: crc32fast::hash(&text[..4096]),
            encoding: Encoding::Lz4,
            data: &lz4,
        },
        Message::Block {
            file: FileId(1),
            index: 1,
            crc: crc32fast::hash(&[0; 5000 - 4096]),
            encoding: Encoding::Zero,
            data: &[],
        },
        Message::StreamDone { blocks_sent: 3 },
        Message::Complete { blocks: 2 },
        Message::Error {
            code: ErrorCode::NoSpace,
            text: "full",
        },
        Message::Goodbye,
    ];
    let mut session = vec![0xff, 0x0f];
    for (i, m) in msgs.iter().enumerate() {
        let mut one = vec![0, 0];
        m.emit(&mut one);
        save(dir, &format!("msg-{i:02}"), &one);
        m.emit(&mut session);
    }
    save(dir, "session", &session);
}

/// LZ4 of the first 4096 bytes, as the host would send them.
fn lz4_block(text: &[u8]) -> Vec<u8> {
    // A literal-only LZ4 block is valid LZ4: token 0xf0, length bytes, literals.
    let lit = &text[..4096];
    let mut out = vec![0xf0];
    let mut left = lit.len() - 15;
    while left >= 255 {
        out.push(255);
        left -= 255;
    }
    out.push(left as u8);
    out.extend_from_slice(lit);
    out
}

fn store(dir: &Path) {
    let scratch = std::env::temp_dir().join(format!("feedfs-seeds-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    let s = Store::open(&scratch).unwrap();
    for (blocks, short, written) in [
        (0u8, 0u16, vec![]),
        (1, 0, vec![0u64]),
        (3, 100, vec![0, 2]),
        (9, 0, vec![1, 2, 3, 8]),
        (32, 4095, (0..32).collect::<Vec<_>>()),
        (17, 7, vec![16]),
    ] {
        let size = (u64::from(blocks) * 4096).saturating_sub(if blocks > 0 {
            u64::from(short)
        } else {
            0
        });
        let e = Entry {
            id: Some(FileId(0)),
            kind: EntryKind::File,
            path: "dir/file.bin".into(),
            size,
            mode: 0o644,
            block_size: 4096,
            identity: [7; 16],
        };
        let f = s.open_file(&e).unwrap();
        for &i in &written {
            let b = block(i, feedfs_protocol::block_len(size, 4096, i));
            f.write_block(i, &b, crc32fast::hash(&b)).unwrap();
        }
        f.flush_map().unwrap();
        drop(f);
        let map = fs::read(
            scratch
                .join("files")
                .join(key_of(&e.path))
                .with_extension("map"),
        )
        .unwrap();
        let [lo, hi] = short.to_le_bytes();
        let mut seed = vec![0, blocks, lo, hi, 0];
        seed.extend_from_slice(&map);
        save(dir, &format!("map-{blocks}-{}", written.len()), &seed);
        // The same map with a damaged data block (flags bit 1, block index in bits 3..).
        if !written.is_empty() {
            seed[4] = 2 | ((written[0] as u8) << 3);
            save(dir, &format!("map-{blocks}-{}-torn", written.len()), &seed);
        }
    }
    let mut b = ManifestBuilder::new();
    b.push(
        FileId(0),
        EntryKind::File,
        "a/b.bin",
        5000,
        0o640,
        4096,
        [3; 16],
    )
    .unwrap();
    b.push(FileId(1), EntryKind::Dir, "a", 0, 0o700, 0, [0; 16])
        .unwrap();
    b.push(FileId(2), EntryKind::File, "c", 0, 0o600, 65536, [4; 16])
        .unwrap();
    s.save_manifest(&b.finish(3, 5000).unwrap()).unwrap();
    let mut seed = vec![1];
    seed.extend(fs::read(scratch.join("manifest")).unwrap());
    save(dir, "manifest", &seed);
    drop(s);
    let _ = fs::remove_dir_all(&scratch);
}
