//! Fuzz target: a prefetch plan file, as `feedfs-host push --plan` reads it.
//!
//! Input byte 0: bit 0 set keeps the plan's trailing CRC as it is; clear,
//! the last 4 bytes are replaced by the CRC of what precedes them, so
//! mutated plans reach the field checks behind it. The rest is the plan.
//!
//! What runs: `Plan::decode` (plans in pages, and those of version 1 in
//! blocks, read in pages); for a plan it accepts, `encode`, `render`, and
//! `resolve` against a served set of real files ([`TREE`] and a symbolic
//! link, walked once). Checked invariants: nothing panics; an accepted
//! plan's steps name its files and lie within their pages; it encodes to
//! bytes that decode to the same plan (in pages); every resolved range is
//! a served file's, non-empty and inside it. The tree lives in a scratch
//! directory under /dev/shm (or the temp dir) named after the process.
#![no_main]

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use feedfs_host::files::manifest::{walk, ServedSet};
use feedfs_host::prefetch::plan::{Plan, PLAN_VERSION};
use libfuzzer_sys::fuzz_target;

/// The served files, under the top directory `app`: path and size.
pub const TREE: &[(&str, usize)] = &[
    ("app/base.apk", 10_000),
    ("app/lib/libx.so", 70_000),
    ("app/data/x", 100),
    ("app/empty", 0),
];

fn served() -> &'static ServedSet {
    static S: OnceLock<ServedSet> = OnceLock::new();
    S.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let root = base.join(format!("feedfs-fuzz-plan-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (path, size) in TREE {
            let p = root.join(path);
            fs::create_dir_all(p.parent().expect("a parent")).expect("scratch tree");
            fs::write(&p, vec![7u8; *size]).expect("scratch file");
        }
        std::os::unix::fs::symlink("base.apk", root.join("app/link")).expect("scratch link");
        walk(&[root.join("app")]).expect("the scratch tree walks")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, plan)) = data.split_first() else {
        return;
    };
    let mut plan = plan.to_vec();
    if flags & 1 == 0 && plan.len() >= 4 {
        let n = plan.len() - 4;
        let crc = crc32fast::hash(&plan[..n]);
        plan[n..].copy_from_slice(&crc.to_le_bytes());
    }
    let Ok(p) = Plan::decode(&plan) else {
        return;
    };
    for s in &p.steps {
        let f = &p.files[s.file as usize];
        assert!(
            s.count > 0 && s.first + s.count <= f.pages(),
            "{s:?} of {f:?}"
        );
    }
    let bytes = p.encode();
    let in_pages = Plan {
        read_from: PLAN_VERSION,
        ..p.clone()
    };
    assert_eq!(
        Plan::decode(&bytes).as_ref(),
        Ok(&in_pages),
        "an encoded plan decodes"
    );
    let _ = p.render();
    let set = served();
    let (ranges, _warnings) = p.resolve(set);
    for (id, first, count) in ranges {
        let e = set.get(id).expect("a resolved range names a served file");
        assert!(
            count > 0 && first + count <= e.pages(),
            "{first}+{count} of {}",
            e.path
        );
    }
});
