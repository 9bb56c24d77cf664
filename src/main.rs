//! `herald`: the daemon (`run`), the config checker (`check`) and a client for the HTTP API.
//!
//! This binary is the only crate that knows every other one: it reads the config
//! (`herald-config`), opens the store (`herald-queue`), starts the dispatcher
//! (`herald-dispatcher`, which sends through `herald-delivery`) and serves the API (`herald-api`).

mod cli;
mod client;
mod daemon;
mod logging;
mod table;
mod telemetry;
mod views;

use std::process::ExitCode;

use clap::Parser;

/// jemalloc instead of glibc's malloc: buffers here are routinely allocated on one thread and
/// freed on another (request bodies, sled pages, connection buffers moving between tokio
/// workers and sled's threads), and glibc's per-arena locks turned that into futex traffic.
/// With it, batch ingest and backlog drain roughly doubled in `examples/loadtest.rs`; the
/// measured figures are in the README (Performance, "what moved it").
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Run(args) => {
            logging::init(args.log_format);
            match daemon::run(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("herald: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        cli::Command::Check(args) => daemon::check(&args),
        cli::Command::Migrate(args) => {
            logging::init(cli::LogFormat::Text);
            daemon::migrate(&args)
        }
        command => client::run(&cli.client, command),
    }
}

/// Writes `text` and a newline to stdout. A closed pipe (`herald subscribers | head -1`) is not
/// an error worth a panic, which `println!` would give: the reader has what it wanted.
pub(crate) fn print_out(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}
