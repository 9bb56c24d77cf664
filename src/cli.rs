//! The command line (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Herald: a durable webhook sender.
///
/// `herald run` starts the daemon; `herald check` validates a configuration; the other commands
/// talk to a running daemon's HTTP API and print tables and summaries, or the API's JSON with
/// `-o json`.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How client commands reach the API.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// Base URL of the Herald API (client commands).
    #[arg(
        long,
        global = true,
        env = "HERALD_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub(crate) url: String,
    /// API bearer token (client commands), when the daemon sets `api_token`.
    #[arg(long, global = true, env = "HERALD_API_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Output of client commands: `text` (tables and summaries, fitted to the terminal) or
    /// `json` (the API's answer, unchanged, for scripts).
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
}

/// What client commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub(crate) enum Output {
    /// Tables, summaries and one-line messages for people.
    #[default]
    Text,
    /// The API's JSON answer, byte for byte.
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub(crate) enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// The daemon's config file; subscribers are read from its `subscribers_dir`.
    #[arg(short, long, default_value = "config/herald.toml")]
    pub(crate) config: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the daemon.
    ///
    /// Example: herald run -c config/herald.toml --log-format json
    Run(RunArgs),
    /// Validate the configuration; print a summary of the subscribers or every error and exit
    /// non-zero.
    ///
    /// Example: herald check -c config/herald.toml
    Check(ConfigArgs),
    /// Create or migrate the PostgreSQL schema (`[storage] engine = "postgres"`) and exit; a
    /// schema newer than this binary is an error.
    ///
    /// Example: herald migrate -c config/herald.toml
    Migrate(ConfigArgs),
    /// List the cluster's nodes seen in the last 30 s (one node with sled), as JSON.
    ///
    /// Example: herald cluster
    Cluster,
    /// Send one event (payload from --data, --file, or stdin).
    ///
    /// Example: herald send -e PROCESS_STATE_FINISHED -d '{"processId":"42"}' --subscriber acme
    Send(SendArgs),
    /// Inspect and retry deliveries.
    #[command(subcommand)]
    Deliveries(DeliveriesCommand),
    /// List subscribers with their live figures (in flight, effective limit, queued, dead).
    ///
    /// Example: herald subscribers (or herald subscribers -o json)
    Subscribers,
    /// Move every dead delivery of a subscriber back to pending.
    ///
    /// Example: herald redrive acme
    Redrive {
        /// Subscriber id.
        subscriber: String,
    },
    /// Hold a subscriber's deliveries (they stay queued).
    ///
    /// Example: herald pause acme --reason "maintenance until 14:00"
    Pause {
        /// Subscriber id.
        subscriber: String,
        /// Why (shown in the API).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Release a paused subscriber.
    ///
    /// Example: herald resume acme
    Resume {
        /// Subscriber id.
        subscriber: String,
    },
    /// Look up accepted events (payload as stored, deliveries with status).
    #[command(subcommand)]
    Events(EventsCommand),
    /// Make a subscriber's finished deliveries of a time window pending again (same id,
    /// history kept, fresh retry budget).
    ///
    /// Example: herald replay acme --since 2h --status dead --dry-run
    Replay(ReplayArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
    /// Show one event with its payload and deliveries.
    ///
    /// Example: herald events get 0192f0c4-…
    Get {
        /// Event id.
        id: String,
    },
    /// List events in acceptance order, filtered.
    ///
    /// Example: herald events list --since 2h --event-type PROCESS_STATE_FINISHED --limit 50
    List {
        /// Events accepted at or after this time: RFC 3339 or a duration ago (`2h`, `30m`).
        #[arg(long)]
        since: Option<String>,
        /// Events accepted before this time: RFC 3339 or a duration ago.
        #[arg(long)]
        until: Option<String>,
        /// Only this event type.
        #[arg(long)]
        event_type: Option<String>,
        /// Page size (1..=1000).
        #[arg(long)]
        limit: Option<usize>,
        /// Resume after this cursor (the previous page's next_cursor).
        #[arg(long)]
        cursor: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Subscriber id.
    pub(crate) subscriber: String,
    /// Events accepted at or after this time: RFC 3339 or a duration ago (`2h`, `1d 6h`).
    #[arg(long)]
    pub(crate) since: String,
    /// Events accepted before this time: RFC 3339 or a duration ago (default: now).
    #[arg(long)]
    pub(crate) until: Option<String>,
    /// Which finished deliveries: `dead` (default), `delivered`, or both (`delivered,dead`).
    #[arg(long, value_delimiter = ',')]
    pub(crate) status: Vec<String>,
    /// Only this event type (repeat for several).
    #[arg(long)]
    pub(crate) event_type: Vec<String>,
    /// Count what would be replayed; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Event type, e.g. PROCESS_STATE_FINISHED.
    #[arg(short, long, visible_alias = "event")]
    pub(crate) event_type: String,
    /// JSON payload.
    #[arg(
        short,
        long,
        visible_alias = "payload",
        short_alias = 'p',
        conflicts_with = "file"
    )]
    pub(crate) data: Option<String>,
    /// Read the JSON payload from this file.
    #[arg(short, long)]
    pub(crate) file: Option<PathBuf>,
    /// Deliver to this subscriber only (default: every subscriber of the event type).
    #[arg(short, long)]
    pub(crate) subscriber: Option<String>,
    /// Idempotency key: sending the same key again creates nothing.
    #[arg(short, long)]
    pub(crate) idempotency_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeliveriesCommand {
    /// Show one delivery with its attempts.
    ///
    /// Example: herald deliveries get 0192f0c4-…
    Get {
        /// Delivery id.
        id: String,
    },
    /// List deliveries, newest last, filtered.
    ///
    /// Example: herald deliveries list --subscriber acme --status dead --limit 50
    List {
        /// Only this subscriber.
        #[arg(long)]
        subscriber: Option<String>,
        /// pending, in_flight, delivered or dead.
        #[arg(long)]
        status: Option<String>,
        /// Page size (1..=1000).
        #[arg(long)]
        limit: Option<usize>,
        /// Resume after this cursor (the previous page's next_cursor).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Move a dead delivery back to pending.
    ///
    /// Example: herald deliveries retry 0192f0c4-…
    Retry {
        /// Delivery id.
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults_to_shipped_config() {
        let cli = Cli::try_parse_from(["herald", "run"]).expect("parses");
        match cli.command {
            Command::Run(args) => {
                assert_eq!(args.config.config, PathBuf::from("config/herald.toml"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn output_is_text_unless_json_is_asked_for() {
        let cli = Cli::try_parse_from(["herald", "subscribers"]).expect("parses");
        assert_eq!(cli.client.output, Output::Text);
        for args in [
            ["herald", "-o", "json", "subscribers"],
            ["herald", "subscribers", "--output", "json"],
            ["herald", "subscribers", "-o", "json"],
        ] {
            let cli = Cli::try_parse_from(args).expect("parses");
            assert_eq!(cli.client.output, Output::Json, "{args:?}");
        }
        assert!(Cli::try_parse_from(["herald", "subscribers", "-o", "yaml"]).is_err());
    }

    #[test]
    fn send_takes_the_api_field_names_too() {
        let cli = Cli::try_parse_from([
            "herald",
            "send",
            "--event",
            "E",
            "--payload",
            "{}",
            "--subscriber",
            "acme",
        ])
        .expect("parses");
        match cli.command {
            Command::Send(args) => {
                assert_eq!(args.event_type, "E");
                assert_eq!(args.data.as_deref(), Some("{}"));
                assert_eq!(args.subscriber.as_deref(), Some("acme"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
