//! Hostile paths, the caps, implied directories and the closing count.

use super::*;

/// A host entry as the builder takes it.
fn entry(
    id: FileId,
    kind: EntryKind,
    path: &str,
    size: u64,
    mode: u32,
    identity: [u8; 16],
) -> Entry {
    Entry {
        id: Some(id),
        kind,
        path: path.into(),
        size,
        mode,
        mtime: Mtime {
            sec: 1_700_000_000,
            nsec: 0,
        },
        identity,
        target: String::new(),
    }
}

fn file(b: &mut ManifestBuilder, path: &str) -> Result<(), ManifestError> {
    let id = FileId(b.m.by_id.len() as u32);
    b.push(entry(id, EntryKind::File, path, 10, 0o4755, [1; 16]))
}

#[test]
fn hostile_paths_each_get_their_own_error() {
    let mut b = ManifestBuilder::new();
    assert_eq!(file(&mut b, ""), Err(ManifestError::EmptyPath));
    assert_eq!(
        file(&mut b, "/etc/passwd"),
        Err(ManifestError::AbsolutePath("/etc/passwd".into()))
    );
    assert_eq!(
        file(&mut b, "a/../../x"),
        Err(ManifestError::DotDot("a/../../x".into()))
    );
    assert_eq!(file(&mut b, ".."), Err(ManifestError::DotDot("..".into())));
    assert_eq!(
        file(&mut b, "a\0b"),
        Err(ManifestError::NulByte("a\\0b".into()))
    );
    assert_eq!(
        file(&mut b, "a//b"),
        Err(ManifestError::EmptyComponent("a//b".into()))
    );
    assert_eq!(
        file(&mut b, "a/./b"),
        Err(ManifestError::EmptyComponent("a/./b".into()))
    );
    assert_eq!(
        file(&mut b, "a/"),
        Err(ManifestError::EmptyComponent("a/".into()))
    );
    let long = "x".repeat(256);
    assert_eq!(
        file(&mut b, &long),
        Err(ManifestError::NameTooLong {
            path: long.clone(),
            len: 256
        })
    );
    // Nothing was accepted.
    assert!(b.m.entries.is_empty());
}

#[test]
fn tree_rules() {
    let mut b = ManifestBuilder::new();
    file(&mut b, "top/sub/f").unwrap();
    assert_eq!(
        file(&mut b, "top/sub/f"),
        Err(ManifestError::Duplicate("top/sub/f".into()))
    );
    assert_eq!(
        file(&mut b, "top/sub/f/g"),
        Err(ManifestError::InsideFile {
            path: "top/sub/f/g".into(),
            parent: "top/sub/f".into()
        })
    );
    assert_eq!(
        b.push(entry(FileId(7), EntryKind::File, "x", 1, 0, [0; 16])),
        Err(ManifestError::BadId {
            path: "x".into(),
            expected: 1,
            got: 7
        })
    );
    assert_eq!(
        b.push(entry(FileId(1), EntryKind::Dir, "x", 1, 0, [0; 16])),
        Err(ManifestError::NotAFileWithSize("x".into()))
    );
    let mut not_a_link = entry(FileId(1), EntryKind::File, "x", 1, 0, [0; 16]);
    not_a_link.target = "y".into();
    assert_eq!(
        b.push(not_a_link),
        Err(ManifestError::TargetOfNonLink("x".into()))
    );
    assert_eq!(
        b.push(entry(FileId(1), EntryKind::File, "x", u64::MAX, 0, [0; 16])),
        Err(ManifestError::FileTooLarge {
            path: "x".into(),
            size: u64::MAX
        })
    );
    b.push(entry(FileId(1), EntryKind::Dir, "top", 0, 0o700, [0; 16]))
        .unwrap();
    let m = b.finish(2, 10).unwrap();
    let paths: Vec<_> = m
        .entries()
        .iter()
        .map(|e| (e.path.as_str(), e.mode))
        .collect();
    assert_eq!(
        paths,
        vec![("top", 0o700), ("top/sub", 0o755), ("top/sub/f", 0o755)]
    );
    assert_eq!(m.get(FileId(0)).unwrap().path, "top/sub/f");
    assert_eq!(m.get(FileId(1)).unwrap().path, "top");
    assert_eq!(m.files().count(), 1);
}

#[test]
fn total_pages_are_capped() {
    let mut b = ManifestBuilder::new();
    let tib = 1u64 << 40;
    // A TiB is 2^28 pages; four of them reach the cap of 4 TiB.
    for i in 0..4 {
        b.push(entry(
            FileId(i),
            EntryKind::File,
            &format!("f{i}"),
            tib,
            0o644,
            [0; 16],
        ))
        .unwrap();
    }
    assert_eq!(
        b.push(entry(
            FileId(4),
            EntryKind::File,
            "one-more",
            1,
            0o644,
            [0; 16]
        )),
        Err(ManifestError::TooManyPages {
            path: "one-more".into(),
            total: (1 << 30) + 1
        })
    );
    // Empty files, directories and links have no pages.
    b.push(entry(
        FileId(4),
        EntryKind::File,
        "empty",
        0,
        0o644,
        [0; 16],
    ))
    .unwrap();
    let mut link = entry(FileId(5), EntryKind::Symlink, "l", 0, 0o777, [0; 16]);
    link.target = "empty".into();
    b.push(link).unwrap();
}

/// A link entry from `path` to `target`.
fn link(b: &mut ManifestBuilder, path: &str, target: &str) -> Result<(), ManifestError> {
    let id = FileId(b.m.by_id.len() as u32);
    let mut e = entry(id, EntryKind::Symlink, path, 0, 0o777, [0; 16]);
    e.target = target.into();
    b.push(e)
}

#[test]
fn links_stay_inside_the_mount_and_hold_nothing_below_them() {
    let mut b = ManifestBuilder::new();
    for (path, target) in [
        ("l0", "f"),
        ("a/l1", "../f"),
        ("a/b/l2", "../../a/./x"),
        ("a/b/l3", "./../.."),
        ("a/l4", "b/"),
        ("d/up", ".."),
    ] {
        link(&mut b, path, target).unwrap_or_else(|e| panic!("{path} -> {target}: {e}"));
    }
    for (path, target) in [
        ("m0", "/etc/passwd"),
        ("m1", ".."),
        ("a/m2", "../.."),
        ("a/b/m3", "../../../x"),
        ("a/m4", "b/../../../x"),
        // Each stays inside on its own, but a `..` after a link climbs
        // from wherever that link leads.
        ("d/esc", "up/.."),
        ("d/root", "esc/../.."),
        ("a/b/m7", "c/../x"),
        ("m5", ""),
        ("m6", "x\0y"),
    ] {
        assert_eq!(
            link(&mut b, path, target),
            Err(ManifestError::LinkOutside {
                path: path.into(),
                target: target.replace('\0', "\\0")
            }),
            "{path} -> {target}"
        );
    }
    // Nothing lies inside a link.
    assert_eq!(
        file(&mut b, "l0/x"),
        Err(ManifestError::InsideFile {
            path: "l0/x".into(),
            parent: "l0".into()
        })
    );
    let m = b.finish(6, 0).unwrap();
    let l = m.get(FileId(1)).unwrap();
    assert_eq!(
        (l.kind, l.target.as_str(), l.pages()),
        (EntryKind::Symlink, "../f", 0)
    );
    // An implied directory takes the time of the entry that implied it.
    let a = m.entries().iter().find(|e| e.path == "a").unwrap();
    assert_eq!(a.mtime, l.mtime);
}

#[test]
fn deep_paths_cannot_make_the_device_hold_gigabytes_of_names() {
    // Each path implies about 2000 directories whose names add up to
    // about 4 MB: without a cap, a thousand such entries (4 MB on the
    // wire) would make the device hold gigabytes.
    let deep = "a/".repeat(2000);
    let mut b = ManifestBuilder::new();
    let mut accepted = 0;
    let err = loop {
        match file(&mut b, &format!("d{accepted}/{deep}f")) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "no cap on path text");
    };
    assert!(
        matches!(err, ManifestError::TooMuchPathText { total, .. } if total > MAX_PATH_BYTES),
        "{err}"
    );
    assert!(b.path_bytes <= MAX_PATH_BYTES);
    assert!((25..40).contains(&accepted), "{accepted} entries accepted");
    let held: u64 = b.m.entries.iter().map(|e| e.path.len() as u64).sum();
    assert_eq!(held, b.path_bytes);
}

#[test]
fn entries_below_known_directories_cost_one_lookup_and_keep_parents_first() {
    let deep = "a/".repeat(2000);
    let mut b = ManifestBuilder::new();
    // Many files in one deep directory: its parents are added once.
    for i in 0..2000 {
        file(&mut b, &format!("{deep}f{i}")).unwrap();
    }
    assert_eq!(b.m.entries.len(), 2000 + 2000);
    assert!(b.path_bytes < MAX_PATH_BYTES);
    file(&mut b, "x/y/z").unwrap();
    assert_eq!(
        file(&mut b, &format!("{deep}f7/g")),
        Err(ManifestError::InsideFile {
            path: format!("{deep}f7/g"),
            parent: format!("{deep}f7"),
        })
    );
    let m = b.finish(2001, 20010).unwrap();
    let mut seen = std::collections::HashSet::new();
    for e in m.entries() {
        assert!(
            e.parent().is_empty() || seen.contains(e.parent()),
            "{} before its parent",
            e.path
        );
        seen.insert(e.path.as_str());
    }
}

#[test]
fn counts_must_match() {
    let mut b = ManifestBuilder::new();
    file(&mut b, "a").unwrap();
    assert!(matches!(
        b.finish(2, 10),
        Err(ManifestError::CountMismatch {
            announced: 2,
            received: 1,
            ..
        })
    ));
}
