//! An example producer: sends events to Herald's ingest API and prints the answers.
//!
//! ```text
//! cargo run --example producer -- --count 10 --event-type PROCESS_STATE_FINISHED
//! ```
//! Each event carries a fresh `processId` and an idempotency key derived from it, so a producer
//! that retries after a timeout never creates the same event twice.

use clap::Parser;
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    /// Herald's API.
    #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API token, when Herald sets `api_token`.
    #[arg(long, env = "HERALD_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Event type.
    #[arg(long, default_value = "PROCESS_STATE_FINISHED")]
    event_type: String,
    /// Only this subscriber (default: every subscriber of the event type).
    #[arg(long)]
    subscriber: Option<String>,
    /// How many events.
    #[arg(long, default_value_t = 1)]
    count: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let http = reqwest::Client::new();
    for i in 0..args.count {
        let process_id = uuid::Uuid::now_v7().to_string();
        let mut body = json!({
            "event_type": args.event_type,
            "payload": {
                "processId": process_id,
                "state": "PROCESS_STATE_FINISHED",
                "flow": "id",
                "lastEvent": "EVENT_TYPE_PROCESS_CREATED",
                "lastEventDescription": "Process created",
                "sequence": i,
            },
            "idempotency_key": format!("process-{process_id}"),
        });
        if let Some(s) = &args.subscriber {
            body["subscriber"] = json!(s);
        }
        let mut req = http
            .post(format!("{}/v1/events", args.url.trim_end_matches('/')))
            .json(&body);
        if let Some(t) = &args.token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await?;
        println!("{} {}", res.status(), res.text().await?);
    }
    Ok(())
}
