//! `feedfs-host`: serves a set of read-only files to a feedfs device over a
//! byte link, demanded pages first.
//!
//! From the command line down: [`cli`] parses, [`push`](mod@push) runs the command.
//! Folders by role:
//! - [`files`]: what is served: paths turned into checked manifest entries
//!   with identities, and the runs of pages read from them;
//! - [`fleet`]: the devices of a push, a session each, their progress rows
//!   and their summaries;
//! - [`link`]: the pipe or the USB device, and the USB link check;
//! - [`send`]: the protocol session (a sans-IO state machine and the loop
//!   that moves its bytes), the scheduler (a pure state machine)
//!   choosing each run of pages, compression, the rate limit, progress and a clean
//!   stop on a signal;
//! - [`logs`]: the host's record of a push, logs read back, their summaries
//!   and plots, and the `log` and `plan` commands;
//! - [`prefetch`]: plans learned from logs, and the built-in order for zip
//!   files;
//! - [`term`]: stderr shared between the rows drawn in place and every
//!   other line.
//!
//! The wire format itself is the `feedfs-protocol` crate.
#![forbid(unsafe_code)]

pub mod cli;
pub mod files;
pub mod fleet;
pub mod link;
pub mod logs;
pub mod prefetch;
pub mod push;
pub mod send;
pub mod term;

#[cfg(test)]
mod testutil;

pub use push::push;
