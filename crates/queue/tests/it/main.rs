//! Integration tests of `herald-queue` against real sled stores on temporary directories.
//!
//! One binary (fast linking), one module per concern.
#![allow(clippy::unwrap_used)]

mod conformance;
mod crash;
mod model;
mod outcomes;
mod recovery;
mod support;
