//! The real `feedfs-host` binary, run the way people and scripts run it.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn host(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_feedfs-host"))
        .args(args)
        .stdin(Stdio::null())
        .env_remove("RUST_LOG")
        .output()
        .expect("run feedfs-host")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A scratch directory for one test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("feedfs-host-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn file(&self, name: &str, data: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, data).unwrap();
        p.to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn help_explains_push() {
    let o = host(&["--help"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("push"), "{out}");
    let o = host(&["push", "--help"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--exec",
        "--stdio",
        "--block-size",
        "--readahead",
        "--record",
    ] {
        assert!(out.contains(flag), "{flag} missing from {out}");
    }
}

#[test]
fn push_needs_a_link() {
    let o = host(&["push", "somefile"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--exec"), "{}", stderr(&o));
    let o = host(&["push", "--stdio", "--exec", "true", "somefile"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn bad_block_size_is_a_usage_error() {
    let o = host(&["push", "--stdio", "--block-size", "3000", "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("power of two"), "{}", stderr(&o));
}

#[test]
fn missing_path_is_named() {
    let o = host(&["push", "--stdio", "/nonexistent"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.starts_with("feedfs-host: error: "), "{err}");
    assert!(err.contains("/nonexistent"), "{err}");
    // Nothing but frames may go to stdout, and no frame was sent.
    assert!(o.stdout.is_empty());
}

#[test]
fn device_that_exits_is_reported_and_the_record_is_whole() {
    let s = Scratch::new("exit");
    let file = s.file("somefile", &[1; 10_000]);
    let record = s.0.join("record.tsv");
    let o = host(&[
        "push",
        "--exec",
        "exit 3",
        "--block-size",
        "4K",
        "--record",
        record.to_str().unwrap(),
        &file,
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("device exited with status 3"), "{err}");
    assert!(
        err.contains("link closed") || err.contains("sending to the device failed"),
        "{err}"
    );
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(
        text.starts_with("# feedfs-host record v2\nfile\t0\t10000\t4096\tsomefile\t"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2, "{text}");
}

#[test]
fn a_peer_that_is_not_a_device_is_refused() {
    // `cat` echoes the host's own Hello back.
    let s = Scratch::new("echo");
    let file = s.file("f", b"data");
    let o = host(&["push", "--exec", "cat", &file]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("not a device"), "{err}");
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
    let check = |args: &[&str], expected: &[&str]| {
        let o = host(args);
        assert!(o.status.success(), "{}", stderr(&o));
        let help = String::from_utf8_lossy(&o.stdout).into_owned();
        let listed = listed_subcommands(&help);
        let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, expected, "{help}");
        for (name, desc) in &listed {
            assert!(!desc.is_empty(), "{name} has no description:\n{help}");
            // One summary sentence each: two glued together mean a doc
            // comment landed on the wrong subcommand.
            assert!(!two_sentences(desc), "{name}: {desc:?} is two sentences");
        }
    };
    check(
        &["--help"],
        &["push", "devices", "usb-check", "log", "plan", "help"],
    );
    check(&["log", "--help"], &["show", "plot", "help"]);
}

/// Whether a sentence ends inside `text` and another starts: `. A`.
fn two_sentences(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'.' && w[1] == b' ' && w[2].is_ascii_uppercase())
}

#[test]
fn rate_and_block_size_state_their_range() {
    let o = host(&["push", "--stdio", "--rate", "1", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("must be from 4K to 1T"),
        "{}",
        stderr(&o)
    );
    let o = host(&["push", "--stdio", "--rate", "10s", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown unit"), "{}", stderr(&o));
    let o = host(&["push", "--stdio", "--block-size", "2M", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("from 4K to 1M"), "{}", stderr(&o));
    // Taken: the push then fails on the missing path, not on the options.
    let o = host(&[
        "push",
        "--stdio",
        "--rate",
        "4K",
        "--block-size",
        "1M",
        "/nonexistent",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}
