//! Writes the seed corpus of the fuzz targets from the real code: a whole
//! session's frames for `frames`; maps and manifests written by the real
//! store for `store_map`; request logs written by the device's request log
//! for `reqlog`; plans learned from those logs, and one for the files the
//! `plan` target serves, for `plan`; small zips (stored entries as an APK
//! holds them, a data descriptor, zip64 records) for `zip`; a
//! `store_map` input may also hold a map of store format 1, for the
//! conversion. Run from the
//! fuzz directory: `cargo run --example make-seeds` (stable is enough); it
//! fills `corpus/`.

use std::fs;
use std::path::Path;
use std::time::Instant;

use feedfs_device::store::reqlog::{current_path, RequestLog, Waited};
use feedfs_device::store::{key_of, Store};
use feedfs_host::logs::trace;
use feedfs_host::prefetch::learn;
use feedfs_host::prefetch::plan::{Plan, PlanFile, Step, PLAN_VERSION};
use feedfs_protocol::message::{crc_table, Encoding};
use feedfs_protocol::reqlog::Outcome;
use feedfs_protocol::{
    page_len, Entry, EntryKind, ErrorCode, FileId, ManifestBuilder, Message, Mtime, PageCrcs,
    PageRange, Role, VERSION,
};

/// The content of page `i` (as the `store_map` target's data file holds it).
fn page_bytes(i: u64, len: usize) -> Vec<u8> {
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
    logs_and_plans(&out.join("reqlog"), &out.join("plan"));
    zips(&out.join("zip"));
}

/// Two mounts' request logs, as the device writes them, and plans: learned
/// from them, and one naming the `plan` target's files (`fuzz_targets/plan.rs`).
fn logs_and_plans(logs: &Path, plans: &Path) {
    let scratch = std::env::temp_dir().join(format!("feedfs-seeds-log-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).unwrap();
    let mut b = ManifestBuilder::new();
    let files = [
        ("app", EntryKind::Dir, 0u64),
        ("app/base.apk", EntryKind::File, 10_000),
        ("app/data", EntryKind::Dir, 0),
        ("app/data/x", EntryKind::File, 100),
        ("app/empty", EntryKind::File, 0),
        ("app/lib", EntryKind::Dir, 0),
        ("app/lib/libx.so", EntryKind::File, 70_000),
        ("app/link", EntryKind::Symlink, 0),
    ];
    let mut total = 0;
    for (i, (path, kind, size)) in files.iter().enumerate() {
        let (mode, target) = match kind {
            EntryKind::Dir => (0o755, ""),
            EntryKind::File => (0o644, ""),
            EntryKind::Symlink => (0o777, "base.apk"),
        };
        b.push(Entry {
            id: Some(FileId(i as u32)),
            kind: *kind,
            path: path.to_string(),
            size: *size,
            mode,
            mtime: Mtime {
                sec: 1_700_000_000 + i as i64,
                nsec: 0,
            },
            identity: [i as u8; 16],
            target: target.into(),
        })
        .unwrap();
        total += size;
    }
    let manifest = b.finish(files.len() as u32, total).unwrap();
    let path = current_path(&scratch);
    let waited = |file, first, last, outcome, demanded| Waited {
        file: FileId(file),
        first,
        last,
        since: Instant::now(),
        pid: 4242,
        outcome,
        demanded,
    };
    for mount in 0..2 {
        let log = RequestLog::start(&scratch, &manifest);
        log.link(true);
        log.served(FileId(1), 0, 0, 4096);
        log.waiting(FileId(6), 3, 5);
        log.waited(waited(6, 3, 5, Outcome::Served, true));
        log.served(FileId(6), 6, 9, 16384);
        log.served(FileId(3), 0, 0, 100);
        if mount == 1 {
            log.waiting(FileId(1), 2, 2);
            log.waited(waited(1, 2, 2, Outcome::TimedOut, false));
            log.link(false);
            log.waiting(FileId(6), 16, 17);
            log.waited(waited(6, 16, 17, Outcome::Failed, true));
        }
        log.close();
        drop(log);
        let mut seed = vec![0, 0x43];
        seed.extend(fs::read(&path).unwrap());
        save(logs, &format!("mounts-{}", mount + 1), &seed);

        let runs = trace::read_log(&path).unwrap();
        for window in [0, 4] {
            let (plan, _) = learn::learn(&runs, window);
            let mut seed = vec![0];
            seed.extend(plan.encode());
            save(plans, &format!("learned-{}-{window}", mount + 1), &seed);
        }
    }
    let _ = fs::remove_dir_all(&scratch);
    // The plan target's own files, identities not recorded, so they match.
    let file = |path: &str, size| PlanFile {
        path: path.into(),
        size,
        identity: None,
    };
    let plan = Plan {
        files: vec![
            file("app/lib/libx.so", 70_000),
            file("app/base.apk", 10_000),
            file("app/data/x", 100),
            file("app/gone", 5),
        ],
        steps: [
            (0, 3, 2),
            (1, 1, 1),
            (0, 0, 3),
            (2, 0, 1),
            (3, 0, 1),
            (0, 5, 12),
        ]
        .into_iter()
        .map(|(file, first, count)| Step { file, first, count })
        .collect(),
        runs: 2,
        window: 4,
        read_from: PLAN_VERSION,
    };
    let mut seed = vec![0];
    seed.extend(plan.encode());
    save(plans, "served", &seed);
}

/// One stored zip entry: local header, name, data; and its central record.
fn zip_entry(out: &mut Vec<u8>, central: &mut Vec<u8>, name: &str, data: &[u8], zip64: bool) {
    let offset = out.len() as u32;
    let crc = crc32fast::hash(data);
    let (flags, version): (u16, u16) = if name.ends_with(".dex") {
        (8, 20)
    } else {
        (0, 10)
    };
    let len = data.len() as u32;
    out.extend_from_slice(b"PK\x03\x04");
    for v in [version, flags, 0, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    // A data descriptor (flag 8) leaves the header's CRC and sizes zero.
    let sizes = if flags & 8 != 0 {
        [0; 3]
    } else {
        [crc, len, len]
    };
    for v in sizes {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(data);
    if flags & 8 != 0 {
        out.extend_from_slice(b"PK\x07\x08");
        for v in [crc, len, len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    central.extend_from_slice(b"PK\x01\x02");
    for v in [0x031e_u16, version, flags, 0, 0, 0] {
        central.extend_from_slice(&v.to_le_bytes());
    }
    // Zip64: sizes and offset say 0xffffffff; the extra field holds them.
    let extra: Vec<u8> = if zip64 {
        let mut e = vec![1, 0, 24, 0];
        for v in [u64::from(len), u64::from(len), u64::from(offset)] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        e
    } else {
        Vec::new()
    };
    let (l, o) = if zip64 {
        (u32::MAX, u32::MAX)
    } else {
        (len, offset)
    };
    for v in [crc, l, l] {
        central.extend_from_slice(&v.to_le_bytes());
    }
    for v in [name.len() as u16, extra.len() as u16, 0, 0, 0] {
        central.extend_from_slice(&v.to_le_bytes());
    }
    central.extend_from_slice(&0u32.to_le_bytes());
    central.extend_from_slice(&o.to_le_bytes());
    central.extend_from_slice(name.as_bytes());
    central.extend_from_slice(&extra);
}

/// A zip of these entries; with `zip64`, its zip64 end record and locator too.
fn zip(entries: &[(&str, Vec<u8>)], zip64: bool, comment: &[u8]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        zip_entry(&mut out, &mut central, name, data, zip64);
    }
    let cd_offset = out.len() as u64;
    let n = entries.len() as u64;
    out.extend_from_slice(&central);
    if zip64 {
        let rec = out.len() as u64;
        out.extend_from_slice(b"PK\x06\x06");
        out.extend_from_slice(&44u64.to_le_bytes());
        for v in [0x031e_u16, 45] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&[0; 8]);
        for v in [n, n, central.len() as u64, cd_offset] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(b"PK\x06\x07");
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&rec.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
    }
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]);
    let (n16, size, off) = if zip64 {
        (u16::MAX, u32::MAX, u32::MAX)
    } else {
        (n as u16, central.len() as u32, cd_offset as u32)
    };
    out.extend_from_slice(&n16.to_le_bytes());
    out.extend_from_slice(&n16.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&off.to_le_bytes());
    out.extend_from_slice(&(comment.len() as u16).to_le_bytes());
    out.extend_from_slice(comment);
    out
}

fn zips(dir: &Path) {
    let apk = [
        ("AndroidManifest.xml", vec![1; 300]),
        ("assets/big.bin", vec![2; 3000]),
        ("classes.dex", vec![3; 500]),
        ("classes2.dex", vec![4; 200]),
        ("lib/arm64-v8a/libx.so", vec![5; 1500]),
        ("resources.arsc", vec![6; 100]),
    ];
    for (name, zip64, comment) in [
        ("apk", false, &b""[..]),
        ("apk-signed", false, &b"signed"[..]),
        ("apk-zip64", true, &b""[..]),
    ] {
        save(dir, name, &zip(&apk, zip64, comment));
    }
    save(dir, "empty", &zip(&[], false, b""));
}

fn frames(dir: &Path) {
    // Three pages of text and a short fourth one: 4096 * 3 + 904 bytes.
    let text: Vec<u8> = b"feedfs ".iter().cycle().take(13_192).copied().collect();
    let lz4 = lz4_flex::block::compress(&text[..8192]);
    let crcs_of = |bytes: &[u8]| {
        let crcs: Vec<u32> = bytes.chunks(4096).map(crc32fast::hash).collect();
        crc_table(&crcs)
    };
    let (raw_crcs, lz4_crcs) = (crcs_of(&text[4096..]), crcs_of(&text[..8192]));
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
            mtime: Mtime {
                sec: 1_700_000_000,
                nsec: 5,
            },
            identity: [0; 16],
            path: "a",
            target: "",
        },
        Message::Entry {
            id: FileId(1),
            kind: EntryKind::File,
            size: text.len() as u64,
            mode: 0o644,
            mtime: Mtime {
                sec: 1_700_000_001,
                nsec: 999_999_999,
            },
            identity: [1; 16],
            path: "a/b.bin",
            target: "",
        },
        Message::Entry {
            id: FileId(2),
            kind: EntryKind::Symlink,
            size: 0,
            mode: 0o777,
            mtime: Mtime { sec: -1, nsec: 0 },
            identity: [0; 16],
            path: "a/link",
            target: "b.bin",
        },
        Message::ManifestEnd {
            entries: 3,
            total_bytes: text.len() as u64,
        },
        Message::Have {
            file: FileId(1),
            ranges: vec![PageRange { first: 0, count: 1 }],
        },
        Message::HaveEnd { files: 1 },
        Message::Demand {
            file: FileId(1),
            first: 1,
            count: 3,
        },
        Message::Run {
            file: FileId(1),
            first: 1,
            count: 3,
            encoding: Encoding::Raw,
            crcs: PageCrcs::new(&raw_crcs).expect("whole CRCs"),
            data: &text[4096..],
        },
        Message::Run {
            file: FileId(1),
            first: 0,
            count: 2,
            encoding: Encoding::Lz4,
            crcs: PageCrcs::new(&lz4_crcs).expect("whole CRCs"),
            data: &lz4,
        },
        Message::Run {
            file: FileId(1),
            first: 0,
            count: 256,
            encoding: Encoding::Zero,
            crcs: PageCrcs::default(),
            data: &[],
        },
        Message::StreamDone { pages_sent: 4 },
        Message::Complete { pages: 4 },
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

fn store(dir: &Path) {
    let scratch = std::env::temp_dir().join(format!("feedfs-seeds-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    let s = Store::open(&scratch).unwrap();
    let entry = |path: &str, size: u64, mode: u32, id: u32| Entry {
        id: Some(FileId(id)),
        kind: EntryKind::File,
        path: path.into(),
        size,
        mode,
        mtime: Mtime {
            sec: 1_700_000_000,
            nsec: 0,
        },
        identity: [7; 16],
        target: String::new(),
    };
    let size_of = |pages: u8, short: u16| {
        (u64::from(pages) * 4096).saturating_sub(if pages > 0 { u64::from(short) } else { 0 })
    };
    for (pages, short, written) in [
        (0u8, 0u16, vec![]),
        (1, 0, vec![0u64]),
        (3, 100, vec![0, 2]),
        (17, 0, vec![1, 2, 3, 16]),
        (64, 4095, (0..64).collect::<Vec<_>>()),
        (33, 7, vec![32]),
    ] {
        let size = size_of(pages, short);
        let e = entry("dir/file.bin", size, 0o644, 0);
        let f = s.open_file(&e).unwrap();
        for &i in &written {
            let b = page_bytes(i, page_len(size, i));
            f.write_run(i, Some(&b), &[crc32fast::hash(&b)]).unwrap();
        }
        f.flush_map().unwrap();
        drop(f);
        let map = fs::read(
            scratch
                .join("files")
                .join(key_of(&e.path))
                .with_extension("map"),
        )
        .unwrap_or_default();
        let [lo, hi] = short.to_le_bytes();
        let mut seed = vec![0, pages, lo, hi, 0];
        seed.extend_from_slice(&map);
        save(dir, &format!("map-{pages}-{}", written.len()), &seed);
        // The same map with a damaged data page (flags bit 1, page index in bits 3..).
        if !written.is_empty() {
            seed[4] = 2 | ((written[0] as u8) << 3);
            save(dir, &format!("map-{pages}-{}-torn", written.len()), &seed);
        }
    }
    // Maps of format 1 (flags bit 2; blocks of 4 KiB << bits 5..7): the
    // target writes the header, the seed gives the bitmap (every block
    // present) and the CRC table of the true content.
    for (pages, short, shift) in [(16u8, 0u16, 0u8), (33, 100, 1), (64, 4095, 2)] {
        let size = size_of(pages, short);
        let bs = 4096u64 << shift;
        let blocks = size.div_ceil(bs);
        let content: Vec<u8> = (0..u64::from(pages))
            .flat_map(|i| page_bytes(i, page_len(size, i)))
            .collect();
        let mut body = vec![0xffu8; (blocks.div_ceil(8).div_ceil(8) * 8) as usize];
        body[blocks.div_ceil(8) as usize..].fill(0);
        if blocks % 8 != 0 {
            body[(blocks / 8) as usize] = (1 << (blocks % 8)) - 1;
        }
        for b in content.chunks(bs as usize) {
            body.extend_from_slice(&crc32fast::hash(b).to_le_bytes());
        }
        let [lo, hi] = short.to_le_bytes();
        let mut seed = vec![0, pages, lo, hi, 4 | (shift << 5)];
        seed.extend_from_slice(&body);
        save(dir, &format!("map-v1-{pages}-{}k", bs / 1024), &seed);
    }
    let mut b = ManifestBuilder::new();
    b.push(entry("a/b.bin", 5000, 0o640, 0)).unwrap();
    b.push(Entry {
        kind: EntryKind::Dir,
        size: 0,
        ..entry("a", 0, 0o700, 1)
    })
    .unwrap();
    b.push(entry("c", 0, 0o600, 2)).unwrap();
    b.push(Entry {
        kind: EntryKind::Symlink,
        target: "a/b.bin".into(),
        ..entry("l", 0, 0o777, 3)
    })
    .unwrap();
    s.save_manifest(&b.finish(4, 5000).unwrap()).unwrap();
    let mut seed = vec![1];
    seed.extend(fs::read(scratch.join("manifest")).unwrap());
    save(dir, "manifest", &seed);
    drop(s);
    let _ = fs::remove_dir_all(&scratch);
}
