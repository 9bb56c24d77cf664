//! What the client commands print by default: the API's JSON answers turned into tables,
//! summaries and one-line messages (layout rules in [`crate::table`]). `-o json` bypasses all of
//! this and prints the answer unchanged.
//!
//! Fields are read leniently: a field the API does not send (yet), or sends as `null`, shows as
//! `-`, so an older or newer daemon never makes the CLI fail.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::table::{summary, Table};

/// `herald subscribers`.
pub(crate) fn subscribers(answer: &Value, width: Option<usize>) -> String {
    let mut table = Table::new(&[
        "ID",
        "IN FLIGHT/LIMIT/MAX",
        "ERROR RATE",
        "QUEUED",
        "DEAD",
        "OLDEST PENDING",
        "PAUSED",
    ])
    .right(1)
    .right(2)
    .right(3)
    .right(4)
    .right(5)
    .free_text(6);
    for s in answer.as_array().into_iter().flatten() {
        table.row(vec![
            text(&s["id"]),
            format!(
                "{}/{}/{}",
                text(&s["in_flight"]),
                text(&s["effective_limit"]),
                text(&s["max_in_flight"])
            ),
            s["error_rate"]
                .as_f64()
                .map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0)),
            text(&s["queued"]),
            text(&s["dead"]),
            // 0: nothing is due.
            match s["oldest_pending_seconds"].as_f64() {
                Some(secs) if secs > 0.0 => age(secs as u64),
                _ => "-".to_owned(),
            },
            paused(s),
        ]);
    }
    table.render(width)
}

/// `herald deliveries list`: the table (without the next-cursor hint).
pub(crate) fn deliveries(answer: &Value, now: OffsetDateTime, width: Option<usize>) -> String {
    let mut table = Table::new(&[
        "ID",
        "SUBSCRIBER",
        "EVENT TYPE",
        "STATUS",
        "ATTEMPTS",
        "NEXT ATTEMPT",
        "LAST ERROR",
    ])
    .right(4)
    .free_text(6);
    for d in answer["deliveries"].as_array().into_iter().flatten() {
        table.row(vec![
            text(&d["id"]),
            text(&d["subscriber"]),
            text(&d["event_type"]),
            text(&d["status"]),
            text(&d["attempt_count"]),
            relative(&d["next_attempt_at"], now),
            text(&d["last_error"]),
        ]);
    }
    table.render(width)
}

/// `herald deliveries get`: a summary, then the attempt timeline.
pub(crate) fn delivery(answer: &Value, now: OffsetDateTime, width: Option<usize>) -> String {
    let d = answer;
    let next = match &d["next_attempt_at"] {
        Value::String(at) => format!("{at} ({})", relative(&d["next_attempt_at"], now)),
        _ => "-".to_owned(),
    };
    let mut pairs = vec![
        ("ID", text(&d["id"])),
        ("Event", text(&d["event_id"])),
        ("Subscriber", text(&d["subscriber"])),
        ("Event type", text(&d["event_type"])),
        ("Status", text(&d["status"])),
        ("Attempts", text(&d["attempt_count"])),
        ("Next attempt", next),
        ("Created", text(&d["created_at"])),
        ("Updated", text(&d["updated_at"])),
    ];
    if let Some(key) = d["ordering_key"].as_str() {
        pairs.push(("Ordering key", key.to_owned()));
    }
    pairs.push(("Last error", text(&d["last_error"])));
    let mut out = summary(&pairs);
    out.push('\n');
    let attempts = d["attempts"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if attempts.is_empty() {
        out.push_str("No attempts yet.\n");
        return out;
    }
    let mut table = Table::new(&["#", "AT", "STATUS", "DURATION", "ERROR"])
        .right(0)
        .right(2)
        .right(3)
        .free_text(4);
    for a in attempts {
        table.row(vec![
            text(&a["attempt"]),
            text(&a["at"]),
            text(&a["status_code"]),
            a["duration_ms"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), duration_ms),
            text(&a["error"]),
        ]);
    }
    out.push_str(&table.render(width));
    out
}

/// `herald send`: one line with the event and its deliveries.
pub(crate) fn sent(answer: &Value) -> String {
    const SHOWN: usize = 5;
    let event = text(&answer["event_id"]);
    let deliveries = answer["deliveries"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if deliveries.is_empty() {
        return format!("event {event} accepted: no subscriber receives it");
    }
    let mut listed: Vec<String> = deliveries
        .iter()
        .take(SHOWN)
        .map(|d| format!("{} {}", text(&d["subscriber"]), text(&d["id"])))
        .collect();
    if deliveries.len() > SHOWN {
        listed.push(format!("and {} more", deliveries.len() - SHOWN));
    }
    format!(
        "event {event} accepted: {} ({})",
        count(deliveries.len(), "delivery", "deliveries"),
        listed.join(", ")
    )
}

/// `herald deliveries retry`.
pub(crate) fn retried(answer: &Value) -> String {
    format!(
        "delivery {} ({}) is {} again",
        text(&answer["id"]),
        text(&answer["subscriber"]),
        text(&answer["status"])
    )
}

/// `herald redrive`.
pub(crate) fn redriven(answer: &Value) -> String {
    let n = answer["redriven"].as_u64().unwrap_or(0);
    format!(
        "{} of {} back to pending",
        count(n as usize, "dead delivery", "dead deliveries"),
        text(&answer["subscriber"])
    )
}

/// `herald pause` and `herald resume`: the subscriber's state after the change.
pub(crate) fn paused_or_resumed(answer: &Value) -> String {
    let id = text(&answer["id"]);
    let queued = answer["queued"].as_u64().unwrap_or(0) as usize;
    if answer["paused"] == Value::Bool(true) {
        format!(
            "subscriber {id} paused ({}); {} waiting",
            text(&answer["paused_reason"]),
            count(queued, "delivery", "deliveries")
        )
    } else {
        format!(
            "subscriber {id} resumed; {} queued",
            count(queued, "delivery", "deliveries")
        )
    }
}

/// A scalar as text: strings without quotes, `-` for null or absent.
/// `herald events get`: a summary, the deliveries, then the payload (indented).
pub(crate) fn event(answer: &Value, width: Option<usize>) -> String {
    let e = answer;
    let mut pairs = vec![
        ("ID", text(&e["id"])),
        ("Event type", text(&e["event_type"])),
        ("Received", text(&e["received_at"])),
    ];
    if let Some(key) = e["ordering_key"].as_str() {
        pairs.push(("Ordering key", key.to_owned()));
    }
    if let Some(key) = e["idempotency_key"].as_str() {
        pairs.push(("Idempotency key", key.to_owned()));
    }
    let mut out = summary(&pairs);
    out.push('\n');
    let deliveries = e["deliveries"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if deliveries.is_empty() {
        out.push_str("No deliveries retained.\n");
    } else {
        let mut table = Table::new(&["DELIVERY", "SUBSCRIBER", "STATUS"]);
        for d in deliveries {
            table.row(vec![
                text(&d["id"]),
                text(&d["subscriber"]),
                text(&d["status"]),
            ]);
        }
        out.push_str(&table.render(width));
    }
    out.push('\n');
    out.push_str(
        &serde_json::to_string_pretty(&e["payload"]).unwrap_or_else(|_| text(&e["payload"])),
    );
    out.push('\n');
    out
}

/// `herald events list`: the table (without the next-cursor hint).
pub(crate) fn events(answer: &Value, width: Option<usize>) -> String {
    let mut table = Table::new(&["ID", "EVENT TYPE", "RECEIVED", "ORDERING KEY"]).free_text(3);
    for e in answer["events"].as_array().into_iter().flatten() {
        table.row(vec![
            text(&e["id"]),
            text(&e["event_type"]),
            text(&e["received_at"]),
            text(&e["ordering_key"]),
        ]);
    }
    table.render(width)
}

/// `herald replay`: one line, what a dry run would do or what was done.
pub(crate) fn replayed(answer: &Value, dry_run: bool) -> String {
    let sub = text(&answer["subscriber"]);
    let matched = answer["matched"].as_u64().unwrap_or(0) as usize;
    let replayed = answer["replayed"].as_u64().unwrap_or(0) as usize;
    if dry_run {
        format!(
            "dry run: {} of {sub} would be replayed (nothing changed)",
            count(matched, "delivery", "deliveries")
        )
    } else {
        format!(
            "{} of {sub} replayed ({matched} matched)",
            count(replayed, "delivery", "deliveries")
        )
    }
}

/// `herald cluster`: the nodes seen in the last 30 s.
pub(crate) fn cluster(answer: &Value, now: OffsetDateTime, width: Option<usize>) -> String {
    let mut table = Table::new(&["NODE", "UP", "LAST SEEN", "IN FLIGHT"])
        .right(1)
        .right(2)
        .right(3);
    for n in answer["nodes"].as_array().into_iter().flatten() {
        table.row(vec![
            text(&n["id"]),
            since(&n["started_at"], now),
            since(&n["last_seen"], now).replace("now", "just now"),
            text(&n["in_flight"]),
        ]);
    }
    table.render(width)
}

/// How long ago an RFC 3339 instant was: `3m12s`, `now` within a second, `-` when absent.
fn since(v: &Value, now: OffsetDateTime) -> String {
    let Some(at) = v.as_str() else {
        return "-".to_owned();
    };
    match OffsetDateTime::parse(at, &Rfc3339) {
        Ok(at) => match (now - at).whole_seconds() {
            s if s <= 0 => "now".to_owned(),
            s => age(s.unsigned_abs()),
        },
        Err(_) => at.to_owned(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn paused(s: &Value) -> String {
    if s["paused"] == Value::Bool(true) {
        match s["paused_reason"].as_str() {
            Some(reason) => format!("yes: {reason}"),
            None => "yes".to_owned(),
        }
    } else {
        "no".to_owned()
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// An RFC 3339 instant relative to `now`: `in 12s`, `now` when due, `-` when absent.
fn relative(v: &Value, now: OffsetDateTime) -> String {
    let Some(at) = v.as_str() else {
        return "-".to_owned();
    };
    match OffsetDateTime::parse(at, &Rfc3339) {
        Ok(at) => {
            let ahead = (at - now).whole_seconds();
            if ahead <= 0 {
                "now".to_owned()
            } else {
                format!("in {}", age(ahead.unsigned_abs()))
            }
        }
        Err(_) => at.to_owned(),
    }
}

/// A span of seconds in at most two units: `45s`, `3m12s`, `2h05m`, `3d04h`.
fn age(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Milliseconds as `12ms` or `1.2s`.
fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-12-03 10:00:00 UTC);

    #[test]
    fn subscribers_table_shows_the_live_figures() {
        let answer = json!([
            {"id": "acme", "in_flight": 12, "effective_limit": 250, "max_in_flight": 500,
             "error_rate": 0.125, "queued": 3400, "dead": 2, "paused": false,
             "paused_reason": null, "oldest_pending_seconds": 192},
            {"id": "beta", "in_flight": 0, "effective_limit": 10, "max_in_flight": 10,
             "error_rate": 0.0, "queued": 0, "dead": 0, "paused": true,
             "paused_reason": "maintenance until 14:00"},
        ]);
        assert_eq!(
            subscribers(&answer, None),
            "ID    IN FLIGHT/LIMIT/MAX  ERROR RATE  QUEUED  DEAD  OLDEST PENDING  PAUSED\n\
             acme           12/250/500       12.5%    3400     2           3m12s  no\n\
             beta              0/10/10        0.0%       0     0               -  yes: maintenance until 14:00\n"
        );
    }

    #[test]
    fn event_views() {
        let e = json!({"id": "e1", "event_type": "process.completed",
            "received_at": "2026-12-03T09:59:00Z", "ordering_key": "proc-7",
            "idempotency_key": null, "payload": {"a": [1, 2]},
            "deliveries": [{"id": "d1", "subscriber": "acme", "status": "delivered"}]});
        assert_eq!(
            event(&e, None),
            "ID:            e1\n\
             Event type:    process.completed\n\
             Received:      2026-12-03T09:59:00Z\n\
             Ordering key:  proc-7\n\
             \n\
             DELIVERY  SUBSCRIBER  STATUS\n\
             d1        acme        delivered\n\
             \n\
             {\n  \"a\": [\n    1,\n    2\n  ]\n}\n"
        );
        let page = json!({"events": [e], "next_cursor": null});
        assert_eq!(
            events(&page, None),
            "ID  EVENT TYPE         RECEIVED              ORDERING KEY\n\
             e1  process.completed  2026-12-03T09:59:00Z  proc-7\n"
        );
        let answer = json!({"subscriber": "acme", "matched": 3, "replayed": 1});
        assert_eq!(
            replayed(&answer, false),
            "1 delivery of acme replayed (3 matched)"
        );
        assert_eq!(
            replayed(&answer, true),
            "dry run: 3 deliveries of acme would be replayed (nothing changed)"
        );
    }

    #[test]
    fn cluster_table_shows_each_node() {
        let answer = json!({"nodes": [
            {"id": "herald-a", "started_at": "2026-12-03T09:00:00Z",
             "last_seen": "2026-12-03T09:59:58Z", "in_flight": 120},
            {"id": "herald-b", "started_at": "2026-12-03T09:56:48Z",
             "last_seen": "2026-12-03T10:00:00Z", "in_flight": 0},
        ]});
        assert_eq!(
            cluster(&answer, NOW, None),
            "NODE         UP  LAST SEEN  IN FLIGHT\n\
             herald-a  1h00m         2s        120\n\
             herald-b  3m12s   just now          0\n"
        );
    }

    #[test]
    fn delivery_views() {
        let d = json!({"id": "d1", "event_id": "e1", "subscriber": "acme", "event_type": "X",
            "status": "pending", "attempt_count": 2, "next_attempt_at": "2026-12-03T10:00:42Z",
            "created_at": "2026-12-03T09:59:00Z", "updated_at": "2026-12-03T09:59:30Z",
            "last_error": "HTTP 503", "attempts": [
                {"attempt": 1, "at": "2026-12-03T09:59:00Z", "status_code": null,
                 "error": "connection refused", "duration_ms": 3},
                {"attempt": 2, "at": "2026-12-03T09:59:30Z", "status_code": 503,
                 "error": "HTTP 503", "duration_ms": 1250}]});
        let text = delivery(&d, NOW, None);
        assert!(
            text.starts_with("ID:            d1\nEvent:         e1\n"),
            "{text}"
        );
        assert!(
            text.contains("Next attempt:  2026-12-03T10:00:42Z (in 42s)\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "#  AT                    STATUS  DURATION  ERROR\n\
                 1  2026-12-03T09:59:00Z       -       3ms  connection refused\n\
                 2  2026-12-03T09:59:30Z     503      1.2s  HTTP 503\n"
            ),
            "{text}"
        );
        let list = deliveries(&json!({"deliveries": [d], "next_cursor": "d1"}), NOW, None);
        assert_eq!(
            list,
            "ID  SUBSCRIBER  EVENT TYPE  STATUS   ATTEMPTS  NEXT ATTEMPT  LAST ERROR\n\
             d1  acme        X           pending         2  in 42s        HTTP 503\n"
        );
    }

    #[test]
    fn one_line_summaries() {
        assert_eq!(
            sent(&json!({"event_id": "e1", "deliveries": [{"id": "d1", "subscriber": "acme"}]})),
            "event e1 accepted: 1 delivery (acme d1)"
        );
        assert_eq!(
            sent(&json!({"event_id": "e1", "deliveries": []})),
            "event e1 accepted: no subscriber receives it"
        );
        assert_eq!(
            redriven(&json!({"subscriber": "acme", "redriven": 3})),
            "3 dead deliveries of acme back to pending"
        );
        assert_eq!(
            paused_or_resumed(
                &json!({"id": "acme", "paused": true, "paused_reason": "why", "queued": 1})
            ),
            "subscriber acme paused (why); 1 delivery waiting"
        );
        assert_eq!(
            retried(&json!({"id": "d1", "subscriber": "acme", "status": "pending"})),
            "delivery d1 (acme) is pending again"
        );
    }

    #[test]
    fn ages() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(192), "3m12s");
        assert_eq!(age(7500), "2h05m");
        assert_eq!(age(3 * 86_400 + 4 * 3600), "3d04h");
        assert_eq!(relative(&json!("2026-12-03T09:00:00Z"), NOW), "now");
        assert_eq!(relative(&Value::Null, NOW), "-");
    }
}
