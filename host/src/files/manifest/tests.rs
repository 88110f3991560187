//! Walking paths into a manifest: order, ids, kinds, identities and what is refused.

use super::*;
use crate::testutil::TempDir;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

fn paths(set: &ServedSet) -> Vec<(u32, EntryKind, &str, u64)> {
    set.entries
        .iter()
        .map(|e| (e.id.0, e.kind, e.path.as_str(), e.size))
        .collect()
}

#[test]
fn nested_dirs_in_sorted_order_with_empty_files() {
    let t = TempDir::new("walk");
    t.write("a.img", &[7; 5000]);
    t.write("tree/z", b"zz");
    t.write("tree/b/inner", b"");
    t.write("tree/a", b"a");
    fs::create_dir_all(t.join("tree/empty")).unwrap();
    let set = walk(&[t.join("a.img"), t.join("tree/")]).unwrap();
    use EntryKind::{Dir, File};
    assert_eq!(
        paths(&set),
        vec![
            (0, File, "a.img", 5000),
            (1, Dir, "tree", 0),
            (2, File, "tree/a", 1),
            (3, Dir, "tree/b", 0),
            (4, File, "tree/b/inner", 0),
            (5, Dir, "tree/empty", 0),
            (6, File, "tree/z", 2),
        ]
    );
    assert_eq!(set.total_bytes, 5003);
    assert_eq!(set.entries[0].pages(), 2);
    assert_eq!(set.entries[1].pages(), 0);
    assert_eq!(set.entries[1].identity, [0; 16]);
    assert_eq!(set.entries[4].pages(), 0);
    assert_ne!(set.entries[4].identity, set.entries[2].identity);
    assert_eq!(set.files().count(), 4);
    assert_eq!(
        set.manifest_end(),
        Message::ManifestEnd {
            entries: 7,
            total_bytes: 5003
        }
    );
}

#[test]
fn modes_are_permission_bits() {
    use std::os::unix::fs::PermissionsExt;
    let t = TempDir::new("mode");
    let p = t.write("x", b"1");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
    let set = walk(&[p]).unwrap();
    assert_eq!(set.entries[0].mode, 0o640);
}

#[test]
fn links_inside_the_tree_are_links_others_left_out_and_named_ones_followed() {
    use std::os::unix::fs::symlink;
    let t = TempDir::new("link");
    t.write("tree/real", b"data");
    t.write("tree/sub/deep", b"d");
    t.write("outside", b"o");
    symlink("real", t.join("tree/near")).unwrap();
    symlink("../real", t.join("tree/sub/up")).unwrap();
    symlink("sub/missing", t.join("tree/dangling")).unwrap();
    symlink(t.join("tree/real"), t.join("tree/absolute")).unwrap();
    symlink("../outside", t.join("tree/out")).unwrap();
    symlink("sub/../../outside", t.join("tree/sneaky")).unwrap();
    symlink(t.join("tree/real"), t.join("named")).unwrap();
    let set = walk(&[t.join("tree"), t.join("named")]).unwrap();
    let got: Vec<_> = set
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e.kind, e.target.as_str()))
        .collect();
    use EntryKind::{Dir, File, Symlink};
    assert_eq!(
        got,
        vec![
            ("tree", Dir, ""),
            ("tree/dangling", Symlink, "sub/missing"),
            ("tree/near", Symlink, "real"),
            ("tree/real", File, ""),
            ("tree/sub", Dir, ""),
            ("tree/sub/deep", File, ""),
            ("tree/sub/up", Symlink, "../real"),
            ("named", File, ""),
        ]
    );
    let link = &set.entries[2];
    assert_eq!((link.size, link.mode, link.identity), (0, 0o777, [0; 16]));
    assert_eq!(
        link.mtime,
        Mtime::of(
            fs::symlink_metadata(t.join("tree/near"))
                .unwrap()
                .modified()
                .unwrap()
        ),
        "a link's own time, not its target's"
    );
    assert_eq!(
        set.skipped,
        vec![
            (t.join("tree/absolute"), SkipReason::Symlink),
            (t.join("tree/out"), SkipReason::Symlink),
            (t.join("tree/sneaky"), SkipReason::Symlink),
        ]
    );
    assert_eq!(
        set.entries[7].size, 4,
        "a link named on the command line is followed"
    );
    assert_eq!(set.files().count(), 3, "links are not files");
}

#[test]
fn every_entry_carries_its_modification_time() {
    let t = TempDir::new("mtime");
    let f = t.write("tree/f", b"x");
    let old = std::time::UNIX_EPOCH + Duration::new(1_500_000_000, 123_456_789);
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(old)
        .unwrap();
    fs::File::open(t.join("tree"))
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(7))
        .unwrap();
    let set = walk(&[t.join("tree")]).unwrap();
    assert_eq!(set.entries[0].mtime, Mtime { sec: 7, nsec: 0 });
    assert_eq!(
        set.entries[1].mtime,
        Mtime {
            sec: 1_500_000_000,
            nsec: 123_456_789
        }
    );
    let Message::Entry { mtime, target, .. } = set.entries[1].message() else {
        panic!("not an entry")
    };
    assert_eq!((mtime, target), (set.entries[1].mtime, ""));
}

#[test]
fn duplicate_top_level_names_are_refused() {
    let t = TempDir::new("dup");
    let a = t.write("one/same", b"1");
    let b = t.write("two/same", b"2");
    let err = walk(&[a, b]).unwrap_err();
    assert!(matches!(err, WalkError::Duplicate { ref name, .. } if name == "same"));
    let text = err.to_string();
    assert!(
        text.contains("one/same") && text.contains("two/same"),
        "{text}"
    );
}

#[test]
fn non_utf8_names_inside_are_left_out_and_named_ones_refused() {
    let t = TempDir::new("utf8");
    let bad =
        t.0.join("tree")
            .join(std::ffi::OsStr::from_bytes(b"bad\xff"));
    t.write("tree/good", b"1");
    fs::write(&bad, b"x").unwrap();
    let set = walk(&[t.join("tree")]).unwrap();
    let got: Vec<_> = set.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(got, vec!["tree", "tree/good"]);
    assert_eq!(set.skipped, vec![(bad.clone(), SkipReason::NonUtf8)]);
    assert_eq!(set.left_out().unwrap(), "left out 1 name not UTF-8");
    assert!(
        escape_path(&bad).ends_with("tree/bad\\xff"),
        "{}",
        escape_path(&bad)
    );
    let err = walk(std::slice::from_ref(&bad)).unwrap_err();
    assert!(matches!(err, WalkError::NonUtf8(_)), "{err}");
    assert!(err.to_string().contains("not valid UTF-8"));
}

#[test]
fn fifos_and_sockets_are_left_out_and_counted() {
    let t = TempDir::new("special");
    t.write("tree/file", b"1");
    let status = std::process::Command::new("mkfifo")
        .arg(t.join("tree/fifo"))
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo: {status}");
    let _sock = std::os::unix::net::UnixListener::bind(t.join("tree/sock")).unwrap();
    std::os::unix::fs::symlink(t.join("tree/file"), t.join("tree/link")).unwrap();
    let set = walk(&[t.join("tree")]).unwrap();
    let got: Vec<_> = set.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(got, vec!["tree", "tree/file"]);
    let why: Vec<_> = set.skipped.iter().map(|s| s.1).collect();
    assert_eq!(
        why,
        vec![SkipReason::Fifo, SkipReason::Symlink, SkipReason::Socket]
    );
    assert_eq!(
        set.left_out().unwrap(),
        "left out 1 symlink, 1 FIFO, 1 socket"
    );
}

#[test]
fn hard_links_are_served_once_per_name() {
    let t = TempDir::new("hard");
    let a = t.write("tree/a", &[5u8; 10_000]);
    fs::hard_link(&a, t.join("tree/b")).unwrap();
    let set = walk(&[t.join("tree")]).unwrap();
    let got: Vec<_> = set
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e.size))
        .collect();
    assert_eq!(
        got,
        vec![("tree", 0), ("tree/a", 10_000), ("tree/b", 10_000)]
    );
    assert!(set.skipped.is_empty());
}

#[test]
fn a_store_in_the_pushed_tree_is_refused_at_once() {
    let t = TempDir::new("store");
    t.write("tree/data", b"1");
    t.write("tree/cache/store/lock", b"123\n");
    fs::create_dir_all(t.join("tree/cache/store/files")).unwrap();
    let err = walk(&[t.join("tree")]).unwrap_err();
    assert!(
        matches!(err, WalkError::Store(ref p) if p.ends_with("cache/store")),
        "{err}"
    );
    assert!(err.to_string().contains("is a feedfs store"), "{err}");
    // A directory with only one of the two is not a store.
    fs::remove_dir(t.join("tree/cache/store/files")).unwrap();
    assert!(walk(&[t.join("tree")]).is_ok());
}

#[test]
fn missing_paths_and_refused_names_say_which() {
    let t = TempDir::new("missing");
    let gone = t.join("gone");
    let err = walk(std::slice::from_ref(&gone)).unwrap_err();
    assert!(err.to_string().contains(&*gone.to_string_lossy()), "{err}");
    let long = t.write(&"x".repeat(255), b"1");
    assert!(walk(&[long]).is_ok());
    let err = walk(&[PathBuf::from("/")]).unwrap_err();
    assert!(matches!(err, WalkError::NoName(_)), "{err}");
}

#[test]
fn dot_is_served_under_its_directory_name() {
    let t = TempDir::new("dot");
    t.write("d/f", b"1");
    let set = walk(&[t.join("d/.")]).unwrap();
    let got: Vec<_> = set.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(got, vec!["d", "d/f"]);
}

#[test]
fn identity_follows_content_and_time() {
    let t = TempDir::new("ident");
    let p = t.write("f", &vec![1u8; 200_000]);
    let first = walk(std::slice::from_ref(&p)).unwrap().entries[0].identity;
    let again = walk(std::slice::from_ref(&p)).unwrap().entries[0].identity;
    assert_eq!(first, again);
    // Same size, same inode, same mtime, new tail: a new identity.
    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
    let mtime = f.metadata().unwrap().modified().unwrap();
    f.write_all_at(b"2", 199_999).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let changed = walk(std::slice::from_ref(&p)).unwrap().entries[0].identity;
    assert_ne!(first, changed);
    // Touched only: a new identity.
    let f = fs::File::open(&p).unwrap();
    f.set_modified(mtime + std::time::Duration::from_secs(1))
        .unwrap();
    drop(f);
    let touched = walk(std::slice::from_ref(&p)).unwrap().entries[0].identity;
    assert_ne!(changed, touched);
    // The same file under another name: a new identity.
    fs::create_dir_all(t.join("d")).unwrap();
    fs::hard_link(&p, t.join("d/g")).unwrap();
    let g = walk(&[t.join("d/g")]).unwrap().entries[0].identity;
    assert_ne!(touched, g);
}

#[test]
fn an_edit_in_the_middle_with_the_mtime_set_back_is_a_new_identity() {
    let t = TempDir::new("ctime");
    let p = t.write("f", &vec![1u8; 1 << 20]);
    let ident = || walk(std::slice::from_ref(&p)).unwrap().entries[0].identity;
    let ctime = || Stamp::of(&fs::metadata(&p).unwrap()).ctime_ns;
    let first = ident();
    let (ctime0, mtime) = (ctime(), fs::metadata(&p).unwrap().modified().unwrap());
    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
    // The ctime moves on with the kernel's clock tick: write until it has.
    loop {
        f.write_all_at(&[2u8; 4096], 500_000).unwrap();
        f.set_modified(mtime).unwrap();
        if ctime() != ctime0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(f);
    assert_eq!(fs::metadata(&p).unwrap().modified().unwrap(), mtime);
    assert_ne!(first, ident());
}

#[test]
fn a_small_file_is_known_by_its_content_alone() {
    let t = TempDir::new("small");
    let p = t.write("f", &vec![1u8; FULL_DIGEST_MAX as usize]);
    let ident = || walk(std::slice::from_ref(&p)).unwrap().entries[0].identity;
    let first = ident();
    // Touched and chmod-ed: the same bytes, the same identity.
    use std::os::unix::fs::PermissionsExt;
    let f = fs::File::open(&p).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(first, ident());
    // One byte in the middle changed, the mtime kept: a new identity.
    let mtime = f.metadata().unwrap().modified().unwrap();
    let w = fs::OpenOptions::new().write(true).open(&p).unwrap();
    w.write_all_at(b"2", FULL_DIGEST_MAX / 2).unwrap();
    w.set_modified(mtime).unwrap();
    assert_ne!(first, ident());
}
