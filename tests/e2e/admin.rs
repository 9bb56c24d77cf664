//! Admin API and CLI: subscriber fields, no secrets anywhere, dead letters with pagination,
//! retry and redrive, pause/resume (API and CLI), metric names.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::harness::{run_herald, wait_for, Config, Herald, Mode, Receiver, Sub};

const MARK_TOKEN: &str = "SECRETMARK-apitoken-91a";
const MARK_BASIC: &str = "SECRETMARK-basicpass-27c";
const MARK_APIKEY: &str = "SECRETMARK-apikey-5d0";
const MARK_OAUTH: &str = "SECRETMARK-oauthsecret-e44";
const MARK_SIGNING: &[u8] = b"SECRETMARK-signing-key-0b8";
const MARK_RELOAD: &str = "SECRETMARK-reloadpass-c3f";
/// In a subscriber URL's query string (`?token=...`, a common way to authenticate webhooks).
const MARK_URL_QUERY: &str = "SECRETMARK-urlquery-7e1";
/// In an OAuth2 token URL's query string.
const MARK_TOKEN_URL_QUERY: &str = "SECRETMARK-tokenurlquery-4a2";
/// In a URL's user info (refused by the loader, which must not echo it).
const MARK_URL_USERINFO: &str = "SECRETMARK-urluserinfo-b19";

fn signing_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(MARK_SIGNING)
}

fn markers() -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        MARK_TOKEN.to_owned(),
        MARK_BASIC.to_owned(),
        b64.encode(format!("user:{MARK_BASIC}")),
        MARK_APIKEY.to_owned(),
        MARK_OAUTH.to_owned(),
        signing_b64(),
        MARK_RELOAD.to_owned(),
        MARK_URL_QUERY.to_owned(),
        MARK_TOKEN_URL_QUERY.to_owned(),
        MARK_URL_USERINFO.to_owned(),
        "SECRETMARK".to_owned(),
    ]
}

fn assert_no_secret(text: &str, what: &str) {
    for m in markers() {
        assert!(!text.contains(&m), "{what} leaks the secret {m:?}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_fields_and_no_secrets_anywhere() {
    let rx = Receiver::start_with(Mode::Status(500)).await;
    let mut config = Config::default()
        .token(MARK_TOKEN)
        .sub(
            Sub::new("basic", &rx.url("/basic"))
                .attempts(2)
                .extra(&format!(
                    "[auth]\ntype = \"basic\"\ncredentials = \"user:{MARK_BASIC}\"\n"
                )),
        )
        .sub(
            Sub::new("apikey", &rx.url("/apikey"))
                .attempts(2)
                .extra(&format!(
                    "[auth]\ntype = \"api_key\"\nkey = \"X-Key:{MARK_APIKEY}\"\n"
                )),
        )
        .sub(
            Sub::new("oauth", &rx.url("/oauth"))
                .attempts(2)
                .extra(&format!(
                    "[auth]\ntype = \"oauth2\"\ntoken_url = {:?}\nclient_id = \"herald\"\n\
                 client_secret = \"{MARK_OAUTH}\"\nscopes = [\"a\"]\n",
                    rx.url(&format!("/token?tenant={MARK_TOKEN_URL_QUERY}"))
                )),
        )
        .sub(Sub::new("query", &rx.url(&format!("/query?token={MARK_URL_QUERY}"))).attempts(2))
        .sub(
            Sub::new("signed", &rx.url("/signed"))
                .attempts(2)
                .extra(&format!(
                    "[signing]\nscheme = \"standard-webhooks\"\nsecret = \"whsec_{}\"\n",
                    signing_b64()
                )),
        );
    // Debug logging: the most verbose the daemon gets.
    config.env.push(("RUST_LOG".to_owned(), "debug".to_owned()));
    let h = Herald::start(config).await;

    let receipt = h
        .ingest(&json!({"event_type": "X", "payload": {"n": 1}}))
        .await;
    let ids = crate::harness::receipt_ids(&receipt);
    assert_eq!(ids.len(), 5, "{receipt}");
    for (_, id) in &ids {
        h.wait_delivery(id, "dead", Duration::from_secs(15)).await;
    }
    // The credentials did reach the receiver (so they were really configured and used).
    let basic = rx.requests_to("/basic");
    assert!(basic[0]
        .header("authorization")
        .is_some_and(|v| v.starts_with("Basic ")));
    assert_eq!(
        rx.requests_to("/apikey")[0].header("x-key"),
        Some(MARK_APIKEY)
    );
    assert!(!rx.requests_to("/token").is_empty(), "no token request");
    // Requests go to the full URLs, query strings included.
    assert_eq!(
        rx.requests_to("/token")[0].query.as_deref(),
        Some(format!("tenant={MARK_TOKEN_URL_QUERY}").as_str())
    );
    assert_eq!(
        rx.requests_to("/query")[0].query.as_deref(),
        Some(format!("token={MARK_URL_QUERY}").as_str())
    );

    let (status, subs) = h.get("/v1/subscribers").await;
    assert_eq!(status, 200);
    let subs = subs.as_array().expect("array").clone();
    assert_eq!(subs.len(), 5);
    for s in &subs {
        for field in [
            "id",
            "url",
            "events",
            "max_in_flight",
            "effective_limit",
            "in_flight",
            "error_rate",
            "paused",
            "paused_reason",
            "queued",
            "dead",
        ] {
            assert!(s.get(field).is_some(), "no {field} in {s}");
        }
        assert_eq!(s["max_in_flight"], 10);
        assert_eq!(s["dead"], 1, "{s}");
        assert_eq!(s["events"], json!(["*"]));
    }
    // A URL is shown as scheme://host:port/path.
    let query = subs.iter().find(|s| s["id"] == "query").expect("query sub");
    assert_eq!(query["url"], json!(rx.url("/query")));

    // Every answer the API gives, then the CLI, `herald check`, and the log.
    let mut answers = vec![serde_json::to_string(&subs).unwrap()];
    for path in [
        "/v1/subscribers/basic",
        "/v1/subscribers/apikey",
        "/v1/subscribers/oauth",
        "/v1/subscribers/signed",
        "/v1/subscribers/query",
        "/v1/deliveries",
        "/v1/deliveries?status=dead",
        "/metrics",
        "/readyz",
        "/healthz",
    ] {
        answers.push(h.get_text(path).await.1);
    }
    for (_, id) in &ids {
        answers.push(h.get_text(&format!("/v1/deliveries/{id}")).await.1);
    }
    answers.push(h.post_empty("/v1/reload").await.1.to_string());
    answers.push(
        h.post_empty("/v1/subscribers/basic/pause")
            .await
            .1
            .to_string(),
    );
    // A broken file holding a credential: the rejection must not echo it.
    std::fs::write(
        h.subscribers_dir().join("broken.toml"),
        format!(
            "url = {:?}\ncolour = \"red\"\nmax_in_flight = 9999\n[auth]\ntype = \"basic\"\n\
             credentials = \"user:{MARK_RELOAD}\"\nkey = \"{MARK_RELOAD}\"\n",
            rx.url("/x")
                .replace("://", &format!("://user:{MARK_URL_USERINFO}@"))
        ),
    )
    .unwrap();
    let (status, rejected) = h.post_empty("/v1/reload").await;
    assert_eq!(status, 422, "{rejected}");
    answers.push(rejected.to_string());
    let check = run_herald(
        vec![
            "check".into(),
            "-c".into(),
            h.config_path.display().to_string(),
        ],
        h.env(),
    )
    .await;
    answers.push(String::from_utf8_lossy(&check.stdout).into_owned());
    answers.push(String::from_utf8_lossy(&check.stderr).into_owned());
    std::fs::remove_file(h.subscribers_dir().join("broken.toml")).unwrap();
    let check = run_herald(
        vec![
            "check".into(),
            "-c".into(),
            h.config_path.display().to_string(),
        ],
        h.env(),
    )
    .await;
    assert!(check.status.success());
    answers.push(String::from_utf8_lossy(&check.stdout).into_owned());
    let cli = h.cli(&["subscribers"]).await;
    assert!(cli.status.success());
    answers.push(String::from_utf8_lossy(&cli.stdout).into_owned());

    for (i, a) in answers.iter().enumerate() {
        assert_no_secret(a, &format!("answer #{i}"));
    }
    let log = h.log_text();
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "debug logging is off"
    );
    assert_no_secret(&log, "the daemon log");
    h.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_pagination_retry_and_redrive() {
    dead_letters_pagination_retry_and_redrive_on(Config::default()).await;
}

/// The same on PostgreSQL (the engine is a parameter of the harness).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_pagination_retry_and_redrive_on_postgres() {
    let db = crate::harness::TestDb::create().await;
    dead_letters_pagination_retry_and_redrive_on(Config::default().postgres(&db.url, None)).await;
}

async fn dead_letters_pagination_retry_and_redrive_on(base: Config) {
    let rx = Receiver::start_with(Mode::Status(500)).await;
    let h = Herald::start(
        base.sub(
            Sub::new("dl", &rx.url("/dl"))
                .attempts(2)
                .intervals("50ms", "50ms"),
        )
        .sub(Sub::new("ok", &rx.url("/ok")).events(&["NONE"])),
    )
    .await;
    let events: Vec<Value> = (0..7)
        .map(|n| json!({"event_type": "X", "subscriber": "dl", "payload": {"n": n}}))
        .collect();
    let (status, body) = h
        .post("/v1/events/batch", &json!({ "events": events }))
        .await;
    assert_eq!(status, 202, "{body}");
    let ids: HashSet<String> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["deliveries"][0]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 7);

    wait_for(Duration::from_secs(15), "7 dead deliveries", || async {
        (h.subscriber("dl").await["dead"] == 7).then_some(())
    })
    .await;
    for id in &ids {
        assert_eq!(rx.count_of(id), 2, "max_attempts = 2 means 2 requests");
        let (_, view) = h.get(&format!("/v1/deliveries/{id}")).await;
        assert_eq!(view["status"], "dead");
        let attempts = view["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{view}");
        assert_eq!(attempts[1]["attempt"], 2);
        assert_eq!(attempts[1]["status_code"], 500);
    }

    // Walk the dead list in pages of 3: each id exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/v1/deliveries?subscriber=dl&status=dead&limit=3".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = h.get(&path).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let items = page["deliveries"].as_array().unwrap();
        assert!(items.len() <= 3);
        for d in items {
            assert_eq!(d["status"], "dead");
            assert_eq!(d["subscriber"], "dl");
            seen.push(d["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), ids);
    assert!(pages >= 3);
    let (_, other) = h.get("/v1/deliveries?subscriber=ok&status=dead").await;
    assert_eq!(other["deliveries"], json!([]));

    // Retry one after the receiver heals; retrying it again (not dead) is refused.
    rx.set(Mode::Status(200));
    let one = ids.iter().next().unwrap().clone();
    let (status, view) = h.post_empty(&format!("/v1/deliveries/{one}/retry")).await;
    assert_eq!(status, 200, "{view}");
    let view = h
        .wait_delivery(&one, "delivered", Duration::from_secs(10))
        .await;
    assert_eq!(view["attempts"].as_array().unwrap().len(), 3, "{view}");
    let (status, body) = h.post_empty(&format!("/v1/deliveries/{one}/retry")).await;
    assert_eq!(status, 409, "{body}");
    crate::harness::assert_error_body(&body, "retry of a delivered one");

    // Redrive the other six.
    let (status, body) = h.post_empty("/v1/subscribers/dl/redrive").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redriven"], 6, "{body}");
    wait_for(Duration::from_secs(15), "redriven deliveries", || async {
        let s = h.subscriber("dl").await;
        (s["delivered"] == 7 && s["dead"] == 0 && s["queued"] == 0).then_some(())
    })
    .await;
    assert_eq!(rx.succeeded().len(), 7);
    let (status, _) = h.post_empty("/v1/subscribers/nobody/redrive").await;
    assert_eq!(status, 404);

    // Metrics: every family the spec names.
    let metrics = h.metrics().await;
    for name in [
        "herald_events_ingested_total",
        "herald_deliveries_total",
        "herald_attempt_duration_seconds",
        "herald_queue_depth",
        "herald_in_flight",
        "herald_effective_limit",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    let delivered = crate::harness::metric_sum(
        &metrics,
        "herald_deliveries_total",
        &["subscriber=\"dl\"", "outcome=\"delivered\""],
    );
    assert_eq!(delivered, Some(7.0), "{metrics}");
    assert_eq!(
        crate::harness::metric_sum(&metrics, "herald_events_ingested_total", &[]),
        Some(7.0)
    );
    assert!(
        crate::harness::metric_sum(
            &metrics,
            "herald_attempt_duration_seconds_count",
            &["subscriber=\"dl\""]
        )
        .is_some_and(|n| n >= 15.0),
        "{metrics}"
    );
    h.assert_no_panic();
}

fn stdout_json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "client failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_cli_commands() {
    let rx = Receiver::start().await;
    let h = Herald::start(
        Config::default()
            .token("cli-token")
            .sub(Sub::new("p", &rx.url("/p")))
            .sub(Sub::new("q", &rx.url("/q")))
            .sub(Sub::new("d", &rx.url("/d")).events(&["NONE"]).attempts(1)),
    )
    .await;

    // API pause: deliveries wait while the others flow.
    let (status, view) = h
        .post("/v1/subscribers/p/pause", &json!({"reason": "maintenance"}))
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["paused"], true);
    assert_eq!(view["paused_reason"], "maintenance");
    let receipt = h
        .ingest(&json!({"event_type": "X", "payload": {"n": 1}}))
        .await;
    let ids = crate::harness::receipt_ids(&receipt);
    let q_id = &ids.iter().find(|(s, _)| s == "q").unwrap().1;
    let p_id = ids.iter().find(|(s, _)| s == "p").unwrap().1.clone();
    h.wait_delivery(q_id, "delivered", Duration::from_secs(10))
        .await;
    assert_eq!(
        rx.requests_to("/p").len(),
        0,
        "paused subscriber got a request"
    );
    assert_eq!(h.subscriber("p").await["queued"], 1);
    assert_eq!(h.delivery_status(&p_id).await, "pending");
    let (status, view) = h.post_empty("/v1/subscribers/p/resume").await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["paused"], false);
    h.wait_delivery(&p_id, "delivered", Duration::from_secs(10))
        .await;

    // The same through the CLI.
    let out = stdout_json(
        &h.cli(&["-o", "json", "pause", "p", "--reason", "cli says so"])
            .await,
    );
    assert_eq!(out["paused"], true, "{out}");
    assert_eq!(out["paused_reason"], "cli says so");
    let out = stdout_json(&h.cli(&["-o", "json", "subscribers"]).await);
    let p = out
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "p")
        .unwrap()
        .clone();
    assert_eq!(p["paused"], true);
    let sent = stdout_json(
        &h.cli(&[
            "-o",
            "json",
            "send",
            "-e",
            "X",
            "-d",
            r#"{"via":  "cli"}"#,
            "--subscriber",
            "p",
        ])
        .await,
    );
    let id = sent["deliveries"][0]["id"].as_str().unwrap().to_owned();
    let got = stdout_json(&h.cli(&["-o", "json", "deliveries", "get", &id]).await);
    assert_eq!(got["status"], "pending", "{got}");
    let list = stdout_json(
        &h.cli(&[
            "-o",
            "json",
            "deliveries",
            "list",
            "--subscriber",
            "p",
            "--status",
            "pending",
        ])
        .await,
    );
    assert_eq!(list["deliveries"][0]["id"], id.as_str(), "{list}");
    let out = stdout_json(&h.cli(&["-o", "json", "resume", "p"]).await);
    assert_eq!(out["paused"], false);
    h.wait_delivery(&id, "delivered", Duration::from_secs(10))
        .await;
    let req = rx
        .requests()
        .into_iter()
        .find(|r| r.webhook_id() == id)
        .unwrap();
    assert_eq!(&req.body[..], br#"{"via":  "cli"}"#);

    // CLI retry and redrive of dead deliveries.
    rx.set(Mode::Status(503));
    let sent = stdout_json(
        &h.cli(&[
            "-o",
            "json",
            "send",
            "-e",
            "X",
            "-d",
            "[1]",
            "--subscriber",
            "d",
        ])
        .await,
    );
    let dead = sent["deliveries"][0]["id"].as_str().unwrap().to_owned();
    h.wait_delivery(&dead, "dead", Duration::from_secs(10))
        .await;
    rx.set(Mode::Status(200));
    let out = stdout_json(&h.cli(&["-o", "json", "deliveries", "retry", &dead]).await);
    assert_eq!(out["id"], dead.as_str());
    h.wait_delivery(&dead, "delivered", Duration::from_secs(10))
        .await;
    let out = stdout_json(&h.cli(&["-o", "json", "redrive", "d"]).await);
    assert_eq!(out["redriven"], 0, "{out}");

    // Client errors: non-zero exit with the API's message; a wrong token is refused.
    let out = h.cli(&["deliveries", "get", "nope"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    let out = h.cli(&["pause", "nobody"]).await;
    assert!(!out.status.success());
    let out = run_herald(
        vec![
            "subscribers".into(),
            "--url".into(),
            h.base.clone(),
            "--token".into(),
            "bad".into(),
        ],
        vec![],
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    h.assert_no_panic();
}

/// The value of `herald_queue_depth{subscriber, state}` in a `/metrics` text, if present.
fn queue_depth(metrics: &str, subscriber: &str, state: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with("herald_queue_depth{"))
        .find(|l| {
            l.contains(&format!("subscriber=\"{subscriber}\""))
                && l.contains(&format!("state=\"{state}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `herald_queue_depth` follows the store down to zero: after retention purges a subscriber's
/// last delivery it reads 0 (it used to keep its last value), and a subscriber removed by a
/// reload reads 0 instead of its last figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_gauges_fall_to_zero_after_purge_and_removal() {
    let rx = Receiver::start().await;
    let h = Herald::start(
        Config::default()
            .retention("1s")
            .sub(Sub::new("kept", &rx.url("/kept")))
            .sub(
                Sub::new("gone", &rx.url("/gone"))
                    .attempts(100)
                    .intervals("10s", "10s"),
            ),
    )
    .await;
    let receipt = h
        .ingest(&json!({"event_type": "X", "payload": {"n": 1}}))
        .await;
    for (_, id) in crate::harness::receipt_ids(&receipt) {
        h.wait_delivery(&id, "delivered", Duration::from_secs(10))
            .await;
    }
    let metrics = h.get_text("/metrics").await.1;
    assert_eq!(
        queue_depth(&metrics, "kept", "delivered"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        queue_depth(&metrics, "gone", "delivered"),
        Some(1.0),
        "{metrics}"
    );

    // Retention (1 s) purges both deliveries; the gauges must follow.
    wait_for(
        Duration::from_secs(15),
        "the purge to reach the gauges",
        || async {
            let metrics = h.get_text("/metrics").await.1;
            (queue_depth(&metrics, "kept", "delivered") == Some(0.0)).then_some(())
        },
    )
    .await;
    let metrics = h.get_text("/metrics").await.1;
    for state in ["pending", "in_flight", "delivered", "dead"] {
        assert_eq!(queue_depth(&metrics, "kept", state), Some(0.0), "{metrics}");
        assert_eq!(queue_depth(&metrics, "gone", state), Some(0.0), "{metrics}");
    }

    // A subscriber removed by reload, with a delivery still stored, reads 0 (or disappears).
    rx.set(Mode::Status(500));
    let receipt = h
        .ingest(&json!({"event_type": "X", "payload": {"n": 2}}))
        .await;
    assert_eq!(crate::harness::receipt_ids(&receipt).len(), 2, "{receipt}");
    wait_for(
        Duration::from_secs(10),
        "gone to count a pending delivery",
        || async {
            let metrics = h.get_text("/metrics").await.1;
            let n = queue_depth(&metrics, "gone", "pending").unwrap_or(0.0)
                + queue_depth(&metrics, "gone", "in_flight").unwrap_or(0.0);
            (n >= 1.0).then_some(())
        },
    )
    .await;
    std::fs::remove_file(h.subscribers_dir().join("gone.toml")).unwrap();
    let (status, answer) = h.post_empty("/v1/reload").await;
    assert_eq!(status, 200, "{answer}");
    let metrics = h.get_text("/metrics").await.1;
    for state in ["pending", "in_flight", "delivered", "dead"] {
        let depth = queue_depth(&metrics, "gone", state);
        assert!(depth.is_none() || depth == Some(0.0), "{state}: {metrics}");
    }
    h.assert_no_panic();
}
