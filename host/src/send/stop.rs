//! Stopping a push on SIGINT, SIGTERM or SIGHUP.
//!
//! A thread waits for the three signals. While sessions run, a signal
//! is handed to each (a session puts it on its own channel; a push to
//! several devices also attaches itself, to stop waiting for devices):
//! each session says
//! `Goodbye` to the device and returns, and the push flushes its record,
//! clears its progress line and exits with 128 + the signal's number (130,
//! 143, 129). Outside a session (walking the paths, waiting for a USB
//! device) nothing needs finishing and the process exits at once with the
//! same status. A session that does not stop within [`GRACE`] (its write to
//! a device that stopped reading is blocked), or a second signal, also
//! ends the process at once.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How a running session takes a signal: `true` if it took it.
type Deliver = Arc<dyn Fn(i32) -> bool + Send + Sync>;

/// How long a session has to stop after a signal.
pub const GRACE: Duration = Duration::from_secs(3);

/// The exit status for a process stopped by `signal`.
pub fn exit_status(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}

/// `SIGINT`, `SIGTERM`, `SIGHUP`, or `signal N`.
pub fn signal_name(signal: i32) -> String {
    match signal {
        SIGINT => "SIGINT".into(),
        SIGTERM => "SIGTERM".into(),
        SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

/// Who signals go to now, each with the number of its attachment, and
/// the first signal seen.
#[derive(Default)]
struct Listeners {
    next: u64,
    list: Vec<(u64, Deliver)>,
    seen: Option<i32>,
}

type Attachments = Arc<Mutex<Listeners>>;

fn lock(a: &Attachments) -> std::sync::MutexGuard<'_, Listeners> {
    a.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where signals go: the running sessions, if any.
pub struct Stop {
    sessions: Attachments,
}

/// While alive, signals go to one session (among others).
pub struct Attached<'a>(&'a Stop, u64);

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        lock(&self.0.sessions).list.retain(|(n, _)| *n != self.1);
    }
}

impl Stop {
    /// Take over SIGINT, SIGTERM and SIGHUP for the rest of the process.
    pub fn install() -> io::Result<Stop> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let sessions: Attachments = Arc::default();
        let to = sessions.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut pending = false;
                for sig in signals.forever() {
                    let deliver: Vec<Deliver> = {
                        let mut l = lock(&to);
                        l.seen.get_or_insert(sig);
                        l.list.iter().map(|(_, d)| d.clone()).collect()
                    };
                    // Every session hears it (no short cut).
                    let took = deliver.iter().fold(false, |took, d| d(sig) | took);
                    if !took || pending {
                        std::process::exit(exit_status(sig).into());
                    }
                    pending = true;
                    std::thread::spawn(move || {
                        std::thread::sleep(GRACE);
                        std::process::exit(exit_status(sig).into());
                    });
                }
            })?;
        Ok(Stop { sessions })
    }

    /// Hand signals to `deliver` (a session's) until the guard is
    /// dropped; `deliver` says whether the session took the signal. A
    /// session that attaches after a signal came hears it at once.
    pub fn attach(&self, deliver: impl Fn(i32) -> bool + Send + Sync + 'static) -> Attached<'_> {
        let deliver: Deliver = Arc::new(deliver);
        let (n, seen) = {
            let mut l = lock(&self.sessions);
            l.next += 1;
            let n = l.next;
            l.list.push((n, deliver.clone()));
            (n, l.seen)
        };
        if let Some(sig) = seen {
            deliver(sig);
        }
        Attached(self, n)
    }

    /// The first signal that came, if one did.
    pub fn signalled(&self) -> Option<i32> {
        lock(&self.sessions).seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_names() {
        assert_eq!(exit_status(SIGINT), 130);
        assert_eq!(exit_status(SIGTERM), 143);
        assert_eq!(exit_status(SIGHUP), 129);
        assert_eq!(signal_name(SIGHUP), "SIGHUP");
        assert_eq!(signal_name(9), "signal 9");
    }
}
