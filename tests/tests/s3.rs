//! End to end, S3 objects as sources, against a real S3-compatible server
//! on 127.0.0.1 (`s3s-fs`, [`feedfs_tests::s3s`]) that checks every
//! request's Signature Version 4: a prefix served as a directory and an
//! object as a file, byte-exact through the mount; the server stopped
//! mid-stream and started again; a rerun that resumes from the store; an
//! object changed during the push; and the clear errors (wrong key, no
//! object, no credentials), none of them showing the secret key. Needs
//! root, /dev/fuse and s3s-fs; fails, never skips, without.

use std::fs;
use std::time::Duration;

use feedfs_tests::peers::{checked_read, wait_exit, Read};
use feedfs_tests::s3s::{S3Server, SECRET_KEY};
use feedfs_tests::sourced::*;
use feedfs_tests::*;

const MIB: u64 = 1 << 20;

#[test]
fn a_prefix_is_a_directory_and_an_object_a_file_byte_exact_with_the_secret_hidden() {
    let s = Scratch::new("s3-exact");
    let server = S3Server::start(&s.dir("s3"), &["lab"]);
    let objects = [
        ("imgs/disk.img", 3 * MIB + 123, 11),
        ("imgs/deep/er/x.dat", 50_000, 12),
        ("imgs/a b+c.bin", 9_000, 13),
        ("imgs/..odd", 10, 14),
        ("app.apk", 2 * MIB, 15),
    ];
    for (key, size, seed) in objects {
        write_file(&server.object("lab", key), size, seed, 0o644);
    }
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let env = server.env();
    let endpoint = server.endpoint();
    let (device, status, stderr) = push_with(
        &mnt,
        &store,
        PushArgs {
            env: &env,
            host: &[
                "-vv",
                "--endpoint-url",
                &endpoint,
                "s3://lab/imgs/",
                "s3://lab/app.apk",
            ],
            ..PushArgs::default()
        },
    );
    assert!(status.success(), "push: {status}: {stderr}");
    for (key, served) in [
        ("imgs/disk.img", "imgs/disk.img"),
        ("imgs/deep/er/x.dat", "imgs/deep/er/x.dat"),
        ("imgs/a b+c.bin", "imgs/a b+c.bin"),
        ("imgs/..odd", "imgs/..odd"),
        ("app.apk", "app.apk"),
    ] {
        assert!(
            same(&server.object("lab", key), &mnt.join(served)),
            "{key} byte-exact"
        );
    }
    assert!(mnt.join("imgs/deep/er").is_dir());
    assert!(
        !stderr.contains(SECRET_KEY),
        "the secret key in stderr: {stderr}"
    );
    stop(device, &mnt);
}

/// A prefix of a few hundred objects: every one of them served, in its
/// directory, byte-exact (s3s-fs lists no ETags, so each is probed, several
/// at a time; the versions of an S3 listing are taken from the listing).
#[test]
fn a_prefix_of_hundreds_of_objects_is_served_whole_and_byte_exact() {
    let s = Scratch::new("s3-many");
    let server = S3Server::start(&s.dir("s3"), &["lab"]);
    let keys: Vec<(String, u64)> = (0..300u64)
        .map(|k| {
            (
                format!("many/d{}/obj{k:03}.bin", k % 7),
                1 + k * 211 % 20_000,
            )
        })
        .collect();
    for (k, (key, size)) in keys.iter().enumerate() {
        write_file(&server.object("lab", key), *size, 100 + k as u64, 0o644);
    }
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let env = server.env();
    let endpoint = server.endpoint();
    let (device, status, stderr) = push_with(
        &mnt,
        &store,
        PushArgs {
            env: &env,
            host: &["--endpoint-url", &endpoint, "s3://lab/many/"],
            ..PushArgs::default()
        },
    );
    assert!(status.success(), "push: {status}: {stderr}");
    let mut served = 0;
    for d in 0..7 {
        served += fs::read_dir(mnt.join(format!("many/d{d}")))
            .unwrap()
            .count();
    }
    assert_eq!(served, keys.len(), "every object served");
    for (key, _) in &keys {
        assert!(
            same(&server.object("lab", key), &mnt.join(key)),
            "{key} byte-exact"
        );
    }
    stop(device, &mnt);
}

#[test]
fn the_server_stopped_mid_stream_is_waited_for_and_a_rerun_resumes_from_the_store() {
    let s = Scratch::new("s3-outage");
    let mut server = S3Server::start(&s.dir("s3"), &["lab"]);
    let img = server.object("lab", "big.img");
    write_file(&img, 16 * MIB, 21, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let env = server.env();
    let endpoint = server.endpoint();
    let host = [
        "--rate",
        "4M",
        "--endpoint-url",
        &endpoint,
        "s3://lab/big.img",
    ];
    let (device, mut pushing) = start_push_with(
        &mnt,
        &store,
        PushArgs {
            env: &env,
            host: &host,
            ..PushArgs::default()
        },
    );
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    // A page near the end, while the stream is at the start: a demand.
    let at = 15 * MIB;
    let (read, _) = checked_read(
        &mnt.join("big.img"),
        at,
        &content(21, at, 4096),
        Duration::from_secs(10),
        "a demand during the stream",
    );
    assert_eq!(read, Read::Good);
    server.stop();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        pushing.try_wait().unwrap().is_none(),
        "the host gave up at once"
    );
    server.resume();
    let status = wait_exit(&mut pushing, Duration::from_secs(60));
    let stderr = host_err(&store);
    assert!(status.success(), "push: {status}: {stderr}");
    assert!(
        stderr.contains("retrying"),
        "the outage is reported: {stderr}"
    );
    assert!(same(&img, &mnt.join("big.img")), "byte-exact");
    stop(device, &mnt);

    let (device, status, stderr) = push_with(
        &mnt,
        &store,
        PushArgs {
            env: &env,
            host: &host[2..],
            ..PushArgs::default()
        },
    );
    assert!(status.success(), "rerun: {status}: {stderr}");
    let all = (16 * MIB / PAGE).to_string();
    assert!(
        stderr.contains(&format!("{all} pages already on the device")),
        "the rerun resumes from the store: {stderr}"
    );
    assert!(
        same(&img, &mnt.join("big.img")),
        "byte-exact after the rerun"
    );
    stop(device, &mnt);
}

#[test]
fn an_object_changed_during_the_push_stops_it_with_no_mixed_content() {
    let s = Scratch::new("s3-changed");
    let server = S3Server::start(&s.dir("s3"), &["lab"]);
    let img = server.object("lab", "big.img");
    write_file(&img, 16 * MIB, 31, 0o644);
    let old = fs::read(&img).unwrap();
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let env = server.env();
    let endpoint = server.endpoint();
    let (device, mut pushing) = start_push_with(
        &mnt,
        &store,
        PushArgs {
            device: &["--read-timeout", "1s"],
            env: &env,
            host: &[
                "--rate",
                "4M",
                "--endpoint-url",
                &endpoint,
                "s3://lab/big.img",
            ],
        },
    );
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    std::thread::sleep(Duration::from_millis(500));
    let new = s.root.join("new.img");
    write_file(&new, 16 * MIB, 32, 0o644);
    fs::rename(&new, &img).unwrap();
    let status = wait_exit(&mut pushing, Duration::from_secs(30));
    let stderr = host_err(&store);
    assert!(!status.success(), "the push must stop");
    assert!(
        stderr.contains("s3://lab/big.img changed while it was being pushed"),
        "{stderr}"
    );
    // Whatever the device holds is the old version, never the new one.
    only_old_or_eio(&mnt.join("big.img"), &old, 97, Duration::from_secs(10));
    stop(device, &mnt);
}

#[test]
fn a_wrong_key_no_object_and_no_credentials_are_clear_errors_without_the_secret() {
    let s = Scratch::new("s3-errors");
    let server = S3Server::start(&s.dir("s3"), &["lab"]);
    write_file(&server.object("lab", "f.img"), MIB, 41, 0o644);
    let endpoint = server.endpoint();
    let wrong: Vec<(&str, String)> = server
        .env()
        .into_iter()
        .map(|(k, v)| match k {
            "AWS_SECRET_ACCESS_KEY" => (k, "wrong-SECRET-value".to_string()),
            _ => (k, v),
        })
        .collect();
    let none: Vec<(&str, String)> = vec![
        ("AWS_ACCESS_KEY_ID", String::new()),
        ("AWS_SECRET_ACCESS_KEY", String::new()),
        ("AWS_PROFILE", "feedfs-none".to_string()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".to_string()),
        ("AWS_CONFIG_FILE", "/nonexistent".to_string()),
    ];
    let cases = [
        (&wrong, "s3://lab/f.img", "403 Forbidden"),
        (&server.env(), "s3://lab/missing.img", "404 Not Found"),
        (&none, "s3://lab/f.img", "no S3 credentials"),
        (
            &server.env(),
            "s3://Bad_Bucket/f.img",
            "not a valid S3 bucket name",
        ),
    ];
    for (env, url, what) in cases {
        let (status, stderr) = host_alone_with(env, &["--endpoint-url", &endpoint, url]);
        assert_eq!(status.code(), Some(1), "{url}: {stderr}");
        assert!(stderr.contains(what), "{url}: wants {what:?}: {stderr}");
        assert!(
            !stderr.contains("wrong-SECRET") && !stderr.contains(SECRET_KEY),
            "{stderr}"
        );
    }
}
