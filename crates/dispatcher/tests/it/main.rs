//! Integration tests of the dispatcher, with real parts only: a sled store on a temporary
//! directory, the real HTTP client, and axum receivers on `127.0.0.1:0` started by each test.
//!
//! Tests that measure time or concurrency take [`harness::serial`] so they do not disturb each
//! other on a small machine; `cargo test -p herald-dispatcher -- --nocapture` shows the tables
//! and figures they print.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod faulty_store;
mod harness;
mod receiver;

mod cluster;
mod concurrency;
mod dead_letter;
mod idle;
mod isolation;
mod ordering;
mod pause;
mod rate_limit;
mod reload;
mod remote_answers;
mod retries;
mod seam;
mod shutdown;
mod store_faults;
mod throttle;
