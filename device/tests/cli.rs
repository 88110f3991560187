//! The device's command line: help, and clear errors before anything is mounted.
//! (Being an integration test, it also makes `cargo test --workspace` build the
//! real binary that the end-to-end tests in `tests/` run.)

use std::process::Command;

fn device() -> Command {
    Command::new(env!("CARGO_BIN_EXE_feedfs-device"))
}

#[test]
fn help_names_the_subcommands_and_options() {
    let out = device().args(["mount", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for opt in [
        "--store",
        "--stdio",
        "--offline",
        "--read-timeout",
        "--allow-other",
    ] {
        assert!(text.contains(opt), "{opt} missing from help:\n{text}");
    }
}

#[test]
fn a_link_is_required_and_durations_are_checked() {
    let out = device()
        .args(["mount", "/tmp", "--store", "/tmp/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stdio"));
    let out = device()
        .args([
            "mount",
            "/tmp",
            "--store",
            "/tmp/x",
            "--stdio",
            "--read-timeout",
            "ten",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a duration"));
}

#[test]
fn a_missing_mount_point_is_refused_before_the_store_is_touched() {
    let store = std::env::temp_dir().join(format!("feedfs-cli-store-{}", std::process::id()));
    let out = device()
        .args(["mount", "/nonexistent/feedfs-mnt", "--store"])
        .arg(&store)
        .arg("--stdio")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mount point /nonexistent/feedfs-mnt does not exist"),
        "{err}"
    );
    assert!(!store.exists(), "nothing created");
}

#[test]
fn offline_without_a_saved_manifest_says_so() {
    let dir = std::env::temp_dir().join(format!("feedfs-cli-offline-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("mnt")).unwrap();
    let out = device()
        .arg("mount")
        .arg(dir.join("mnt"))
        .arg("--store")
        .arg(dir.join("store"))
        .arg("--offline")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no manifest yet"));
}
