//! Sending: [`session`] speaks the protocol on a link (a pure state
//! machine, [`session::machine`], inside a thin loop), with [`scheduler`]
//! (a pure state machine) choosing each block, [`compress`] deciding whether
//! to send it compressed and [`rate`] keeping to `--rate`; [`progress`]
//! shows it and [`stop`] ends a push cleanly on a signal.

pub mod compress;
pub mod progress;
pub mod rate;
pub mod scheduler;
pub mod session;
pub mod stop;
