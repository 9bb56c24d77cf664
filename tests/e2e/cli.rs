//! The client commands for people and for scripts: the real `herald` binary against a real
//! daemon, its tables and summaries read back column by column, and `-o json` compared with
//! what the API itself answers.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{wait_for, Config, Herald, Mode, Receiver, Sub, HERALD};

/// `herald <args> --url <daemon>` with `COLUMNS` set or removed; stdout is a pipe.
async fn client(h: &Herald, args: &[&str], columns: Option<&str>) -> Output {
    let mut cmd = Command::new(HERALD);
    cmd.args(args)
        .arg("--url")
        .arg(&h.base)
        .env_remove("HERALD_API_TOKEN")
        .env_remove("HERALD_URL")
        .env_remove("COLUMNS");
    if let Some(c) = columns {
        cmd.env("COLUMNS", c);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("run herald client"))
        .await
        .expect("client task")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "client failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8")
}

/// Display columns, as a terminal counts them (every character used here is one wide).
fn width(s: &str) -> usize {
    s.chars().count()
}

/// The cells of the row of `table` that starts with `first`: columns are separated by at
/// least two spaces and no cell here holds two spaces in a row. Also checks that the header
/// line has exactly `headers`, in order.
/// `text` with every `"oldest_pending_seconds":<number>` value replaced by `_`.
fn without_ages(text: &str) -> String {
    const KEY: &str = "\"oldest_pending_seconds\":";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        out.push_str(&rest[..at + KEY.len()]);
        out.push('_');
        rest = rest[at + KEY.len()..].trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    }
    out.push_str(rest);
    out
}

fn cells<'a>(table: &'a str, headers: &[&str], first: &str) -> Vec<&'a str> {
    let split = |line: &'a str| -> Vec<&'a str> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    };
    let header = table.lines().next().expect("a header line");
    assert_eq!(split(header), headers, "header of\n{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("{first} ")))
        .unwrap_or_else(|| panic!("no row {first} in\n{table}"));
    let row = split(line);
    assert_eq!(row.len(), headers.len(), "{line:?}");
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_and_summaries_for_people_json_for_scripts() {
    let ok = Receiver::start().await;
    let bad = Receiver::start_with(Mode::Status(503)).await;
    let h = Herald::start(
        Config::default()
            .sub(Sub::new("acme", &ok.url("/acme")).max_in_flight(10))
            .sub(Sub::new("beta", &ok.url("/beta")).max_in_flight(7))
            .sub(
                Sub::new("flaky", &bad.url("/flaky"))
                    .attempts(2)
                    .intervals("50ms", "50ms"),
            ),
    )
    .await;

    let reason = "maintenance until 14:00, see the change ticket CHG-4711 for the details";
    let (status, _) = h
        .post("/v1/subscribers/beta/pause", &json!({ "reason": reason }))
        .await;
    assert_eq!(status, 200);

    // One delivered, one waiting behind the pause, one dead after two 503s.
    let delivered = h
        .ingest(&json!({"event_type": "ORDER_PAID", "payload": {"n": 1}, "subscriber": "acme"}))
        .await["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = h
        .ingest(&json!({"event_type": "ORDER_SHIPPED", "payload": {"n": 2}, "subscriber": "beta"}))
        .await["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dead = h
        .ingest(&json!({"event_type": "ORDER_PAID", "payload": {"n": 3}, "subscriber": "flaky"}))
        .await["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.wait_delivery(&delivered, "delivered", Duration::from_secs(10))
        .await;
    h.wait_delivery(&dead, "dead", Duration::from_secs(10))
        .await;
    // On PostgreSQL the error rate is the cluster's, published at its next step (≤ 500 ms).
    wait_for(Duration::from_secs(5), "flaky's error rate", || async {
        (h.subscriber("flaky").await["error_rate"].as_f64() > Some(0.0)).then_some(())
    })
    .await;

    // --- herald subscribers: piped, so nothing is cut.
    let headers = [
        "ID",
        "IN FLIGHT/LIMIT/MAX",
        "ERROR RATE",
        "QUEUED",
        "DEAD",
        "OLDEST PENDING",
        "PAUSED",
    ];
    let table = stdout(&client(&h, &["subscribers"], None).await);
    assert_eq!(table.lines().count(), 4, "{table}");
    let header = table.lines().next().unwrap();
    assert_eq!(
        cells(&table, &headers, "acme"),
        ["acme", "0/10/10", "0.0%", "0", "0", "-", "no"],
        "{table}"
    );
    // beta's one delivery waits behind its pause: its age shows (seconds, however many passed).
    let beta = cells(&table, &headers, "beta");
    assert!(
        beta[5].ends_with('s') && beta[5].trim_end_matches('s').parse::<u64>().is_ok(),
        "{table}"
    );
    assert_eq!(
        [&beta[..5], &beta[6..]].concat(),
        ["beta", "0/7/7", "0.0%", "1", "0", &format!("yes: {reason}")],
        "{table}"
    );
    let flaky = cells(&table, &headers, "flaky");
    assert_eq!(flaky[1], "0/10/10", "{table}");
    assert!(flaky[2].ends_with('%') && flaky[2] != "0.0%", "{table}");
    assert_eq!(flaky[4], "1", "{table}");
    // Aligned: right-aligned figures end where their header ends, the reason starts under
    // PAUSED, and no line has trailing spaces.
    let end_of = |h: &str| header.find(h).unwrap() + h.len();
    for line in table.lines().skip(1) {
        assert_eq!(line, line.trim_end());
        for h in ["IN FLIGHT/LIMIT/MAX", "ERROR RATE", "QUEUED", "DEAD"] {
            let end = end_of(h);
            assert_ne!(
                &line[end - 1..end],
                " ",
                "{h} not right-aligned in {line:?}"
            );
            assert_eq!(&line[end..end + 2], "  ", "{h} overflows in {line:?}");
        }
        let paused_at = header.find("PAUSED").unwrap();
        assert_ne!(&line[paused_at..paused_at + 1], " ", "{line:?}");
        assert_eq!(&line[paused_at - 2..paused_at], "  ", "{line:?}");
    }

    // With COLUMNS=90 the reason is cut with … and every line fits; ids and figures are whole.
    let narrow = stdout(&client(&h, &["subscribers"], Some("90")).await);
    for line in narrow.lines() {
        assert!(width(line) <= 90, "{} wide: {line:?}", width(line));
    }
    let beta = narrow.lines().find(|l| l.starts_with("beta ")).unwrap();
    assert!(beta.ends_with('…'), "{narrow}");
    assert!(beta.contains("yes: maint"), "{narrow}");
    assert!(beta.contains("0/7/7"), "{narrow}");
    assert_eq!(narrow.lines().next(), table.lines().next());

    // -o json is the API's answer, byte for byte (but for the one figure that moves between
    // the two requests: the age of beta's waiting delivery).
    let (status, api) = h.get_text("/v1/subscribers").await;
    assert_eq!(status, 200);
    let json_out = stdout(&client(&h, &["subscribers", "-o", "json"], None).await);
    assert_eq!(without_ages(json_out.trim_end()), without_ages(&api));
    let json_out = stdout(&client(&h, &["--output", "json", "subscribers"], None).await);
    assert_eq!(without_ages(json_out.trim_end()), without_ages(&api));

    // --- herald deliveries list: a table, and the next cursor as a hint on stderr.
    let headers = [
        "ID",
        "SUBSCRIBER",
        "EVENT TYPE",
        "STATUS",
        "ATTEMPTS",
        "NEXT ATTEMPT",
        "LAST ERROR",
    ];
    let list = stdout(&client(&h, &["deliveries", "list"], None).await);
    assert_eq!(list.lines().count(), 4, "{list}");
    assert_eq!(
        cells(&list, &headers, &dead),
        [
            dead.as_str(),
            "flaky",
            "ORDER_PAID",
            "dead",
            "2",
            "-",
            "HTTP 503"
        ],
        "{list}"
    );
    assert_eq!(
        cells(&list, &headers, &waiting),
        [
            waiting.as_str(),
            "beta",
            "ORDER_SHIPPED",
            "pending",
            "0",
            "now",
            "-"
        ],
        "{list}"
    );
    assert_eq!(
        cells(&list, &headers, &delivered)[..5],
        [delivered.as_str(), "acme", "ORDER_PAID", "delivered", "1"],
        "{list}"
    );
    let page = client(&h, &["deliveries", "list", "--limit", "1"], None).await;
    let first_page = stdout(&page);
    assert_eq!(first_page.lines().count(), 2, "{first_page}");
    let hint = String::from_utf8_lossy(&page.stderr).into_owned();
    let (_, api_page) = h.get("/v1/deliveries?limit=1").await;
    let cursor = api_page["next_cursor"].as_str().expect("a next cursor");
    assert_eq!(
        hint.trim_end(),
        format!("more: herald deliveries list --limit 1 --cursor {cursor}")
    );
    let (_, api) = h
        .get_text("/v1/deliveries?subscriber=flaky&status=dead")
        .await;
    let json_out = stdout(
        &client(
            &h,
            &[
                "deliveries",
                "list",
                "--subscriber",
                "flaky",
                "--status",
                "dead",
                "-o",
                "json",
            ],
            None,
        )
        .await,
    );
    assert_eq!(json_out.trim_end(), api);

    // --- herald deliveries get: summary lines, then the attempt timeline.
    let got = stdout(&client(&h, &["deliveries", "get", &dead], None).await);
    let summary: Vec<&str> = got.lines().take_while(|l| !l.is_empty()).collect();
    assert_eq!(summary[0], format!("ID:            {dead}"), "{got}");
    for expected in [
        "Subscriber:    flaky",
        "Event type:    ORDER_PAID",
        "Status:        dead",
        "Attempts:      2",
        "Next attempt:  -",
        "Last error:    HTTP 503",
    ] {
        assert!(
            summary.contains(&expected),
            "{expected:?} missing in\n{got}"
        );
    }
    let timeline: Vec<&str> = got.lines().skip(summary.len() + 1).collect();
    assert_eq!(timeline.len(), 3, "{got}");
    let t_headers = ["#", "AT", "STATUS", "DURATION", "ERROR"];
    let (_, api_view) = h.get(&format!("/v1/deliveries/{dead}")).await;
    let timeline_text = timeline.join("\n");
    assert!(cells(&timeline_text, &t_headers, "1")[0] == "1");
    for (i, attempt) in api_view["attempts"].as_array().unwrap().iter().enumerate() {
        let row = cells(&timeline_text, &t_headers, &(i + 1).to_string());
        assert_eq!(row[1], attempt["at"].as_str().unwrap(), "{got}");
        assert_eq!(row[2], "503", "{got}");
        assert!(row[3].ends_with("ms") || row[3].ends_with('s'), "{got}");
        assert_eq!(row[4], "HTTP 503", "{got}");
    }
    let (_, api) = h.get_text(&format!("/v1/deliveries/{delivered}")).await;
    let json_out =
        stdout(&client(&h, &["deliveries", "get", &delivered, "-o", "json"], None).await);
    assert_eq!(json_out.trim_end(), api);

    // --- one-line summaries of the actions.
    let line = |out: &Output| {
        let text = stdout(out);
        assert_eq!(text.lines().count(), 1, "{text}");
        text.trim_end().to_owned()
    };
    let sent = line(
        &client(
            &h,
            &[
                "send",
                "-e",
                "ORDER_PAID",
                "-d",
                "{}",
                "--subscriber",
                "acme",
            ],
            None,
        )
        .await,
    );
    assert!(sent.starts_with("event "), "{sent}");
    assert!(sent.contains(" accepted: 1 delivery (acme "), "{sent}");
    assert_eq!(
        line(&client(&h, &["pause", "acme", "--reason", "deploy"], None).await),
        "subscriber acme paused (deploy); 0 deliveries waiting"
    );
    // Resuming lets the pump send beta's waiting delivery at once; whether the answer's count
    // is read before or after that attempt finished is a race, so both counts are right.
    let resumed = line(&client(&h, &["resume", "beta"], None).await);
    assert!(
        resumed == "subscriber beta resumed; 1 delivery queued"
            || resumed == "subscriber beta resumed; 0 deliveries queued",
        "{resumed}"
    );
    // The retried delivery is attempted at once (and fails again: `flaky` answers 500 with no
    // attempts left); the answer is read after the retry, so it may already show that.
    let retried = line(&client(&h, &["deliveries", "retry", &dead], None).await);
    assert!(
        ["pending", "in_flight", "dead"]
            .iter()
            .any(|status| retried == format!("delivery {dead} (flaky) is {status} again")),
        "{retried}"
    );
    h.wait_delivery(&dead, "dead", Duration::from_secs(10))
        .await;
    assert_eq!(
        line(&client(&h, &["redrive", "flaky"], None).await),
        "1 dead delivery of flaky back to pending"
    );
    let out = client(&h, &["redrive", "flaky", "-o", "json"], None).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["subscriber"], "flaky", "{v}");
    h.assert_no_panic();
}
