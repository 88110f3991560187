//! Sending: [`session`] speaks the protocol on a link (a pure state
//! machine, [`session::machine`], inside a thin loop), with [`scheduler`]
//! (a pure state machine) choosing each run of pages, [`pages`] cutting a
//! run into its frames' parts, [`compress`] deciding whether to send a part
//! compressed and [`rate`] keeping to `--rate`; [`progress`]
//! shows it and [`stop`] ends a push cleanly on a signal.

pub mod compress;
pub mod pages;
pub mod progress;
pub mod rate;
pub mod scheduler;
pub mod session;
pub mod stop;
