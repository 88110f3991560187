//! The device's command line: help, and clear errors before anything is mounted.
//! (Being an integration test, it also makes `cargo test --workspace` build the
//! real binary that the end-to-end tests in `tests/` run.)

use std::process::Command;

#[path = "../src/testutil.rs"]
mod testutil;
use testutil::TempDir;

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
    let dir = TempDir::new("cli-store");
    let store = dir.join("store");
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
    let dir = TempDir::new("cli-offline");
    std::fs::create_dir(dir.join("mnt")).unwrap();
    let out = device()
        .arg("mount")
        .arg(dir.join("mnt"))
        .arg("--store")
        .arg(dir.join("store"))
        .arg("--offline")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no manifest yet"));
}

/// The `Commands:` section of a `--help`: (name, description) per line.
fn listed_subcommands(help: &str) -> Vec<(String, String)> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let l = l.trim_start();
            let (name, desc) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (name.to_string(), desc.trim().to_string())
        })
        .collect()
}

#[test]
fn every_subcommand_has_its_own_line_and_description() {
    let out = device().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let listed = listed_subcommands(&help);
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "mount",
            "attach",
            "verify",
            "overlay",
            "status",
            "usb-check",
            "help"
        ],
        "{help}"
    );
    for (name, desc) in &listed {
        assert!(!desc.is_empty(), "{name} has no description:\n{help}");
        // One summary sentence each: two glued together mean a doc comment
        // landed on the wrong subcommand.
        assert!(!two_sentences(desc), "{name}: {desc:?} is two sentences");
    }
}

/// Whether a sentence ends inside `text` and another starts: `. A`.
fn two_sentences(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'.' && w[1] == b' ' && w[2].is_ascii_uppercase())
}

/// Run `mount` on a mount point that does not exist, with extra options:
/// exit 2 means an option was refused, 1 that they were taken (and the
/// missing mount point stopped it before anything was created).
fn mount_with(opts: &[&str]) -> (Option<i32>, String) {
    let out = device()
        .args([
            "mount",
            "/nonexistent/feedfs-mnt",
            "--store",
            "/nonexistent/store",
            "--stdio",
        ])
        .args(opts)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn durations_need_a_unit_and_state_their_range() {
    let (code, err) = mount_with(&["--read-timeout", "500"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("has no unit") && err.contains("ms, s, m or h"),
        "{err}"
    );
    let (code, err) = mount_with(&["--read-timeout", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("must be from 100ms to 24h"), "{err}");
    for ok in ["100ms", "24h", "1.5s"] {
        let (code, err) = mount_with(&["--read-timeout", ok]);
        assert_eq!(code, Some(1), "{ok}: {err}");
    }
}

#[test]
fn kernel_readahead_takes_its_stated_maximum() {
    let (code, err) = mount_with(&["--kernel-readahead", "4G"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("must be from 0 to 1G"), "{err}");
    let (code, err) = mount_with(&["--kernel-readahead", "100"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a multiple of 1K"), "{err}");
    for ok in ["1G", "0", "128K", "1MiB"] {
        let (code, err) = mount_with(&["--kernel-readahead", ok]);
        assert_eq!(code, Some(1), "{ok}: {err}");
    }
}

#[test]
fn version_names_the_protocol_and_the_store_format() {
    let out = device().arg("--version").output().unwrap();
    assert!(out.status.success());
    let want = format!(
        "feedfs-device {} (protocol version {}, store map version {})\n",
        env!("CARGO_PKG_VERSION"),
        feedfs_protocol::VERSION,
        feedfs_device::store::MAP_VERSION
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

#[test]
fn help_ends_with_the_exit_statuses() {
    let out = device().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "Exit status:",
        "  0  success",
        "  2  usage error",
        "  3  verify: bad pages",
        "-v, --verbose",
        "-q, --quiet",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
}

#[test]
fn the_store_can_come_from_the_environment() {
    let dir = TempDir::new("cli-env-store");
    let store = dir.join("store");
    let out = device()
        .arg("status")
        .env("FEEDFS_STORE", &store)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Not a usage error for a missing --store: status looked at that store.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(store.to_str().unwrap()), "{err}");
    let out = device()
        .arg("status")
        .env_remove("FEEDFS_STORE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn completions_and_man_pages_are_generated() {
    for (shell, marker) in [
        ("bash", "complete -F _feedfs__device"),
        ("zsh", "#compdef feedfs-device"),
        ("fish", "complete -c feedfs-device"),
    ] {
        let out = device().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(marker) && text.contains("read-timeout"),
            "{shell}:\n{text}"
        );
    }
    let out = device().arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH feedfs-device"), "{page}");
    let dir = TempDir::new("cli-man");
    let out = device()
        .arg("man")
        .arg("--out-dir")
        .arg(dir.join("man"))
        .output()
        .unwrap();
    let mount = std::fs::read_to_string(dir.join("man/feedfs-device-mount.1"));
    assert!(out.status.success());
    assert!(mount.unwrap().contains("read\\-timeout"));
}
