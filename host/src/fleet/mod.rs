//! Feeding the devices of a push: one session per device, each with its
//! own link, scheduler, record and progress, on a thread of its own when
//! there are several, all reading the files through one
//! [`SharedSource`] so each page is read from its source about once.
//!
//! A device that fails (its link cut, its daemon killed, its disk full)
//! ends its own session only; the others go on, and the push's result
//! names it. With `--wait` a device that goes away is waited for and its
//! session started again, sending only what it still lacks. With
//! `--usb --all` the attached devices are looked for every
//! [`LOOK_INTERVAL`], and with `--wait` the push serves the ones that
//! appear later until a signal stops it ([`Fleet::feed_every_usb`]). A
//! device whose session ended (it holds everything, or it failed for a
//! reason other than going away) is not fed again while it stays attached.

pub mod board;
pub mod report;
pub mod targets;

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use feedfs_protocol::FileId;

use crate::cli::PushArgs;
use crate::files::manifest::ServedSet;
use crate::files::shared::SharedSource;
use crate::link::Link;
use crate::logs::record::Recorder;
use crate::send::progress::Show;
use crate::send::session::{Options, Session, SessionError, Summary};
use crate::send::stop::Stop;
use board::Board;
use report::{device_line, Fed, Served};
use targets::{record_path, usb, Device, Reach};

/// How often `--usb --all` looks for devices.
pub const LOOK_INTERVAL: Duration = Duration::from_millis(300);

/// Looks in a row without a device before it counts as gone (a look can
/// miss a device that is there: it was busy, it re-enumerated).
const GONE_AFTER: u32 = 3;

/// The first and the longest pause before a device whose link broke
/// at once is tried again (`--wait`); doubled at each failure in a row.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MOST: Duration = Duration::from_secs(5);
/// A session that lasted this long resets the pause.
const RETRY_RESET: Duration = Duration::from_secs(10);

/// What every device's session of a push shares.
pub struct Fleet<'a> {
    pub args: &'a PushArgs,
    pub set: &'a ServedSet,
    pub plan: &'a [(FileId, u64, u64)],
    pub options: Options,
    pub stop: &'a Stop,
    pub start: Instant,
    /// Several devices' shared source; `None` for one device.
    pub shared: Option<&'a SharedSource>,
}

impl Fleet<'_> {
    /// The signal that is stopping the push, if one came.
    fn stopped(&self) -> Option<i32> {
        self.stop.signalled()
    }

    /// The device's record file, with a line per file served.
    pub fn record(&self, device: &Device, several: bool) -> Result<Recorder> {
        let Some(path) = &self.args.record else {
            return Ok(Recorder::disabled());
        };
        let path = record_path(path, device, several)?;
        let mut record = Recorder::create(&path)
            .with_context(|| format!("cannot create the record file {}", path.display()))?;
        for e in self.set.files() {
            record
                .file(e.id, e.size, &e.path, &e.identity)
                .context("cannot write the record file")?;
        }
        record.flush().context("cannot write the record file")?;
        Ok(record)
    }

    /// Open the link to `device`; with `--wait`, a USB device is waited
    /// for (`status` hears why, once) until the push stops.
    fn open(&self, device: &Device, status: &dyn Fn(&str)) -> Result<Link> {
        if let Some(sig) = self.stopped() {
            return Err(SessionError::Interrupted(sig).into());
        }
        Ok(match &device.reach {
            Reach::Exec(cmd) => Link::exec(cmd)
                .with_context(|| format!("cannot start the device command {cmd:?}"))?,
            Reach::Stdio => Link::stdio().context("cannot use stdin and stdout as the link")?,
            Reach::Usb(serial) => {
                let said = Cell::new(false);
                let waiting = |why: &str| {
                    if !said.replace(true) {
                        status(&format!("waiting for a feedfs device on USB ({why})"));
                    }
                    self.stopped().is_none()
                };
                let wait = self.args.wait.then_some(&waiting as &dyn Fn(&str) -> bool);
                match (Link::usb(serial.as_deref(), wait), self.stopped()) {
                    (Ok(link), _) => link,
                    (Err(_), Some(sig)) => return Err(SessionError::Interrupted(sig).into()),
                    (Err(e), None) => {
                        return Err(anyhow::Error::new(e).context("cannot open the USB link"))
                    }
                }
            }
        })
    }

    /// Feed one device until it holds everything; with `--wait`, a device
    /// that goes away is waited for and fed again. `status` hears what the
    /// device is waiting for.
    pub fn feed(
        &self,
        device: &Device,
        record: &mut Recorder,
        show: &mut dyn Show,
        status: &dyn Fn(&str),
    ) -> Result<Summary> {
        let mut pause = RETRY_FIRST;
        loop {
            let began = Instant::now();
            let Link {
                read,
                write,
                mut peer,
            } = self.open(device, status)?;
            let mut session = Session::new(self.set, self.options, record, show, self.start)
                .with_plan(self.plan)
                .context("the plan does not fit the files served")?
                .with_stop(self.stop);
            if let Some(shared) = self.shared {
                session = session.with_shared(shared);
            }
            let result = session.run(read, write);
            show.clear();
            if let Err(e) = record.flush() {
                log::warn!("could not finish the record file: {e}");
            }
            return match result {
                Ok(summary) => Ok(summary),
                Err(e) if e.is_link() && self.args.wait && self.stopped().is_none() => {
                    status(&format!(
                        "the device went away ({e}); waiting for it to come back"
                    ));
                    // A device that breaks the link at once is not hammered.
                    if began.elapsed() >= RETRY_RESET {
                        pause = RETRY_FIRST;
                    }
                    // A signal during the pause ends it at once.
                    self.stop.sleep(pause);
                    pause = (pause * 2).min(RETRY_MOST);
                    continue;
                }
                Err(e) if e.is_link() => match peer.describe_end() {
                    Some(end) => Err(anyhow::Error::new(e).context(end)),
                    None => Err(e.into()),
                },
                Err(e) => Err(e.into()),
            };
        }
    }

    /// Feed one of several devices, its progress a row of `board`.
    fn feed_one(&self, device: &Device, board: &Board, served: &Served) -> Fed {
        let row = board.row(&device.label(), "starting");
        let result = self.record(device, true).and_then(|mut record| {
            let mut show = row.clone();
            self.feed(device, &mut record, &mut show, &|text| row.set(text))
        });
        let fed = Fed {
            device: device.clone(),
            result: result.map_err(|e| format!("{e:#}")),
            elapsed: self.start.elapsed(),
        };
        row.finish(&device_line(&fed, served));
        fed
    }

    /// Feed these devices at once.
    pub fn feed_listed(&self, devices: &[Device], board: &Board, served: &Served) -> Vec<Fed> {
        std::thread::scope(|s| {
            let handles: Vec<_> = devices
                .iter()
                .map(|d| (d.clone(), self.spawn(s, d.clone(), board, served)))
                .collect();
            handles
                .into_iter()
                .map(|(d, h)| join(h, d, self.start))
                .collect()
        })
    }

    fn spawn<'s, 'e>(
        &'s self,
        s: &'s Scope<'s, 'e>,
        device: Device,
        board: &'s Board,
        served: &'s Served,
    ) -> ScopedJoinHandle<'s, Fed> {
        std::thread::Builder::new()
            .name(crate::term::device_thread(&device.label()))
            .spawn_scoped(s, move || self.feed_one(&device, board, served))
            .expect("a thread for a device")
    }

    /// Feed every feedfs device on USB: those attached now, and with
    /// `--wait` those that appear later, until the push is stopped.
    pub fn feed_every_usb(&self, board: &Board, served: &Served) -> Result<Vec<Fed>> {
        let mut results: Vec<Fed> = Vec::new();
        std::thread::scope(|s| -> Result<()> {
            let mut running: Vec<(String, ScopedJoinHandle<'_, Fed>)> = Vec::new();
            // Devices whose session ended (done or failed), with the looks
            // in a row that missed them: fed again only once gone and back.
            let mut finished: HashMap<String, u32> = HashMap::new();
            let mut warned: HashSet<(u8, u8)> = HashSet::new();
            let said_why = Cell::new(false);
            let mut first = true;
            loop {
                // Without --wait, the devices attached at the start only.
                let look = (first || self.args.wait) && self.stopped().is_none();
                match look.then(|| self.look(&mut warned)) {
                    None => {}
                    // No bus at all, say: explained, and with --wait looked at again.
                    Some(Err(e)) if !self.args.wait => {
                        anyhow::bail!("cannot look for feedfs devices on USB: {e}")
                    }
                    Some(Err(e)) if !said_why.replace(true) => board.say(&format!(
                        "cannot look for feedfs devices on USB ({e}); looking again"
                    )),
                    Some(Err(_)) => {}
                    Some(Ok(present)) => {
                        if first && present.is_empty() {
                            if !self.args.wait {
                                anyhow::bail!(
                                    "no feedfs device is attached (is feedfs-device running \
                                     with --usb-ffs or --usb-gadget? --wait waits for them)"
                                );
                            }
                            board.say("waiting for feedfs devices on USB");
                        }
                        first = false;
                        for (serial, missed) in finished.iter_mut() {
                            *missed = if present.contains(serial) {
                                0
                            } else {
                                *missed + 1
                            };
                        }
                        finished.retain(|_, missed| *missed < GONE_AFTER);
                        for serial in &present {
                            let busy = finished.contains_key(serial)
                                || running.iter().any(|(s, _)| s == serial);
                            if !busy {
                                let handle = self.spawn(s, usb(serial), board, served);
                                running.push((serial.clone(), handle));
                            }
                        }
                    }
                }
                let (done, still): (Vec<_>, Vec<_>) =
                    running.into_iter().partition(|(_, h)| h.is_finished());
                running = still;
                for (serial, handle) in done {
                    finished.insert(serial.clone(), 0);
                    results.retain(|f| f.device.name != serial);
                    results.push(join(handle, usb(&serial), self.start));
                }
                let over = match self.args.wait {
                    true => self.stopped().is_some(),
                    false => !first && running.is_empty(),
                };
                if over {
                    break;
                }
                self.stop.sleep(LOOK_INTERVAL);
            }
            for (serial, handle) in running {
                results.retain(|f| f.device.name != serial);
                results.push(join(handle, usb(&serial), self.start));
            }
            Ok(())
        })?;
        Ok(results)
    }

    /// The serials of the feedfs devices attached now, or why the bus
    /// cannot be looked at; a device without one cannot be told apart
    /// from the others and is left out (said once).
    fn look(&self, warned: &mut HashSet<(u8, u8)>) -> std::io::Result<Vec<String>> {
        let found = crate::link::usb::context().and_then(|ctx| {
            crate::link::usb::find(&ctx).map_err(|e| std::io::Error::other(format!("USB: {e}")))
        })?;
        let mut serials = Vec::new();
        for f in found {
            match (&f.serial, &f.serial_error) {
                (Some(serial), _) if !serial.is_empty() => serials.push(serial.clone()),
                (_, error) => {
                    if warned.insert((f.bus, f.address)) {
                        let why = match error {
                            Some(e) => format!(
                                "cannot read its serial number ({e}; no permission? install \
                                 the udev rule, see the README)"
                            ),
                            None => "no serial number, so --all cannot tell it from the \
                                     others"
                                .to_string(),
                        };
                        log::warn!("{}: {why}; left out", f.describe());
                    }
                }
            }
        }
        Ok(serials)
    }
}

/// A device thread's result; one that panicked failed.
fn join(handle: ScopedJoinHandle<'_, Fed>, device: Device, start: Instant) -> Fed {
    handle.join().unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Fed {
            device,
            result: Err(format!("its thread panicked: {what}")),
            elapsed: start.elapsed(),
        }
    })
}
