//! `feedfs-host`: serves a set of read-only files to a feedfs device over a
//! byte link, demanded blocks first.
//!
//! The pieces, from the command line down: [`cli`] parses, [`push`] runs the
//! command, [`manifest`] turns paths into checked manifest entries with
//! identities, [`link`] opens the pipe or the USB device ([`usb`]; its
//! soundness and ceiling are checked by [`usbcheck`]), [`session`] speaks the
//! protocol, with [`scheduler`] (a pure state machine) choosing each block,
//! [`source`] reading it and [`compress`] deciding whether to send it
//! compressed; [`record`] and [`progress`] report what happened, and [`stop`] ends a
//! push cleanly on a signal. The wire
//! format itself is the `feedfs-protocol` crate.
//!
//! Learned prefetch: [`trace`] reads logs back (host records, device request
//! logs), [`summary`] and [`plot`] show them, [`learn`] merges them into a
//! [`plan`], whose ranges the scheduler streams first; [`ziporder`] is the
//! built-in order for zip files without a plan. [`logcmd`] runs those
//! commands.
#![deny(unsafe_code)]

pub mod cli;
pub mod compress;
pub mod learn;
pub mod link;
pub mod logcmd;
pub mod manifest;
pub mod plan;
pub mod plot;
pub mod progress;
pub mod push;
pub mod rate;
pub mod record;
pub mod scheduler;
pub mod session;
pub mod source;
pub mod stop;
pub mod summary;
pub mod trace;
pub mod usb;
pub mod usbcheck;
pub mod ziporder;

#[cfg(test)]
mod testutil;

pub use push::push;
