//! Integration tests of `herald-config`: real files in temporary folders, loaded through the
//! public API.

#![allow(clippy::unwrap_used)]

mod daemon;
mod env;
mod fuzz;
mod secrets;
mod shipped;
mod subscribers;
mod support;
