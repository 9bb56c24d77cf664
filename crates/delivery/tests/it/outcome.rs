//! How responses and failures are judged, and that nothing can hold an attempt past its timeout.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use herald_delivery::Verdict;

use crate::support::*;

async fn attempt_against(reply: Reply) -> (herald_delivery::AttemptResult, Receiver) {
    let receiver = Receiver::start(reply).await;
    let result = endpoint(&subscriber(receiver.url("/")))
        .attempt(request(1, PAYLOAD))
        .await;
    (result, receiver)
}

#[tokio::test]
async fn any_2xx_is_success() {
    for status in [200, 201, 202, 204, 299] {
        let (result, _) = attempt_against(Reply::status(status).body("ok")).await;
        assert_eq!(result.verdict, Verdict::Success, "{status}");
        assert_eq!(result.status_code, Some(status));
        assert_eq!(result.error, None);
    }
}

#[tokio::test]
async fn gone_is_its_own_verdict() {
    let (result, _) = attempt_against(Reply::status(410)).await;
    assert_eq!(result.verdict, Verdict::Gone);
    assert_eq!(result.status_code, Some(410));
    assert_eq!(result.error.as_deref(), Some("HTTP 410 Gone"));
}

#[tokio::test]
async fn other_statuses_fail_with_a_short_text() {
    for status in [400, 404, 409, 429, 500, 502, 503] {
        let (result, _) =
            attempt_against(Reply::status(status).body("an explanation from the receiver")).await;
        assert_eq!(result.verdict, Verdict::Failure, "{status}");
        assert_eq!(result.status_code, Some(status));
        assert_eq!(result.error, Some(format!("HTTP {status}")));
        assert_eq!(result.retry_after, None);
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let target = Receiver::ok().await;
    for status in [301, 302, 307, 308] {
        let (result, origin) = attempt_against(
            Reply::status(status).header("location", target.url("/landing").as_str()),
        )
        .await;
        assert_eq!(result.verdict, Verdict::Failure);
        assert_eq!(result.status_code, Some(status));
        assert_eq!(
            result.error,
            Some(format!("redirect ({status}) not followed"))
        );
        assert_eq!(origin.count(), 1);
    }
    assert_eq!(target.count(), 0, "the Location target received nothing");
}

#[tokio::test]
async fn retry_after_in_seconds() {
    let (result, _) = attempt_against(Reply::status(429).header("retry-after", "120")).await;
    assert_eq!(result.verdict, Verdict::Failure);
    assert_eq!(result.error.as_deref(), Some("HTTP 429"));
    assert_eq!(result.retry_after, Some(Duration::from_secs(120)));
}

#[tokio::test]
async fn retry_after_as_an_http_date() {
    let at = SystemTime::now() + Duration::from_secs(60);
    let (result, _) =
        attempt_against(Reply::status(503).header("retry-after", &httpdate::fmt_http_date(at)))
            .await;
    assert_eq!(result.status_code, Some(503));
    let delay = result.retry_after.unwrap();
    assert!(
        delay >= Duration::from_secs(55) && delay <= Duration::from_secs(60),
        "{delay:?}"
    );
}

#[tokio::test]
async fn retry_after_is_ignored_on_other_statuses() {
    let (result, _) = attempt_against(Reply::status(500).header("retry-after", "120")).await;
    assert_eq!(result.retry_after, None);
}

#[tokio::test]
async fn slow_receiver_times_out() {
    let receiver = Receiver::start(Reply::status(200).delay(Duration::from_secs(10))).await;
    let mut cfg = subscriber(receiver.url("/"));
    cfg.timeout = Duration::from_millis(300);
    let result = endpoint(&cfg).attempt(request(1, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Failure);
    assert_eq!(result.error.as_deref(), Some("timeout after 300ms"));
    assert_eq!(result.status_code, None);
    assert!(result.duration >= Duration::from_millis(300));
    assert!(result.duration < Duration::from_millis(1500), "{result:?}");
    assert_eq!(receiver.count(), 1);
}

#[tokio::test]
async fn connection_refused() {
    let mut cfg = subscriber(closed_port_url().await);
    cfg.timeout = Duration::from_secs(1);
    let result = endpoint(&cfg).attempt(request(1, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Failure);
    assert_eq!(result.error.as_deref(), Some("connection refused"));
}

#[tokio::test]
async fn a_10_mb_response_body_is_not_read() {
    let huge = vec![b'x'; 10 * 1024 * 1024];
    for status in [200, 500] {
        let receiver = Receiver::start(Reply::status(status).body(huge.clone())).await;
        let mut cfg = subscriber(receiver.url("/"));
        cfg.timeout = Duration::from_secs(5);
        let endpoint = endpoint(&cfg);
        let result = endpoint.attempt(request(1, PAYLOAD)).await;
        assert_eq!(result.status_code, Some(status));
        assert!(result.duration < Duration::from_secs(2), "{result:?}");
        // The connection was dropped, not poisoned: the next attempt works.
        let again = endpoint.attempt(request(2, PAYLOAD)).await;
        assert_eq!(again.status_code, Some(status));
    }
}

#[tokio::test]
async fn a_dribbled_body_cannot_hold_the_attempt_past_its_timeout() {
    // Headers at once, then one body byte every 100 ms (of a promised 1000).
    let (url, accepted) = dribbling_server(
        "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n",
        b'a',
        Duration::from_millis(100),
    )
    .await;
    let mut cfg = subscriber(url);
    cfg.timeout = Duration::from_millis(800);
    let result = endpoint(&cfg).attempt(request(1, PAYLOAD)).await;
    // The status arrived: the receiver took the delivery.
    assert_eq!(result.verdict, Verdict::Success, "{result:?}");
    assert_eq!(result.status_code, Some(200));
    assert!(result.duration < Duration::from_millis(1600), "{result:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn dribbled_headers_time_out() {
    // The status line, then a header line that never ends.
    let (url, _) = dribbling_server(
        "HTTP/1.1 200 OK\r\nx-slow: ",
        b'z',
        Duration::from_millis(100),
    )
    .await;
    let mut cfg = subscriber(url);
    cfg.timeout = Duration::from_millis(800);
    let result = endpoint(&cfg).attempt(request(1, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Failure);
    assert_eq!(result.error.as_deref(), Some("timeout after 800ms"));
    assert!(result.duration < Duration::from_millis(1600), "{result:?}");
}

#[tokio::test]
async fn tls_failures_are_reported_as_such() {
    // https:// to a plain-HTTP server: the handshake fails.
    let receiver = Receiver::ok().await;
    let mut url = receiver.url("/");
    url.set_scheme("https").unwrap();
    let mut cfg = subscriber(url);
    cfg.timeout = Duration::from_secs(2);
    let result = endpoint(&cfg).attempt(request(1, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Failure);
    let error = result.error.unwrap();
    assert!(error.starts_with("tls: "), "{error}");
    assert!(!error.contains("127.0.0.1"), "no URL in the text: {error}");
    assert_eq!(receiver.count(), 0);
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_before_anything_is_sent() {
    // A real TLS server whose self-signed certificate no trust store knows: the handshake must
    // fail on certificate verification, and the payload must never reach it.
    let (url, requests) = self_signed_tls_server().await;
    let mut cfg = subscriber(url);
    cfg.timeout = Duration::from_secs(2);
    let result = endpoint(&cfg).attempt(request(1, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Failure);
    let error = result.error.unwrap();
    assert!(error.starts_with("tls: "), "{error}");
    assert!(error.contains("certificate"), "{error}");
    assert_eq!(requests.load(Ordering::SeqCst), 0);
}
