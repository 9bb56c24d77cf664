//! Client commands: thin wrappers over the HTTP API. By default they print tables, summaries
//! and one-line messages ([`crate::views`]); with `-o json` the API's answer exactly as it came.

use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::cli::{
    ClientArgs, Command, DeliveriesCommand, EventsCommand, Output, ReplayArgs, SendArgs,
};
use crate::table::output_width;
use crate::views;

pub(crate) fn run(args: &ClientArgs, command: Command) -> ExitCode {
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
    match runtime.block_on(execute(args, &command)) {
        Ok(answer) => match args.output {
            Output::Json => crate::print_out(answer.text.trim_end()),
            Output::Text => {
                let (text, hint) = human(&command, &answer.value);
                let code = crate::print_out(text.trim_end_matches('\n'));
                if let Some(hint) = hint {
                    eprintln!("{hint}");
                }
                code
            }
        },
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `command` prints by default for the API's `answer`, and a hint for stderr (kept off
/// stdout so that `| awk` sees only rows).
fn human(command: &Command, answer: &Value) -> (String, Option<String>) {
    let width = output_width();
    let now = OffsetDateTime::now_utc();
    match command {
        Command::Subscribers => {
            if answer.as_array().is_some_and(Vec::is_empty) {
                return (
                    String::new(),
                    Some("no subscribers are configured".to_owned()),
                );
            }
            (views::subscribers(answer, width), None)
        }
        Command::Deliveries(DeliveriesCommand::List {
            subscriber,
            status,
            limit,
            ..
        }) => {
            let next = answer["next_cursor"].as_str().map(|cursor| {
                let mut again = String::from("herald deliveries list");
                for (flag, value) in [
                    ("--subscriber", subscriber.clone()),
                    ("--status", status.clone()),
                    ("--limit", limit.map(|l| l.to_string())),
                ] {
                    if let Some(value) = value {
                        again.push_str(&format!(" {flag} {value}"));
                    }
                }
                format!("more: {again} --cursor {cursor}")
            });
            if answer["deliveries"].as_array().is_some_and(Vec::is_empty) {
                return (String::new(), Some("no deliveries match".to_owned()));
            }
            (views::deliveries(answer, now, width), next)
        }
        Command::Deliveries(DeliveriesCommand::Get { .. }) => {
            (views::delivery(answer, now, width), None)
        }
        Command::Deliveries(DeliveriesCommand::Retry { .. }) => (views::retried(answer), None),
        Command::Send(_) => (views::sent(answer), None),
        Command::Redrive { .. } => (views::redriven(answer), None),
        Command::Pause { .. } | Command::Resume { .. } => (views::paused_or_resumed(answer), None),
        Command::Cluster => (views::cluster(answer, now, width), None),
        Command::Events(EventsCommand::Get { .. }) => (views::event(answer, width), None),
        Command::Events(EventsCommand::List { .. }) => {
            let next = answer["next_cursor"]
                .as_str()
                .map(|cursor| format!("more: add --cursor {cursor} to the same command"));
            if answer["events"].as_array().is_some_and(Vec::is_empty) {
                return (String::new(), Some("no events match".to_owned()));
            }
            (views::events(answer, width), next)
        }
        Command::Replay(args) => (views::replayed(answer, args.dry_run), None),
        Command::Run(_) | Command::Check(_) | Command::Migrate(_) => (answer.to_string(), None),
    }
}

/// An API answer: its body as received and parsed.
struct Answer {
    text: String,
    value: Value,
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}{}", self.base.trim_end_matches('/'), path);
        let mut req = self.http.request(method, &url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach the Herald API at {}", self.base))?;
        let status = res.status();
        let text = res.text().await.context("reading the API answer")?;
        let value: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        if !status.is_success() {
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            bail!("{status}: {message}");
        }
        Ok(Answer { text, value })
    }
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(serde::Serialize)]
struct EventOut<'a> {
    event_type: &'a str,
    payload: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriber: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<&'a str>,
}

/// The request body of `send`, with the payload exactly as given (not re-serialised).
fn send_body(args: &SendArgs) -> anyhow::Result<String> {
    let raw = match (&args.data, &args.file) {
        (Some(d), _) => d.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => {
            std::io::read_to_string(std::io::stdin()).context("reading the payload from stdin")?
        }
    };
    let payload: &RawValue =
        serde_json::from_str(raw.trim()).context("the payload is not valid JSON")?;
    let body = EventOut {
        event_type: &args.event_type,
        payload,
        subscriber: args.subscriber.as_deref(),
        idempotency_key: args.idempotency_key.as_deref(),
    };
    Ok(serde_json::to_string(&body)?)
}

/// A time argument as RFC 3339: given as such (checked), or as a duration before `now`
/// (`2h`, `30m`, `1d 6h`).
fn time_arg(flag: &str, raw: &str, now: std::time::SystemTime) -> anyhow::Result<String> {
    use time::format_description::well_known::Rfc3339;
    if time::OffsetDateTime::parse(raw, &Rfc3339).is_ok() {
        return Ok(raw.to_owned());
    }
    let ago = humantime::parse_duration(raw).map_err(|_| {
        anyhow::anyhow!(
            "{flag} takes an RFC 3339 time (2026-01-31T22:00:00Z) or a duration ago (2h, 30m), not {raw:?}"
        )
    })?;
    let at = now
        .checked_sub(ago)
        .with_context(|| format!("{flag} {raw} ago is before 1970"))?;
    let at = time::OffsetDateTime::from(at);
    // Whole milliseconds: what the store keeps.
    let at = at
        .replace_nanosecond(at.millisecond() as u32 * 1_000_000)
        .unwrap_or(at);
    Ok(at.format(&Rfc3339)?)
}

/// The body of `POST /v1/subscribers/{id}/replay`.
fn replay_body(args: &ReplayArgs, now: std::time::SystemTime) -> anyhow::Result<Value> {
    let mut body = json!({
        "since": time_arg("--since", &args.since, now)?,
        "dry_run": args.dry_run,
    });
    if let Some(u) = &args.until {
        body["until"] = json!(time_arg("--until", u, now)?);
    }
    if !args.status.is_empty() {
        body["status"] = json!(args.status);
    }
    if !args.event_type.is_empty() {
        body["event_types"] = json!(args.event_type);
    }
    Ok(body)
}

async fn execute(args: &ClientArgs, command: &Command) -> anyhow::Result<Answer> {
    use reqwest::Method;
    let api = Api {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?,
        base: args.url.clone(),
        token: args.token.clone(),
    };
    match command {
        Command::Send(send) => {
            api.call(Method::POST, "/v1/events", Some(send_body(send)?))
                .await
        }
        Command::Subscribers => api.call(Method::GET, "/v1/subscribers", None).await,
        Command::Cluster => api.call(Method::GET, "/v1/cluster", None).await,
        Command::Redrive { subscriber } => {
            api.call(
                Method::POST,
                &format!("/v1/subscribers/{}/redrive", encode(subscriber)),
                None,
            )
            .await
        }
        Command::Pause { subscriber, reason } => {
            let body = reason.as_ref().map(|r| json!({ "reason": r }).to_string());
            api.call(
                Method::POST,
                &format!("/v1/subscribers/{}/pause", encode(subscriber)),
                body,
            )
            .await
        }
        Command::Resume { subscriber } => {
            api.call(
                Method::POST,
                &format!("/v1/subscribers/{}/resume", encode(subscriber)),
                None,
            )
            .await
        }
        Command::Deliveries(DeliveriesCommand::Get { id }) => {
            api.call(Method::GET, &format!("/v1/deliveries/{}", encode(id)), None)
                .await
        }
        Command::Deliveries(DeliveriesCommand::Retry { id }) => {
            api.call(
                Method::POST,
                &format!("/v1/deliveries/{}/retry", encode(id)),
                None,
            )
            .await
        }
        Command::Deliveries(DeliveriesCommand::List {
            subscriber,
            status,
            limit,
            cursor,
        }) => {
            let mut query = Vec::new();
            if let Some(s) = subscriber {
                query.push(format!("subscriber={}", encode(s)));
            }
            if let Some(s) = status {
                query.push(format!("status={}", encode(s)));
            }
            if let Some(l) = limit {
                query.push(format!("limit={l}"));
            }
            if let Some(c) = cursor {
                query.push(format!("cursor={}", encode(c)));
            }
            let path = if query.is_empty() {
                "/v1/deliveries".to_owned()
            } else {
                format!("/v1/deliveries?{}", query.join("&"))
            };
            api.call(Method::GET, &path, None).await
        }
        Command::Events(EventsCommand::Get { id }) => {
            api.call(Method::GET, &format!("/v1/events/{}", encode(id)), None)
                .await
        }
        Command::Events(EventsCommand::List {
            since,
            until,
            event_type,
            limit,
            cursor,
        }) => {
            let now = std::time::SystemTime::now();
            let mut query = Vec::new();
            if let Some(s) = since {
                query.push(format!("since={}", encode(&time_arg("--since", s, now)?)));
            }
            if let Some(u) = until {
                query.push(format!("until={}", encode(&time_arg("--until", u, now)?)));
            }
            if let Some(t) = event_type {
                query.push(format!("event_type={}", encode(t)));
            }
            if let Some(l) = limit {
                query.push(format!("limit={l}"));
            }
            if let Some(c) = cursor {
                query.push(format!("cursor={}", encode(c)));
            }
            let path = if query.is_empty() {
                "/v1/events".to_owned()
            } else {
                format!("/v1/events?{}", query.join("&"))
            };
            api.call(Method::GET, &path, None).await
        }
        Command::Replay(replay) => {
            let body = replay_body(replay, std::time::SystemTime::now())?;
            api.call(
                Method::POST,
                &format!("/v1/subscribers/{}/replay", encode(&replay.subscriber)),
                Some(body.to_string()),
            )
            .await
        }
        Command::Run(_) | Command::Check(_) | Command::Migrate(_) => {
            bail!("not a client command")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode("acme-1.eu_x"), "acme-1.eu_x");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        assert_eq!(
            time_arg("--since", "2h", now).expect("2h ago"),
            "2027-01-15T06:00:00Z"
        );
        assert_eq!(
            time_arg("--since", "2026-01-31T22:00:00Z", now).expect("rfc 3339"),
            "2026-01-31T22:00:00Z"
        );
        assert!(time_arg("--since", "yesterday-ish", now).is_err());
    }

    #[test]
    fn replay_body_has_the_api_field_names() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let args = ReplayArgs {
            subscriber: "acme".into(),
            since: "1h".into(),
            until: None,
            status: vec!["delivered".into(), "dead".into()],
            event_type: vec!["A".into()],
            dry_run: true,
        };
        let body = replay_body(&args, now).expect("a body");
        assert_eq!(
            body,
            json!({"since": "2027-01-15T07:00:00Z", "dry_run": true,
                   "status": ["delivered", "dead"], "event_types": ["A"]})
        );
    }

    #[test]
    fn send_keeps_the_payload_verbatim() {
        let args = SendArgs {
            event_type: "X".into(),
            data: Some(r#"{"b": 1,  "a":[1.50]}"#.into()),
            file: None,
            subscriber: Some("acme".into()),
            idempotency_key: None,
        };
        let text = send_body(&args).unwrap_or_default();
        assert!(text.contains(r#"{"b": 1,  "a":[1.50]}"#), "{text}");
        assert!(send_body(&SendArgs {
            data: Some("{nope".into()),
            ..args
        })
        .is_err());
    }
}
