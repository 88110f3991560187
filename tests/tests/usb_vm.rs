//! The USB link end to end through the real Linux USB stack: runs
//! `tests/usb-vm/run`, which boots a QEMU guest whose kernel wires a virtual
//! host controller to a virtual USB device controller (dummy_hcd), with
//! feedfs-device as a FunctionFS gadget on one side and feedfs-host on the
//! other: link check, a 64 MiB push with lazy reads, an unbind and rebind in
//! mid-stream, and `--usb-gadget` mode; then four gadgets on four virtual
//! UDCs fed by one `feedfs-host push --usb --all --wait` (one unbound and
//! rebound in mid-stream while the others go on, all four byte for byte
//! equal, exit status 0 on SIGTERM) and a plain `push --usb --all`; at high
//! speed and at SuperSpeed.
//!
//! Needs qemu-system-x86_64, busybox-static, cpio and apt-get (the kernel is
//! fetched once and cached under target/usb-vm/); without them these tests
//! fail, they never skip. `scripts/test` installs what is missing.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// One guest at a time: two would compete for the CPU and skew the throughput.
static ONE_GUEST: Mutex<()> = Mutex::new(());

fn run_guest(speed: &str) {
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("usb-vm/run");
    let out = Command::new(&script)
        .arg(speed)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The guest's step and result lines always reach the log (a direct write
    // to stderr is not captured by the test harness); its whole console is
    // shown when the test fails (or with --nocapture).
    let summary: String = stdout
        .lines()
        .filter(|l| l.starts_with("USBVM "))
        .map(|l| format!("{l}\n"))
        .collect();
    let _ = std::io::stderr().write_all(summary.as_bytes());
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "tests/usb-vm/run {speed} failed ({}); the guest's output is above",
        out.status
    );
    let pass = format!("USBVM {speed}: PASS");
    assert!(
        stdout.lines().any(|l| l == pass),
        "tests/usb-vm/run {speed} exited 0 without printing '{pass}'"
    );
}

#[test]
fn usb_high_speed_in_a_vm() {
    run_guest("high");
}

#[test]
fn usb_superspeed_in_a_vm() {
    run_guest("super");
}
