//! The request log's fixed bytes, and decoding whole files: round trips,
//! damage named by record, torn tails, rotated files joined.

use super::*;

fn log_of(records: &[Record]) -> Vec<u8> {
    let mut v = header().to_vec();
    for r in records {
        v.extend_from_slice(&r.emit());
    }
    v
}

fn sample() -> Vec<Record> {
    let mut r = vec![Record::Mount {
        unix_us: 1_700_000_000_000_000,
        pid: 42,
        files: 2,
        continued: false,
    }];
    r.extend(file_records(
        FileId(3),
        10_000,
        &[9; 16],
        "dir/a-rather-long-file-name.apk",
    ));
    r.push(Record::Link { t_us: 5, up: true });
    r.push(Record::Wait {
        t_us: 100,
        file: FileId(3),
        first: 1,
        count: 2,
        wait_us: 2500,
        pid: 77,
        outcome: Outcome::Served,
        demanded: true,
    });
    r.push(Record::Touch {
        t_us: 200,
        file: FileId(3),
        first: 0,
        count: 1,
    });
    r.push(Record::Served {
        t_us: 1000,
        file: FileId(3),
        reads: 4,
        bytes: 16384,
    });
    r
}

#[test]
fn fixed_vectors() {
    let wait = Record::Wait {
        t_us: 0x0102,
        file: FileId(3),
        first: 7,
        count: 2,
        wait_us: 1000,
        pid: 0x1234,
        outcome: Outcome::TimedOut,
        demanded: true,
    };
    let bytes = wait.emit();
    assert_eq!(
        bytes[..28],
        [
            5, 0b110, 2, 0, 3, 0, 0, 0, // kind, flags, count, file
            0x02, 0x01, 0, 0, 0, 0, 0, 0, // t_us
            7, 0, 0, 0, 0xe8, 0x03, 0, 0, // first, wait_us
            0x34, 0x12, 0, 0 // pid
        ]
    );
    assert_eq!(
        LE::read_u32(&bytes[28..]),
        crc32fast::hash(&bytes[..28]),
        "CRC-32 of bytes 0..28"
    );
    assert_eq!(
        header(),
        [
            b'F', b'D', b'F', b'S', b'R', b'L', b'O', b'G', 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]
    );
    let file = file_records(FileId(1), 5000, &[0xaa; 16], "x.bin");
    assert_eq!(file.len(), 2, "4 + 5 bytes fit one name record");
    let f = file[0].emit();
    assert_eq!(
        f[..16],
        [2, 12, 5, 0, 1, 0, 0, 0, 0x88, 0x13, 0, 0, 0, 0, 0, 0]
    );
    let n = file[1].emit();
    assert_eq!(
        n[..17],
        [3, 0, 0, 0, 1, 0, 0, 0, 0xaa, 0xaa, 0xaa, 0xaa, b'x', b'.', b'b', b'i', b'n']
    );
}

#[test]
fn round_trips() {
    for r in sample() {
        assert_eq!(Record::parse(&r.emit()), Ok(r));
    }
    let d = decode(&log_of(&sample())).unwrap();
    assert_eq!(d.torn_tail, 0);
    assert_eq!(d.mounts.len(), 1);
    let m = &d.mounts[0];
    assert_eq!((m.pid, m.unix_us), (42, 1_700_000_000_000_000));
    assert_eq!(
        m.files,
        vec![LogFile {
            id: FileId(3),
            path: "dir/a-rather-long-file-name.apk".into(),
            size: 10_000,
            identity: [9; 16],
        }]
    );
    assert_eq!(m.events.len(), 4);
    assert!(matches!(
        m.events[1],
        Event::Wait {
            file: 0,
            first: 1,
            count: 2,
            wait_us: 2500,
            ..
        }
    ));
}

#[test]
fn a_rotated_file_continues_its_mount_and_a_new_mount_starts_afresh() {
    let mut recs = sample();
    recs.push(Record::Mount {
        unix_us: 1_700_000_000_000_000,
        pid: 42,
        files: 2,
        continued: true,
    });
    recs.extend(file_records(
        FileId(3),
        10_000,
        &[9; 16],
        "dir/a-rather-long-file-name.apk",
    ));
    recs.push(Record::Mount {
        unix_us: 1_800_000_000_000_000,
        pid: 43,
        files: 1,
        continued: false,
    });
    let d = decode(&log_of(&recs)).unwrap();
    assert_eq!(d.mounts.len(), 2);
    assert_eq!(d.mounts[0].files.len(), 1);
    assert!(d.mounts[1].files.is_empty());

    // The same split over two files, joined.
    let older = decode(&log_of(&sample())).unwrap();
    let mut rest = vec![Record::Mount {
        unix_us: 1_700_000_000_000_000,
        pid: 42,
        files: 2,
        continued: true,
    }];
    rest.extend(file_records(FileId(5), 4096, &[1; 16], "other"));
    rest.extend(file_records(
        FileId(3),
        10_000,
        &[9; 16],
        "dir/a-rather-long-file-name.apk",
    ));
    rest.push(Record::Touch {
        t_us: 9,
        file: FileId(3),
        first: 2,
        count: 1,
    });
    let joined = join(older, decode(&log_of(&rest)).unwrap());
    assert_eq!(joined.mounts.len(), 1);
    let m = &joined.mounts[0];
    assert_eq!(m.files.len(), 2);
    assert_eq!(m.events.len(), 5);
    assert!(matches!(
        m.events[4],
        Event::Touch {
            file: 0,
            first: 2,
            ..
        }
    ));
}

#[test]
fn damage_is_refused_with_the_record_named() {
    let good = log_of(&sample());
    assert_eq!(decode(b"nothing"), Err(LogError::BadMagic));
    let mut v = good.clone();
    v[8] = 3;
    assert_eq!(decode(&v), Err(LogError::Version(3)));
    // A flipped bit in record 4 (the Wait).
    let mut v = good.clone();
    v[32 * 5 + 16] ^= 1;
    let e = decode(&v).unwrap_err();
    assert!(
        matches!(
            e,
            LogError::Record {
                index: 4,
                error: RecordError::BadChecksum { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("record 4 (byte 160): bad checksum"),
        "{e}"
    );
    // An unknown kind, with a good CRC.
    let mut rec = [0u8; 32];
    rec[0] = 99;
    let crc = crc32fast::hash(&rec[..28]);
    rec[28..].copy_from_slice(&crc.to_le_bytes());
    let mut v = good.clone();
    v.extend_from_slice(&rec);
    assert!(decode(&v)
        .unwrap_err()
        .to_string()
        .contains("unknown record kind 99"));
    // A record naming a file never announced.
    let mut recs = sample();
    recs.push(Record::Touch {
        t_us: 1,
        file: FileId(8),
        first: 0,
        count: 1,
    });
    assert!(decode(&log_of(&recs))
        .unwrap_err()
        .to_string()
        .contains("not announced"));
    // Blocks past a file's end.
    let mut recs = sample();
    recs.push(Record::Touch {
        t_us: 1,
        file: FileId(3),
        first: 2,
        count: 2,
    });
    assert!(decode(&log_of(&recs))
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    // Records before any mount.
    let v = log_of(&[Record::Link { t_us: 1, up: true }]);
    assert!(decode(&v)
        .unwrap_err()
        .to_string()
        .contains("not a mount record"));
    // A hostile path.
    let mut recs = sample()[..1].to_vec();
    recs.extend(file_records(FileId(0), 1, &[0; 16], "../etc/passwd"));
    assert!(decode(&log_of(&recs))
        .unwrap_err()
        .to_string()
        .contains(".."));
}

#[test]
fn a_torn_tail_is_left_out_and_reported() {
    let mut v = log_of(&sample());
    v.extend_from_slice(&[5, 0, 0]);
    let d = decode(&v).unwrap();
    assert_eq!(d.torn_tail, 3);
    assert_eq!(d.mounts[0].events.len(), 4);
    // Cut inside a file's announcement: the file is left out.
    let recs = sample();
    let v = log_of(&recs[..3]);
    let d = decode(&v).unwrap();
    assert!(d.mounts[0].files.is_empty());
    assert_eq!(d.torn_tail, 64);
}

#[test]
fn a_torn_announcement_of_a_file_already_named_keeps_every_file() {
    // A rotated file announces its files again; the write is cut inside
    // the announcement of the first one, already named in full.
    let mut recs = sample();
    recs.extend(file_records(FileId(5), 4096, &[1; 16], "other"));
    recs.push(Record::Touch {
        t_us: 300,
        file: FileId(5),
        first: 0,
        count: 1,
    });
    recs.push(Record::Mount {
        unix_us: 1_700_000_000_000_000,
        pid: 42,
        files: 2,
        continued: true,
    });
    recs.extend(file_records(
        FileId(3),
        10_000,
        &[9; 16],
        "dir/a-rather-long-file-name.apk",
    ));
    let cut = recs.len() - 1;
    let d = decode(&log_of(&recs[..cut])).unwrap();
    assert_eq!(d.torn_tail, 2 * RECORD_LEN);
    let m = &d.mounts[0];
    let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["dir/a-rather-long-file-name.apk", "other"]);
    let Event::Touch { file, .. } = m.events[4] else {
        panic!("{:?}", m.events[4]);
    };
    assert_eq!(m.files[file].path, "other", "the touch names its own file");
}

#[test]
fn a_log_of_format_1_is_read_in_pages() {
    // Format 1 counted in blocks of each file's size: here 64 KiB blocks
    // of a 300 000-byte file (5 blocks, 74 pages).
    let mut recs = vec![Record::Mount {
        unix_us: 1,
        pid: 2,
        files: 1,
        continued: false,
    }];
    let mut announce = file_records(FileId(0), 300_000, &[3; 16], "old.bin");
    if let Record::File { unit_shift, .. } = &mut announce[0] {
        *unit_shift = 16;
    }
    recs.extend(announce);
    recs.push(Record::Touch {
        t_us: 5,
        file: FileId(0),
        first: 1,
        count: 1,
    });
    // The last block is short: its pages end with the file's.
    recs.push(Record::Touch {
        t_us: 6,
        file: FileId(0),
        first: 4,
        count: 1,
    });
    let mut bytes = log_of(&recs);
    bytes[8] = 1;
    let m = &decode(&bytes).unwrap().mounts[0];
    assert_eq!(m.files[0].pages(), 74);
    let touched: Vec<(u64, u64)> = m
        .events
        .iter()
        .filter_map(|e| match *e {
            Event::Touch { first, count, .. } => Some((first, count)),
            _ => None,
        })
        .collect();
    assert_eq!(touched, [(16, 16), (64, 10)]);
    // A block past the end is refused, as in pages; and format 2 counts
    // in pages only.
    recs.push(Record::Touch {
        t_us: 7,
        file: FileId(0),
        first: 5,
        count: 1,
    });
    let mut bytes = log_of(&recs);
    bytes[8] = 1;
    let err = decode(&bytes).unwrap_err().to_string();
    assert!(
        err.contains("blocks 5..6 of old.bin are out of range"),
        "{err}"
    );
    let err = decode(&log_of(&recs[..3])).unwrap_err().to_string();
    assert!(
        err.contains("counts in units of 2^16 bytes, not pages"),
        "{err}"
    );
    let mut v3 = log_of(&recs[..1]);
    v3[8] = 3;
    assert_eq!(decode(&v3).unwrap_err(), LogError::Version(3));
}
