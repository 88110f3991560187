//! What is served: [`manifest`] walks the given paths and URLs into checked
//! manifest entries with identities ([`stamp`]), leaving out what it cannot
//! serve ([`skip`]); [`source`] reads runs of
//! their pages through one [`source::Backend`] per kind of source ([`kinds`]): local
//! files and block devices ([`local`]), HTTP(S) URLs ([`http`]) and S3
//! objects ([`s3`], signed HTTP(S)); each notices a file that changed under it.
//! The sessions of several devices read through one [`shared`] source,
//! whose [`cache`] keeps the pages read for all of them.

pub mod backend;
pub mod cache;
pub mod http;
pub mod kinds;
pub mod local;
pub mod manifest;
pub mod s3;
pub mod shared;
pub mod skip;
pub mod source;
pub mod stamp;
