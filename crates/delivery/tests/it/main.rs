//! Integration tests of `herald-delivery` against real servers on 127.0.0.1.
#![allow(clippy::unwrap_used, unreachable_pub, dead_code)]

mod auth;
mod headers;
mod oauth2;
mod outcome;
mod security;
mod signing;
mod support;
