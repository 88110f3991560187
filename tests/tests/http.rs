//! End to end, HTTP(S) URLs as sources, against a real nginx on 127.0.0.1
//! ([`feedfs_tests::nginx`]): byte-exact reads through the mount over HTTP
//! and HTTPS, a demand answered during the stream, a restarted push that
//! fetches only what the store lacks (counted in nginx's access log), the
//! server stopped mid-stream and started again, an object changed on the
//! server, and the clear errors (404, 403, Range ignored, TLS, DNS).
//! Secrets (a header value, URL credentials, a query) appear in no output.
//! Needs root, /dev/fuse, nginx and openssl; fails, never skips, without.

use std::fs::{self, File};
use std::process::{Command, Stdio};
use std::time::Duration;

use feedfs_tests::nginx::{Nginx, TOKEN};
use feedfs_tests::peers::{checked_read, stop_device, wait_exit, Read};
use feedfs_tests::sourced::*;
use feedfs_tests::*;

const MIB: u64 = 1 << 20;

#[test]
fn urls_over_http_and_https_are_byte_exact_and_secrets_stay_hidden() {
    let s = Scratch::new("http-exact");
    let nginx = Nginx::start(&s.dir("nginx"));
    let www = nginx.www();
    write_file(&www.join("disk.img"), 6 * MIB + 123, 51, 0o644);
    write_file(&www.join("app.apk"), 3 * MIB, 52, 0o644);
    write_file(&www.join("tiny"), 10, 53, 0o644);
    write_file(&www.join("empty"), 0, 54, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let record = s.root.join("record");
    let private = nginx.url("private/app.apk?X-Amz-Signature=q5ecret");
    let header = format!("Authorization: Bearer {TOKEN}");
    let cacert = nginx.cert();
    let (device, status, stderr) = push(
        &mnt,
        &store,
        &[
            "-vv",
            "--record",
            record.to_str().unwrap(),
            "--header",
            &header,
            "--cacert",
            cacert.to_str().unwrap(),
            &nginx.https_url("disk.img"),
            &private,
            &nginx.url("moved/tiny"),
            &format!("http://user:pa55word@127.0.0.1:{}/empty", nginx.http),
        ],
    );
    assert!(status.success(), "push: {status}: {stderr}");
    for name in ["disk.img", "app.apk", "tiny", "empty"] {
        assert!(same(&www.join(name), &mnt.join(name)), "{name} byte-exact");
        let mode = fs::metadata(mnt.join(name)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o444
        );
    }
    let record = fs::read_to_string(&record).unwrap();
    for secret in [TOKEN, "q5ecret", "pa55word"] {
        assert!(!stderr.contains(secret), "{secret} in stderr: {stderr}");
        assert!(!record.contains(secret), "{secret} in the record");
    }
    stop(device, &mnt);
}

#[test]
fn a_demand_is_answered_during_the_stream_and_a_restart_fetches_only_what_is_missing() {
    let s = Scratch::new("http-resume");
    let nginx = Nginx::start(&s.dir("nginx"));
    let img = nginx.www().join("big.img");
    write_file(&img, 32 * MIB, 61, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let url = nginx.url("big.img");
    let (mut device, mut host) = start_push(&mnt, &store, &["--rate", "4M", &url]);
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    // The stream is at the start; a page near the end is a demand.
    let at = 30 * MIB + 5 * PAGE;
    let (read, slowest) = checked_read(
        &mnt.join("big.img"),
        at,
        &content(61, at, 4096),
        Duration::from_secs(5),
        "a demand during the stream",
    );
    assert_eq!(read, Read::Good);
    assert!(
        slowest < Duration::from_secs(2),
        "the demand took {slowest:?}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        host.try_wait().unwrap().is_none(),
        "the push ended too soon"
    );
    signal(device.id() as i32, libc::SIGKILL);
    device.wait().unwrap();
    wait_exit(&mut host, Duration::from_secs(20));
    detach(&mnt);

    let before = nginx.bytes_sent();
    let record = s.root.join("record");
    let (device, status, stderr) =
        push(&mnt, &store, &["--record", record.to_str().unwrap(), &url]);
    assert!(status.success(), "resumed push: {status}: {stderr}");
    assert!(
        same(&img, &mnt.join("big.img")),
        "byte-exact after the resume"
    );
    let events = read_record(&record);
    let had = had_pages(&events);
    assert!(had > 0, "the store kept pages");
    let lacked = 32 * MIB - had * PAGE;
    let fetched = nginx.bytes_sent() - before;
    // One byte of probe, then at most 5 % over what was missing.
    assert!(
        fetched as f64 <= 1.05 * lacked as f64 + 1.0,
        "fetched {fetched} bytes for {lacked} missing"
    );
    eprintln!("resume: store lacked {lacked} bytes, nginx sent {fetched}");
    stop(device, &mnt);
}

#[test]
fn nginx_stopped_mid_stream_and_started_again_the_push_completes() {
    let s = Scratch::new("http-outage");
    let mut nginx = Nginx::start(&s.dir("nginx"));
    let img = nginx.www().join("big.img");
    write_file(&img, 24 * MIB, 71, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let (device, mut host) = start_push(&mnt, &store, &["--rate", "8M", &nginx.url("big.img")]);
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    std::thread::sleep(Duration::from_millis(700));
    nginx.stop();
    // A reader of a missing page waits through the outage (the device's
    // --read-timeout is 10 s) and gets the right bytes.
    let page = mnt.join("big.img");
    let reader = std::thread::spawn(move || {
        let at = 23 * MIB;
        checked_read(
            &page,
            at,
            &content(71, at, 4096),
            Duration::from_secs(10),
            "in the outage",
        )
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        host.try_wait().unwrap().is_none(),
        "the host gave up at once"
    );
    nginx.resume();
    let (read, slowest) = reader.join().unwrap();
    assert_eq!(read, Read::Good, "the read waited through the outage");
    assert!(
        slowest >= Duration::from_millis(1000),
        "it did wait: {slowest:?}"
    );
    let status = wait_exit(&mut host, Duration::from_secs(60));
    let stderr = host_err(&store);
    assert!(status.success(), "push: {status}: {stderr}");
    assert!(
        stderr.contains("retrying"),
        "the outage is reported: {stderr}"
    );
    assert!(same(&img, &mnt.join("big.img")), "byte-exact");
    stop(device, &mnt);
}

#[test]
fn an_object_changed_on_the_server_stops_the_push_with_no_mixed_content() {
    let s = Scratch::new("http-changed");
    let nginx = Nginx::start(&s.dir("nginx"));
    let img = nginx.www().join("big.img");
    write_file(&img, 16 * MIB, 81, 0o644);
    let old = fs::read(&img).unwrap();
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    // Missing pages fail after a second once the host is gone.
    let (device, mut host) = start_push_with(
        &mnt,
        &store,
        PushArgs {
            device: &["--read-timeout", "1s"],
            host: &["--rate", "4M", &nginx.url("big.img")],
            ..PushArgs::default()
        },
    );
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    std::thread::sleep(Duration::from_millis(500));
    // A new version, as a deploy writes it: a new file renamed over the old.
    let new = s.root.join("nginx/new.img");
    write_file(&new, 16 * MIB, 82, 0o644);
    File::options()
        .write(true)
        .open(&new)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(10))
        .unwrap();
    fs::rename(&new, &img).unwrap();
    let status = wait_exit(&mut host, Duration::from_secs(30));
    let stderr = host_err(&store);
    assert!(!status.success(), "the push must stop");
    assert!(
        stderr.contains(&format!(
            "{} changed while it was being pushed",
            nginx.url("big.img")
        )),
        "{stderr}"
    );
    // Whatever the device holds is the old version, never the new one.
    only_old_or_eio(&mnt.join("big.img"), &old, 401, Duration::from_secs(5));
    stop(device, &mnt);
}

#[test]
fn each_failure_is_a_clear_error_naming_the_url_without_its_secrets() {
    let s = Scratch::new("http-errors");
    let nginx = Nginx::start(&s.dir("nginx"));
    write_file(&nginx.www().join("f.img"), MIB, 91, 0o644);
    let cases = [
        (
            nginx.url("missing.img?sig=q5ecret"),
            "404 Not Found",
            nginx.url("missing.img?…"),
        ),
        (
            nginx.url("private/f.img"),
            "403 Forbidden",
            nginx.url("private/f.img"),
        ),
        (
            nginx.url("norange/f.img"),
            "ignores Range requests",
            nginx.url("norange/f.img"),
        ),
        (
            nginx.https_url("f.img"),
            "TLS failed",
            nginx.https_url("f.img"),
        ),
        (
            "http://feedfs-test.invalid/f.img".to_string(),
            "does not resolve",
            "http://feedfs-test.invalid/f.img".to_string(),
        ),
    ];
    for (url, what, shown) in cases {
        let (status, stderr) = host_alone(&["--header", &format!("X-Token: {TOKEN}"), &url]);
        assert_eq!(status.code(), Some(1), "{url}: {stderr}");
        assert!(stderr.contains(what), "{url}: wants {what:?}: {stderr}");
        assert!(stderr.contains(&shown), "{url}: wants {shown}: {stderr}");
        assert!(
            !stderr.contains("q5ecret") && !stderr.contains(TOKEN),
            "{stderr}"
        );
    }
}

#[test]
fn with_no_pc_the_host_runs_the_device_and_a_rerun_resumes_from_the_store() {
    let s = Scratch::new("http-nopc");
    let nginx = Nginx::start(&s.dir("nginx"));
    let img = nginx.www().join("app.img");
    write_file(&img, 8 * MIB, 95, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let exec = format!(
        "exec {} mount {} --store {} --stdio 2>>{}",
        bin("feedfs-device").display(),
        mnt.display(),
        store.display(),
        store.with_extension("err").display()
    );
    let url = nginx.url("app.img");
    let run = || {
        let out = Command::new(bin("feedfs-host"))
            .args(["push", "--exec", &exec, &url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, stderr) = run();
    assert!(status.success(), "first: {status}: {stderr}");
    assert!(same(&img, &mnt.join("app.img")), "byte-exact");
    stop_device(device_pid(&store), &mnt);
    wait_for("the daemon to exit", Duration::from_secs(10), || {
        !is_mounted(&mnt)
    });

    let before = nginx.bytes_sent();
    let (status, stderr) = run();
    assert!(status.success(), "second: {status}: {stderr}");
    assert!(same(&img, &mnt.join("app.img")), "byte-exact");
    // The probe's byte and the look for a zip's signatures: no page again.
    let fetched = nginx.bytes_sent() - before;
    assert!(fetched < PAGE, "the rerun fetched {fetched} bytes");
    eprintln!("rerun with a complete store: nginx sent {fetched} bytes");
    stop_device(device_pid(&store), &mnt);
}
