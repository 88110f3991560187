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
use std::sync::{Arc, Condvar, Mutex};
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

/// The listeners, and a condition notified when the first signal comes.
type Attachments = Arc<(Mutex<Listeners>, Condvar)>;

fn lock(a: &Attachments) -> std::sync::MutexGuard<'_, Listeners> {
    a.0.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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

/// A signal arrived: note it, wake the sleepers, hand it to every
/// listener (no short cut); whether one took it.
fn arrive(to: &Attachments, sig: i32) -> bool {
    let deliver: Vec<Deliver> = {
        let mut l = lock(to);
        l.seen.get_or_insert(sig);
        to.1.notify_all();
        l.list.iter().map(|(_, d)| d.clone()).collect()
    };
    deliver.iter().fold(false, |took, d| d(sig) | took)
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
                    if !arrive(&to, sig) || pending {
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

    /// Wait `d`, or less if a signal comes (at once if one came): the
    /// signal, if one did.
    pub fn sleep(&self, d: Duration) -> Option<i32> {
        let l = lock(&self.sessions);
        let (l, _) = self
            .sessions
            .1
            .wait_timeout_while(l, d, |l| l.seen.is_none())
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        l.seen
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

    #[test]
    fn a_signal_ends_a_sleep_and_reaches_every_listener_even_late_ones() {
        // No process-wide handlers here: signals arrive by hand.
        let stop = Stop {
            sessions: Arc::default(),
        };
        let t0 = std::time::Instant::now();
        assert_eq!(stop.sleep(Duration::from_millis(20)), None);
        assert!(t0.elapsed() >= Duration::from_millis(20));
        let heard = Arc::new(Mutex::new(Vec::new()));
        let h = heard.clone();
        let _early = stop.attach(move |sig| {
            h.lock().unwrap().push(("early", sig));
            true
        });
        let to = stop.sessions.clone();
        let arriving = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            arrive(&to, SIGTERM)
        });
        let t0 = std::time::Instant::now();
        assert_eq!(stop.sleep(Duration::from_secs(30)), Some(SIGTERM));
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "woken by the signal"
        );
        assert!(arriving.join().unwrap(), "a listener took it");
        let h = heard.clone();
        let _late = stop.attach(move |sig| {
            h.lock().unwrap().push(("late", sig));
            true
        });
        assert_eq!(
            *heard.lock().unwrap(),
            vec![("early", SIGTERM), ("late", SIGTERM)]
        );
        assert_eq!(
            stop.sleep(Duration::from_secs(30)),
            Some(SIGTERM),
            "at once"
        );
    }
}
