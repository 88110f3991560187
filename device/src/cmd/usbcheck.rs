//! `feedfs-device usb-check`: the device half of the host's link check.
//!
//! It speaks a tiny command language of whole bulk transfers, described in
//! `docs/protocol.md` (section 7.4), not feedfs frames: a transfer starting
//! with `E` comes back as one transfer with the same bytes (so a
//! zero-length packet is checked both ways: the device's read ends only if
//! the host sent one, the host's read only if the device did); `S` starts a
//! sink that counts what arrives, in reads of the same size a feedfs link
//! uses, until a 9-byte transfer `F` + the count the host sent, and answers
//! `S` + the count it got (the host times this: the raw bulk rate); `Q`
//! ends the check.

use std::fs::File;
use std::io::{self, Read, Write};

use anyhow::Context;
use feedfs_protocol::usb::{needs_zlp, TRANSFER_SIZE};

use crate::link::usb::Ffs;

/// Answer the host's check until it sends `Q`.
pub fn run(ffs: &Ffs) -> anyhow::Result<()> {
    loop {
        let (mut input, mut output, packet) = ffs.endpoints()?;
        log::info!("usb-check: ready ({packet}-byte packets)");
        match serve(&mut input, &mut output, packet) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESHUTDOWN) => {
                log::info!("usb-check: the host went away; waiting for it");
            }
            Err(e) => return Err(e).context("usb-check failed"),
        }
    }
}

fn serve(input: &mut File, output: &mut File, packet: usize) -> io::Result<()> {
    let mut buf = vec![0u8; TRANSFER_SIZE];
    loop {
        let n = input.read(&mut buf)?;
        match buf[..n].first() {
            None => {} // a stray zero-length packet
            Some(b'E') => {
                log::debug!("usb-check: echo {n} bytes");
                send(output, &buf[..n], packet)?;
            }
            Some(b'S') if n == 1 => {
                let mut got = 0u64;
                loop {
                    let n = input.read(&mut buf)?;
                    if n == 9 && buf[0] == b'F' {
                        break;
                    }
                    got += n as u64;
                }
                log::info!("usb-check: sink took {got} bytes");
                let mut reply = vec![b'S'];
                reply.extend_from_slice(&got.to_le_bytes());
                send(output, &reply, packet)?;
            }
            Some(b'Q') => return Ok(()),
            Some(&c) => log::warn!("usb-check: unknown command {c:#04x} ({n} bytes)"),
        }
    }
}

/// One transfer, then a zero-length packet if it is whole packets.
fn send(output: &mut File, data: &[u8], packet: usize) -> io::Result<()> {
    output.write_all(data)?;
    if needs_zlp(data.len(), packet) {
        // A zero-length write: exactly one zero-length packet.
        let _sent: usize = output.write(&[])?;
    }
    Ok(())
}
