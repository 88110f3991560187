//! The device's USB link through FunctionFS, the way adbd does it.
//!
//! [`Ffs::start`] writes the descriptors and strings to `ep0` of a mounted
//! FunctionFS instance and keeps `ep0` open for the life of the process
//! (closing it removes the function). A thread reads `ep0`'s events: it
//! tracks whether the host has configured the device (ENABLE) or left
//! (DISABLE, UNBIND), and stalls control requests, which feedfs does not
//! use. Each time the endpoints are enabled, [`Ffs::next_link`] opens
//! `ep1` (bulk OUT, host to device) and `ep2` (bulk IN) as one link.
//!
//! When the host goes away (unplug, UDC unbind, host reset), bulk I/O fails
//! with ESHUTDOWN: the link ends and the next one starts when the host
//! configures the device again. A zero-length packet reads as 0 bytes; it
//! ends a transfer and is never the end of the link.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::Context;
use feedfs_protocol::io::TransferReader;
use feedfs_protocol::usb::{
    ffs_descriptors, ffs_strings, FfsEvent, FFS_EVENT_LEN, MIN_MAX_PACKET, TRANSFER_SIZE,
};

use crate::link::LinkIo;

/// A FunctionFS instance with our descriptors written.
pub struct Ffs {
    dir: PathBuf,
    enabled: Arc<(Mutex<bool>, Condvar)>,
    closer: Ep0Closer,
    /// Transfers from `ep1`, read by one thread for the life of the
    /// function (started with the first link): links come and go, the
    /// reader stays, so no transfer is ever taken by a reader nobody owns.
    transfers: Mutex<Option<Transfers>>,
}

/// Lets whoever removes the function close `ep0`: asked, the event thread
/// returns (closing `ep0`) at the next event, which unbinding brings.
#[derive(Clone)]
pub struct Ep0Closer {
    stop: Arc<AtomicBool>,
    done: Arc<(Mutex<bool>, Condvar)>,
}

impl Ep0Closer {
    pub fn ask(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Wait at most `limit` for `ep0` to be closed.
    pub fn wait(&self, limit: Duration) {
        let (lock, cv) = &*self.done;
        let done = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (done, _) = cv
            .wait_timeout_while(done, limit, |d| !*d)
            .unwrap_or_else(|p| p.into_inner());
        if !*done {
            log::warn!("USB ep0 still open; FunctionFS goes when this process exits");
        }
    }
}

impl Ffs {
    /// Write the descriptors to `dir/ep0` and start watching its events.
    pub fn start(dir: &Path) -> anyhow::Result<Ffs> {
        let path = dir.join("ep0");
        let ep0 = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| {
                format!(
                    "cannot open {} (is a FunctionFS instance mounted at {}?)",
                    path.display(),
                    dir.display()
                )
            })?;
        for (what, blob) in [
            ("descriptors", ffs_descriptors()),
            ("strings", ffs_strings()),
        ] {
            let n = (&ep0)
                .write(&blob)
                .with_context(|| format!("FunctionFS refused the {what} on {}", path.display()))?;
            anyhow::ensure!(
                n == blob.len(),
                "FunctionFS took {n} of {} bytes of {what}",
                blob.len()
            );
        }
        let enabled = Arc::new((Mutex::new(false), Condvar::new()));
        let closer = Ep0Closer {
            stop: Arc::new(AtomicBool::new(false)),
            done: Arc::new((Mutex::new(false), Condvar::new())),
        };
        let (state, c) = (enabled.clone(), closer.clone());
        thread::Builder::new()
            .name("usb-ep0".into())
            .spawn(move || {
                watch_ep0(ep0, &state, &c.stop);
                let (lock, cv) = &*c.done;
                *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
                cv.notify_all();
            })?;
        log::info!("USB function ready on {}", dir.display());
        Ok(Ffs {
            dir: dir.to_path_buf(),
            enabled,
            closer,
            transfers: Mutex::new(None),
        })
    }

    /// A handle to close `ep0` when the function is removed.
    pub fn closer(&self) -> Ep0Closer {
        self.closer.clone()
    }

    /// Wait until the host has configured the device, then open the bulk
    /// endpoints as a link.
    pub fn next_link(&self) -> anyhow::Result<LinkIo> {
        let (input, output, packet) = self.endpoints()?;
        let transfers = {
            let mut t = self.transfers.lock().unwrap_or_else(|p| p.into_inner());
            match &*t {
                Some(rx) => rx.clone(),
                None => {
                    let rx = read_transfers(input)?;
                    *t = Some(rx.clone());
                    rx
                }
            }
        };
        Ok(LinkIo {
            input: Box::new(bulk_in(transfers, self.enabled.clone())),
            output,
            zlp_packet: Some(packet),
            name: format!("USB ({} bytes per packet)", packet),
        })
    }

    /// Wait until the host has configured the device, then open `ep1` to
    /// read and `ep2` to write; with the max packet size of `ep2`.
    pub fn endpoints(&self) -> anyhow::Result<(File, File, usize)> {
        {
            let (lock, cv) = &*self.enabled;
            let mut on = lock.lock().unwrap_or_else(|p| p.into_inner());
            if !*on {
                log::info!("waiting for a USB host to configure the device");
            }
            while !*on {
                on = cv.wait(on).unwrap_or_else(|p| p.into_inner());
            }
        }
        let open = |name: &str, write: bool| {
            let path = self.dir.join(name);
            OpenOptions::new()
                .read(!write)
                .write(write)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))
        };
        let (input, output) = (open("ep1", false)?, open("ep2", true)?);
        let packet = max_packet(&output).unwrap_or_else(|e| {
            log::debug!(
                "endpoint descriptor unknown ({e}); ZLPs after multiples of {MIN_MAX_PACKET}"
            );
            MIN_MAX_PACKET
        });
        Ok((input, output, packet))
    }
}

/// Read `ep0` events until asked to stop: track the enabled state, stall
/// setup requests. Returning closes `ep0`, which removes the function.
fn watch_ep0(mut ep0: File, enabled: &(Mutex<bool>, Condvar), stop: &AtomicBool) {
    let mut buf = [0u8; FFS_EVENT_LEN * 4];
    while !stop.load(Ordering::SeqCst) {
        let n = match ep0.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("USB ep0 read failed: {e}; the function no longer follows the host");
                return;
            }
        };
        for raw in buf[..n].chunks_exact(FFS_EVENT_LEN) {
            let event = FfsEvent::parse(raw.try_into().expect("chunks are event-sized"));
            log::debug!("USB ep0 event: {event:?}");
            let on = match event {
                FfsEvent::Enable => Some(true),
                FfsEvent::Disable | FfsEvent::Unbind => Some(false),
                FfsEvent::Setup { device_to_host, .. } => {
                    // I/O in the direction opposite to the request stalls it.
                    let _ = if device_to_host {
                        ep0.read(&mut []).map(drop)
                    } else {
                        ep0.write(&[]).map(drop)
                    };
                    None
                }
                _ => None,
            };
            if let Some(on) = on {
                log::info!(
                    "USB host {}",
                    if on {
                        "configured the device"
                    } else {
                        "went away"
                    }
                );
                let (lock, cv) = enabled;
                *lock.lock().unwrap_or_else(|p| p.into_inner()) = on;
                cv.notify_all();
            }
        }
    }
}

/// The packed `struct usb_endpoint_descriptor` (USB 2.0, section 9.6.6),
/// as `FUNCTIONFS_ENDPOINT_DESC` fills it.
type EndpointDesc = [u8; 9];

// `FUNCTIONFS_ENDPOINT_DESC`: `_IOR('g', 130, struct usb_endpoint_descriptor)`
// (linux/usb/functionfs.h); the macro encodes the number from the type's size.
nix::ioctl_read!(functionfs_endpoint_desc, b'g', 130, EndpointDesc);

/// The endpoint's max packet size at the speed the host chose.
fn max_packet(ep: &File) -> io::Result<usize> {
    let mut desc: EndpointDesc = [0; 9];
    // SAFETY: no safe wrapper exists for a driver's ioctl; `ep` is an open
    // endpoint file and the ioctl writes at most size_of::<EndpointDesc>()
    // bytes, the size encoded in its number, into `desc`, which we own.
    unsafe { functionfs_endpoint_desc(ep.as_raw_fd(), &mut desc) }?;
    match usize::from(u16::from_le_bytes([desc[4], desc[5]]) & 0x7ff) {
        0 => Err(io::Error::other("max packet size 0")),
        n => Ok(n),
    }
}

/// The `ep1` reader thread's queue, shared by the links one after another:
/// full buffers (their whole length is the transfer) one way, emptied ones
/// back for reuse.
#[derive(Clone)]
struct Transfers {
    full: Arc<Mutex<Receiver<io::Result<Vec<u8>>>>>,
    empty: Sender<Vec<u8>>,
}

/// Transfers queued ahead of the link thread: `ep1` is read again while
/// the link thread checks and stores the last transfer, so the bus does not
/// wait for the CPU.
const READ_AHEAD: usize = 4;

/// The `ep1` reader thread: whole transfers (or the error that ended one,
/// ESHUTDOWN when the host went away) into a channel, for ever; after an
/// error the next read waits until a host configures the device again.
fn read_transfers(mut ep: File) -> anyhow::Result<Transfers> {
    let (tx, full) = mpsc::sync_channel(READ_AHEAD);
    let (empty, recycled) = mpsc::channel::<Vec<u8>>();
    thread::Builder::new()
        .name("usb-reader".into())
        .spawn(move || loop {
            let mut buf = recycled.try_recv().unwrap_or_default();
            buf.resize(TRANSFER_SIZE, 0);
            let got = match ep.read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ESHUTDOWN) => Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the USB host went away (unplugged, unbound or reset)",
                )),
                Err(e) => Err(e),
                Ok(n) => {
                    buf.truncate(n);
                    Ok(buf)
                }
            };
            let failed = got.is_err();
            if tx.send(got).is_err() {
                return;
            }
            if failed {
                // Not a busy loop: the next read blocks until the endpoint is enabled.
                thread::sleep(Duration::from_millis(50));
            }
        })?;
    Ok(Transfers {
        full: Arc::new(Mutex::new(full)),
        empty,
    })
}

/// The bulk OUT endpoint as a byte stream, a whole transfer at a time; the
/// host going away is the end of the link.
pub type BulkIn = TransferReader<Box<dyn FnMut(&mut Vec<u8>) -> io::Result<usize> + Send>>;

/// How often a link with no transfer arriving looks whether the host is
/// still there.
const HOST_POLL: Duration = Duration::from_millis(200);

impl Transfers {
    /// The next transfer. The host going away (`ep0` says the endpoints
    /// are disabled) ends the wait even when no read of `ep1` was under way
    /// to fail: a read started after the host left waits for the next host.
    fn next(&self, enabled: &(Mutex<bool>, Condvar)) -> io::Result<Vec<u8>> {
        let full = self.full.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match full.recv_timeout(HOST_POLL) {
                Ok(got) => return got,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if !*enabled.0.lock().unwrap_or_else(|p| p.into_inner()) {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            "the USB host went away (the endpoints were disabled)",
                        ));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other("the USB reader stopped"))
                }
            }
        }
    }
}

fn bulk_in(transfers: Transfers, enabled: Arc<(Mutex<bool>, Condvar)>) -> BulkIn {
    TransferReader::new(
        TRANSFER_SIZE,
        Box::new(move |buf: &mut Vec<u8>| {
            let next = transfers.next(&enabled)?;
            // The filled buffer becomes the reader's; the old one goes back.
            let _ = transfers.empty.send(std::mem::replace(buf, next));
            Ok(buf.len())
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Instant;

    fn link(enabled: bool) -> (mpsc::SyncSender<io::Result<Vec<u8>>>, BulkIn) {
        let (tx, full) = mpsc::sync_channel(READ_AHEAD);
        let (empty, _recycled) = mpsc::channel();
        let transfers = Transfers {
            full: Arc::new(Mutex::new(full)),
            empty,
        };
        let state = Arc::new((Mutex::new(enabled), Condvar::new()));
        (tx, bulk_in(transfers, state))
    }

    #[test]
    fn a_host_that_left_ends_the_link_even_with_no_read_under_way() {
        let (tx, mut input) = link(false);
        tx.send(Ok(b"last".to_vec())).unwrap();
        let mut buf = [0u8; 8];
        // What had arrived is still read, then the link ends.
        assert_eq!(input.read(&mut buf).unwrap(), 4);
        let t = Instant::now();
        let e = input.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn an_idle_link_to_a_host_still_there_goes_on_waiting() {
        let (tx, mut input) = link(true);
        let sender = thread::spawn(move || {
            thread::sleep(3 * HOST_POLL);
            tx.send(Ok(b"late".to_vec())).unwrap();
        });
        let mut buf = [0u8; 8];
        assert_eq!(input.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"late");
        sender.join().unwrap();
    }

    #[test]
    fn the_endpoint_ioctl_number_is_the_kernel_headers_one() {
        // _IOR('g', 130, 9 bytes): read (2 << 30), size 9, type 'g', number 130.
        assert_eq!(
            nix::request_code_read!(b'g', 130, std::mem::size_of::<super::EndpointDesc>()),
            0x8009_6782
        );
    }
}
