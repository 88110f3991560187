//! `feedfs-host usb-check`: is this USB link sound, and how fast is it?
//!
//! Against `feedfs-device usb-check` on the device, it sends echo
//! transfers of sizes around and at whole multiples of 512 and 1024 bytes
//! (the max packet sizes of high speed and SuperSpeed), each of which comes
//! back only if the zero-length packet rule holds both ways, then streams
//! transfers of the size a push uses into the device's sink and times them:
//! the link's raw bulk rate, the ceiling a push can reach. The command
//! language is in `docs/protocol.md`, section 7.4.

use std::io;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use feedfs_protocol::usb::TRANSFER_SIZE;
use std::sync::atomic::AtomicBool;

use crate::link::usb::{self, transfer, Claimed};

/// Echo sizes: around one packet, around two, whole packets, a whole transfer.
const ECHO_SIZES: [usize; 12] = [
    1,
    511,
    512,
    513,
    1023,
    1024,
    1025,
    2048,
    4096,
    65536,
    TRANSFER_SIZE - 512,
    TRANSFER_SIZE,
];

/// What the check found.
pub struct Report {
    pub failures: usize,
    /// Bytes per second of the raw bulk stream.
    pub rate: f64,
}

/// Run the check on the device with `serial` (or the only one).
pub fn check(serial: Option<&str>, stream_for: Duration) -> anyhow::Result<Report> {
    let ctx = usb::context()?;
    let found = usb::pick(usb::find(&ctx)?, serial)
        .map_err(anyhow::Error::msg)?
        .context("no feedfs device attached (is feedfs-device usb-check running on it?)")?;
    say(&format!("device: {}", found.describe()))?;
    let usb = usb::claim(&found)?;
    let packet = found.packet_out;
    let never = AtomicBool::new(false);
    let mut failures = 0;
    let mut buf = vec![0u8; TRANSFER_SIZE];
    for size in ECHO_SIZES {
        let data: Vec<u8> = std::iter::once(b'E')
            .chain((1..size).map(|i| (i % 251) as u8))
            .collect();
        let t0 = Instant::now();
        transfer(&usb.handle, found.ep_out, &data, packet, &never)?;
        let result = read_one(&usb, found.ep_in, &mut buf, Duration::from_secs(2));
        let packets = size.div_ceil(packet);
        let line = format!(
            "echo {size:>7} bytes ({packets} packet{} of {packet}{}):",
            if packets == 1 { "" } else { "s" },
            if size.is_multiple_of(packet) {
                ", ZLP both ways"
            } else {
                ""
            }
        );
        match result {
            Ok(n) if buf[..n] == data[..] => say(&format!(
                "{line} ok, {:.2} ms",
                t0.elapsed().as_secs_f64() * 1e3
            ))?,
            Ok(n) => {
                failures += 1;
                say(&format!(
                    "{line} FAIL: {n} bytes came back, not the {size} sent"
                ))?;
            }
            Err(e) => {
                failures += 1;
                say(&format!("{line} FAIL: {e}"))?;
            }
        }
    }

    // The raw rate: the same transfers a push makes, as fast as they go.
    transfer(&usb.handle, found.ep_out, b"S", packet, &never)?;
    let chunk = vec![0u8; TRANSFER_SIZE];
    let limit = stream_for;
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < limit {
        transfer(&usb.handle, found.ep_out, &chunk, packet, &never)?;
        sent += chunk.len() as u64;
    }
    let mut finish = vec![b'F'];
    finish.extend_from_slice(&sent.to_le_bytes());
    transfer(&usb.handle, found.ep_out, &finish, packet, &never)?;
    let n = read_one(&usb, found.ep_in, &mut buf, Duration::from_secs(10))
        .context("no answer from the device's sink")?;
    let elapsed = start.elapsed().as_secs_f64();
    if n != 9 || buf[0] != b'S' {
        bail!("the device's sink answered {n} bytes, not its count");
    }
    let got = u64::from_le_bytes(buf[1..9].try_into().expect("9 bytes"));
    if got != sent {
        failures += 1;
        say(&format!(
            "raw bulk: FAIL: sent {sent} bytes, the device counted {got}"
        ))?;
    }
    let rate = sent as f64 / elapsed;
    say(&format!(
        "raw bulk: {:.1} MB/s ({} MiB in {:.2} s, transfers of {} KiB)",
        rate / 1e6,
        sent >> 20,
        elapsed,
        TRANSFER_SIZE >> 10
    ))?;
    transfer(&usb.handle, found.ep_out, b"Q", packet, &never)?;
    Ok(Report { failures, rate })
}

/// One line of the report on stdout (dropped once stdout is closed).
fn say(line: &str) -> io::Result<()> {
    feedfs_protocol::io::print_stdout(|out| writeln!(out, "{line}"))
}

/// One whole transfer from the device, within `limit`.
fn read_one(usb: &Claimed, ep: u8, buf: &mut [u8], limit: Duration) -> io::Result<usize> {
    let deadline = Instant::now() + limit;
    loop {
        match usb.handle.read_bulk(ep, buf, Duration::from_millis(100)) {
            Ok(0) => {}
            Ok(n) => return Ok(n),
            Err(rusb::Error::Timeout) if Instant::now() < deadline => {}
            Err(rusb::Error::Timeout) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "nothing came back within {} s (a zero-length packet missing?)",
                        limit.as_secs()
                    ),
                ))
            }
            Err(e) => return Err(io::Error::other(format!("USB: {e}"))),
        }
    }
}
