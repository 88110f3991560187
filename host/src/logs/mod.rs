//! Logs: [`record`] writes the host's record of a push, [`trace`] reads
//! records and device request logs back, [`summary`] and [`plot`] show
//! them, and [`logcmd`] runs `log show`, `log plot` and `plan`.

pub mod logcmd;
pub mod plot;
pub mod record;
pub mod summary;
pub mod trace;
