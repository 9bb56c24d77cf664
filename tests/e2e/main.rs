//! Black-box end-to-end tests: every test spawns the real `herald` binary on a temporary config
//! and store, talks to it over HTTP and signals, and receives its webhooks on an in-process
//! receiver (see `harness`).

#![allow(clippy::unwrap_used, unreachable_pub, missing_debug_implementations)]

mod harness;

mod admin;
mod alerts;
mod check;
mod cli;
mod cluster;
mod console;
mod crash;
mod disk_full;
mod durability;
mod errors;
mod flapping;
mod fuzz;
mod ingest;
mod ops;
mod ordering;
mod reload;
mod semantics;
mod shutdown;
mod signing;
mod storage;
mod telemetry;
