//! Pushes from remote sources (HTTP(S) servers, S3-compatible stores):
//! a daemon and a host over pipes, the host given its arguments and any
//! environment (credentials), its stderr kept beside the store.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::bin;
use crate::peers::{checked_read, device_command, stop_device, wait_exit, Read};

/// What a push is given: arguments for the daemon, environment and
/// arguments for the host.
#[derive(Default, Clone, Copy)]
pub struct PushArgs<'a> {
    pub device: &'a [&'a str],
    pub env: &'a [(&'a str, String)],
    pub host: &'a [&'a str],
}

/// A daemon on `mnt` and `store` and a host pushing `args.host` to it over
/// pipes, the host's stderr in `store.host-err`.
pub fn start_push_with(mnt: &Path, store: &Path, args: PushArgs) -> (Child, Child) {
    let mut device = device_command(mnt, store, "--stdio")
        .args(args.device)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(store.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
    let host = Command::new(bin("feedfs-host"))
        .args(["push", "--stdio"])
        .args(args.host)
        .envs(args.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::from(device.stdout.take().unwrap()))
        .stdout(Stdio::from(device.stdin.take().unwrap()))
        .stderr(File::create(store.with_extension("host-err")).unwrap())
        .spawn()
        .unwrap();
    (device, host)
}

/// [`start_push_with`] the host's arguments alone.
pub fn start_push(mnt: &Path, store: &Path, args: &[&str]) -> (Child, Child) {
    start_push_with(
        mnt,
        store,
        PushArgs {
            host: args,
            ..PushArgs::default()
        },
    )
}

/// The host's stderr so far.
pub fn host_err(store: &Path) -> String {
    fs::read_to_string(store.with_extension("host-err")).unwrap_or_default()
}

/// Run one push to its end: the daemon (left serving), status and stderr.
pub fn push_with(mnt: &Path, store: &Path, args: PushArgs) -> (Child, ExitStatus, String) {
    let (device, mut host) = start_push_with(mnt, store, args);
    let status = wait_exit(&mut host, Duration::from_secs(120));
    (device, status, host_err(store))
}

/// [`push_with`] the host's arguments alone.
pub fn push(mnt: &Path, store: &Path, args: &[&str]) -> (Child, ExitStatus, String) {
    push_with(
        mnt,
        store,
        PushArgs {
            host: args,
            ..PushArgs::default()
        },
    )
}

/// Stop the daemon and wait for it.
pub fn stop(mut device: Child, mnt: &Path) {
    stop_device(device.id() as i32, mnt);
    device.wait().unwrap();
}

/// `feedfs-host push --stdio ARGS` with nothing on the other end, with
/// `env`: for errors found before the link is used.
pub fn host_alone_with(env: &[(&str, String)], args: &[&str]) -> (ExitStatus, String) {
    let out = Command::new(bin("feedfs-host"))
        .args(["push", "--stdio"])
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`host_alone_with`] no more environment.
pub fn host_alone(args: &[&str]) -> (ExitStatus, String) {
    host_alone_with(&[], args)
}

/// Whether two files hold the same bytes.
pub fn same(a: &Path, b: &Path) -> bool {
    fs::read(a).unwrap() == fs::read(b).unwrap()
}

/// After a push stopped on a changed source: every `step`th page of
/// `file` reads as `old` (the version announced) or fails (EIO), never
/// anything else, each within `timeout`.
pub fn only_old_or_eio(file: &Path, old: &[u8], step: usize, timeout: Duration) {
    let pages = old.len() as u64 / crate::PAGE;
    for page in (0..pages).step_by(step) {
        let at = page * crate::PAGE;
        let (read, _) = checked_read(
            file,
            at,
            &old[at as usize..at as usize + 4096],
            timeout,
            "after the change",
        );
        assert!(
            matches!(read, Read::Good | Read::Eio),
            "page {page}: {read:?}"
        );
    }
}
