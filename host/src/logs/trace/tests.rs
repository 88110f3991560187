//! Records and device logs parsed back, and what bad lines are told.

use super::*;

/// A version-2 record, in 64 KiB blocks.
const RECORD_V2: &str = "# feedfs-host record v2\n\
    file\t1\t300000\t65536\tapp/a\\tb.apk\t000102030405060708090a0b0c0d0e0f\n\
    file\t3\t5\t65536\tsmall\t0f0e0d0c0b0a09080706050403020100\n\
    have\t10\t3\t1\n\
    demand\t100\t1\t2\t1\n\
    sent\t150\t1\t2\tdemand\t0\n\
    sent\t160\t1\t3\treadahead\t0\n\
    sent\t170\t1\t0\tplan\t0\n\
    sent\t180\t1\t1\tstream\t0\n\
    done\t200\t4\n";

#[test]
fn a_host_record_is_read_in_pages() {
    let text = "# feedfs-host record v3\n\
        file\t1\t300000\tapp/a\\tb.apk\t000102030405060708090a0b0c0d0e0f\n\
        have\t10\t1\t3\n\
        demand\t100\t1\t2\t1\n\
        sent\t150\t1\t2\t1\tdemand\t0\n\
        sent\t160\t1\t3\t32\treadahead\t0\n\
        sent\t180\t1\t35\t39\tstream\t0\n\
        done\t200\t72\n";
    let run = parse_record("r", text).unwrap();
    assert_eq!(run.files[0].path, "app/a\tb.apk");
    assert_eq!(run.files[0].pages(), 74);
    assert_eq!(run.held, vec![3]);
    assert_eq!((run.demands[0].first, run.demands[0].count), (2, 1));
    let runs: Vec<_> = run
        .sent
        .iter()
        .map(|s| (s.first, s.count, s.kind))
        .collect();
    assert_eq!(
        runs,
        vec![
            (2, 1, SentKind::Demand),
            (3, 32, SentKind::Readahead),
            (35, 39, SentKind::Stream)
        ]
    );
    assert_eq!(run.end_us(), 200);
    let e = parse_record("r", &text.replace("\t35\t39\t", "\t35\t40\t")).unwrap_err();
    assert!(
        e.to_string()
            .contains("pages 35+40 are out of range: app/a\tb.apk has 74"),
        "{e}"
    );
}

#[test]
fn an_older_record_in_blocks_is_read_in_pages() {
    let run = parse_record("r", RECORD_V2).unwrap();
    assert_eq!(run.files.len(), 2);
    assert_eq!(run.files[0].path, "app/a\tb.apk");
    assert_eq!(run.files[0].identity.unwrap()[15], 15);
    // 300 000 bytes: 74 pages; one 64 KiB block of a 5-byte file is its one page.
    assert_eq!(run.held, vec![0, 1]);
    assert_eq!((run.demands[0].first, run.demands[0].count), (32, 16));
    let runs: Vec<_> = run
        .sent
        .iter()
        .map(|s| (s.first, s.count, s.kind))
        .collect();
    assert_eq!(
        runs,
        vec![
            (32, 16, SentKind::Demand),
            (48, 16, SentKind::Readahead),
            (0, 16, SentKind::Plan),
            (16, 16, SentKind::Stream)
        ]
    );
    assert_eq!(run.done_us, Some(200));
    // Version 1: no identity column.
    let v1 = "# feedfs-host record v1\nfile\t0\t10\t4096\tx\n";
    assert_eq!(parse_record("r", v1).unwrap().files[0].identity, None);
}

#[test]
fn damage_is_refused_with_the_line_named() {
    let bad = |text: &str| parse_record("r", text).unwrap_err().to_string();
    let head = "# feedfs-host record v2\n";
    assert!(bad("# feedfs-host record v9\n").contains("line 1: unknown record version"));
    let e = bad(&format!("{head}demand\t1\t0\t0\t1\n"));
    assert_eq!(e, "r, line 2: file 0 was not listed in a file line");
    let f = "file\t0\t10000\t4096\tx\t000102030405060708090a0b0c0d0e0f\n";
    let e = bad(&format!("{head}{f}demand\t1\t0\t2\t2\n"));
    assert!(
        e.contains("line 3: blocks 2+2 are out of range: x has 3"),
        "{e}"
    );
    let e = bad(&format!("{head}{f}sent\t1\t0\tzero\tstream\t0\n"));
    assert!(
        e.contains("line 3: field 4 (\"zero\") is not a number"),
        "{e}"
    );
    let e = bad(&format!("{head}file\t0\t10\t3000\tx\t{}\n", "0".repeat(32)));
    assert!(e.contains("block size 3000"), "{e}");
    let e = bad(&format!(
        "{head}file\t0\t10\t4096\t../x\t{}\n",
        "0".repeat(32)
    ));
    assert!(e.contains(".."), "{e}");
    let e = bad(&format!("{head}{f}bogus\t1\n"));
    assert!(e.contains("unknown line kind \"bogus\""), "{e}");
    let e = bad(&format!("{head}file\t0\t10\t4096\tx\txyz\n"));
    assert!(e.contains("not 32 hex digits"), "{e}");
}

#[test]
fn a_wait_ending_past_the_last_microsecond_ends_the_run_there() {
    use feedfs_protocol::reqlog::{file_records, header, Record};
    use feedfs_protocol::FileId;
    let mut recs = vec![Record::Mount {
        unix_us: 1,
        pid: 2,
        files: 1,
        continued: false,
    }];
    recs.extend(file_records(FileId(0), 4096, &[0; 16], "f"));
    recs.push(Record::Wait {
        t_us: u64::MAX - 1,
        file: FileId(0),
        first: 0,
        count: 1,
        wait_us: 5,
        pid: 3,
        outcome: Outcome::Served,
        demanded: true,
    });
    let mut log = header().to_vec();
    for r in &recs {
        log.extend_from_slice(&r.emit());
    }
    let runs = device_runs("r", &log).unwrap();
    assert_eq!(runs[0].end_us(), u64::MAX);
}

#[test]
fn dates_are_civil() {
    assert_eq!(unix_time(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(unix_time(951_782_400_000_000), "2000-02-29 00:00:00 UTC");
    assert_eq!(unix_time(1_763_769_599_000_000), "2025-11-21 23:59:59 UTC");
}
