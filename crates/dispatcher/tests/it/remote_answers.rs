//! Issue 11 item 4: hostile remote answers, as a property test.
//!
//! A raw TCP server on 127.0.0.1 plays both the webhook receiver (`/hook`) and the OAuth2 token
//! endpoint (`/token`), answering each request the way the current case says: odd status codes
//! (0-999), many or huge headers, `Retry-After` of 10^20 or garbage, absurd `expires_in`
//! values, missing or odd token fields, a 5 MB body, a body dribbled one byte a second, a
//! connection reset in the middle of the headers. Every case goes through the real dispatcher
//! and a real `SledStore` (behind the pass-through [`Rig`]), and must end with no panic (the
//! `herald_attempt_panics_total` counter stays 0), nothing in flight, and exactly one attempt
//! recorded with a clear, short, secret-free error unless it was delivered.
//!
//! The retry policy has 2 attempts and a first retry after an hour, so after its one attempt a
//! delivery is delivered or pending (due in an hour, or after a `Retry-After` capped at 24 h):
//! nothing else happens to it during the test. `410 Gone` is left out (it pauses the
//! subscriber, which `dead_letter`/`pause` tests cover).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::{
    AuthConfig, DeliveryId, DeliveryStatus, RetryPolicy, Secret, SubscriberConfig, UnixMillis,
};
use parking_lot::Mutex;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::faulty_store::Rig;
use crate::harness::{enqueue, sid};

const CLIENT_SECRET: &str = "hostile-client-s3cret";
/// Every access token the server issues starts with this (so a leak is easy to spot).
const TOKEN_MARK: &str = "tok-SECRET";
const TIMEOUT: Duration = Duration::from_millis(400);
const FIRST_RETRY: Duration = Duration::from_secs(3600);
/// Random cases after the named ones (each takes a few ms, or the timeout for slow answers).
const RANDOM_CASES: u32 = 128;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A response body.
#[derive(Debug, Clone)]
enum Body {
    Text(String),
    /// 5 MB, with its `content-length`.
    Huge,
    /// `content-length: 1000`, then one byte a second.
    Dribble,
}

/// Extra headers.
#[derive(Debug, Clone)]
enum Extra {
    None,
    /// This many small headers.
    Many(usize),
    /// One header of this many bytes.
    Huge(usize),
}

/// One answer of the server.
#[derive(Debug, Clone)]
enum Answer {
    Http {
        status: u16,
        extra: Extra,
        retry_after: Option<String>,
        body: Body,
    },
    /// Half a header block, then a TCP reset.
    ResetMidHeaders,
}

/// One case: which subscriber, and what the two endpoints answer.
#[derive(Debug, Clone)]
struct Case {
    oauth: bool,
    token: Answer,
    hook: Answer,
}

fn ok(status: u16) -> Answer {
    Answer::Http {
        status,
        extra: Extra::None,
        retry_after: None,
        body: Body::Text(String::new()),
    }
}

fn token_json(body: &str) -> Answer {
    Answer::Http {
        status: 200,
        extra: Extra::None,
        retry_after: None,
        body: Body::Text(body.to_owned()),
    }
}

fn good_token() -> Answer {
    token_json(&format!(
        r#"{{"access_token":"{TOKEN_MARK}-1","token_type":"Bearer","expires_in":3600}}"#
    ))
}

fn plain(hook: Answer) -> Case {
    Case {
        oauth: false,
        token: good_token(),
        hook,
    }
}

fn with_token(token: Answer) -> Case {
    Case {
        oauth: true,
        token,
        hook: ok(204),
    }
}

fn status_with(status: u16, retry_after: &str) -> Answer {
    Answer::Http {
        status,
        extra: Extra::None,
        retry_after: Some(retry_after.to_owned()),
        body: Body::Text(String::new()),
    }
}

fn with_body(status: u16, body: Body) -> Answer {
    Answer::Http {
        status,
        extra: Extra::None,
        retry_after: None,
        body,
    }
}

fn with_extra(status: u16, extra: Extra) -> Answer {
    Answer::Http {
        status,
        extra,
        retry_after: None,
        body: Body::Text(String::new()),
    }
}

/// Each absurdity the issue lists, once.
fn named_cases() -> Vec<Case> {
    let t = |fields: &str| with_token(token_json(fields));
    vec![
        plain(ok(0)),
        plain(ok(99)),
        plain(ok(100)),
        plain(ok(299)),
        plain(ok(600)),
        plain(ok(999)),
        plain(status_with(429, "100000000000000000000")),
        plain(status_with(503, "Mon, 99 Foo 2024 25:61:61 GMT")),
        plain(status_with(503, "Fri, 31 Dec 9999 23:59:59 GMT")),
        plain(status_with(429, "-5")),
        plain(with_extra(200, Extra::Many(5000))),
        plain(with_extra(500, Extra::Huge(1024 * 1024))),
        plain(with_body(200, Body::Huge)),
        plain(with_body(500, Body::Huge)),
        plain(with_body(200, Body::Dribble)),
        plain(with_body(503, Body::Dribble)),
        plain(Answer::ResetMidHeaders),
        t(&format!(
            r#"{{"access_token":"{TOKEN_MARK}","token_type":"Bearer","expires_in":18446744073709551615}}"#
        )),
        t(&format!(
            r#"{{"access_token":"{TOKEN_MARK}","token_type":"Bearer","expires_in":100000000000000000000}}"#
        )),
        t(&format!(
            r#"{{"access_token":"{TOKEN_MARK}","token_type":"Bearer","expires_in":-1}}"#
        )),
        t(&format!(
            r#"{{"access_token":"{TOKEN_MARK}","token_type":"Bearer","expires_in":0}}"#
        )),
        t(&format!(
            r#"{{"access_token":"{TOKEN_MARK}","token_type":"Bearer","expires_in":"3600"}}"#
        )),
        t(r#"{"token_type":"Bearer","expires_in":3600}"#),
        t(&format!(
            r#"{{"access_token":"{TOKEN_MARK}","token_type":"mac","expires_in":3600}}"#
        )),
        t(&format!(
            r#"{{"access_token":"{TOKEN_MARK}\n","token_type":"Bearer"}}"#
        )),
        with_token(with_body(200, Body::Huge)),
        with_token(with_body(200, Body::Dribble)),
        with_token(Answer::ResetMidHeaders),
        with_token(ok(999)),
        with_token(with_extra(200, Extra::Many(5000))),
    ]
}

fn odd_json_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("-1".to_owned())),
        Just(Some("0".to_owned())),
        Just(Some("18446744073709551615".to_owned())),
        Just(Some("100000000000000000000".to_owned())),
        Just(Some("1.5".to_owned())),
        Just(Some("null".to_owned())),
        Just(Some(r#""3600""#.to_owned())),
        Just(Some(r#""soon""#.to_owned())),
        (1u64..100_000).prop_map(|n| Some(n.to_string())),
    ]
}

fn token_body() -> impl Strategy<Value = Body> {
    let access = prop_oneof![
        Just(None),
        Just(Some(format!(r#""{TOKEN_MARK}""#))),
        Just(Some(r#""""#.to_owned())),
        Just(Some(format!(r#""{TOKEN_MARK}\u0000""#))),
        Just(Some("42".to_owned())),
        Just(Some(format!(r#""{TOKEN_MARK}{}""#, "x".repeat(70_000)))),
    ];
    let kind = prop_oneof![
        Just(None),
        Just(Some(r#""Bearer""#.to_owned())),
        Just(Some(r#""bearer""#.to_owned())),
        Just(Some(r#""mac""#.to_owned())),
        Just(Some("7".to_owned())),
    ];
    (access, kind, odd_json_value(), any::<bool>()).prop_map(|(access, kind, expires, junk)| {
        let mut fields = Vec::new();
        for (name, value) in [
            ("access_token", access),
            ("token_type", kind),
            ("expires_in", expires),
        ] {
            if let Some(v) = value {
                fields.push(format!(r#""{name}":{v}"#));
            }
        }
        let json = format!("{{{}}}", fields.join(","));
        Body::Text(if junk { format!("{json}]]") } else { json })
    })
}

fn extra() -> impl Strategy<Value = Extra> {
    prop_oneof![
        6 => Just(Extra::None),
        1 => (1usize..3000).prop_map(Extra::Many),
        1 => (1usize..2_000_000).prop_map(Extra::Huge),
    ]
}

fn retry_after() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        any::<u64>().prop_map(|n| Some(n.to_string())),
        Just(Some("100000000000000000000".to_owned())),
        Just(Some("Fri, 31 Dec 9999 23:59:59 GMT".to_owned())),
        Just(Some("Thu, 01 Jan 1970 00:00:00 GMT".to_owned())),
        "[ -~]{0,40}".prop_map(Some),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        8 => "[ -~]{0,200}".prop_map(Body::Text),
        1 => Just(Body::Huge),
        1 => Just(Body::Dribble),
    ]
}

fn answer(body: impl Strategy<Value = Body>) -> impl Strategy<Value = Answer> {
    let status = prop_oneof![0u16..1000, 200u16..300, Just(429), Just(503)]
        .prop_filter("410 pauses the subscriber", |s| *s != 410);
    prop_oneof![
        12 => (status, extra(), retry_after(), body).prop_map(|(status, extra, retry_after, body)| {
            Answer::Http { status, extra, retry_after, body }
        }),
        1 => Just(Answer::ResetMidHeaders),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![
        (answer(body())).prop_map(plain),
        (
            prop_oneof![
                4 => token_body().prop_map(|b| Answer::Http {
                    status: 200,
                    extra: Extra::None,
                    retry_after: None,
                    body: b,
                }),
                1 => answer(token_body()),
            ],
            answer(body())
        )
            .prop_map(|(token, hook)| Case {
                oauth: true,
                token,
                hook,
            }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The hostile server.

/// Answers every request with the current case's answer for its path.
struct Hostile {
    addr: std::net::SocketAddr,
    case: Arc<Mutex<Option<Case>>>,
}

impl Hostile {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let case: Arc<Mutex<Option<Case>>> = Arc::new(Mutex::new(None));
        let current = Arc::clone(&case);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let current = Arc::clone(&current);
                tokio::spawn(async move {
                    let _ = serve(socket, &current).await;
                });
            }
        });
        Self { addr, case }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn serve(mut socket: TcpStream, case: &Mutex<Option<Case>>) -> std::io::Result<()> {
    // The request head, then as much body as it announces, so closing never resets it.
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = socket.read(&mut buf).await?;
        if n == 0 || seen.len() > 1 << 20 {
            return Ok(());
        }
        seen.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while seen.len() < head_end + length {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let Some(case) = case.lock().clone() else {
        return Ok(());
    };
    let answer = if head.starts_with("post /token") {
        case.token
    } else {
        case.hook
    };
    match answer {
        Answer::ResetMidHeaders => {
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: appl")
                .await?;
            socket.flush().await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            socket.set_zero_linger()?;
            drop(socket);
            Ok(())
        }
        Answer::Http {
            status,
            extra,
            retry_after,
            body,
        } => {
            let mut out = format!("HTTP/1.1 {status:03} Odd\r\nconnection: close\r\n");
            match &extra {
                Extra::None => {}
                Extra::Many(n) => {
                    for i in 0..*n {
                        let _ = write!(out, "x-h{i}: v{i}\r\n");
                    }
                }
                Extra::Huge(n) => {
                    let _ = write!(out, "x-huge: {}\r\n", "h".repeat(*n));
                }
            }
            if let Some(ra) = &retry_after {
                let _ = write!(out, "retry-after: {ra}\r\n");
            }
            let content = match &body {
                Body::Text(t) => {
                    out.push_str("content-type: application/json\r\n");
                    t.clone().into_bytes()
                }
                Body::Huge => vec![b'{'; 5 * 1024 * 1024],
                Body::Dribble => Vec::new(),
            };
            let length = if matches!(body, Body::Dribble) {
                1000
            } else {
                content.len()
            };
            let _ = write!(out, "content-length: {length}\r\n\r\n");
            socket.write_all(out.as_bytes()).await?;
            socket.write_all(&content).await?;
            if matches!(body, Body::Dribble) {
                for _ in 0..length {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    socket.write_all(b"x").await?;
                }
            }
            socket.shutdown().await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The property.

fn configs(server: &Hostile) -> Vec<SubscriberConfig> {
    let retry = RetryPolicy {
        max_attempts: 2,
        initial_interval: FIRST_RETRY,
        multiplier: 2.0,
        max_interval: FIRST_RETRY,
        randomization: 0.0,
        max_age: None,
    };
    let plain = SubscriberConfig {
        timeout: TIMEOUT,
        retry: retry.clone(),
        ..SubscriberConfig::new(sid("hostile-plain"), server.url("/hook").parse().unwrap())
    };
    let oauth = SubscriberConfig {
        timeout: TIMEOUT,
        retry,
        auth: AuthConfig::OAuth2 {
            token_url: server.url("/token").parse().unwrap(),
            client_id: "herald".to_owned(),
            client_secret: Secret::new(CLIENT_SECRET),
            scopes: Vec::new(),
        },
        ..SubscriberConfig::new(sid("hostile-oauth"), server.url("/hook").parse().unwrap())
    };
    vec![plain, oauth]
}

/// Runs one case through the dispatcher and checks what it left in the store.
async fn check(rig: &Rig, server: &Hostile, case: &Case) -> Result<String, TestCaseError> {
    *server.case.lock() = Some(case.clone());
    // A reload builds fresh endpoints: every case starts with an empty token cache.
    rig.dispatcher.reload(configs(server)).await.unwrap();
    let subscriber = if case.oauth {
        "hostile-oauth"
    } else {
        "hostile-plain"
    };
    let before = UnixMillis::now();
    let id: DeliveryId = enqueue(&rig.store, &rig.dispatcher, subscriber, 1).await[0];
    let deadline = Instant::now() + Duration::from_secs(15);
    let details = loop {
        let d = rig.store.get(id).await.unwrap().unwrap();
        if !d.attempts.is_empty() && d.record.status != DeliveryStatus::InFlight {
            break d;
        }
        if Instant::now() > deadline {
            return Err(TestCaseError::fail(format!(
                "still {:?} with {} attempts after 15 s",
                d.record.status,
                d.attempts.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let after = UnixMillis::now();
    prop_assert_eq!(details.attempts.len(), 1, "one attempt recorded");
    let attempt = &details.attempts[0];
    let record = &details.record;
    match record.status {
        DeliveryStatus::Delivered => {
            prop_assert!(
                matches!(attempt.status_code, Some(200..=299)),
                "{attempt:?}"
            );
            prop_assert_eq!(attempt.error.as_deref(), None);
        }
        DeliveryStatus::Pending => {
            let error = attempt.error.as_deref().unwrap_or("");
            prop_assert!(!error.is_empty(), "a failure without an error: {attempt:?}");
            prop_assert!(
                error.chars().count() <= 201 && !error.contains('\n'),
                "not a short one-line error: {error:?}"
            );
            prop_assert!(
                !error.contains(CLIENT_SECRET) && !error.contains(TOKEN_MARK),
                "a secret in the error: {error:?}"
            );
            // Due after the first retry interval, and never more than Retry-After's cap.
            let due = record.next_attempt_at.unwrap();
            prop_assert!(
                due >= before.plus(FIRST_RETRY) && due <= after.plus(MAX_RETRY_AFTER),
                "due {} ms after the attempt",
                due.0.saturating_sub(after.0)
            );
        }
        other => prop_assert!(false, "ended {other:?}: {record:?}"),
    }
    // What the answers imply, where it is unambiguous.
    let token_ok = !case.oauth || record.status == DeliveryStatus::Delivered;
    if let (
        true,
        Answer::Http {
            status,
            extra: Extra::None,
            ..
        },
    ) = (token_ok, &case.hook)
    {
        if (200..=299).contains(status) {
            prop_assert_eq!(record.status, DeliveryStatus::Delivered, "{:?}", attempt);
        } else if *status >= 300 {
            prop_assert_eq!(attempt.status_code, Some(*status));
            let error = attempt.error.as_deref().unwrap_or("");
            prop_assert!(error.contains(&status.to_string()), "{error:?}");
        }
    }
    if case.oauth {
        let refused = match &case.token {
            Answer::ResetMidHeaders => true,
            Answer::Http { status, body, .. } => {
                *status != 200 || !matches!(body, Body::Text(t) if t.contains("access_token"))
            }
        };
        if refused {
            let error = attempt.error.as_deref().unwrap_or("");
            prop_assert!(
                error.starts_with("oauth2 token request failed: "),
                "{error:?}"
            );
            prop_assert_eq!(attempt.status_code, None);
        }
    }
    prop_assert_eq!(
        rig.counter("herald_attempt_panics_total", subscriber),
        0,
        "an attempt panicked"
    );
    Ok(format!(
        "{:?} {:?} {}",
        record.status,
        attempt.status_code,
        attempt.error.as_deref().unwrap_or("")
    ))
}

#[test]
fn hostile_remote_answers_never_panic_or_strand_a_delivery() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _serial = crate::harness::serial_blocking();
    let started = Instant::now();
    let server = rt.block_on(Hostile::start());
    let rig = rt.block_on(async { Rig::start(configs(&server)) });

    for (n, case) in named_cases().iter().enumerate() {
        match rt.block_on(check(&rig, &server, case)) {
            Ok(seen) => println!("case {n:2}: {seen}"),
            Err(e) => panic!("{case:?}: {e}"),
        }
    }
    let named = started.elapsed();

    let mut runner = TestRunner::new(Config {
        cases: RANDOM_CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(), |case| {
        rt.block_on(check(&rig, &server, &case)).map(drop)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    println!(
        "hostile answers: {} named cases in {named:?}, {RANDOM_CASES} random in {:?}",
        named_cases().len(),
        started.elapsed() - named
    );
    for sub in ["hostile-plain", "hostile-oauth"] {
        let c = rig.counts(sub);
        assert_eq!(c.in_flight, 0, "{sub}: {c:?}");
    }
    rt.block_on(rig.dispatcher.shutdown(Duration::from_secs(1)));
}
