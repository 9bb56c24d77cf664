//! The console's HTML, as maud templates: checked by the compiler, escaped by default.
//!
//! No inline script or style anywhere (the CSP forbids both): behaviour hangs on `data-*`
//! attributes read by `assets/console.js`, looks on classes styled by `assets/console.css`.
//! Accessible names (SPEC §11) are the visible texts of buttons and `<label>`s.

use maud::{html, Markup, DOCTYPE};

use super::auth::Visitor;
use herald_core::UnixMillis;

use super::data::{DeliveryList, DeliveryPage, SubscriberRow};
use super::live;
use crate::views::{rfc3339, DeliveryView, EventView, SubscriberView};

/// `1.2 s`, `3 min`, `2.5 h` for a duration in milliseconds.
pub(crate) fn age(ms: u64) -> String {
    let s = ms as f64 / 1000.0;
    if ms == 0 {
        "–".to_owned()
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 86_400.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

fn percent(rate: f64) -> String {
    format!("{:.1} %", rate * 100.0)
}

/// Every page: `lang`, a title, the stylesheet and script, a header with search.
fn layout(title: &str, visitor: Option<&Visitor>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Herald console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/console" { "Herald console" }
                    @if let Some(v) = visitor {
                        form.search role="search" method="get" action="/console/search" {
                            label for="search" { "Search" }
                            input #search type="search" name="q" placeholder="delivery or event id" required;
                            button type="submit" { "Find" }
                        }
                        @if v.signed_in {
                            form.signout method="post" action="/console/signout" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (main) }
            }
        }
    }
}

/// A page with one message (errors, refusals, not found).
pub(crate) fn message(
    title: &str,
    heading: &str,
    text: &str,
    link: Option<(&str, &str)>,
) -> maud::Markup {
    layout(
        title,
        None,
        html! {
            h1 { (heading) }
            p.message { (text) }
            @if let Some((href, label)) = link {
                p { a href=(href) { (label) } }
            } @else {
                p { a href="/console" { "Back to the overview" } }
            }
        },
    )
}

/// The sign-in form.
pub(crate) fn sign_in(error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            p { "This Herald requires its API token (" code { "[server] api_token" } ")." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.signin method="post" action="/console/signin" {
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
        },
    )
}

fn subscriber_link(id: &str) -> Markup {
    html! { a href={ "/console/subscribers/" (id) } { code { (id) } } }
}

fn delivery_link(id: &str) -> Markup {
    html! { a href={ "/console/deliveries/" (id) } { code { (id) } } }
}

fn event_link(id: &str) -> Markup {
    html! { a href={ "/console/events/" (id) } { code { (id) } } }
}

/// JSON re-indented with two spaces, keys and values untouched (the payload is shown as it was
/// ingested, only laid out).
pub(crate) fn pretty_json(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // An empty object or array stays on one line.
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                if chars.peek().is_some_and(|n| *n == '}' || *n == ']') {
                    if let Some(close) = chars.next() {
                        out.push(close);
                    }
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

fn status(s: &str) -> Markup {
    html! { span class={ "status status-" (s) } { (s) } }
}

fn notice(text: Option<&str>) -> Markup {
    html! { @if let Some(t) = text { p.notice role="status" { (t) } } }
}

/// The overview's rows, also served alone to the live refresh.
pub(crate) fn overview_rows(rows: &[SubscriberRow], sampler: &live::Sampler) -> Markup {
    html! {
        @for row in rows {
            @let v = &row.view;
            @let rates = sampler.rates(&v.id);
            @let last = rates.last().copied().unwrap_or(0.0);
            tr {
                th scope="row" { (subscriber_link(&v.id)) }
                td {
                    @if v.paused {
                        span.paused { "paused" }
                        @if let Some(r) = &v.paused_reason { " — " span.reason { (r) } }
                    } @else { "active" }
                }
                td.num {
                    meter min="0" max=(v.max_in_flight) value=(v.in_flight) {}
                    " " span.inflight { (v.in_flight) } " / " span.limit { (v.effective_limit) }
                    " / " span.max { (v.max_in_flight) }
                }
                td.num { (percent(v.error_rate)) }
                td.num.queued { (v.queued) }
                td.num.dead { (v.dead) }
                td.num.oldest { (age(row.oldest_pending_ms)) }
                td.spark {
                    svg width="120" height="24" viewBox="0 0 120 24" role="img"
                        aria-label={ "deliveries per second, last " (format!("{last:.1}")) } {
                        polyline points=(live::sparkline_points(&rates, 120.0, 23.0)) {}
                    }
                    " " span.rate { (format!("{last:.1}")) "/s" }
                }
            }
        }
    }
}

/// The overview: every subscriber with its live figures.
pub(crate) fn overview(rows: &[SubscriberRow], sampler: &live::Sampler, v: &Visitor) -> Markup {
    layout(
        "Overview",
        Some(v),
        html! {
            h1 { "Subscribers" }
            @if rows.is_empty() {
                p { "No subscriber is configured." }
            }
            table #subscribers {
                caption { "Live figures, refreshed every few seconds while this page is open." }
                thead { tr {
                    th scope="col" { "Subscriber" }
                    th scope="col" { "State" }
                    th scope="col" { abbr title="in flight / effective limit / max_in_flight" { "In flight / limit / max" } }
                    th scope="col" { "Error rate" }
                    th scope="col" { "Queued" }
                    th scope="col" { "Dead" }
                    th scope="col" { "Oldest pending" }
                    th scope="col" { "Deliveries/s" }
                } }
                tbody data-live="/console/live" { (overview_rows(rows, sampler)) }
            }
        },
    )
}

fn delivery_table(list: &[DeliveryView], csrf: Option<&str>) -> Markup {
    html! {
        table.deliveries {
            thead { tr {
                th scope="col" { "Delivery" }
                th scope="col" { "Event type" }
                th scope="col" { "Status" }
                th scope="col" { "Attempts" }
                th scope="col" { "Created" }
                th scope="col" { "Last error" }
                @if csrf.is_some() { th scope="col" { "Action" } }
            } }
            tbody {
                @for d in list {
                    tr {
                        th scope="row" { (delivery_link(&d.id)) }
                        td { (d.event_type) }
                        td { (status(d.status)) }
                        td.num { (d.attempt_count) }
                        td { time datetime=(d.created_at) { (d.created_at) } }
                        td { (d.last_error.as_deref().unwrap_or("")) }
                        @if let Some(token) = csrf {
                            td { (retry_form(&d.id, token)) }
                        }
                    }
                }
            }
        }
    }
}

fn retry_form(id: &str, csrf: &str) -> Markup {
    html! {
        form.inline method="post" action={ "/console/deliveries/" (id) "/retry" } {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { "Retry" }
        }
    }
}

fn summary(v: &SubscriberView, oldest_pending_ms: u64) -> Markup {
    html! {
        dl.summary {
            dt { "Id" } dd { code { (v.id) } }
            dt { "URL" } dd { code.url { (v.url) } }
            dt { "Events" } dd { (v.events.join(", ")) }
            dt { "State" } dd {
                @if v.paused { "paused" @if let Some(r) = &v.paused_reason { " — " span.reason { (r) } } }
                @else { "active" }
            }
            dt { "In flight / effective limit / max" }
            dd { (v.in_flight) " / " (v.effective_limit) " / " (v.max_in_flight) }
            dt { "Error rate" } dd { (percent(v.error_rate)) }
            dt { "Queued" } dd { (v.queued) " (" (v.pending) " pending)" }
            dt { "Delivered (retained)" } dd { (v.delivered) }
            dt { "Dead" } dd { (v.dead) }
            dt { "Oldest pending" } dd { (age(oldest_pending_ms)) }
        }
    }
}

/// A subscriber: summary, actions, deliveries, dead letters.
pub(crate) fn subscriber(
    row: &SubscriberRow,
    recent: &DeliveryList,
    dead: &DeliveryList,
    v: &Visitor,
    done: Option<&str>,
) -> Markup {
    let s = &row.view;
    let base = format!("/console/subscribers/{}", s.id);
    layout(
        &format!("Subscriber {}", s.id),
        Some(v),
        html! {
            p.crumbs { a href="/console" { "Overview" } " › subscriber" }
            h1 { "Subscriber " code { (s.id) } }
            (notice(done))
            (summary(s, row.oldest_pending_ms))
            section.actions aria-labelledby="actions" {
                h2 #actions { "Actions" }
                @if s.paused {
                    form method="post" action={ (base) "/resume" } {
                        input type="hidden" name="csrf" value=(v.csrf);
                        button type="submit" { "Resume" }
                    }
                } @else {
                    form.pause method="post" action={ (base) "/pause" } {
                        input type="hidden" name="csrf" value=(v.csrf);
                        label for="reason" { "Reason" }
                        input #reason type="text" name="reason" maxlength="500" placeholder="why (shown to everyone)";
                        button type="submit" { "Pause" }
                    }
                }
                form method="post" action={ (base) "/redrive" }
                    data-confirm={ "Move every dead delivery of " (s.id) " (" (s.dead) ") back to pending?" } {
                    input type="hidden" name="csrf" value=(v.csrf);
                    button type="submit" { "Redrive" }
                }
                form.replay method="post" action={ (base) "/replay" } {
                    input type="hidden" name="csrf" value=(v.csrf);
                    fieldset {
                        legend { "Replay deliveries of events accepted in a window" }
                        label for="since" { "Since" }
                        input #since type="text" name="since" required placeholder="2h or 2026-12-03T09:00:00Z";
                        label for="until" { "Until" }
                        input #until type="text" name="until" placeholder="now";
                        label for="replay-status" { "Status" }
                        select #replay-status name="status" {
                            option value="dead" selected { "dead" }
                            option value="delivered" { "delivered" }
                            option value="delivered,dead" { "delivered and dead" }
                        }
                        button type="submit" { "Dry run" }
                    }
                }
            }
            section aria-labelledby="recent" {
                h2 #recent { "Deliveries" }
                @if recent.items.is_empty() { p { "None retained." } }
                @else { (delivery_table(&recent.items, None)) }
                @if let Some(c) = &recent.next_cursor {
                    p { a href={ (base) "?cursor=" (c) } { "Next page" } }
                }
            }
            section aria-labelledby="dead" {
                h2 #dead { "Dead letters" }
                @if dead.items.is_empty() { p { "None." } }
                @else { (delivery_table(&dead.items, Some(&v.csrf))) }
                @if dead.next_cursor.is_some() { p { "More dead letters exist; use the API to page through them." } }
            }
        },
    )
}

/// A delivery: its facts and the attempt timeline.
pub(crate) fn delivery(page: &DeliveryPage, v: &Visitor, done: Option<&str>) -> Markup {
    let d = &page.delivery;
    layout(
        &format!("Delivery {}", d.id),
        Some(v),
        html! {
            p.crumbs { a href="/console" { "Overview" } " › " (subscriber_link(&d.subscriber)) " › delivery" }
            h1 { "Delivery " code { (d.id) } }
            (notice(done))
            dl.summary {
                dt { "Status" } dd { (status(d.status)) }
                dt { "Subscriber" } dd { (subscriber_link(&d.subscriber)) }
                dt { "Event" } dd { (event_link(&d.event_id)) }
                dt { "Event type" } dd { (d.event_type) }
                dt { "Attempts" } dd { (d.attempt_count) }
                dt { "Next attempt" } dd { (d.next_attempt_at.as_deref().unwrap_or("–")) }
                dt { "Created" } dd { (d.created_at) }
                dt { "Updated" } dd { (d.updated_at) }
                @if let Some(e) = &d.last_error { dt { "Last error" } dd { (e) } }
            }
            @if d.status == "dead" {
                section.actions aria-label="Actions" {
                    (retry_form(&d.id, &v.csrf))
                }
            }
            h2 { "Attempts" }
            @if d.attempts.is_empty() { p { "No attempt yet." } }
            @else {
                table #timeline {
                    thead { tr {
                        th scope="col" { "#" }
                        th scope="col" { "Time" }
                        th scope="col" { "Status code" }
                        th scope="col" { "Error" }
                        th scope="col" { "Duration" }
                    } }
                    tbody {
                        @for a in &d.attempts {
                            tr {
                                th scope="row" { (a.attempt) }
                                td { time datetime=(a.at) { (a.at) } }
                                td.num { @if let Some(c) = a.status_code { (c) } @else { "–" } }
                                td { (a.error.as_deref().unwrap_or("")) }
                                td.num { (a.duration_ms) " ms" }
                            }
                        }
                    }
                }
            }
            h2 { "Payload" }
            @match &page.payload {
                Some(p) => pre.payload { code { (pretty_json(p)) } },
                None => p { "The event is no longer stored (retention)." },
            }
        },
    )
}

/// An event: its facts, payload and deliveries.
pub(crate) fn event(e: &EventView, v: &Visitor) -> Markup {
    let payload = pretty_json(e.payload.get().as_bytes());
    let deliveries = e.deliveries.as_deref().unwrap_or_default();
    layout(
        &format!("Event {}", e.id),
        Some(v),
        html! {
            p.crumbs { a href="/console" { "Overview" } " › event" }
            h1 { "Event " code { (e.id) } }
            dl.summary {
                dt { "Event type" } dd { (e.event_type) }
                dt { "Received" } dd { (e.received_at) }
                @if let Some(k) = &e.ordering_key { dt { "Ordering key" } dd { code { (k) } } }
                @if let Some(k) = &e.idempotency_key { dt { "Idempotency key" } dd { code { (k) } } }
            }
            h2 { "Deliveries" }
            @if deliveries.is_empty() { p { "None retained." } }
            @else {
                table.deliveries {
                    thead { tr {
                        th scope="col" { "Delivery" }
                        th scope="col" { "Subscriber" }
                        th scope="col" { "Status" }
                    } }
                    tbody {
                        @for d in deliveries {
                            tr {
                                th scope="row" { (delivery_link(&d.id)) }
                                td { (subscriber_link(&d.subscriber)) }
                                td { (status(d.status)) }
                            }
                        }
                    }
                }
            }
            h2 { "Payload" }
            pre.payload { code { (payload) } }
        },
    )
}

/// The replay window, as the dry run resolved it.
pub(crate) struct Window<'a> {
    pub(crate) since: UnixMillis,
    pub(crate) until: Option<UnixMillis>,
    pub(crate) status: &'a str,
}

/// The dry run's count and the confirmation form.
pub(crate) fn replay_confirm(id: &str, v: &Visitor, matched: u64, w: &Window<'_>) -> Markup {
    let since = rfc3339(w.since);
    let until = w.until.map(rfc3339);
    let status = if w.status.is_empty() {
        "dead"
    } else {
        w.status
    };
    layout(
        &format!("Replay {id}"),
        Some(v),
        html! {
            p.crumbs { a href="/console" { "Overview" } " › " (subscriber_link(id)) " › replay" }
            h1 { "Replay for " code { (id) } }
            p.notice role="status" {
                "Dry run: " strong.matched { (matched) } " " (status)
                " deliveries of events accepted from " (since) " to " (until.as_deref().unwrap_or("now"))
                " would be replayed."
            }
            @if matched > 0 {
                form method="post" action={ "/console/subscribers/" (id) "/replay" }
                    data-confirm={ "Replay " (matched) " deliveries of " (id) "?" } {
                    input type="hidden" name="csrf" value=(v.csrf);
                    input type="hidden" name="since" value=(since);
                    @if let Some(u) = &until { input type="hidden" name="until" value=(u); }
                    input type="hidden" name="status" value=(status);
                    input type="hidden" name="confirm" value="1";
                    button type="submit" { "Replay" }
                }
            }
            p { a href={ "/console/subscribers/" (id) } { "Back to " (id) } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_json_lays_out_without_changing_content() {
        let raw = br#"{"b":1,"a":[1, {"x":"a,b:{c}\\\"d"}],"e":{},"f":[]}"#;
        let pretty = pretty_json(raw);
        assert_eq!(
            pretty,
            "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    {\n      \"x\": \"a,b:{c}\\\\\\\"d\"\n    }\n  ],\n  \"e\": {},\n  \"f\": []\n}"
        );
        let a: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
        let b: serde_json::Value = serde_json::from_str(&pretty).unwrap_or_default();
        assert_eq!(a, b);
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(age(0), "–");
        assert_eq!(age(1500), "1.5 s");
        assert_eq!(age(180_000), "3 min");
    }
}
