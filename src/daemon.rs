//! `herald run` and `herald check`.
//!
//! Start-up order: config → metrics recorder → span export (with `[telemetry]`) → store (sled,
//! or PostgreSQL as a cluster node) → HTTP client → dispatcher → API (→ heartbeat, with
//! PostgreSQL).
//! Shutdown order (SIGTERM/SIGINT): stop intake (503) → drain in-flight attempts within
//! `[shutdown] grace` → release what is left → flush the store → stop the HTTP server → post
//! the last spans (at most 5 s) → exit 0.

use std::future::IntoFuture;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_api::{ApiOptions, ApiState, ReloadFn};
use herald_config::{HeraldConfig, StorageEngine};
use herald_core::{
    AuthConfig, ClusterState, DeliveryStore, DisplayUrl, SigningScheme, SpanSink, UnixMillis,
};
use herald_delivery::HttpClient;
use herald_dispatcher::{Dispatcher, StartOptions};
use herald_queue::{SledOptions, SledStore};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::cli::{ConfigArgs, RunArgs};
use crate::telemetry::Telemetry;

/// How often finished records older than `retention` are purged: a quarter of the retention,
/// between 1 s and 60 s.
fn purge_interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

pub(crate) fn run(args: &RunArgs) -> anyhow::Result<()> {
    let config = herald_config::load(&args.config.config)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    for warning in &config.warnings {
        tracing::warn!("configuration: {warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("herald")
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: HeraldConfig) -> anyhow::Result<()> {
    let metrics = match herald_api::install_recorder() {
        Ok(h) => {
            // Aborted with the runtime; it holds nothing that needs a clean stop.
            tokio::spawn(herald_api::run_upkeep(h.clone()));
            Some(h)
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed; /metrics is disabled");
            None
        }
    };
    let telemetry = match &config.telemetry {
        Some(t) => Some(Arc::new(Telemetry::start(t)?)),
        None => None,
    };
    let spans = telemetry.clone().map(|t| t as Arc<dyn SpanSink>);
    let (store, cluster) = open_store(&config).await?;
    let client = HttpClient::new(config.security).context("building the HTTP client")?;
    let dispatcher = Dispatcher::start_with(
        Arc::clone(&store),
        client,
        config.subscribers.clone(),
        StartOptions::default()
            .cluster(cluster.clone())
            .spans(spans.clone()),
    )
    .await
    .context("starting the dispatcher")?;
    dispatcher.set_alert_subscriber(config.alerts.subscriber.clone());

    let reload = reload_fn(&config, dispatcher.clone());
    let state = ApiState::new(
        dispatcher.clone(),
        ApiOptions {
            api_token: config.server.api_token.clone(),
            max_payload_bytes: config.server.max_payload_bytes,
            metrics,
            reload: Some(Arc::clone(&reload)),
            spans,
        },
    );
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding the API to {}", config.server.listen))?;
    let listen = listener.local_addr().unwrap_or(config.server.listen);
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(
        axum::serve(listener, herald_api::router(state.clone()))
            .with_graceful_shutdown(server_stop.clone().cancelled_owned())
            .into_future(),
    );
    tracing::info!(
        %listen,
        store = %store_text(&config),
        node_id = cluster.as_ref().map(|c| c.node_id()),
        subscribers = config.subscribers.len(),
        version = env!("CARGO_PKG_VERSION"),
        "herald is running"
    );

    let purge = tokio::spawn(purge_loop(Arc::clone(&store), config.storage.retention));
    let heartbeat = cluster
        .clone()
        .map(|c| tokio::spawn(heartbeat_loop(c, dispatcher.clone())));
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                let reload = Arc::clone(&reload);
                match tokio::task::spawn_blocking(move || reload()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!("reload rejected, the running configuration stays: {e}"),
                    Err(e) => tracing::error!(error = %e, "reload task failed"),
                }
            }
            _ = terminate.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = interrupt.recv() => { tracing::info!("SIGINT: shutting down"); break; }
        }
    }

    state.stop_intake();
    let report = dispatcher.shutdown(config.shutdown.grace).await;
    purge.abort();
    if let Some(h) = heartbeat {
        h.abort();
    }
    if let Err(e) = store.sync().await {
        tracing::error!(error = %e, "final flush failed");
    }
    server_stop.cancel();
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "API server ended with an error"),
        Err(_) => tracing::warn!("API server did not stop within 5 s"),
        _ => {}
    }
    if let Some(telemetry) = telemetry {
        // The last spans (every attempt has ended by now); blocks up to its flush timeout.
        if let Err(e) = tokio::task::spawn_blocking(move || telemetry.shutdown()).await {
            tracing::warn!(error = %e, "flushing the last spans failed");
        }
    }
    tracing::info!(drained = report.drained, "herald stopped");
    Ok(())
}

/// The configured engine: sled (one node), or PostgreSQL (a node of the cluster on that
/// database, which is also the cluster state).
async fn open_store(
    config: &HeraldConfig,
) -> anyhow::Result<(Arc<dyn DeliveryStore>, Option<Arc<dyn ClusterState>>)> {
    match config.storage.engine {
        StorageEngine::Sled => {
            let store = SledStore::open(&config.storage.path, SledOptions::default())
                .with_context(|| {
                    format!("opening the store at {}", config.storage.path.display())
                })?;
            Ok((Arc::new(store), None))
        }
        StorageEngine::Postgres => {
            let url = config
                .storage
                .url
                .as_ref()
                .context("[storage] url is required with engine = \"postgres\"")?;
            let mut options =
                herald_postgres::PgOptions::new(url.expose()).pool_size(config.storage.pool_size);
            if let Some(id) = &config.cluster.node_id {
                options = options.node_id(id.clone());
            }
            // The error names the host and database, never the password.
            let store = herald_postgres::PgStore::connect(options)
                .await
                .map_err(|e| anyhow::anyhow!("opening the PostgreSQL store: {e}"))?;
            let store = Arc::new(store);
            let cluster: Arc<dyn ClusterState> = store.clone();
            Ok((store, Some(cluster)))
        }
    }
}

/// Where the store is, for logs and `herald check`: the sled path, or the database's host,
/// port and name (never the user or password).
fn store_text(config: &HeraldConfig) -> String {
    match config.storage.engine {
        StorageEngine::Sled => config.storage.path.display().to_string(),
        StorageEngine::Postgres => format!(
            "postgres {}",
            config.storage.database_target().unwrap_or_default()
        ),
    }
}

/// How often this node's heartbeat row is written.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// Writes this node's heartbeat (with its in-flight count) every 5 s.
async fn heartbeat_loop(cluster: Arc<dyn ClusterState>, dispatcher: Dispatcher) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = cluster.heartbeat(dispatcher.local_in_flight()).await {
            tracing::warn!(error = %e, "node heartbeat failed");
        }
    }
}

/// `herald migrate`: creates or migrates the PostgreSQL schema and exits.
pub(crate) fn migrate(args: &ConfigArgs) -> ExitCode {
    let config = match herald_config::load(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{}: configuration is invalid:", args.config.display());
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let url = match (config.storage.engine, &config.storage.url) {
        (StorageEngine::Postgres, Some(url)) => url.clone(),
        _ => {
            return crate::print_out(
                "[storage] engine is sled: there is no schema to migrate (sled's format is upgraded when the store is opened)",
            );
        }
    };
    let target = config.storage.database_target().unwrap_or_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(herald_postgres::migrate(url.expose())) {
        Ok(version) => crate::print_out(&format!("postgres {target}: schema at version {version}")),
        Err(e) => {
            eprintln!("herald: migrate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Re-reads the subscriber folder and applies it; errors keep the running configuration.
/// Called on a blocking thread of the runtime (`spawn_blocking`: it reads files), which then
/// waits for the dispatcher's reload (it reads the stored pauses).
fn reload_fn(config: &HeraldConfig, dispatcher: Dispatcher) -> ReloadFn {
    let dir = config.subscribers_dir.clone();
    let security = config.security;
    let runtime = tokio::runtime::Handle::current();
    Arc::new(move || {
        let env = |name: &str| std::env::var(name).ok();
        let subscribers =
            herald_config::load_subscribers(&dir, &security, &env).map_err(|e| e.to_string())?;
        runtime
            .block_on(dispatcher.reload(subscribers))
            .map_err(|e| e.to_string())
    })
}

async fn purge_loop(store: Arc<dyn DeliveryStore>, retention: Duration) {
    let mut tick = tokio::time::interval(purge_interval(retention));
    loop {
        tick.tick().await;
        let cutoff = UnixMillis::now().minus(retention);
        // The store purges in bounded chunks and never stalls the runtime; with PostgreSQL,
        // one node at a time purges (the engine takes an advisory lock).
        match store.purge(cutoff).await {
            Ok(stats) if stats.deliveries + stats.events + stats.idempotency_keys > 0 => {
                tracing::info!(
                    deliveries = stats.deliveries,
                    events = stats.events,
                    idempotency_keys = stats.idempotency_keys,
                    "purged records older than the retention"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "retention purge failed"),
        }
    }
}

/// `herald check`: the summary on stdout and exit 0, or every error on stderr and exit 1.
pub(crate) fn check(args: &ConfigArgs) -> ExitCode {
    match herald_config::load(&args.config) {
        Ok(config) => {
            // Warnings go to stderr, like errors, and do not change the exit code.
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            crate::print_out(summary(&config, &args.config).trim_end())
        }
        Err(errors) => {
            eprintln!("{}: configuration is invalid:", args.config.display());
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn summary(config: &HeraldConfig, path: &Path) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{}: OK", path.display());
    let _ = writeln!(
        out,
        "listen {}, store {}, retention {}, {} subscriber(s) from {}",
        config.server.listen,
        store_text(config),
        humanize(config.storage.retention),
        config.subscribers.len(),
        config.subscribers_dir.display()
    );
    if config.storage.engine == StorageEngine::Postgres {
        let _ = writeln!(
            out,
            "cluster: engine postgres, database {}, pool_size {}, node_id {}",
            config.storage.database_target().unwrap_or_default(),
            config.storage.pool_size,
            config
                .cluster
                .node_id
                .as_deref()
                .unwrap_or("(host name + process id)"),
        );
    }
    if let Some(t) = &config.telemetry {
        let _ = writeln!(
            out,
            "telemetry: spans over OTLP/HTTP to {} as service {}",
            t.display_url(),
            t.service_name
        );
    }
    for s in &config.subscribers {
        let auth = match &s.auth {
            AuthConfig::None => "none".to_owned(),
            AuthConfig::Basic { .. } => "basic".to_owned(),
            AuthConfig::ApiKey { header, .. } => format!("api_key ({header})"),
            AuthConfig::OAuth2 { token_url, .. } => {
                format!("oauth2 ({})", DisplayUrl::new(token_url))
            }
        };
        let signing = match s.signing.as_ref().map(|s| &s.scheme) {
            None => "none".to_owned(),
            Some(SigningScheme::StandardWebhooks) => "standard-webhooks".to_owned(),
            Some(SigningScheme::Sha256V1 { header_prefix }) => {
                format!("sha256-v1 ({header_prefix})")
            }
        };
        let _ = writeln!(
            out,
            "  {}: {} events={} timeout={} max_in_flight={} attempts={} auth={} signing={} ordering={}{}",
            s.id,
            DisplayUrl::new(&s.url),
            s.events.to_vec().join(","),
            humanize(s.timeout),
            s.max_in_flight,
            s.retry.max_attempts,
            auth,
            signing,
            s.ordering.as_str(),
            s.rate_limit
                .map(|r| format!(" rate_limit={}/s", r.per_second))
                .unwrap_or_default(),
        );
    }
    out
}

fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() != 0 || secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs % 86_400 == 0 {
        format!("{}d", secs / 86_400)
    } else if secs % 3_600 == 0 {
        format!("{}h", secs / 3_600)
    } else if secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_interval_follows_retention() {
        assert_eq!(
            purge_interval(Duration::from_secs(7 * 86_400)),
            Duration::from_secs(60)
        );
        assert_eq!(
            purge_interval(Duration::from_secs(20)),
            Duration::from_secs(5)
        );
        assert_eq!(
            purge_interval(Duration::from_millis(500)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn durations_print_in_config_units() {
        assert_eq!(humanize(Duration::from_millis(500)), "500ms");
        assert_eq!(humanize(Duration::from_secs(10)), "10s");
        assert_eq!(humanize(Duration::from_secs(3600)), "1h");
        assert_eq!(humanize(Duration::from_secs(21 * 86_400)), "21d");
    }
}
