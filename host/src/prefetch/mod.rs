//! Prefetch orders: [`learn`] merges logs into a [`plan::Plan`], whose
//! ranges the scheduler streams first; [`ziporder`] is the built-in order
//! for zip files without a plan.

pub mod learn;
pub mod plan;
pub mod ziporder;
