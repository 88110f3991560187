//! Answering reads: the shared state that parks reads of missing blocks and
//! lands blocks from the link ([`core`]), the thin FUSE adapter over it
//! ([`fs`]), and how each open file is served ([`opens`]).

pub mod core;
pub mod fs;
pub mod opens;
