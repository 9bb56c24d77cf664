//! An example webhook receiver: the pattern a Herald subscriber should follow.
//!
//! 1. Verify the signature over the exact body bytes (Standard Webhooks: HMAC-SHA256 of
//!    `{webhook-id}.{webhook-timestamp}.{body}`; or `sha256-v1`: SHA-256 of `secret ‖ body`),
//!    rejecting stale timestamps (replay protection).
//! 2. Deduplicate on `webhook-id`: Herald delivers at least once, so the same delivery can
//!    arrive twice (after a crash or a lost response). Process it once, acknowledge every time.
//! 3. Answer 2xx quickly; do slow work after acknowledging.
//!
//! ```text
//! cargo run --example receiver -- --listen 127.0.0.1:9000 --secret whsec_...
//! ```

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use clap::Parser;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Standard Webhooks secret (`whsec_...`); unset = signatures not checked.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Verify `sha256-v1` signatures under this header prefix instead (e.g. `unidy-webhook`).
    #[arg(long)]
    sha256_prefix: Option<String>,
    /// Largest accepted clock skew of `webhook-timestamp`, in seconds.
    #[arg(long, default_value_t = 300)]
    tolerance: u64,
}

/// Remembers the last ids seen (bounded), so duplicates are recognised without unbounded growth.
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
    cap: usize,
}

impl Seen {
    /// True the first time an id is seen.
    fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == self.cap {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.ids.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

struct AppState {
    args: Args,
    seen: Mutex<Seen>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn verify_standard(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    tolerance: u64,
) -> Result<(), String> {
    let id = header(headers, "webhook-id").ok_or("missing webhook-id")?;
    let ts = header(headers, "webhook-timestamp").ok_or("missing webhook-timestamp")?;
    let sigs = header(headers, "webhook-signature").ok_or("missing webhook-signature")?;
    let ts_num: u64 = ts.parse().map_err(|_| "bad webhook-timestamp")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if now.abs_diff(ts_num) > tolerance {
        return Err("timestamp outside the tolerance (replay?)".into());
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .map_err(|_| "secret is not whsec_<base64>")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| "bad key")?;
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    // Several signatures (key rotation) are space-separated; any valid one is enough.
    let ok = sigs
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| constant_time_eq(s.as_bytes(), expected.as_bytes()));
    if ok {
        Ok(())
    } else {
        Err("no valid signature".into())
    }
}

fn verify_sha256(
    prefix: &str,
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let given =
        header(headers, &format!("{prefix}-signature")).ok_or("missing signature header")?;
    let mut h = Sha256::new();
    h.update(secret.as_bytes());
    h.update(body);
    let expected = hex::encode(h.finalize());
    let ok = given
        .split(' ')
        .any(|s| constant_time_eq(s.as_bytes(), expected.as_bytes()));
    if ok {
        Ok(())
    } else {
        Err("signature mismatch".into())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if let Some(secret) = &state.args.secret {
        let verdict = match &state.args.sha256_prefix {
            Some(prefix) => verify_sha256(prefix, secret, &headers, &body),
            None => verify_standard(secret, &headers, &body, state.args.tolerance),
        };
        if let Err(why) = verdict {
            eprintln!("rejected: {why}");
            return StatusCode::UNAUTHORIZED;
        }
    }
    let id = header(&headers, "webhook-id").unwrap_or("-").to_owned();
    let attempt = header(&headers, "webhook-attempt")
        .unwrap_or("-")
        .to_owned();
    if state.seen.lock().insert(&id) {
        println!(
            "delivery {id} (attempt {attempt}): {}",
            String::from_utf8_lossy(&body)
        );
    } else {
        println!("delivery {id} (attempt {attempt}): duplicate, acknowledged again");
    }
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listen = args.listen;
    let state = Arc::new(AppState {
        args,
        seen: Mutex::new(Seen {
            ids: HashSet::new(),
            order: VecDeque::new(),
            cap: 100_000,
        }),
    });
    let app = Router::new()
        .route("/webhook", post(webhook))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("receiver listening on http://{listen}/webhook");
    axum::serve(listener, app).await
}
