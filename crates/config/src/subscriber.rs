//! Subscriber files: `subscribers_dir/*.toml`, one subscriber each.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_core::{
    EventFilter, OrderingMode, RateLimitConfig, RetryPolicy, SecurityPolicy, SubscriberConfig,
    SubscriberId, ThrottleConfig, MAX_IN_FLIGHT_LIMIT,
};

use crate::auth::auth;
use crate::env::Env;
use crate::error::{ConfigError, ConfigErrors, Report};
use crate::headers::static_headers;
use crate::raw::{parse, RawRateLimit, RawRetry, RawSubscriber, RawThrottle};
use crate::signing::signing;
use crate::url_check::{outbound_url, Target};
use crate::values::{duration, float, integer, quote, DurationBounds, Zero};

use herald_core::{DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT};

/// Reads every `*.toml` in `dir` (see [`crate::load_subscribers`]).
/// On success, the subscribers sorted by id and the warnings of their files.
pub(crate) fn load_dir(
    dir: &Path,
    security: &SecurityPolicy,
    env: Env<'_>,
) -> Result<(Vec<SubscriberConfig>, Vec<ConfigError>), ConfigErrors> {
    let files = list_dir(dir).map_err(|e| ConfigErrors::from_vec(vec![e]))?;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut loaded: BTreeMap<SubscriberId, (PathBuf, SubscriberConfig)> = BTreeMap::new();
    for file in files {
        let text = match fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                errors.push(ConfigError::new(&file, "", format!("cannot be read: {e}")));
                continue;
            }
        };
        match parse_subscriber(&file, &text, security, env) {
            Ok((subscriber, mut noted)) => {
                warnings.append(&mut noted);
                if let Some((first, _)) = loaded.get(&subscriber.id) {
                    errors.push(ConfigError::new(
                        &file,
                        "id",
                        format!(
                            "duplicate subscriber id \"{}\", already used by {}",
                            subscriber.id,
                            first.display()
                        ),
                    ));
                } else {
                    loaded.insert(subscriber.id.clone(), (file, subscriber));
                }
            }
            Err(mut problems) => errors.append(&mut problems),
        }
    }
    if errors.is_empty() {
        Ok((loaded.into_values().map(|(_, s)| s).collect(), warnings))
    } else {
        Err(ConfigErrors::from_vec(errors))
    }
}

/// The `*.toml` files of `dir`, sorted by name. Hidden files (`.name.toml`) and anything that is
/// not a file are skipped, like a shell's `*.toml` would.
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let unreadable = |e: std::io::Error| {
        ConfigError::new(dir, "", format!("cannot read the subscribers folder: {e}"))
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let visible = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.'));
        let toml = path.extension().is_some_and(|ext| ext == "toml");
        // `metadata` follows symlinks, so a linked file counts.
        if visible && toml && fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Parses and validates one subscriber file's text; `file` names it in errors and gives the
/// default id (its stem). On success, also the file's warnings.
pub(crate) fn parse_subscriber(
    file: &Path,
    text: &str,
    security: &SecurityPolicy,
    env: Env<'_>,
) -> Result<(SubscriberConfig, Vec<ConfigError>), Vec<ConfigError>> {
    let mut report = Report::new(file);
    let raw = parse::<RawSubscriber>(text, env, &mut report);
    let Some(raw) = raw.filter(|_| report.is_clean()) else {
        return Err(report.into_errors());
    };
    match validate(raw, security, &mut report) {
        Some(subscriber) if report.is_clean() => Ok((subscriber, report.take_warnings())),
        _ => Err(report.into_errors()),
    }
}

fn validate(
    raw: RawSubscriber,
    security: &SecurityPolicy,
    report: &mut Report<'_>,
) -> Option<SubscriberConfig> {
    let id = subscriber_id(raw.id.as_deref(), report);
    let url = match raw.url.as_deref() {
        None => {
            report.error("url", "missing; expected the endpoint's https:// URL");
            None
        }
        Some(url) => report.check("url", outbound_url(url, security, Target::Endpoint)),
    };
    let events = events(raw.events, report);
    let timeout = report.check(
        "timeout",
        duration(
            raw.timeout.as_ref(),
            DEFAULT_TIMEOUT,
            Zero::Refused,
            DurationBounds::TIMEOUT,
        ),
    );
    let max_in_flight = report.check(
        "max_in_flight",
        integer(
            raw.max_in_flight,
            DEFAULT_MAX_IN_FLIGHT,
            1,
            MAX_IN_FLIGHT_LIMIT,
        ),
    );
    let retry = retry(raw.retry.unwrap_or_default(), report);
    let auth = auth(raw.auth, security, report);
    let signing = signing(raw.signing, report);
    let headers = static_headers(
        raw.headers,
        auth.as_ref(),
        signing.as_ref().ok().and_then(Option::as_ref),
        report,
    );
    let throttle = throttle(raw.throttle.unwrap_or_default(), report);
    let rate_limit = rate_limit(raw.rate_limit, report);
    let ordering = ordering(raw.ordering.as_deref(), report);

    Some(SubscriberConfig {
        id: id?,
        url: url?,
        events: events?,
        timeout: timeout?,
        max_in_flight: max_in_flight?,
        headers: headers?,
        retry: retry?,
        auth: auth?,
        signing: signing.ok()?,
        throttle: throttle?,
        rate_limit: rate_limit.ok()?,
        ordering: ordering?,
    })
}

/// `ordering = "per_key" | "none"` (SPEC §9), default `"none"`.
fn ordering(raw: Option<&str>, report: &mut Report<'_>) -> Option<OrderingMode> {
    match raw {
        None | Some("none") => Some(OrderingMode::None),
        Some("per_key") => Some(OrderingMode::PerKey),
        Some(other) => {
            report.error(
                "ordering",
                format!(
                    "unknown value \"{}\"; expected \"per_key\" or \"none\"",
                    quote(other)
                ),
            );
            None
        }
    }
}

fn subscriber_id(id: Option<&str>, report: &mut Report<'_>) -> Option<SubscriberId> {
    match id {
        Some(id) => report.check("id", SubscriberId::new(id).map_err(|e| e.to_string())),
        None => {
            let stem = report.file().file_stem().and_then(|s| s.to_str());
            let checked = match stem {
                Some(stem) => SubscriberId::new(stem).map_err(|e| {
                    format!("{e}; the id defaults to the file name, so rename the file or set `id`")
                }),
                None => Err("the file name is not valid UTF-8; set `id`".to_owned()),
            };
            report.check("id", checked)
        }
    }
}

fn events(raw: Option<Vec<String>>, report: &mut Report<'_>) -> Option<EventFilter> {
    let Some(events) = raw else {
        report.error(
            "events",
            "missing; list the event types to deliver, or [\"*\"] for all",
        );
        return None;
    };
    if events.is_empty() {
        report.error(
            "events",
            "is empty; list the event types to deliver, or [\"*\"] for all",
        );
        return None;
    }
    let mut ok = true;
    for (i, event) in events.iter().enumerate() {
        if event.trim().is_empty() {
            report.error(format!("events[{i}]"), "an event type must not be empty");
            ok = false;
        }
    }
    let wildcard = events.iter().any(|e| e == "*");
    if wildcard && events.len() > 1 {
        report.error(
            "events",
            "\"*\" (all events) cannot be combined with other event types",
        );
        ok = false;
    }
    if !ok {
        None
    } else if wildcard {
        Some(EventFilter::All)
    } else {
        Some(EventFilter::Only(events))
    }
}

fn retry(raw: RawRetry, report: &mut Report<'_>) -> Option<RetryPolicy> {
    let default = RetryPolicy::default();
    let max_attempts = report.check(
        "retry.max_attempts",
        integer(raw.max_attempts, default.max_attempts, 1, u32::MAX),
    );
    let initial_interval = report.check(
        "retry.initial_interval",
        duration(
            raw.initial_interval.as_ref(),
            default.initial_interval,
            Zero::Refused,
            DurationBounds::RETRY_INITIAL_INTERVAL,
        ),
    );
    let multiplier = report.check(
        "retry.multiplier",
        float(
            raw.multiplier,
            default.multiplier,
            |m| m >= 1.0,
            "at least 1.0",
        ),
    );
    let max_interval = report.check(
        "retry.max_interval",
        duration(
            raw.max_interval.as_ref(),
            default.max_interval,
            Zero::Refused,
            DurationBounds::RETRY_MAX_INTERVAL,
        ),
    );
    let randomization = report.check(
        "retry.randomization",
        float(
            raw.randomization,
            default.randomization,
            |r| (0.0..=1.0).contains(&r),
            "between 0.0 and 1.0",
        ),
    );
    let max_age = match raw.max_age.as_ref() {
        None => Some(None),
        Some(age) => report
            .check(
                "retry.max_age",
                duration(
                    Some(age),
                    Duration::ZERO,
                    Zero::Refused,
                    DurationBounds::RETRY_MAX_AGE,
                ),
            )
            .map(Some),
    };
    if let (Some(initial), Some(max)) = (initial_interval, max_interval) {
        if max < initial {
            report.error(
                "retry.max_interval",
                format!(
                    "must not be shorter than retry.initial_interval ({})",
                    quote(&humantime::format_duration(initial).to_string())
                ),
            );
            return None;
        }
    }
    Some(RetryPolicy {
        max_attempts: max_attempts?,
        initial_interval: initial_interval?,
        multiplier: multiplier?,
        max_interval: max_interval?,
        randomization: randomization?,
        max_age: max_age?,
    })
}

fn throttle(raw: RawThrottle, report: &mut Report<'_>) -> Option<ThrottleConfig> {
    let default = ThrottleConfig::default();
    let error_rate = report.check(
        "throttle.error_rate",
        float(
            raw.error_rate,
            default.error_rate,
            |r| r > 0.0 && r <= 1.0,
            "greater than 0.0 and at most 1.0",
        ),
    );
    let window = report.check(
        "throttle.window",
        duration(
            raw.window.as_ref(),
            default.window,
            Zero::Refused,
            DurationBounds::THROTTLE_WINDOW,
        ),
    );
    let min_requests = report.check(
        "throttle.min_requests",
        integer(raw.min_requests, default.min_requests, 1, u32::MAX),
    );
    Some(ThrottleConfig {
        error_rate: error_rate?,
        window: window?,
        min_requests: min_requests?,
    })
}

/// `Ok(None)` when absent, `Err(())` when invalid.
fn rate_limit(
    raw: Option<RawRateLimit>,
    report: &mut Report<'_>,
) -> Result<Option<RateLimitConfig>, ()> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let per_second = match raw.per_second {
        None => {
            report.error(
                "rate_limit.per_second",
                "missing; the requests per second to allow (remove [rate_limit] for no limit)",
            );
            None
        }
        Some(n) => report.check("rate_limit.per_second", positive(n)),
    };
    let burst = match raw.burst {
        None => per_second,
        Some(n) => report.check("rate_limit.burst", positive(n)),
    };
    match (per_second, burst) {
        (Some(per_second), Some(burst)) => Ok(Some(RateLimitConfig { per_second, burst })),
        _ => Err(()),
    }
}

fn positive(n: i64) -> Result<std::num::NonZeroU32, String> {
    integer(Some(n), 1, 1, u32::MAX)
        .and_then(|n| std::num::NonZeroU32::new(n).ok_or_else(|| "must be at least 1".to_owned()))
}
