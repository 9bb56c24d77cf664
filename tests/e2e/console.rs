//! The operator console (SPEC §11) in a real browser: Debian's Chromium driven over WebDriver
//! (fantoccini) against the real `herald` binary. One browser session walks through every page
//! and action; plain HTTP checks the refusals a browser would never send.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`);
//! without them these tests fail and say so. `HERALD_SCREENSHOTS=1` saves
//! `docs/console-overview.png` and `docs/console-delivery.png`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::harness::{free_port, wait_for, Config, Herald, Mode, Receiver, Sub};

const TOKEN: &str = "SECRETMARK-console-token-4f2";
const BASIC_PASS: &str = "SECRETMARK-console-basic-8d1";
const QUERY_KEY: &str = "SECRETMARK-console-query-b07";
const SIGNING: &str = "SECRETMARK-console-signing";

/// Every secret of the test config; none may appear in any page.
fn markers() -> Vec<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        "SECRETMARK".to_owned(),
        TOKEN.to_owned(),
        BASIC_PASS.to_owned(),
        QUERY_KEY.to_owned(),
        b64.encode(SIGNING),
        b64.encode(format!("user:{BASIC_PASS}")),
    ]
}

fn assert_no_secret(page: &str, what: &str) {
    for m in markers() {
        assert!(!page.contains(&m), "{what} shows the secret {m:?}:\n{page}");
    }
}

const INSTALL_HINT: &str = "the console tests need Chromium and its WebDriver: \
     `apt-get update && apt-get install -y chromium chromium-driver` (Debian), \
     or run the README's test command, which installs them";

fn find_program(names: &[&str]) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("{} not found: {INSTALL_HINT}", names.join(" or "));
}

/// A chromedriver child on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
    client: Option<Client>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Self {
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
        let chromedriver = find_program(&["chromedriver"]);
        let port = free_port();
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; {INSTALL_HINT}",
                    chromedriver.display()
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let status = reqwest::Client::new();
        wait_for(
            Duration::from_secs(20),
            "chromedriver to answer",
            || async {
                let r = status.get(format!("{url}/status")).send().await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
        let profile = tempfile::tempdir().expect("profile dir");
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".to_owned(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({"binary": chromium.to_string_lossy(), "args": args}),
        );
        // Confirmation dialogs are answered by the test, never automatically.
        caps.insert("unhandledPromptBehavior".to_owned(), json!("ignore"));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot open a Chromium session: {e}; {INSTALL_HINT}"));
        Self {
            child,
            url,
            _profile: profile,
            client: Some(client),
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("browser session")
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
        let _ = &self.url;
    }
}

/// The button whose accessible name (its text) is `name`.
async fn button(c: &Client, name: &str) -> fantoccini::elements::Element {
    c.find(Locator::XPath(&format!(
        "//button[normalize-space()='{name}']"
    )))
    .await
    .unwrap_or_else(|e| panic!("no button named {name:?}: {e}"))
}

/// The form field labelled `label` by a real `<label for>`.
async fn field(c: &Client, label: &str) -> fantoccini::elements::Element {
    let l = c
        .find(Locator::XPath(&format!(
            "//label[normalize-space()='{label}']"
        )))
        .await
        .unwrap_or_else(|e| panic!("no label {label:?}: {e}"));
    let id = l.attr("for").await.unwrap().expect("label has a for");
    c.find(Locator::Id(&id))
        .await
        .unwrap_or_else(|e| panic!("label {label:?} points to no field: {e}"))
}

async fn current_path(c: &Client) -> String {
    let url = c.current_url().await.unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// Waits until the page's source satisfies `ok`.
async fn wait_page(c: &Client, what: &str, ok: impl Fn(&str) -> bool) -> String {
    wait_for(Duration::from_secs(15), what, || async {
        let s = c.source().await.ok()?;
        ok(&s).then_some(s)
    })
    .await
}

async fn text_of(c: &Client, css: &str) -> String {
    // The live refresh may replace the element between finding it and reading it (a stale
    // element reference): find it again.
    let mut tries = 0;
    loop {
        let element = c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"));
        match element.text().await {
            Ok(text) => return text,
            Err(e) if tries < 5 => {
                tries += 1;
                eprintln!("reading {css} again: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("reading {css}: {e}"),
        }
    }
}

fn save_screenshot(png: &[u8], name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

fn screenshots() -> bool {
    std::env::var("HERALD_SCREENSHOTS").is_ok_and(|v| v == "1")
}

/// The `csrf` value of the first form of a page source.
fn csrf_of(source: &str) -> String {
    let at = source
        .find("name=\"csrf\"")
        .expect("a form with a csrf field");
    let value = &source[at..];
    let start = value.find("value=\"").expect("csrf value") + 7;
    let end = value[start..].find('"').unwrap();
    value[start..start + end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser() {
    let ok = Receiver::start().await;
    let failing = Receiver::start_with(Mode::Status(500)).await;
    use base64::Engine;
    let signing = base64::engine::general_purpose::STANDARD.encode(SIGNING);
    let herald = Herald::start(
        Config::default()
            .token(TOKEN)
            .sub(
                Sub::new("alpha", &format!("{}?key={QUERY_KEY}", ok.url("/hook"))).extra(&format!(
                    "[auth]\ntype = \"basic\"\ncredentials = \"user:{BASIC_PASS}\"\n\n\
                         [signing]\nscheme = \"standard-webhooks\"\nsecret = \"whsec_{signing}\"\n"
                )),
            )
            .sub(Sub::new("beta", &failing.url("/hook")).attempts(1)),
    )
    .await;
    let base = herald.base.clone();

    // Data: two delivered to alpha, one dead at beta.
    let mut delivered = Vec::new();
    for i in 0..2 {
        let r = herald
            .ingest(&json!({"event_type": "order.paid", "subscriber": "alpha",
                            "payload": {"order": i, "note": "<b>not html</b>"}}))
            .await;
        delivered.push(r["deliveries"][0]["id"].as_str().unwrap().to_owned());
    }
    let r = herald
        .ingest(&json!({"event_type": "order.paid", "subscriber": "beta", "payload": {"order": 9}}))
        .await;
    let dead_id = r["deliveries"][0]["id"].as_str().unwrap().to_owned();
    let dead_event = r["event_id"].as_str().unwrap().to_owned();
    for id in &delivered {
        herald
            .wait_delivery(id, "delivered", Duration::from_secs(10))
            .await;
    }
    herald
        .wait_delivery(&dead_id, "dead", Duration::from_secs(10))
        .await;

    let driver = Driver::start().await;
    let c = driver.c();
    let mut sources: Vec<(String, String)> = Vec::new();

    // --- Sign-in: no data without the token.
    c.goto(&format!("{base}/console")).await.unwrap();
    assert_eq!(current_path(c).await, "/console/signin");
    assert!(c.title().await.unwrap().contains("Sign in"));
    let lang = c
        .execute("return document.documentElement.lang", vec![])
        .await
        .unwrap();
    assert_eq!(lang, json!("en"));
    field(c, "API token")
        .await
        .send_keys("wrong-token")
        .await
        .unwrap();
    button(c, "Sign in").await.click().await.unwrap();
    let page = wait_page(c, "the refusal of a wrong token", |s| {
        s.contains("That token is not valid")
    })
    .await;
    assert!(!page.contains("alpha"), "no data before sign-in");
    assert!(c.get_named_cookie("herald_console").await.is_err());
    field(c, "API token").await.send_keys(TOKEN).await.unwrap();
    button(c, "Sign in").await.click().await.unwrap();
    wait_for(
        Duration::from_secs(10),
        "the overview after sign-in",
        || async { (current_path(c).await == "/console").then_some(()) },
    )
    .await;

    // --- The cookie: HttpOnly, SameSite=Strict, not readable by scripts.
    let cookie = c.get_named_cookie("herald_console").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert_eq!(
        cookie.same_site().map(|s| s.to_string()).as_deref(),
        Some("Strict"),
        "{cookie:?}"
    );
    let session = cookie.value().to_owned();
    let visible = c.execute("return document.cookie", vec![]).await.unwrap();
    assert!(!visible.as_str().unwrap_or_default().contains(&session));

    // --- Overview: every subscriber with its figures, links with ids as text.
    assert!(c.title().await.unwrap().contains("Overview"));
    let alpha_link = c.find(Locator::LinkText("alpha")).await.unwrap();
    assert_eq!(
        alpha_link.attr("href").await.unwrap().as_deref(),
        Some("/console/subscribers/alpha")
    );
    c.find(Locator::LinkText("beta")).await.unwrap();
    let beta_dead = "#subscribers tbody tr:nth-child(2) td.dead";
    assert_eq!(text_of(c, beta_dead).await, "1");
    let alpha_row = text_of(c, "#subscribers tbody tr:nth-child(1)").await;
    assert!(alpha_row.contains("active"), "{alpha_row}");
    assert!(
        alpha_row.contains("0 / 10 / 10"),
        "in flight / limit / max: {alpha_row}"
    );
    c.find(Locator::Css("#subscribers svg polyline"))
        .await
        .unwrap();
    // Live refresh: a new dead letter shows without reloading the page.
    let marker_script = "document.body.setAttribute('data-not-reloaded', '1')";
    c.execute(marker_script, vec![]).await.unwrap();
    let r = herald
        .ingest(
            &json!({"event_type": "order.paid", "subscriber": "beta", "payload": {"order": 10}}),
        )
        .await;
    let second_dead = r["deliveries"][0]["id"].as_str().unwrap().to_owned();
    herald
        .wait_delivery(&second_dead, "dead", Duration::from_secs(10))
        .await;
    wait_for(
        Duration::from_secs(15),
        "the overview to refresh by itself",
        || async { (text_of(c, beta_dead).await == "2").then_some(()) },
    )
    .await;
    let not_reloaded = c
        .execute(
            "return document.body.getAttribute('data-not-reloaded')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        not_reloaded,
        json!("1"),
        "the page was reloaded instead of refreshed"
    );
    // Every resource the page loaded (stylesheet, script, live polls) is same-origin.
    let resources = c
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name)",
            vec![],
        )
        .await
        .unwrap();
    let resources: Vec<String> = serde_json::from_value(resources).unwrap();
    assert!(resources
        .iter()
        .any(|r| r.ends_with("/console/assets/console.css")));
    assert!(resources
        .iter()
        .any(|r| r.ends_with("/console/assets/console.js")));
    assert!(
        resources.iter().any(|r| r.contains("/console/live")),
        "{resources:?}"
    );
    for r in &resources {
        assert!(
            r.starts_with(&format!("{base}/")),
            "cross-origin resource {r}"
        );
    }
    if screenshots() {
        save_screenshot(&c.screenshot().await.unwrap(), "console-overview.png");
    }
    sources.push(("overview".into(), c.source().await.unwrap()));

    // --- Subscriber page: summary without secrets or query string, deliveries, actions.
    c.find(Locator::LinkText("alpha"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(Duration::from_secs(10), "the subscriber page", || async {
        (current_path(c).await == "/console/subscribers/alpha").then_some(())
    })
    .await;
    assert!(c.title().await.unwrap().contains("alpha"));
    assert_eq!(text_of(c, "code.url").await, ok.url("/hook"));
    for id in &delivered {
        let link = c.find(Locator::LinkText(id)).await.unwrap();
        assert_eq!(
            link.attr("href").await.unwrap(),
            Some(format!("/console/deliveries/{id}"))
        );
    }
    sources.push(("subscriber".into(), c.source().await.unwrap()));
    // Pause with a reason: the Reason field stands beside Pause, in the same form.
    let reason = field(c, "Reason").await;
    let same_form = c
        .execute(
            "const l = [...document.querySelectorAll('label')].find(l => l.textContent.trim() === 'Reason');\
             const b = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Pause');\
             return document.getElementById(l.htmlFor).form === b.form;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(same_form, json!(true));
    reason.send_keys("maintenance window").await.unwrap();
    button(c, "Pause").await.click().await.unwrap();
    wait_page(c, "the paused subscriber page", |s| {
        s.contains("maintenance window")
    })
    .await;
    let sub = herald.subscriber("alpha").await;
    assert_eq!(sub["paused"], true);
    assert_eq!(sub["paused_reason"], "maintenance window");
    sources.push(("paused subscriber".into(), c.source().await.unwrap()));
    // Resume (keyboard: focus the button and press Enter).
    let resume = button(c, "Resume").await;
    resume.send_keys("\u{E007}").await.unwrap();
    wait_page(c, "the resumed subscriber page", |s| s.contains("Resumed.")).await;
    assert_eq!(herald.subscriber("alpha").await["paused"], false);

    // Replay over a window: the dry-run count first, then a confirmation.
    let sent_before = ok.request_count();
    field(c, "Since").await.send_keys("1h").await.unwrap();
    c.find(Locator::Css("select[name=status] option[value=delivered]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    button(c, "Dry run").await.click().await.unwrap();
    wait_page(c, "the dry-run count", |s| s.contains("Dry run:")).await;
    assert_eq!(text_of(c, "strong.matched").await, "2");
    assert!(c.title().await.unwrap().contains("Replay"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ok.request_count(), sent_before, "a dry run sends nothing");
    for id in &delivered {
        assert_eq!(herald.delivery_status(id).await, "delivered");
    }
    sources.push(("replay dry run".into(), c.source().await.unwrap()));
    button(c, "Replay").await.click().await.unwrap();
    let question = c.get_alert_text().await.unwrap();
    assert!(question.contains("Replay 2"), "{question}");
    c.accept_alert().await.unwrap();
    wait_page(c, "the replay result", |s| {
        s.contains("2 deliveries were replayed")
    })
    .await;
    assert_eq!(
        current_path(c).await,
        "/console/subscribers/alpha?done=replayed&n=2"
    );
    wait_for(
        Duration::from_secs(10),
        "the replayed deliveries",
        || async { (ok.request_count() == sent_before + 2).then_some(()) },
    )
    .await;

    // --- Delivery page: timeline, links to subscriber; retry a dead one.
    c.goto(&format!("{base}/console/subscribers/beta"))
        .await
        .unwrap();
    sources.push(("beta".into(), c.source().await.unwrap()));
    c.find(Locator::LinkText(&dead_id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(Duration::from_secs(10), "the delivery page", || async {
        (current_path(c).await == format!("/console/deliveries/{dead_id}")).then_some(())
    })
    .await;
    assert!(c.title().await.unwrap().contains(&dead_id));
    let timeline = text_of(c, "#timeline tbody").await;
    assert!(
        timeline.contains("500"),
        "status code in the timeline: {timeline}"
    );
    assert!(
        timeline.contains(" ms"),
        "duration in the timeline: {timeline}"
    );
    let sub_link = c
        .find(Locator::Css(
            "dl.summary a[href='/console/subscribers/beta']",
        ))
        .await
        .unwrap();
    assert_eq!(sub_link.text().await.unwrap(), "beta");
    assert!(
        c.source().await.unwrap().contains(&dead_event),
        "event id shown"
    );
    if screenshots() {
        save_screenshot(&c.screenshot().await.unwrap(), "console-delivery.png");
    }
    sources.push(("delivery".into(), c.source().await.unwrap()));
    let payload = text_of(c, "pre.payload").await;
    assert_eq!(
        payload, "{\n  \"order\": 9\n}",
        "the payload, pretty-printed"
    );
    button(c, "Retry").await.click().await.unwrap();
    wait_page(c, "the retried delivery", |s| s.contains("Pending again")).await;
    wait_for(Duration::from_secs(10), "the retried attempt", || async {
        let (_, d) = herald.get(&format!("/v1/deliveries/{dead_id}")).await;
        (d["status"] == "dead" && d["attempts"].as_array()?.len() == 2).then_some(())
    })
    .await;

    // --- Redrive: asks first; dismissing changes nothing, accepting redrives.
    c.goto(&format!("{base}/console/subscribers/beta"))
        .await
        .unwrap();
    button(c, "Redrive").await.click().await.unwrap();
    let question = c.get_alert_text().await.unwrap();
    assert!(question.contains("beta"), "{question}");
    c.dismiss_alert().await.unwrap();
    assert_eq!(current_path(c).await, "/console/subscribers/beta");
    button(c, "Redrive").await.click().await.unwrap();
    c.accept_alert().await.unwrap();
    wait_page(c, "the redrive result", |s| {
        s.contains("2 dead deliveries are pending again")
    })
    .await;
    wait_for(Duration::from_secs(10), "the redriven attempts", || async {
        let (_, d) = herald.get(&format!("/v1/deliveries/{second_dead}")).await;
        (d["status"] == "dead" && d["attempts"].as_array()?.len() == 2).then_some(())
    })
    .await;

    // --- Search: to the delivery's own URL; an unknown id says so.
    field(c, "Search")
        .await
        .send_keys(&delivered[1])
        .await
        .unwrap();
    button(c, "Find").await.click().await.unwrap();
    wait_for(Duration::from_secs(10), "the search result", || async {
        (current_path(c).await == format!("/console/deliveries/{}", delivered[1])).then_some(())
    })
    .await;
    let payload = text_of(c, "pre.payload").await;
    assert!(
        payload.contains("\"note\": \"<b>not html</b>\""),
        "{payload}"
    );
    c.find(Locator::Css("dl.summary a[href^='/console/events/']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(Duration::from_secs(10), "the event page", || async {
        current_path(c)
            .await
            .starts_with("/console/events/")
            .then_some(())
    })
    .await;
    let event_page = c.source().await.unwrap();
    assert!(event_page.contains(&delivered[1]));
    sources.push(("event".into(), event_page));
    // Search by event id, and the event page's deliveries.
    field(c, "Search")
        .await
        .send_keys(&dead_event)
        .await
        .unwrap();
    button(c, "Find").await.click().await.unwrap();
    wait_for(Duration::from_secs(10), "the event found", || async {
        (current_path(c).await == format!("/console/events/{dead_event}")).then_some(())
    })
    .await;
    assert!(c.title().await.unwrap().contains(&dead_event));
    let link = c.find(Locator::LinkText(&dead_id)).await.unwrap();
    assert_eq!(
        link.attr("href").await.unwrap(),
        Some(format!("/console/deliveries/{dead_id}"))
    );
    c.find(Locator::Css("td a[href='/console/subscribers/beta']"))
        .await
        .unwrap();
    sources.push(("event found".into(), c.source().await.unwrap()));
    let unknown = "0190b5d4-0000-7000-8000-000000000000";
    field(c, "Search").await.send_keys(unknown).await.unwrap();
    button(c, "Find").await.click().await.unwrap();
    let page = wait_page(c, "the not-found answer", |s| s.contains("Nothing found")).await;
    assert!(page.contains(unknown));
    sources.push(("search".into(), page));

    // --- No secret in any page.
    for (what, source) in &sources {
        assert_no_secret(source, what);
    }

    // --- Cross-site requests are refused, even with a valid session and CSRF token.
    let csrf = csrf_of(&sources[1].1);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |origin: &'static str, csrf: String| {
        http.post(format!("{base}/console/subscribers/alpha/pause"))
            .header("cookie", format!("herald_console={session}"))
            .header("origin", origin.replace("SELF", &base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}&reason=attack"))
            .send()
    };
    let foreign = post("http://evil.example", csrf.clone()).await.unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(has_csp(&foreign));
    let no_token = post("SELF", "0000".to_owned()).await.unwrap();
    assert_eq!(no_token.status(), 403);
    assert_eq!(herald.subscriber("alpha").await["paused"], false);
    // The same request from the console's origin with its token works (the control).
    let same = post("SELF", csrf.clone()).await.unwrap();
    assert_eq!(same.status(), 303);
    assert_eq!(herald.subscriber("alpha").await["paused"], true);
    herald.post_empty("/v1/subscribers/alpha/resume").await;

    // --- Sign out: the session is gone.
    c.goto(&format!("{base}/console")).await.unwrap();
    button(c, "Sign out").await.click().await.unwrap();
    wait_for(Duration::from_secs(10), "the sign-in page", || async {
        (current_path(c).await == "/console/signin").then_some(())
    })
    .await;
    let after = http
        .get(format!("{base}/console/subscribers/alpha"))
        .header("cookie", format!("herald_console={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 303, "an ended session shows nothing");

    driver.close().await;
    herald.assert_no_panic();
}

fn has_csp(r: &reqwest::Response) -> bool {
    r.headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').any(|d| d.trim() == "default-src 'self'"))
}

/// Without a session nothing is shown and nothing runs; every answer carries the CSP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_without_a_session_shows_nothing() {
    let rx = Receiver::start().await;
    let herald = Herald::start(
        Config::default()
            .token(TOKEN)
            .sub(Sub::new("alpha", &rx.url("/hook"))),
    )
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/console",
        "/console/subscribers/alpha",
        "/console/search?q=x",
    ] {
        let r = http.get(herald.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/console/signin", "{path}");
        assert!(has_csp(&r), "{path}");
        assert!(!r.text().await.unwrap().contains("alpha"));
    }
    let live = http.get(herald.url("/console/live")).send().await.unwrap();
    assert_eq!(live.status(), 401);
    let forged = http
        .post(herald.url("/console/subscribers/alpha/pause"))
        .header("origin", &herald.base)
        .header("cookie", "herald_console=forged")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=x&reason=y")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert_eq!(herald.subscriber("alpha").await["paused"], false);
    for path in [
        "/console/signin",
        "/console/assets/console.js",
        "/console/nope",
    ] {
        let r = http.get(herald.url(path)).send().await.unwrap();
        assert!(has_csp(&r), "{path}");
    }
    let css = http
        .get(herald.url("/console/assets/console.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    herald.assert_no_panic();
}

/// Without `api_token` the console is open, like the API, and still refuses cross-site posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_without_a_token_is_open_but_same_origin() {
    let rx = Receiver::start().await;
    let herald = Herald::start(Config::default().sub(Sub::new("alpha", &rx.url("/hook")))).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http.get(herald.url("/console")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(has_csp(&page));
    let page = http
        .get(herald.url("/console/subscribers/alpha"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let send = |origin: Option<String>| {
        let mut req = http
            .post(herald.url("/console/subscribers/alpha/pause"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}&reason=r"));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    assert_eq!(send(None).await.unwrap().status(), 403, "no Origin");
    assert_eq!(
        send(Some("http://evil.example".into()))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(herald.subscriber("alpha").await["paused"], false);
    assert_eq!(send(Some(herald.base.clone())).await.unwrap().status(), 303);
    assert_eq!(herald.subscriber("alpha").await["paused"], true);

    // Every action refuses a same-origin form without the CSRF token, and changes nothing.
    for (path, body) in [
        ("/console/subscribers/alpha/resume", "csrf=wrong"),
        ("/console/subscribers/alpha/pause", "csrf=wrong&reason=r"),
        ("/console/subscribers/alpha/redrive", "csrf=wrong"),
        (
            "/console/deliveries/0190b5d4-0000-7000-8000-000000000000/retry",
            "csrf=wrong",
        ),
        (
            "/console/subscribers/alpha/replay",
            "csrf=wrong&since=1h&status=dead&confirm=1",
        ),
        (
            "/console/subscribers/alpha/resume",
            "reason=no-token-at-all",
        ),
    ] {
        let res = http
            .post(herald.url(path))
            .header("origin", herald.base.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        assert!(
            status == 403 || (status == 422 && !body.contains("csrf")),
            "{path} {body}: {status}"
        );
    }
    assert_eq!(herald.subscriber("alpha").await["paused"], true);
    let _: Value = herald.subscriber("alpha").await;
}
