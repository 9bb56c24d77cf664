//! The daemon file (`config/herald.toml`) and the whole-configuration load.

use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_core::{DisplayUrl, Secret, SecurityPolicy, SubscriberConfig, SubscriberId};
use toml::Value;
use url::Url;

use crate::env::{expand_table, Env};
use crate::error::{ConfigError, ConfigErrors, Report};
use crate::raw::{
    parse, RawCluster, RawDaemon, RawSecret, RawServer, RawShutdown, RawStorage, RawTelemetry,
};
use crate::subscriber::load_dir;
use crate::values::{duration, quote, DurationBounds, Zero};

/// `[server] listen` when none is given.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// `[server] max_payload_bytes` when none is given (1 MiB).
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1_048_576;
/// `subscribers_dir` when none is given, relative to the daemon file's folder.
pub const DEFAULT_SUBSCRIBERS_DIR: &str = "subscribers";
/// `[storage] path` when none is given, relative to the daemon file's folder.
pub const DEFAULT_STORAGE_PATH: &str = "data/herald";
/// `[storage] retention` when none is given (7 days).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// `[storage] pool_size` when none is given (postgres).
pub const DEFAULT_POOL_SIZE: usize = 16;
/// The largest `[storage] pool_size`.
pub const MAX_POOL_SIZE: usize = 1_000;
/// The longest `[cluster] node_id`.
pub const MAX_NODE_ID_LEN: usize = 64;
/// `[shutdown] grace` when none is given.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// `[telemetry] service_name` when none is given.
pub const DEFAULT_SERVICE_NAME: &str = "herald";
/// The longest `[telemetry] service_name`.
pub const MAX_SERVICE_NAME_LEN: usize = 255;
/// The OTLP/HTTP path of traces, appended to `[telemetry] otlp_endpoint`.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";

/// The whole, validated configuration: the daemon file and every subscriber.
///
/// `Debug` is safe to print: credentials are [`Secret`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct HeraldConfig {
    /// The daemon file this was loaded from, as given.
    pub path: PathBuf,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[storage]`.
    pub storage: StorageConfig,
    /// `[security]`.
    pub security: SecurityPolicy,
    /// `[shutdown]`.
    pub shutdown: ShutdownConfig,
    /// `[cluster]` (postgres only).
    pub cluster: ClusterConfig,
    /// `[alerts]`.
    pub alerts: AlertsConfig,
    /// `[telemetry]`: span export over OTLP/HTTP; `None` when the table is absent.
    pub telemetry: Option<TelemetryConfig>,
    /// The subscriber folder, resolved against the daemon file's folder (pass it to
    /// [`crate::load_subscribers`] on reload).
    pub subscribers_dir: PathBuf,
    /// Every subscriber, sorted by id.
    pub subscribers: Vec<SubscriberConfig>,
    /// Problems that do not stop Herald but that an operator should see (for example a
    /// signing secret past its `not_after`); `herald check` prints them, the daemon logs them.
    pub warnings: Vec<ConfigError>,
}

/// `[server]`: the ingest and admin HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to listen on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// When set, `/v1/*` and `/metrics` need `Authorization: Bearer <token>`.
    pub api_token: Option<Secret>,
    /// Largest accepted request body, in bytes (default 1 MiB).
    pub max_payload_bytes: usize,
}

/// `[storage] engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageEngine {
    /// sled in `[storage] path`: one node, nothing to install (the default).
    #[default]
    Sled,
    /// PostgreSQL at `[storage] url`: every daemon on one database is a node of one cluster.
    Postgres,
}

impl StorageEngine {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sled => "sled",
            Self::Postgres => "postgres",
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// Which engine (default sled).
    pub engine: StorageEngine,
    /// The sled directory, resolved against the daemon file's folder when relative.
    pub path: PathBuf,
    /// The database URL (postgres; required there). A [`Secret`]: it may hold a password.
    pub url: Option<Secret>,
    /// Connections in the database pool (postgres; default 16, 1..=1000).
    pub pool_size: usize,
    /// How long delivered and dead records and attempt history are kept (default 7 days).
    pub retention: Duration,
}

impl StorageConfig {
    /// Where the database is, for messages and `herald check`: `host:port/database` from the
    /// URL, never the user or password. `None` for sled.
    pub fn database_target(&self) -> Option<String> {
        self.url.as_ref().map(|u| database_target(u.expose()))
    }
}

/// `host:port/database` of a `postgres://` URL (or of a `key=value` connection string), with
/// no user, password or parameters.
pub fn database_target(url: &str) -> String {
    if let Ok(parsed) = url::Url::parse(url) {
        let host = parsed.host_str().unwrap_or("localhost");
        let port = parsed.port().unwrap_or(5432);
        let db = parsed.path().trim_start_matches('/');
        return if db.is_empty() {
            format!("{host}:{port}")
        } else {
            format!("{host}:{port}/{db}")
        };
    }
    let mut host = "localhost";
    let mut port = "5432";
    let mut db = "";
    for pair in url.split_whitespace() {
        match pair.split_once('=') {
            Some(("host", v)) => host = v,
            Some(("port", v)) => port = v,
            Some(("dbname", v)) => db = v,
            _ => {}
        }
    }
    if db.is_empty() {
        format!("{host}:{port}")
    } else {
        format!("{host}:{port}/{db}")
    }
}

/// `[cluster]`: this node (postgres only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterConfig {
    /// This node's id; `None`: the host name and process id.
    pub node_id: Option<String>,
}

/// `[alerts]`: where Herald sends its own operator events (SPEC §10).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertsConfig {
    /// The configured subscriber that receives `herald.*` events, if any.
    pub subscriber: Option<SubscriberId>,
}

/// `[telemetry]`: where Herald exports its `ingest` and `attempt` spans (SPEC §10).
///
/// `otlp_endpoint` is the collector's OTLP/HTTP base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is: spans are posted to it with [`OTLP_TRACES_PATH`] appended to its path
/// (`http://collector:4318` → `http://collector:4318/v1/traces`, `https://otel.example/base/`
/// → `https://otel.example/base/v1/traces`); a URL whose path already ends in `/v1/traces`
/// (or `/v1/traces/`) is used as it is, without the trailing slash. The query string is kept. Both `http://` and `https://` are accepted whatever
/// `[security]` says (the collector is the operator's own infrastructure, not a subscriber).
///
/// The URL may carry credentials: user info (`https://user:password@…`, percent-encoded as
/// URLs require) is taken out of the URL and sent as `Authorization: Basic` instead
/// ([`TelemetryConfig::basic_auth`]), so that no HTTP library ever sees or logs it; a token in
/// the query string stays in the URL. `Debug` shows the URL as a [`DisplayUrl`] only, and so
/// must every log line.
#[derive(Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    traces_url: Url,
    basic_auth: Option<Secret>,
    /// `service.name` of the exported spans (default `herald`).
    pub service_name: String,
}

impl TelemetryConfig {
    /// Where spans are posted: the URL without user info, its query included. Send to it,
    /// never print it ([`TelemetryConfig::display_url`] is the printable form).
    pub fn traces_url(&self) -> &Url {
        &self.traces_url
    }

    /// `user:password` from the endpoint's user info, decoded, for `Authorization: Basic`.
    pub fn basic_auth(&self) -> Option<&Secret> {
        self.basic_auth.as_ref()
    }

    /// The traces URL without user info and query, for logs and `herald check`.
    pub fn display_url(&self) -> DisplayUrl {
        DisplayUrl::new(&self.traces_url)
    }
}

impl fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("traces_url", &self.display_url())
            .field("basic_auth", &self.basic_auth)
            .field("service_name", &self.service_name)
            .finish()
    }
}

/// `[shutdown]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownConfig {
    /// How long in-flight requests may take to finish after SIGTERM (default 30 s).
    pub grace: Duration,
}

pub(crate) fn load(path: &Path, env: Env<'_>) -> Result<HeraldConfig, ConfigErrors> {
    let text = fs::read_to_string(path).map_err(|e| {
        ConfigErrors::from_vec(vec![ConfigError::new(
            path,
            "",
            format!("cannot be read: {e}"),
        )])
    })?;
    let mut report = Report::new(path);
    let base = path.parent().unwrap_or(Path::new(""));
    let Some(raw) = parse::<RawDaemon>(&text, env, &mut report) else {
        // An unknown key or a wrong type elsewhere in the file: when the two settings the
        // subscribers depend on are still readable, check the subscribers anyway.
        let mut errors = report.into_errors();
        if let Some((dir, security)) = peek_subscriber_settings(&text, env) {
            let dir = base.join(dir.as_deref().unwrap_or(DEFAULT_SUBSCRIBERS_DIR));
            if let Err(problems) = load_dir(&dir, &security, env) {
                errors.extend(problems);
            }
        }
        return Err(ConfigErrors::from_vec(errors));
    };
    // Problems so far are `${VAR}` expansion failures: the keys that did not fail are still
    // usable, so the subscribers are checked too and one run of `herald check` shows everything.
    let expanded = report.is_clean();

    let security = SecurityPolicy {
        allow_http: raw.security.allow_http.unwrap_or(false),
        allow_private_networks: raw.security.allow_private_networks.unwrap_or(false),
    };
    let subscribers_dir = if report.has_error_at("subscribers_dir") {
        None
    } else {
        resolve(
            raw.subscribers_dir.as_deref(),
            DEFAULT_SUBSCRIBERS_DIR,
            base,
            "subscribers_dir",
            &mut report,
        )
    };
    let daemon = if expanded {
        let server = server(raw.server, &mut report);
        let storage = storage(raw.storage, base, &mut report);
        let shutdown = shutdown(raw.shutdown, &mut report);
        let cluster = cluster(raw.cluster, storage.as_ref(), &mut report);
        let telemetry = telemetry(raw.telemetry, &mut report);
        server
            .zip(storage)
            .zip(shutdown)
            .zip(cluster)
            .zip(telemetry)
    } else {
        None
    };

    let alert_id = raw.alerts.subscriber.as_deref().and_then(|id| {
        report.check(
            "alerts.subscriber",
            SubscriberId::new(id).map_err(|e| e.to_string()),
        )
    });

    let mut dir_errors = Vec::new();
    let subscribers =
        subscribers_dir
            .as_deref()
            .and_then(|dir| match load_dir(dir, &security, env) {
                Ok(loaded) => Some(loaded),
                Err(problems) => {
                    dir_errors = problems.into_vec();
                    None
                }
            });
    if let (Some(id), Some((subs, _))) = (&alert_id, &subscribers) {
        if !subs.iter().any(|s| &s.id == id) {
            report.error(
                "alerts.subscriber",
                format!(
                    "no subscriber \"{id}\" is configured in {}; add {id}.toml there or fix the id",
                    subscribers_dir
                        .as_deref()
                        .map(|d| d.display().to_string())
                        .unwrap_or_default()
                ),
            );
        }
    }
    let mut errors = report.into_errors();
    errors.extend(dir_errors);

    match (daemon, subscribers_dir, subscribers) {
        (
            Some(((((server, storage), shutdown), cluster), telemetry)),
            Some(subscribers_dir),
            Some((subscribers, warnings)),
        ) if errors.is_empty() => Ok(HeraldConfig {
            path: path.to_owned(),
            server,
            storage,
            security,
            shutdown,
            cluster,
            alerts: AlertsConfig {
                subscriber: alert_id,
            },
            telemetry,
            subscribers_dir,
            subscribers,
            warnings,
        }),
        _ => Err(ConfigErrors::from_vec(errors)),
    }
}

/// `subscribers_dir` and `[security]` read leniently from a file that failed to deserialize;
/// `None` unless both are unambiguous.
fn peek_subscriber_settings(text: &str, env: Env<'_>) -> Option<(Option<String>, SecurityPolicy)> {
    let mut table: toml::Table = toml::from_str(text).ok()?;
    let mut scratch = Report::new(Path::new(""));
    expand_table(&mut table, env, &mut scratch);
    let dir = match table.get("subscribers_dir") {
        None => None,
        Some(Value::String(dir))
            if !dir.trim().is_empty() && !scratch.has_error_at("subscribers_dir") =>
        {
            Some(dir.clone())
        }
        Some(_) => return None,
    };
    let security = match table.get("security") {
        None => SecurityPolicy::default(),
        Some(Value::Table(security)) => {
            let flag = |key: &str| match security.get(key) {
                None => Some(false),
                Some(Value::Boolean(flag)) => Some(*flag),
                Some(_) => None,
            };
            SecurityPolicy {
                allow_http: flag("allow_http")?,
                allow_private_networks: flag("allow_private_networks")?,
            }
        }
        Some(_) => return None,
    };
    Some((dir, security))
}

/// A path from the file, relative ones joined to the daemon file's folder.
fn resolve(
    raw: Option<&str>,
    default: &str,
    base: &Path,
    key: &str,
    report: &mut Report<'_>,
) -> Option<PathBuf> {
    let value = raw.unwrap_or(default);
    if value.trim().is_empty() {
        report.error(key, "is empty; give a folder path");
        return None;
    }
    // `join` keeps an absolute path as it is.
    Some(base.join(value))
}

fn server(raw: RawServer, report: &mut Report<'_>) -> Option<ServerConfig> {
    let listen = match raw.listen.as_deref() {
        None => Some(DEFAULT_LISTEN),
        Some(listen) => report.check(
            "server.listen",
            listen.trim().parse::<SocketAddr>().map_err(|_| {
                format!(
                    "\"{}\" is not an IP address with a port, such as \"127.0.0.1:8080\" or \"[::]:8080\"",
                    quote(listen)
                )
            }),
        ),
    };
    let api_token = match raw.api_token {
        None => Some(None),
        Some(RawSecret(token)) => report
            .check("server.api_token", check_token(&token))
            .map(|()| Some(Secret::new(token))),
    };
    let max_payload_bytes = match raw.max_payload_bytes {
        None => Some(DEFAULT_MAX_PAYLOAD_BYTES),
        Some(n) => report.check(
            "server.max_payload_bytes",
            usize::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("must be a positive number of bytes (got {n})")),
        ),
    };
    Some(ServerConfig {
        listen: listen?,
        api_token: api_token?,
        max_payload_bytes: max_payload_bytes?,
    })
}

fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("is empty; remove the key to run without API authentication".to_owned());
    }
    if token.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains whitespace or a control character (value not shown)".to_owned());
    }
    Ok(())
}

fn storage(raw: RawStorage, base: &Path, report: &mut Report<'_>) -> Option<StorageConfig> {
    let path = resolve(
        raw.path.as_deref(),
        DEFAULT_STORAGE_PATH,
        base,
        "storage.path",
        report,
    );
    let retention = report.check(
        "storage.retention",
        duration(
            raw.retention.as_ref(),
            DEFAULT_RETENTION,
            Zero::Refused,
            DurationBounds::RETENTION,
        ),
    );
    let engine = match raw.engine.as_deref().map(str::trim) {
        None | Some("sled") => Some(StorageEngine::Sled),
        Some("postgres") => Some(StorageEngine::Postgres),
        Some(other) => {
            report.error(
                "storage.engine",
                format!(
                    "\"{}\" is not an engine; use \"sled\" (the default) or \"postgres\"",
                    quote(other)
                ),
            );
            None
        }
    };
    let url = match (engine, raw.url) {
        (_, Some(RawSecret(url))) => report
            .check("storage.url", check_database_url(&url))
            .map(|()| Some(Secret::new(url))),
        (Some(StorageEngine::Postgres), None) => {
            report.error(
                "storage.url",
                "is required with engine = \"postgres\", e.g. url = \"${HERALD_DATABASE_URL}\"",
            );
            None
        }
        (_, None) => Some(None),
    };
    let url = match (engine, url) {
        (Some(StorageEngine::Sled), Some(Some(_))) => {
            report.error(
                "storage.url",
                "applies to engine = \"postgres\" only; set engine = \"postgres\" or remove it",
            );
            None
        }
        (_, url) => url,
    };
    let pool_size = match raw.pool_size {
        None => Some(DEFAULT_POOL_SIZE),
        Some(n) => report.check(
            "storage.pool_size",
            usize::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_POOL_SIZE).contains(n))
                .ok_or_else(|| format!("must be between 1 and {MAX_POOL_SIZE} (got {n})")),
        ),
    };
    Some(StorageConfig {
        engine: engine?,
        path: path?,
        url: url?,
        pool_size: pool_size?,
        retention: retention?,
    })
}

/// A database URL's shape, without repeating it (it may hold a password).
fn check_database_url(url: &str) -> Result<(), String> {
    let url = url.trim();
    if url.is_empty() {
        return Err("is empty; give a postgres://user:password@host:5432/dbname URL".to_owned());
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return match url::Url::parse(url) {
            Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
            _ => Err(
                "is not a valid postgres://user:password@host:5432/dbname URL (value not shown: it may hold a password)"
                    .to_owned(),
            ),
        };
    }
    if url.contains('=') {
        // A key=value connection string (host=… dbname=…).
        return Ok(());
    }
    Err(
        "is not a database URL; expected postgres://user:password@host:5432/dbname (value not shown: it may hold a password)"
            .to_owned(),
    )
}

fn cluster(
    raw: Option<RawCluster>,
    storage: Option<&StorageConfig>,
    report: &mut Report<'_>,
) -> Option<ClusterConfig> {
    let Some(raw) = raw else {
        return Some(ClusterConfig::default());
    };
    if storage.is_some_and(|s| s.engine != StorageEngine::Postgres) {
        report.error(
            "cluster",
            "applies to [storage] engine = \"postgres\" only; remove it or set the engine",
        );
        return None;
    }
    let node_id = match raw.node_id {
        None => None,
        Some(id) => Some(report.check("cluster.node_id", check_node_id(&id).map(|()| id))?),
    };
    Some(ClusterConfig { node_id })
}

/// 1..=64 characters of `A-Z a-z 0-9 . _ -`.
fn check_node_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_NODE_ID_LEN {
        return Err(format!(
            "must be 1 to {MAX_NODE_ID_LEN} characters (got {})",
            id.chars().count()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "\"{}\" has {:?}; use letters, digits, '.', '_' and '-'",
            quote(id),
            c
        ));
    }
    Ok(())
}

fn shutdown(raw: RawShutdown, report: &mut Report<'_>) -> Option<ShutdownConfig> {
    let grace = report.check(
        "shutdown.grace",
        duration(
            raw.grace.as_ref(),
            DEFAULT_GRACE,
            Zero::Allowed,
            DurationBounds::SHUTDOWN_GRACE,
        ),
    )?;
    Some(ShutdownConfig { grace })
}

/// `[telemetry]`: `Some(None)` when the table is absent, `None` after an error.
fn telemetry(
    raw: Option<RawTelemetry>,
    report: &mut Report<'_>,
) -> Option<Option<TelemetryConfig>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let traces_url = match raw.otlp_endpoint {
        None => {
            report.error(
                "telemetry.otlp_endpoint",
                "is required in [telemetry]: the collector's OTLP/HTTP base URL, e.g. \
                 \"http://collector:4318\" (or remove the table to export nothing)",
            );
            None
        }
        Some(RawSecret(url)) => report.check("telemetry.otlp_endpoint", traces_url(&url)),
    };
    let service_name = match raw.service_name {
        None => Some(DEFAULT_SERVICE_NAME.to_owned()),
        Some(name) => report.check(
            "telemetry.service_name",
            check_service_name(&name).map(|()| name),
        ),
    };
    let (traces_url, basic_auth) = traces_url?;
    Some(Some(TelemetryConfig {
        traces_url,
        basic_auth,
        service_name: service_name?,
    }))
}

/// The URL spans are posted to, from `otlp_endpoint`, and the `user:password` taken out of it
/// (see [`TelemetryConfig`]). Messages never repeat the value: it may hold credentials.
fn traces_url(raw: &str) -> Result<(Url, Option<Secret>), String> {
    const NOT_SHOWN: &str = "value not shown: it may hold credentials";
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(
            "is empty; give the collector's OTLP/HTTP base URL, e.g. \"http://collector:4318\""
                .to_owned(),
        );
    }
    let mut url = Url::parse(raw).map_err(|e| format!("is not a valid URL: {e} ({NOT_SHOWN})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http:// or https:// URL (OTLP/HTTP) ({NOT_SHOWN})"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("has no host ({NOT_SHOWN})"));
    }
    url.set_fragment(None);
    let basic_auth = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        let user = percent_decode(url.username());
        let password = percent_decode(url.password().unwrap_or_default());
        let (Some(user), Some(password)) = (user, password) else {
            return Err(format!(
                "has user info that is not UTF-8 once percent-decoded ({NOT_SHOWN})"
            ));
        };
        if user.contains(':') {
            return Err(format!(
                "has a user name with ':' in it, which Basic authentication cannot carry ({NOT_SHOWN})"
            ));
        }
        // Cannot fail on an http(s) URL with a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Some(Secret::new(format!("{user}:{password}")))
    };
    let path = url.path().trim_end_matches('/');
    let path = if path.ends_with(OTLP_TRACES_PATH) {
        path.to_owned()
    } else {
        format!("{path}{OTLP_TRACES_PATH}")
    };
    url.set_path(&path);
    Ok((url, basic_auth))
}

/// `%XX` sequences decoded; `None` when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn check_service_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.len() > MAX_SERVICE_NAME_LEN {
        return Err(format!(
            "must be 1 to {MAX_SERVICE_NAME_LEN} bytes, not blank (got {})",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(())
}
