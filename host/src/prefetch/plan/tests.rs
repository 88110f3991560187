//! Plans built from runs, written, read back and resolved against the files served.

use super::*;
use crate::files::manifest::walk;
use crate::testutil::TempDir;

fn sample() -> Plan {
    Plan {
        files: vec![
            PlanFile {
                path: "app.apk".into(),
                size: 10_000,
                identity: Some([7; 16]),
            },
            PlanFile {
                path: "data/x".into(),
                size: 100,
                identity: None,
            },
        ],
        steps: vec![
            Step {
                file: 0,
                first: 2,
                count: 1,
            },
            Step {
                file: 1,
                first: 0,
                count: 1,
            },
            Step {
                file: 0,
                first: 0,
                count: 2,
            },
        ],
        runs: 3,
        window: 4,
        read_from: PLAN_VERSION,
    }
}

/// `sample` as a version-1 plan would have said it, in 8 KiB blocks.
fn sample_v1() -> Vec<u8> {
    let mut b = sample().encode();
    b.truncate(b.len() - 4);
    b[8] = 1;
    // Each file's block size, where version 2 has reserved bytes.
    for at in [32, 72] {
        b[at + 8..at + 12].copy_from_slice(&8192u32.to_le_bytes());
    }
    // Steps in blocks: 0:1+1, 1:0+1, 0:0+1.
    let steps = 112;
    b[steps + 8] = 1;
    b[steps + 32 + 4] = 1;
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn fixed_bytes_and_round_trip() {
    let b = sample().encode();
    assert_eq!(
        b[..32],
        [
            b'F', b'D', b'F', b'S', b'P', b'L', b'A', b'N', 2, 0, 0,
            0, // magic, version, reserved
            2, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0,
            0 // files, steps, runs, window
        ]
    );
    // File 0: size, 4 reserved bytes, path length, flags, identity, path padded to 8.
    assert_eq!(
        b[32..48],
        [0x10, 0x27, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 1, 0]
    );
    assert_eq!(&b[64..72], b"app.apk\0");
    // File 1 at 72 (32 + 6 bytes, padded to 112), then three steps and the CRC.
    assert_eq!(b.len(), 112 + 3 * 16 + 4);
    assert_eq!(
        b[112..128],
        [0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(Plan::decode(&b), Ok(sample()));
}

#[test]
fn damage_is_refused_with_a_reason() {
    let good = sample().encode();
    assert_eq!(Plan::decode(&good[..10]), Err(PlanError::Short(10)));
    let mut b = good.clone();
    b[0] = b'X';
    assert_eq!(Plan::decode(&b), Err(PlanError::BadMagic));
    let mut b = good.clone();
    b[8] = 9;
    assert_eq!(Plan::decode(&b), Err(PlanError::Version(9)));
    assert!(
        PlanError::Version(9)
            .to_string()
            .contains("make the plan again with `feedfs-host plan LOG... -o PLAN`"),
        "{}",
        PlanError::Version(9)
    );
    let mut b = good.clone();
    b[120] ^= 1;
    assert!(matches!(
        Plan::decode(&b),
        Err(PlanError::BadChecksum { .. })
    ));
    // Well-formed CRC but a step past the file's end.
    let mut p = sample();
    p.steps[0].count = 5;
    let e = Plan::decode(&p.encode()).unwrap_err().to_string();
    assert!(
        e.contains("step 0: pages 2+5 of app.apk are out of range (3 pages)"),
        "{e}"
    );
    let mut p = sample();
    p.files[1].path = "../up".into();
    assert!(Plan::decode(&p.encode())
        .unwrap_err()
        .to_string()
        .contains(".."));
    let mut b = good[..good.len() - 4].to_vec();
    b[72 + 8] = 1;
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    assert!(Plan::decode(&b)
        .unwrap_err()
        .to_string()
        .contains("file 1 has 1 in its reserved bytes"));
    let mut p = sample();
    p.steps[1].file = 9;
    assert!(Plan::decode(&p.encode())
        .unwrap_err()
        .to_string()
        .contains("names file 9"));
    // A step count that does not match the bytes (CRC recomputed).
    let mut b = good[..good.len() - 4].to_vec();
    b[16] = 200;
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    assert!(Plan::decode(&b)
        .unwrap_err()
        .to_string()
        .contains("expected 200 steps"));
}

#[test]
fn a_plan_cut_inside_the_padding_of_its_last_path_is_refused() {
    let p = Plan {
        files: vec![PlanFile {
            path: "abc".into(),
            size: 1,
            identity: None,
        }],
        ..Plan::default()
    };
    let good = p.encode();
    assert_eq!(good.len(), 32 + 32 + 8 + 4, "the path is padded to 8 bytes");
    // Three of the five padding bytes left out, CRC recomputed.
    let mut b = good[..good.len() - 4 - 3].to_vec();
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let e = Plan::decode(&b).unwrap_err().to_string();
    assert!(e.contains("it ends inside the padding of file 0"), "{e}");
}

#[test]
fn a_plan_in_blocks_is_read_in_the_pages_its_blocks_cover() {
    let p = Plan::decode(&sample_v1()).unwrap();
    assert_eq!(p.read_from, PLAN_VERSION_BLOCKS);
    let steps: Vec<_> = p.steps.iter().map(|s| (s.file, s.first, s.count)).collect();
    // 8 KiB blocks of a 10 000-byte file: block 1 is pages 2 (cut at the end).
    assert_eq!(steps, vec![(0, 2, 1), (1, 0, 1), (0, 0, 2)]);
    assert_eq!(p.window, 8, "4 blocks of 8 KiB");
    assert!(p
        .render()
        .contains("a plan in blocks, shown in 4 KiB pages"));
    // A block size no version-1 plan had.
    let mut b = sample_v1();
    b.truncate(b.len() - 4);
    b[32 + 8..32 + 12].copy_from_slice(&3000u32.to_le_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let e = Plan::decode(&b).unwrap_err().to_string();
    assert!(e.contains("block size of 3000"), "{e}");
}

#[test]
fn resolving_ignores_changed_files() {
    let dir = TempDir::new("plan-resolve");
    let app = dir.write("app.apk", &[1u8; 10_000]);
    dir.write("data/x", &[2u8; 200]);
    let set = walk(&[app, dir.join("data")]).unwrap();
    let app = set.files().find(|e| e.path == "app.apk").unwrap();
    let mut plan = sample();
    // Learned before the file changed: another identity.
    let (ranges, warnings) = plan.resolve(&set);
    assert!(ranges.is_empty());
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("another identity"), "{warnings:?}");
    assert!(
        warnings[1].contains("200 bytes, the plan was made for 100"),
        "{warnings:?}"
    );
    // The right identity: its steps, consecutive ones joined.
    plan.files[0].identity = Some(app.identity);
    plan.steps = vec![
        Step {
            file: 0,
            first: 1,
            count: 1,
        },
        Step {
            file: 0,
            first: 2,
            count: 1,
        },
        Step {
            file: 0,
            first: 0,
            count: 1,
        },
    ];
    let (ranges, _) = plan.resolve(&set);
    assert_eq!(ranges, vec![(app.id, 1, 2), (app.id, 0, 1)]);
}
