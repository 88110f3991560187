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
                block_size: 4096,
                identity: Some([7; 16]),
            },
            PlanFile {
                path: "data/x".into(),
                size: 100,
                block_size: 4096,
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
    }
}

#[test]
fn fixed_bytes_and_round_trip() {
    let b = sample().encode();
    assert_eq!(
        b[..32],
        [
            b'F', b'D', b'F', b'S', b'P', b'L', b'A', b'N', 1, 0, 0,
            0, // magic, version, reserved
            2, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0,
            0 // files, steps, runs, window
        ]
    );
    // File 0: size, block size, path length, flags, identity, path padded to 8.
    assert_eq!(
        b[32..48],
        [0x10, 0x27, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 7, 0, 1, 0]
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
        e.contains("step 0: blocks 2+5 of app.apk are out of range (3 blocks)"),
        "{e}"
    );
    let mut p = sample();
    p.files[1].path = "../up".into();
    assert!(Plan::decode(&p.encode())
        .unwrap_err()
        .to_string()
        .contains(".."));
    let mut p = sample();
    p.files[1].block_size = 3000;
    assert!(Plan::decode(&p.encode())
        .unwrap_err()
        .to_string()
        .contains("block size of 3000"));
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
            block_size: 4096,
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
fn resolving_ignores_changed_files_and_converts_block_sizes() {
    let dir = TempDir::new("plan-resolve");
    let app = dir.write("app.apk", &[1u8; 10_000]);
    dir.write("data/x", &[2u8; 200]);
    let set = walk(&[app, dir.join("data")], 4096).unwrap();
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
    // The right identity, learned in 8 KiB blocks: served in 4 KiB.
    plan.files[0].identity = Some(app.identity);
    plan.files[0].block_size = 8192;
    plan.steps = vec![Step {
        file: 0,
        first: 1,
        count: 1,
    }];
    let (ranges, _) = plan.resolve(&set);
    assert_eq!(
        ranges,
        vec![(app.id, 2, 1)],
        "bytes 8192..16384, cut at 10000"
    );
}
