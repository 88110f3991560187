//! The USB link on the host, with rusb: finding feedfs devices, claiming
//! their interface, and the two bulk endpoints as a byte stream each way.
//!
//! A feedfs device is any USB device with an interface of class 0xff,
//! subclass 0x46, protocol 1 and two bulk endpoints, whatever its vendor and
//! product ids. Reads and writes run on separate threads (full duplex).
//! [`BulkWriter`] gathers frames into transfers of up to
//! [`TRANSFER_SIZE`] bytes, handed to its own thread, so one transfer is on
//! the wire while the next is filled, and follows a transfer that is a
//! whole number of packets with a zero-length packet. [`BulkReader`] reads
//! whole transfers and hands them out piecemeal. A timeout is not an error
//! (the peer was busy; the transfer is retried with what is left), a halted
//! endpoint is cleared and retried, and anything else (the device unplugged,
//! unbound or reset) ends the link with [`io::ErrorKind::ConnectionAborted`].

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use feedfs_protocol::io::TransferReader;
use feedfs_protocol::usb::{
    needs_zlp, INTERFACE_CLASS, INTERFACE_PROTOCOL, INTERFACE_SUBCLASS, TRANSFER_SIZE,
};
use rusb::{Context, Device, DeviceHandle, Direction, TransferType, UsbContext};

/// How long one bulk call waits before it looks again.
const POLL: Duration = Duration::from_millis(500);

/// A feedfs device on the bus.
pub struct Found {
    pub device: Device<Context>,
    pub bus: u8,
    pub address: u8,
    /// `None` when it has none or it could not be read.
    pub serial: Option<String>,
    /// Why the serial could not be read (no permission to open the device).
    pub serial_error: Option<String>,
    pub speed: rusb::Speed,
    pub interface: u8,
    pub ep_in: u8,
    pub ep_out: u8,
    pub packet_out: usize,
}

impl Found {
    /// One line of `feedfs-host devices`: serial, bus, address and speed,
    /// tab-separated (`SERIAL\t1\t4\thigh speed (480 Mbit/s)`).
    pub fn line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}",
            self.serial.as_deref().unwrap_or("(unreadable)"),
            self.bus,
            self.address,
            speed_name(self.speed)
        )
    }

    /// The same as a JSON object; `serial` is null when it could not be read.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "serial": self.serial,
            "bus": self.bus,
            "address": self.address,
            "speed": speed_name(self.speed),
        })
    }

    /// `bus 1 address 4, serial X, high speed (480 Mbit/s)`.
    pub fn describe(&self) -> String {
        format!(
            "bus {} address {}, serial {}, {}",
            self.bus,
            self.address,
            self.serial.as_deref().unwrap_or("(unreadable)"),
            speed_name(self.speed)
        )
    }
}

pub fn speed_name(s: rusb::Speed) -> &'static str {
    match s {
        rusb::Speed::Low => "low speed (1.5 Mbit/s)",
        rusb::Speed::Full => "full speed (12 Mbit/s)",
        rusb::Speed::High => "high speed (480 Mbit/s)",
        rusb::Speed::Super => "SuperSpeed (5 Gbit/s)",
        rusb::Speed::SuperPlus => "SuperSpeed+ (10 Gbit/s)",
        _ => "unknown speed",
    }
}

/// Every feedfs device attached now.
pub fn find(ctx: &Context) -> rusb::Result<Vec<Found>> {
    let mut out = Vec::new();
    for device in ctx.devices()?.iter() {
        let Ok(desc) = device.device_descriptor() else {
            continue;
        };
        let Ok(config) = device.active_config_descriptor() else {
            continue;
        };
        let matching = config.interfaces().flat_map(|i| i.descriptors()).find(|d| {
            d.class_code() == INTERFACE_CLASS
                && d.sub_class_code() == INTERFACE_SUBCLASS
                && d.protocol_code() == INTERFACE_PROTOCOL
        });
        let Some(iface) = matching else { continue };
        let bulk = |dir: Direction| {
            iface
                .endpoint_descriptors()
                .find(|e| e.transfer_type() == TransferType::Bulk && e.direction() == dir)
        };
        let (Some(ep_in), Some(ep_out)) = (bulk(Direction::In), bulk(Direction::Out)) else {
            continue;
        };
        let (serial, serial_error) = match desc.serial_number_string_index() {
            None => (None, None),
            Some(_) => match device
                .open()
                .and_then(|h| h.read_serial_number_string_ascii(&desc))
            {
                Ok(serial) => (Some(serial), None),
                Err(e) => (None, Some(e.to_string())),
            },
        };
        out.push(Found {
            bus: device.bus_number(),
            address: device.address(),
            serial,
            serial_error,
            speed: device.speed(),
            interface: iface.interface_number(),
            ep_in: ep_in.address(),
            ep_out: ep_out.address(),
            packet_out: usize::from(ep_out.max_packet_size() & 0x7ff).max(1),
            device,
        });
    }
    Ok(out)
}

/// The device's interface, claimed; released when the last user drops it.
pub struct Claimed {
    pub handle: DeviceHandle<Context>,
    interface: u8,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        let _ = self.handle.release_interface(self.interface);
    }
}

/// Open `found` and claim its interface: its bulk endpoints as a reader and
/// a writer.
pub fn open(found: &Found) -> io::Result<(BulkReader, BulkWriter)> {
    let claimed = Arc::new(claim(found)?);
    Ok((
        bulk_reader(claimed.clone(), found.ep_in),
        BulkWriter::new(claimed, found.ep_out, found.packet_out),
    ))
}

/// Open `found` and claim its interface.
pub fn claim(found: &Found) -> io::Result<Claimed> {
    let handle = found.device.open().map_err(|e| match e {
        rusb::Error::Access => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "no permission to open the USB device on bus {} address {} \
                 (install udev/70-feedfs.rules, see the README, or run as root)",
                found.bus, found.address
            ),
        ),
        e => usb_error(e),
    })?;
    // A vendor-specific interface has no kernel driver; if one is bound, take it over.
    let _ = handle.set_auto_detach_kernel_driver(true);
    handle
        .claim_interface(found.interface)
        .map_err(|e| match e {
            rusb::Error::Busy => io::Error::new(
                io::ErrorKind::ResourceBusy,
                "the feedfs device is in use by another program (another feedfs-host?)",
            ),
            e => usb_error(e),
        })?;
    Ok(Claimed {
        handle,
        interface: found.interface,
    })
}

fn usb_error(e: rusb::Error) -> io::Error {
    match e {
        rusb::Error::NoDevice | rusb::Error::Io | rusb::Error::NotFound => io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("the USB device went away ({e})"),
        ),
        e => io::Error::other(format!("USB: {e}")),
    }
}

/// The bulk IN endpoint as a byte stream, a whole transfer at a time.
pub type BulkReader = TransferReader<Box<dyn FnMut(&mut Vec<u8>) -> io::Result<usize> + Send>>;

fn bulk_reader(usb: Arc<Claimed>, ep: u8) -> BulkReader {
    TransferReader::new(
        TRANSFER_SIZE,
        Box::new(move |buf: &mut Vec<u8>| loop {
            match usb.handle.read_bulk(ep, buf, POLL) {
                Ok(n) => return Ok(n),
                Err(rusb::Error::Timeout | rusb::Error::Interrupted) => {} // a quiet device
                Err(rusb::Error::Pipe) => {
                    log::warn!("USB IN endpoint halted; clearing it");
                    usb.handle.clear_halt(ep).map_err(usb_error)?;
                }
                Err(e) => return Err(usb_error(e)),
            }
        }),
    )
}

/// The bulk OUT endpoint as a byte stream, written in transfers by a thread.
pub struct BulkWriter {
    buf: Vec<u8>,
    queue: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
    failed: Arc<Mutex<Option<String>>>,
    closing: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BulkWriter {
    fn new(usb: Arc<Claimed>, ep: u8, packet: usize) -> BulkWriter {
        // One transfer queued while one is on the wire.
        let (queue, transfers) = mpsc::sync_channel::<Vec<u8>>(1);
        let (spare_tx, spare) = mpsc::channel();
        let failed = Arc::new(Mutex::new(None));
        let closing = Arc::new(AtomicBool::new(false));
        let (f, c) = (failed.clone(), closing.clone());
        let thread = thread::Builder::new()
            .name("usb-writer".into())
            .spawn(move || {
                for mut t in transfers {
                    if let Err(e) = transfer(&usb.handle, ep, &t, packet, &c) {
                        *f.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                        return;
                    }
                    t.clear();
                    let _ = spare_tx.send(t);
                }
            })
            .ok();
        BulkWriter {
            buf: Vec::with_capacity(TRANSFER_SIZE),
            queue: Some(queue),
            spare,
            failed,
            closing,
            thread,
        }
    }

    fn failure(&self) -> io::Error {
        let text = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "the USB writer stopped".into());
        io::Error::new(io::ErrorKind::ConnectionAborted, text)
    }

    /// Hand the gathered bytes to the writer thread as one transfer.
    fn ship(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(TRANSFER_SIZE));
        let full = std::mem::replace(&mut self.buf, next);
        match &self.queue {
            Some(q) if q.send(full).is_ok() => Ok(()),
            _ => Err(self.failure()),
        }
    }
}

impl Write for BulkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() == TRANSFER_SIZE {
            self.ship()?;
        }
        let n = data.len().min(TRANSFER_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ship()?;
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            return Err(self.failure());
        }
        Ok(())
    }
}

impl Drop for BulkWriter {
    fn drop(&mut self) {
        let _ = self.ship();
        // What is queued still goes, but a device that stopped reading no
        // longer holds this process up.
        self.closing.store(true, Ordering::SeqCst);
        self.queue = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Write `data` as one bulk transfer, then a ZLP if it is whole packets.
/// Timeouts are retried with what is left until `closing` is set.
pub fn transfer(
    handle: &DeviceHandle<Context>,
    ep: u8,
    data: &[u8],
    packet: usize,
    closing: &AtomicBool,
) -> io::Result<()> {
    let mut rest = data;
    let mut zlp = needs_zlp(data.len(), packet);
    while !rest.is_empty() || zlp {
        match handle.write_bulk(ep, rest, POLL) {
            Ok(n) if rest.is_empty() => {
                debug_assert_eq!(n, 0);
                zlp = false;
            }
            Ok(n) => rest = &rest[n.min(rest.len())..],
            Err(rusb::Error::Timeout) if closing.load(Ordering::SeqCst) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the device stopped reading",
                ))
            }
            Err(rusb::Error::Timeout | rusb::Error::Interrupted) => {}
            Err(rusb::Error::Pipe) => {
                log::warn!("USB OUT endpoint halted; clearing it");
                handle.clear_halt(ep).map_err(usb_error)?;
            }
            Err(e) => return Err(usb_error(e)),
        }
    }
    Ok(())
}

/// A fresh libusb context.
pub fn context() -> io::Result<Context> {
    Context::new().map_err(|e| {
        if Path::new(USB_BUS).exists() {
            io::Error::other(format!("cannot start libusb: {e}"))
        } else {
            io::Error::new(io::ErrorKind::NotFound, NO_BUS)
        }
    })
}

/// Where Linux shows the USB buses; a container without USB has none.
pub const USB_BUS: &str = "/dev/bus/usb";

/// What to say when there is no USB bus to look at.
pub const NO_BUS: &str = "this machine shows no USB bus (/dev/bus/usb does not exist: \
     a container, or a system without USB); plug the device into a machine with USB, \
     give the container the bus (docker run --device /dev/bus/usb), or use a pipe \
     instead: push --exec 'adb shell feedfs-device mount … --stdio' or --stdio";

/// Whether an error from [`context`] means there is no USB bus at all.
pub fn is_no_bus(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound && e.to_string() == NO_BUS
}

/// The one device to use: the one with `serial` if given, else the only one.
pub fn pick(found: Vec<Found>, serial: Option<&str>) -> Result<Option<Found>, String> {
    let mut matching: Vec<Found> = found
        .into_iter()
        .filter(|f| serial.is_none_or(|s| f.serial.as_deref() == Some(s)))
        .collect();
    match matching.len() {
        0 => Ok(None),
        1 => Ok(matching.pop()),
        _ => Err(format!(
            "{} feedfs devices are attached; pick one with --serial:\n  {}",
            matching.len(),
            matching
                .iter()
                .map(Found::describe)
                .collect::<Vec<_>>()
                .join("\n  ")
        )),
    }
}
