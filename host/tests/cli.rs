//! The real `feedfs-host` binary, run the way people and scripts run it.
//!
//! The USB tests run on any machine: with no USB bus (a container) the
//! messages name what is missing; with a bus and no feedfs device,
//! `devices` lists nothing.

use std::path::{Path, PathBuf};
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
        "--run-size",
        "--readahead",
        "--record",
        "--header",
        "--cacert",
        "--retry-for",
    ] {
        assert!(out.contains(flag), "{flag} missing from {out}");
    }
    assert!(
        !out.contains("--block-size"),
        "a removed flag is not shown: {out}"
    );
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
fn block_size_is_gone_and_says_what_replaced_it() {
    let o = host(&["push", "--stdio", "--block-size", "64K", "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "--block-size is gone: pages are 4 KiB; --run-size sets the stream's run length"
        ),
        "{}",
        stderr(&o)
    );
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
        "--run-size",
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
        text.starts_with("# feedfs-host record v3\nfile\t0\t10000\tsomefile\t"),
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
fn rate_run_size_and_readahead_state_their_range() {
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
    let o = host(&["push", "--stdio", "--run-size", "2M", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--run-size"), "{}", stderr(&o));
    let o = host(&["push", "--stdio", "--readahead", "2G", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("from 0 to 1G"), "{}", stderr(&o));
    // Taken: the push then fails on the missing path, not on the options.
    let o = host(&[
        "push",
        "--stdio",
        "--rate",
        "4K",
        "--run-size",
        "1M",
        "--readahead",
        "0",
        "/nonexistent",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn version_names_the_protocol() {
    let o = host(&["--version"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    let want = format!(
        "feedfs-host {} (protocol version {})\n",
        env!("CARGO_PKG_VERSION"),
        feedfs_protocol::VERSION
    );
    assert_eq!(out, want);
}

#[test]
fn help_ends_with_the_exit_statuses() {
    let o = host(&["--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    for line in [
        "Exit status:",
        "  0    success",
        "  2    usage error",
        "  130  push stopped by SIGINT",
        "  143  push stopped by SIGTERM",
        "  129  push stopped by SIGHUP",
        "-v, --verbose",
        "-q, --quiet",
        "-s, --serial <SERIAL>",
    ] {
        assert!(out.contains(line), "{line:?} missing from\n{out}");
    }
}

#[test]
fn serial_from_the_environment_does_not_conflict_with_a_pipe() {
    let s = Scratch::new("serial");
    let file = s.file("f", b"data");
    let run = |args: &[&str], env: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_feedfs-host"));
        c.args(args).stdin(Stdio::null()).env_remove("RUST_LOG");
        match env {
            Some(v) => c.env("FEEDFS_SERIAL", v),
            None => c.env_remove("FEEDFS_SERIAL"),
        };
        c.output().unwrap()
    };
    // Typed with a pipe: a usage error.
    let o = run(&["-s", "abc", "push", "--exec", "exit 3", &file], None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("use it with --usb"), "{}", stderr(&o));
    // Left set in the environment: the pipe push runs (and fails on its own).
    let o = run(&["push", "--exec", "exit 3", &file], Some("abc"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("device exited with status 3"),
        "{}",
        stderr(&o)
    );
    // And clap reads it.
    let o = run(&["push", "--help"], Some("abc"));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("[env: FEEDFS_SERIAL=abc]"), "{out}");
}

#[test]
fn completions_and_man_pages_are_generated() {
    for (shell, marker) in [
        ("bash", "complete -F _feedfs__host"),
        ("zsh", "#compdef feedfs-host"),
        ("fish", "complete -c feedfs-host"),
    ] {
        let o = host(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains(marker) && out.contains("run-size"),
            "{shell}:\n{out}"
        );
    }
    let o = host(&["man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH feedfs-host"),
        "{page}"
    );
    assert!(page.contains("usb\\-check"), "{page}");
    let s = Scratch::new("man");
    let dir = s.0.to_str().unwrap();
    let o = host(&["man", "--out-dir", dir]);
    assert!(o.status.success(), "{}", stderr(&o));
    let push = std::fs::read_to_string(s.0.join("feedfs-host-push.1")).unwrap();
    assert!(push.contains("run\\-size"), "{push}");
    // Hidden: not in the list of commands people read.
    let help = String::from_utf8_lossy(&host(&["--help"]).stdout).into_owned();
    assert!(!help.contains("completions"), "{help}");
}

fn no_bus() -> bool {
    !Path::new("/dev/bus/usb").exists()
}

#[test]
fn devices_lists_one_device_per_line_or_nothing() {
    let o = host(&["devices"]);
    let (out, err) = (String::from_utf8(o.stdout.clone()).unwrap(), stderr(&o));
    assert!(o.status.success(), "{}: {err}", o.status);
    for line in out.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 4, "serial, bus, address, speed: {line:?}");
        assert!(fields[1].parse::<u8>().is_ok() && fields[2].parse::<u8>().is_ok());
    }
    assert!(!err.contains("libusb"), "{err}");
    if no_bus() {
        assert_eq!(out, "");
        assert!(
            err.contains("/dev/bus/usb") && err.contains("--exec"),
            "says what is missing and what to do: {err}"
        );
    }
}

#[test]
fn devices_json_is_an_array() {
    let o = host(&["devices", "--json"]);
    assert!(o.status.success(), "{}", o.status);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let list = v.as_array().expect("an array");
    for d in list {
        assert!(d["bus"].is_u64() && d["address"].is_u64() && d["speed"].is_string());
    }
    if no_bus() {
        assert!(list.is_empty());
    }
}

#[test]
fn push_over_usb_with_nothing_attached_says_what_is_missing() {
    let s = Scratch::new("usb");
    let file = s.file("f", b"x");
    let o = host(&["push", "--usb", &file]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(!err.contains("Other error"), "{err}");
    if no_bus() {
        assert!(
            err.contains("/dev/bus/usb") && err.contains("--exec"),
            "{err}"
        );
    } else {
        assert!(err.contains("no feedfs device"), "{err}");
    }
}

#[test]
fn push_to_every_usb_device_with_none_says_what_is_missing() {
    let s = Scratch::new("usb-all");
    let file = s.file("f", b"x");
    let o = host(&["push", "--usb", "--all", &file]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    if no_bus() {
        assert!(
            err.contains("cannot look for feedfs devices on USB: this machine shows no USB bus"),
            "{err}"
        );
    } else {
        assert!(err.contains("no feedfs device is attached"), "{err}");
    }
}
