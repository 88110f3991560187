//! End to end, one host feeding several devices: real `feedfs-device`
//! daemons on real FUSE mounts, each started by one `--exec` of a single
//! `feedfs-host push` over its own pipes. Scattered reads on every mount
//! while the stream runs, every byte checked; one daemon killed mid-stream
//! while the others complete; the pages read from the source once for all
//! (the host's own count and /proc/PID/io); templates, records per device
//! and the JSON summary. These tests fail, never skip, without /dev/fuse.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use feedfs_tests::peers::wait_exit;
use feedfs_tests::*;

const MIB: u64 = 1 << 20;

/// A source tree: one large file and a few small ones.
fn source(s: &Scratch, big: u64) -> PathBuf {
    let src = s.dir("src");
    write_file(&src.join("big.img"), big, 1, 0o644);
    fs::create_dir_all(src.join("etc")).unwrap();
    for i in 0..5 {
        write_file(
            &src.join(format!("etc/small{i}")),
            10_000 + i * 4096,
            10 + i,
            0o644,
        );
    }
    src
}

/// The device command for mount `n` under `root`.
fn device_cmd(root: &Path, n: &str) -> String {
    let (mnt, store) = (root.join(format!("m{n}")), root.join(format!("s{n}")));
    fs::create_dir_all(&mnt).unwrap();
    format!(
        "exec {} mount {} --store {} --stdio 2> {}",
        bin("feedfs-device").display(),
        mnt.display(),
        store.display(),
        root.join(format!("device{n}.err")).display()
    )
}

/// Start `feedfs-host push ARGS`, its stdout and stderr captured.
fn start_host(args: &[String]) -> Child {
    Command::new(bin("feedfs-host"))
        .arg("push")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait until the child has exited, without reaping it, then return the
/// `rchar` of its /proc/PID/io: bytes it read with read(2) and pread(2)
/// in all, from its sources and its pipes.
fn rchar_at_exit(child: &Child) -> u64 {
    // SAFETY: waitid only writes into the siginfo it is given.
    let waited = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            child.id(),
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    assert_eq!(waited, 0, "waitid failed");
    rchar(child.id())
}

/// `rchar` of /proc/PID/io.
fn rchar(pid: u32) -> u64 {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn eight_devices_over_pipes_one_killed_mid_stream() {
    const N: usize = 8;
    const BIG: u64 = 48 * MIB;
    let s = Scratch::new("fleet8");
    let src = source(&s, BIG);
    let total: u64 = 48 * MIB + (0..5).map(|i| 10_000 + i * 4096).sum::<u64>();
    let root = s.dir("devices");
    let mut args: Vec<String> = Vec::new();
    for i in 1..=N {
        args.push("--exec".into());
        args.push(device_cmd(&root, &i.to_string()));
    }
    // 12 MiB/s each: the stream lasts about four seconds.
    args.extend(
        ["--rate", "12M", "--json", "--record"]
            .iter()
            .map(|a| a.to_string()),
    );
    args.push(root.join("rec-{device}.tsv").display().to_string());
    args.push(src.display().to_string());
    let mut host = start_host(&args);
    let big = |i: usize| root.join(format!("m{i}/src/big.img"));
    for i in 1..=N {
        wait_for(
            "every mount to show the file",
            Duration::from_secs(30),
            || fs::metadata(big(i)).is_ok_and(|m| m.len() == BIG),
        );
    }
    // Scattered reads on every mount while the stream runs.
    let mut rng = 7u64;
    let mut reads = 0;
    for round in 0..6 {
        for i in 1..=N {
            if i == 3 && round >= 2 {
                continue;
            }
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let offset = (rng >> 20) % (BIG - 100_000);
            let got = read_at(&big(i), offset, 50_000).unwrap();
            assert!(
                got == content(1, offset, 50_000),
                "device {i}: wrong bytes at {offset}"
            );
            reads += 1;
        }
        if round == 1 {
            // Device 3's daemon dies mid-stream.
            let dpid = device_pid(&root.join("s3"));
            signal(dpid, libc::SIGKILL);
            wait_for("device 3 to die", Duration::from_secs(10), || !alive(dpid));
            detach(&root.join("m3"));
        }
    }
    let at_exit = rchar_at_exit(&host);
    let status = wait_exit(&mut host, Duration::from_secs(120));
    let mut out = String::new();
    let mut err = String::new();
    host.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    host.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "one device failed: {err}");
    for i in (1..=N).filter(|&i| i != 3) {
        assert!(
            err.contains(&format!("device {i}: pushed 6 files")),
            "device {i}'s line: {err}"
        );
        assert_eq!(
            assert_same_tree(&src, &root.join(format!("m{i}/src"))),
            8,
            "device {i} holds a different tree"
        );
        let rec = read_record(&root.join(format!("rec-{i}.tsv")));
        assert!(total_pages(&rec) > 0, "device {i} has a record of its own");
    }
    assert!(err.contains("device 3: failed: "), "{err}");
    assert!(
        err.contains("7 of 8 devices hold everything") && err.contains("failed: device 3"),
        "{err}"
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["devices"][2]["ok"], false);
    assert!(json["devices"][2]["error"]
        .as_str()
        .unwrap()
        .contains("device"));
    assert_eq!(json["devices"].as_array().unwrap().len(), N);
    // Read from the source about once for all eight (the killed device's
    // reads and the readahead of demands add a little).
    let read = json["source_bytes"].as_u64().unwrap();
    assert!(
        (total..=total * 11 / 10).contains(&read),
        "read {read} bytes from the source for {total} bytes of files"
    );
    // The kernel's count of everything the host read (sources, pipes) agrees.
    assert!(
        at_exit <= total * 12 / 10 + 8 * MIB,
        "the host read {at_exit} bytes in all for {total} bytes of files"
    );
    eprintln!("{reads} checked reads; source bytes {read} for {total}; rchar {at_exit}");
    let names: Vec<String> = (1..=N).map(|i| i.to_string()).collect();
    stop_all_named(&root, &names.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn a_template_fills_each_serial_and_a_bad_device_fails_alone() {
    let s = Scratch::new("fleet-template");
    let src = source(&s, 4 * MIB);
    let root = s.dir("devices");
    // The template: one mount and store per serial.
    for serial in ["alpha", "beta"] {
        device_cmd(&root, serial);
    }
    let t0 = Instant::now();
    let out = templated(&root, &src, &["--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for serial in ["alpha", "beta"] {
        assert!(err.contains(&format!("{serial}: pushed 6 files")), "{err}");
        assert_same_tree(&src, &root.join(format!("m{serial}/src")));
    }
    assert!(err.contains("2 of 2 devices hold everything"), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["devices"][1]["name"], "beta");
    eprintln!("two devices in {:?}", t0.elapsed());

    // Run twice in a row: the daemons of the first run still hold their
    // stores, and say so; stopped, new daemons find everything there.
    let again = templated(&root, &src, &[]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success(), "{err}");
    assert!(
        err.contains("alpha: failed: ") && err.contains("beta: failed: "),
        "{err}"
    );
    stop_all_named(&root, &["alpha", "beta"]);
    let again = templated(&root, &src, &[]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    assert!(err.contains("alpha: pushed 6 files, 0 B sent"), "{err}");

    // A device whose command fails at once fails alone.
    let out = start_host(&[
        "--exec".into(),
        "echo no such device >&2; exit 3".into(),
        "--exec".into(),
        device_cmd(&root, "gamma"),
        src.display().to_string(),
    ])
    .wait_with_output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("device 1: failed: ") && err.contains("exited with status 3"),
        "{err}"
    );
    assert!(err.contains("device 2: pushed 6 files"), "{err}");
    assert!(err.contains("1 of 2 devices hold everything; "), "{err}");
    assert_same_tree(&src, &root.join("mgamma/src"));
    stop_all_named(&root, &["alpha", "beta", "gamma"]);
}

/// One push to devices `alpha` and `beta` through one `{serial}` template.
fn templated(root: &Path, src: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--exec".to_string(),
        device_cmd(root, "{serial}"),
        "--serials".into(),
        "alpha,beta".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(src.display().to_string());
    start_host(&args).wait_with_output().unwrap()
}

/// Stop the daemons of the named stores below `root`.
fn stop_all_named(root: &Path, names: &[&str]) {
    for name in names {
        let store = root.join(format!("s{name}"));
        if let Ok(text) = fs::read_to_string(store.join("lock")) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                if alive(pid) {
                    signal(pid, libc::SIGTERM);
                    wait_for("a daemon to exit", Duration::from_secs(10), || !alive(pid));
                }
            }
        }
    }
}

#[test]
fn several_devices_need_a_record_each() {
    let s = Scratch::new("fleet-record");
    let src = source(&s, MIB);
    let out = start_host(&[
        "--exec".into(),
        "true".into(),
        "--exec".into(),
        "true".into(),
        "--record".into(),
        s.root.join("rec.tsv").display().to_string(),
        src.display().to_string(),
    ])
    .wait_with_output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("put {device} in the --record path"), "{err}");
    assert!(!s.root.join("rec.tsv").exists());
}

#[test]
fn four_devices_from_one_url_cost_the_server_one_copy() {
    let s = Scratch::new("fleet-http");
    let nginx = feedfs_tests::nginx::Nginx::start(&s.dir("nginx"));
    const SIZE: u64 = 24 * MIB + 1234;
    write_file(&nginx.www().join("disk.img"), SIZE, 71, 0o644);
    let root = s.dir("devices");
    let mut args: Vec<String> = Vec::new();
    for i in 1..=4 {
        args.push("--exec".into());
        args.push(device_cmd(&root, &i.to_string()));
    }
    args.extend(["--rate".into(), "8M".into(), nginx.url("disk.img")]);
    let mut host = start_host(&args);
    // A demand far ahead of the stream on one device is served at once.
    let file = root.join("m2/disk.img");
    wait_for("the file on device 2", Duration::from_secs(30), || {
        fs::metadata(&file).is_ok_and(|m| m.len() == SIZE)
    });
    let at = 20 * MIB + 3 * PAGE;
    let t0 = Instant::now();
    assert!(read_at(&file, at, 4096).unwrap() == content(71, at, 4096));
    let demand = t0.elapsed();
    let status = wait_exit(&mut host, Duration::from_secs(60));
    let mut err = String::new();
    host.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    for i in 1..=4 {
        let got = fs::read(root.join(format!("m{i}/disk.img"))).unwrap();
        assert!(
            got == content(71, 0, SIZE as usize),
            "device {i} holds other bytes"
        );
    }
    // nginx's own count of the body bytes it sent, for four devices.
    let sent = nginx.bytes_sent();
    assert!(
        (SIZE..=SIZE * 11 / 10).contains(&sent),
        "nginx sent {sent} bytes for a {SIZE}-byte file to four devices"
    );
    assert!(demand < Duration::from_secs(2), "a demand took {demand:?}");
    eprintln!("nginx sent {sent} bytes for {SIZE}; a demand ahead of the stream took {demand:?}");
    stop_all_named(&root, &["1", "2", "3", "4"]);
}

#[test]
fn a_device_far_behind_streams_from_a_url_with_a_fetch_ahead_of_its_own() {
    let s = Scratch::new("fleet-behind");
    let nginx = feedfs_tests::nginx::Nginx::start(&s.dir("nginx"));
    const SIZE: u64 = 32 * MIB + 777;
    write_file(&nginx.www().join("disk.img"), SIZE, 72, 0o644);
    let root = s.dir("devices");
    // Device 2 starts 1.5 s after device 1, some 12 MiB behind it: further
    // than a 1 MiB cache reaches, so each reads the server on its own.
    let late = format!("sleep 1.5; {}", device_cmd(&root, "2"));
    let args: Vec<String> = [
        "--exec",
        &device_cmd(&root, "1"),
        "--exec",
        &late,
        "--rate",
        "8M",
        "--cache",
        "1M",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([nginx.url("disk.img")])
    .collect();
    let out = start_host(&args).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for i in 1..=2 {
        let got = fs::read(root.join(format!("m{i}/disk.img"))).unwrap();
        assert!(
            got == content(72, 0, SIZE as usize),
            "device {i} holds other bytes"
        );
    }
    // Runs are 16 KiB at --rate 8M (the shortest rated run). Both streams are fetched ahead 4
    // MiB a request; with one stream followed, the one behind would have
    // cost a request per run (thousands).
    let gets = nginx.requests().iter().filter(|r| r.0 == "GET").count() as u64;
    let sent = nginx.bytes_sent();
    eprintln!("nginx: {gets} requests, {sent} bytes for two devices of a {SIZE}-byte file");
    assert!(gets <= 2 * SIZE.div_ceil(MIB) + 40, "{gets} requests");
    assert!(sent <= 2 * SIZE + 8 * MIB, "nginx sent {sent} bytes");
    stop_all_named(&root, &["1", "2"]);
}

#[test]
fn a_device_whose_disk_fills_fails_alone() {
    let s = Scratch::new("fleet-full");
    let src = source(&s, 16 * MIB);
    let root = s.dir("devices");
    let commands: Vec<String> = (1..=3).map(|i| device_cmd(&root, &i.to_string())).collect();
    // Device 2's store is a 4 MiB tmpfs: it cannot hold the 16 MiB file.
    let full = root.join("s2");
    fs::create_dir_all(&full).unwrap();
    mount_tmpfs(&full, 4 * MIB);
    let mut args: Vec<String> = Vec::new();
    for c in commands {
        args.push("--exec".into());
        args.push(c);
    }
    args.push(src.display().to_string());
    let out = start_host(&args).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("device 2: failed: ") && err.contains("NoSpace"),
        "{err}"
    );
    for i in [1, 3] {
        assert!(
            err.contains(&format!("device {i}: pushed 6 files")),
            "{err}"
        );
        assert_same_tree(&src, &root.join(format!("m{i}/src")));
    }
    assert!(err.contains("2 of 3 devices hold everything"), "{err}");
    stop_all_named(&root, &["1", "2", "3"]);
}
