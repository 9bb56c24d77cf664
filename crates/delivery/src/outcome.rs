//! Turning what came back (a response or an error) into a verdict and a short, storable text.

use std::error::Error as StdError;
use std::io;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper_util::client::legacy::Error as ClientError;

use crate::guard::{Blocked, LookupFailed};

/// At most this much of a response body is read (to let a keep-alive connection go back to the
/// pool); anything longer is dropped unread and its connection closed.
pub const MAX_DRAINED_BODY: u64 = 4 * 1024;

/// The longest `Retry-After` honoured: a receiver cannot park a delivery for more than a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Stands in for "never" when a deadline would overflow the clock (what tokio does too).
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// Error texts are cut to this many characters.
const MAX_ERROR_CHARS: usize = 200;

/// Whether the subscriber took the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// A 2xx status.
    Success,
    /// Anything else that is not a 410: other statuses, redirects, timeouts, connection and TLS
    /// errors, SSRF refusals, auth failures. Retried per `[retry]`.
    Failure,
    /// `410 Gone`: the endpoint is retired; the dispatcher pauses the subscriber.
    Gone,
}

/// The verdict for a status code, and the error text that goes with it.
pub(crate) fn judge_status(status: StatusCode) -> (Verdict, Option<String>) {
    let code = status.as_u16();
    match code {
        200..=299 => (Verdict::Success, None),
        410 => (Verdict::Gone, Some("HTTP 410 Gone".to_owned())),
        300..=399 => (
            Verdict::Failure,
            Some(format!("redirect ({code}) not followed")),
        ),
        _ => (Verdict::Failure, Some(format!("HTTP {code}"))),
    }
}

/// `Retry-After` as a delay, for the statuses where it is honoured (429 and 503).
///
/// Accepts delta-seconds and HTTP-dates; a date in the past means "now"; the value is capped at
/// [`MAX_RETRY_AFTER`]. Unparseable values are ignored.
pub(crate) fn retry_after(
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let text = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let delay = if let Ok(secs) = text.parse::<u64>() {
        Duration::from_secs(secs)
    } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // More seconds than a u64 holds (`10^20`): as long as it gets, i.e. the cap.
        MAX_RETRY_AFTER
    } else {
        let at = httpdate::parse_http_date(text).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// `now + after` on the monotonic clock, without ever panicking: a sum past what the clock can
/// represent becomes a deadline 30 years away (in effect, none).
pub(crate) fn deadline_after(now: tokio::time::Instant, after: Duration) -> tokio::time::Instant {
    now.checked_add(after)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// Reads and discards at most [`MAX_DRAINED_BODY`] bytes of the body, so a small response lets
/// its connection be reused while a huge or endless one is dropped (closing the connection).
/// The caller bounds the reading with the attempt's deadline, so a slow-loris body cannot hold
/// the attempt past its timeout.
pub(crate) async fn drain(mut body: Incoming) {
    if body.size_hint().lower() > MAX_DRAINED_BODY {
        return;
    }
    let mut read: u64 = 0;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            read = read.saturating_add(data.len() as u64);
            if read > MAX_DRAINED_BODY {
                return;
            }
        }
    }
}

/// A short text for a failed request: `connection refused`,
/// `blocked: 127.0.0.1 is a loopback address`, `tls: …`. Never includes the URL (it may carry
/// credentials) or any header. Timeouts are the caller's (`timeout after …`).
pub(crate) fn describe(err: &ClientError) -> String {
    if let Some(blocked) = find::<Blocked>(err) {
        return blocked.to_string();
    }
    if let Some(lookup) = find::<LookupFailed>(err) {
        return truncate(lookup.to_string());
    }
    if let Some(io) = find::<io::Error>(err) {
        let text = match io.kind() {
            io::ErrorKind::ConnectionRefused => Some("connection refused"),
            io::ErrorKind::ConnectionReset => Some("connection reset"),
            io::ErrorKind::ConnectionAborted => Some("connection aborted"),
            io::ErrorKind::NotConnected => Some("not connected"),
            io::ErrorKind::AddrNotAvailable => Some("address not available"),
            io::ErrorKind::UnexpectedEof => Some("connection closed early"),
            _ => None,
        };
        if let Some(text) = text {
            return text.to_owned();
        }
    }
    let hyper = find::<hyper::Error>(err);
    if hyper.is_some_and(hyper::Error::is_incomplete_message) {
        return "connection closed early".to_owned();
    }
    let inner = innermost(err);
    let lowered = inner.to_ascii_lowercase();
    let kind = if [
        "certificate",
        "tls",
        "handshake",
        "corrupt message",
        "alert",
    ]
    .iter()
    .any(|word| lowered.contains(word))
    {
        "tls"
    } else if err.is_connect() {
        "connection error"
    } else if hyper.is_some_and(hyper::Error::is_parse) {
        "response error"
    } else {
        "request error"
    };
    truncate(format!("{kind}: {inner}"))
}

/// `10s`, `1500ms`, `2m`: the timeout as an operator wrote it (roughly).
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 60_000 == 0 && ms >= 60_000 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn find<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// The deepest cause's message: the specific one ("invalid peer certificate: UnknownIssuer"),
/// not the client's generic "client error (Connect)".
fn innermost(err: &ClientError) -> String {
    let mut last: &(dyn StdError + 'static) = err;
    while let Some(next) = last.source() {
        last = next;
    }
    if std::ptr::addr_eq(last, err) {
        // No cause: describe the kind only.
        return "unknown".to_owned();
    }
    last.to_string()
}

fn truncate(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_retry_after(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_str(value).expect("header"),
        );
        h
    }

    #[test]
    fn statuses_map_to_verdicts() {
        let judge = |c: u16| judge_status(StatusCode::from_u16(c).expect("status"));
        assert_eq!(judge(200), (Verdict::Success, None));
        assert_eq!(judge(204), (Verdict::Success, None));
        assert_eq!(judge(299).0, Verdict::Success);
        assert_eq!(
            judge(410),
            (Verdict::Gone, Some("HTTP 410 Gone".to_owned()))
        );
        assert_eq!(
            judge(302),
            (
                Verdict::Failure,
                Some("redirect (302) not followed".to_owned())
            )
        );
        assert_eq!(judge(500), (Verdict::Failure, Some("HTTP 500".to_owned())));
        assert_eq!(judge(101).0, Verdict::Failure);
        assert_eq!(judge(404).0, Verdict::Failure);
    }

    #[test]
    fn retry_after_seconds_dates_and_junk() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let tmr = StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(
            retry_after(tmr, &with_retry_after("120"), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(tmr, &with_retry_after(" 7 "), now),
            Some(Duration::from_secs(7))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            retry_after(
                StatusCode::SERVICE_UNAVAILABLE,
                &with_retry_after(&date),
                now
            ),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(
            retry_after(tmr, &with_retry_after(&past), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(tmr, &with_retry_after("99999999999"), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(tmr, &with_retry_after("100000000000000000000"), now),
            Some(MAX_RETRY_AFTER),
            "10^20 seconds does not fit a u64: it is the cap, not ignored"
        );
        let far = "Fri, 31 Dec 9999 23:59:59 GMT";
        assert_eq!(
            retry_after(tmr, &with_retry_after(far), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(tmr, &with_retry_after("Mon, 99 Foo 2024 25:61:61 GMT"), now),
            None
        );
        assert_eq!(retry_after(tmr, &with_retry_after("soon"), now), None);
        assert_eq!(retry_after(tmr, &with_retry_after("-5"), now), None);
        assert_eq!(retry_after(tmr, &HeaderMap::new(), now), None);
        // Only honoured on 429 and 503.
        assert_eq!(
            retry_after(
                StatusCode::INTERNAL_SERVER_ERROR,
                &with_retry_after("5"),
                now
            ),
            None
        );
    }

    #[test]
    fn deadlines_never_overflow_the_clock() {
        let now = tokio::time::Instant::now();
        assert_eq!(
            deadline_after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(deadline_after(now, Duration::MAX), now + FAR_FUTURE);
        assert!(deadline_after(now, Duration::from_secs(u64::MAX / 2)) > now);
    }

    #[test]
    fn durations_print_like_config() {
        assert_eq!(human(Duration::from_secs(10)), "10s");
        assert_eq!(human(Duration::from_millis(500)), "500ms");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
        assert_eq!(human(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn long_texts_are_cut_on_a_char_boundary() {
        let text = truncate("é".repeat(500));
        assert_eq!(text.chars().count(), MAX_ERROR_CHARS + 1);
        assert_eq!(truncate("short".to_owned()), "short");
    }
}
