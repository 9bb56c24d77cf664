//! Herald's configuration: TOML files parsed, then validated into typed settings.
//!
//! Herald reads one daemon file (`config/herald.toml`) and one file per subscriber in a folder
//! beside it (`subscribers_dir`, default `subscribers/`). [`load`] reads all of them and returns
//! a [`HeraldConfig`]; nothing downstream ever sees a raw string duration, an unchecked limit or
//! a bare credential ([`herald_core::Secret`] prints `**REDACTED**`). On SIGHUP the daemon calls
//! [`load_subscribers`] to read the folder again.
//!
//! Loading happens in two steps, as ripgrep and Vector do it: first the files are parsed into
//! private serde structs that mirror the text (`deny_unknown_fields`, every key optional), then
//! one validation step turns those into [`herald_core::SubscriberConfig`] and friends. Errors
//! never stop at the first one where it can be helped: each file's problems are collected and
//! every file is checked, and every [`ConfigError`] names the file, the key (a dotted path such
//! as `retry.initial_interval` or `signing.secret[1]`) and what is wrong. No message ever
//! contains a credential.
//!
//! # Rules the specification leaves open
//!
//! - **Relative paths** (`subscribers_dir`, `[storage] path`) are resolved against the folder
//!   of the daemon file, not the working directory. [`HeraldConfig::path`] is kept as given.
//! - **`${VAR}`** is expanded in every string value (not in keys, numbers or booleans) of both
//!   file kinds, before validation. `$${` writes a literal `${`; a `$` not followed by `{` is
//!   kept. A set-but-empty variable expands to `""` (and then fails validation where a value is
//!   required). Expansion is a single pass.
//! - **Subscriber files** are the `*.toml` files of the folder, read in name order; hidden files
//!   (`.x.toml`), other extensions and sub-folders are ignored. The id defaults to the file's
//!   stem. A missing folder is an error; an empty one is a valid configuration with no
//!   subscribers. Duplicate ids are an error naming both files.
//! - **`api_key`** is split on its first colon; spaces and tabs right after the colon are
//!   dropped, later colons stay in the value. Without a colon the header is `Authorization` and
//!   the value the whole key, with no scheme added.
//! - **Static `headers`** may not set `content-type`, `user-agent`, `webhook-*`, the auth
//!   header (`authorization` for basic and oauth2, the api_key's header), the `sha256-v1`
//!   `<header_prefix>-*` headers, or client-managed ones (`host`, `content-length`,
//!   `transfer-encoding`, `connection`, `te`). Names are case-insensitive, so `X-A` and `x-a`
//!   together are a duplicate. Values may be UTF-8 but never contain control characters
//!   (line breaks, tabs).
//! - **URLs**: subscriber `url` and oauth2 `token_url` must be `https://` (or `http://` with
//!   `[security] allow_http`), have a host and carry no `user:pass@`. With
//!   `allow_private_networks = false` a subscriber URL whose host is a literal loopback,
//!   private, link-local, CGNAT or unspecified address, or `localhost`, is refused at load;
//!   host names are checked on the resolved IP at delivery time.
//! - **`standard-webhooks` secrets** must be `whsec_` + standard base64 (padding optional) of
//!   a non-empty key. `sha256-v1` secrets are used as written (non-empty). `header_prefix`
//!   defaults to `webhook`, is kept as written and must make valid header names.
//! - **Signing key expiry**: an item of a `secret` list may be a table `{ secret = "...",
//!   not_after = "2026-12-31T00:00:00Z" }` (RFC 3339 with a zone, quoted or as a TOML
//!   date-time). A secret already past its `not_after` is a warning
//!   ([`HeraldConfig::warnings`]); a list whose every secret is past it is an error.
//! - **Ranges**: `timeout`, `retry.initial_interval`, `retry.max_interval`, `retry.max_age`,
//!   `throttle.window` and `storage.retention` must be longer than zero; `shutdown.grace` may
//!   be `"0s"`. `max_in_flight` is `1..=500`, `retry.max_attempts`, `throttle.min_requests`,
//!   `rate_limit.per_second` and `rate_limit.burst` are at least 1, `retry.multiplier` ≥ 1.0,
//!   `retry.randomization` in `0.0..=1.0`, `throttle.error_rate` in `(0.0, 1.0]`.
//! - **`[auth]`** without `type` is an error; a key of another type (e.g. `credentials` with
//!   `type = "none"`) is an error. oauth2 scopes are a list of single words.
//! - **`[telemetry] otlp_endpoint`** is the collector's OTLP/HTTP base URL (`http://` or
//!   `https://`, whatever `[security]` says): spans go to it with `/v1/traces` appended to
//!   its path, unless the path already ends in `/v1/traces`. It may hold credentials, so it is
//!   never quoted in messages nor shown but as a [`herald_core::DisplayUrl`]; its user info
//!   (`user:password@`) is sent as `Authorization: Basic`, not as part of the URL.
//! - **`api_token`** must be non-empty and free of whitespace; remove the key to disable API
//!   authentication.
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! std::fs::create_dir(dir.path().join("subscribers"))?;
//! std::fs::write(dir.path().join("herald.toml"), "[server]\napi_token = \"${TOKEN}\"\n")?;
//! std::fs::write(
//!     dir.path().join("subscribers/acme.toml"),
//!     "url = \"https://hooks.acme.example/webhook\"\nevents = [\"PROCESS_STATE_FINISHED\"]\n",
//! )?;
//!
//! let env = |name: &str| (name == "TOKEN").then(|| "s3cr3t".to_owned());
//! let config = herald_config::load_with_env(&dir.path().join("herald.toml"), &env)?;
//! assert_eq!(config.subscribers[0].id.as_str(), "acme");
//! assert_eq!(config.storage.path, dir.path().join("data/herald"));
//! assert!(!format!("{config:?}").contains("s3cr3t"));
//!
//! // Without the variable, the error names the file, the key and the variable.
//! let errors = herald_config::load_with_env(&dir.path().join("herald.toml"), &|_| None)
//!     .unwrap_err();
//! assert!(errors.to_string().ends_with("server.api_token: environment variable `TOKEN` is not set"));
//! # Ok(())
//! # }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod auth;
mod daemon;
mod env;
mod error;
mod headers;
mod raw;
mod signing;
mod subscriber;
mod url_check;
mod values;

use std::path::Path;

use herald_core::{SecurityPolicy, SubscriberConfig};

pub use daemon::{
    database_target, AlertsConfig, ClusterConfig, HeraldConfig, ServerConfig, ShutdownConfig,
    StorageConfig, StorageEngine, TelemetryConfig, DEFAULT_GRACE, DEFAULT_LISTEN,
    DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_POOL_SIZE, DEFAULT_RETENTION, DEFAULT_SERVICE_NAME,
    DEFAULT_STORAGE_PATH, DEFAULT_SUBSCRIBERS_DIR, MAX_NODE_ID_LEN, MAX_POOL_SIZE,
    MAX_SERVICE_NAME_LEN, OTLP_TRACES_PATH,
};
pub use error::{ConfigError, ConfigErrors};
pub use values::DurationBounds;

/// Loads the daemon file at `path` and every subscriber file, expanding `${VAR}` from the
/// process environment.
pub fn load(path: &Path) -> Result<HeraldConfig, ConfigErrors> {
    load_with_env(path, &process_env)
}

/// [`load`] with an explicit environment: `env(name)` returns the variable's value, or `None`
/// when it is not set.
pub fn load_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<HeraldConfig, ConfigErrors> {
    daemon::load(path, env)
}

/// Reads the subscriber folder `dir` (usually [`HeraldConfig::subscribers_dir`]) again, for a
/// reload. Returns every subscriber sorted by id, or every problem found. Warnings are not
/// returned here: an expired signing secret is logged by the signer when it first skips it.
pub fn load_subscribers(
    dir: &Path,
    security: &SecurityPolicy,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<SubscriberConfig>, ConfigErrors> {
    subscriber::load_dir(dir, security, env).map(|(subscribers, _warnings)| subscribers)
}

/// The process environment; a variable that is not valid Unicode counts as unset.
fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).and_then(|value| value.into_string().ok())
}
