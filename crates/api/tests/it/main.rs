//! Integration tests of the API crate against a real store and dispatcher, served on 127.0.0.1.

mod ingest_props;
mod openapi;
mod spans;
mod support;
