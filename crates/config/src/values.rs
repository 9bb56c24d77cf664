//! Small validators shared by the daemon and subscriber files: durations, integer ranges,
//! fractions. Each returns `Err(message)`; the caller attaches file and key.

use std::time::Duration;

use crate::raw::{RawDuration, DURATION_FORM};

/// Whether a zero duration is acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zero {
    Allowed,
    Refused,
}

/// The largest value of each duration setting. Every duration is bounded so that no later
/// clock arithmetic (`Instant::now() + timeout`, `now + retention`) can overflow, and so that
/// a typo (`"300000000000y"`) is a load error rather than a daemon that waits forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationBounds;

impl DurationBounds {
    /// `timeout` (one attempt, connection to last body byte).
    pub const TIMEOUT: Duration = Duration::from_secs(10 * 60);
    /// `retry.initial_interval`.
    pub const RETRY_INITIAL_INTERVAL: Duration = Duration::from_secs(24 * 3600);
    /// `retry.max_interval`.
    pub const RETRY_MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);
    /// `retry.max_age`.
    pub const RETRY_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);
    /// `throttle.window`.
    pub const THROTTLE_WINDOW: Duration = Duration::from_secs(3600);
    /// `storage.retention`.
    pub const RETENTION: Duration = Duration::from_secs(3650 * 24 * 3600);
    /// `shutdown.grace`.
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3600);
}

/// Parses a duration such as `"10s"` with humantime; `None` gives `default`. Values above
/// `max` are refused (the message names the bound in config units).
pub(crate) fn duration(
    raw: Option<&RawDuration>,
    default: Duration,
    zero: Zero,
    max: Duration,
) -> Result<Duration, String> {
    let Some(RawDuration(text)) = raw else {
        return Ok(default);
    };
    let parsed = humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "invalid duration \"{}\" ({e}); expected {DURATION_FORM}",
            quote(text)
        )
    })?;
    if zero == Zero::Refused && parsed.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    if parsed > max {
        return Err(format!(
            "must be at most {} (got \"{}\")",
            in_config_units(max),
            quote(text)
        ));
    }
    Ok(parsed)
}

/// `d` as written in a config file, in its largest whole unit (`"10m"`, `"7d"`).
fn in_config_units(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// An integer in `min..=max`; `None` gives `default`.
pub(crate) fn integer(raw: Option<i64>, default: u32, min: u32, max: u32) -> Result<u32, String> {
    let Some(value) = raw else {
        return Ok(default);
    };
    match u32::try_from(value) {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ if max == u32::MAX => Err(format!("must be at least {min} (got {value})")),
        _ => Err(format!("must be between {min} and {max} (got {value})")),
    }
}

/// A finite float checked by `ok`, which describes the allowed range in `expected`.
pub(crate) fn float(
    raw: Option<f64>,
    default: f64,
    ok: impl Fn(f64) -> bool,
    expected: &str,
) -> Result<f64, String> {
    let Some(value) = raw else {
        return Ok(default);
    };
    if value.is_finite() && ok(value) {
        Ok(value)
    } else {
        Err(format!("must be {expected} (got {value})"))
    }
}

/// A value safe to quote back (never used for credentials), shortened and escaped.
pub(crate) fn quote(text: &str) -> String {
    let mut short: String = text.chars().take(64).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(365 * 86_400);

    fn d(s: &str) -> Option<RawDuration> {
        Some(RawDuration(s.to_owned()))
    }

    #[test]
    fn durations() {
        let ten = Duration::from_secs(10);
        assert_eq!(duration(None, ten, Zero::Refused, MAX), Ok(ten));
        assert_eq!(
            duration(d("500ms").as_ref(), ten, Zero::Refused, MAX),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(
            duration(d("21d").as_ref(), ten, Zero::Refused, MAX),
            Ok(Duration::from_secs(21 * 86_400))
        );
        assert_eq!(
            duration(d("1h 30m").as_ref(), ten, Zero::Refused, MAX),
            Ok(Duration::from_secs(5_400))
        );
        assert_eq!(
            duration(d("0s").as_ref(), ten, Zero::Allowed, MAX),
            Ok(Duration::ZERO)
        );
        assert!(duration(d("0s").as_ref(), ten, Zero::Refused, MAX)
            .unwrap_err()
            .contains("longer than zero"));
        let bad = duration(d("ten seconds").as_ref(), ten, Zero::Refused, MAX).unwrap_err();
        assert!(
            bad.contains("\"ten seconds\"") && bad.contains("\"500ms\""),
            "{bad}"
        );
        assert!(duration(d("10").as_ref(), ten, Zero::Refused, MAX).is_err());
        assert!(duration(
            d("99999999999999999999999d").as_ref(),
            ten,
            Zero::Refused,
            MAX
        )
        .is_err());
    }

    #[test]
    fn durations_above_the_bound_are_refused() {
        let ten = Duration::from_secs(10);
        let max = Duration::from_secs(600);
        assert_eq!(
            duration(d("10m").as_ref(), ten, Zero::Refused, max),
            Ok(max)
        );
        assert_eq!(
            duration(d("601s").as_ref(), ten, Zero::Refused, max),
            Err("must be at most 10m (got \"601s\")".to_owned())
        );
        let huge = duration(d("300000000000y").as_ref(), ten, Zero::Refused, max).unwrap_err();
        assert!(huge.contains("at most 10m"), "{huge}");
    }

    #[test]
    fn integers() {
        assert_eq!(integer(None, 50, 1, 500), Ok(50));
        assert_eq!(integer(Some(500), 50, 1, 500), Ok(500));
        assert_eq!(
            integer(Some(501), 50, 1, 500),
            Err("must be between 1 and 500 (got 501)".into())
        );
        assert!(integer(Some(0), 50, 1, 500).is_err());
        assert!(integer(Some(-1), 50, 1, 500).is_err());
        assert_eq!(
            integer(Some(0), 10, 1, u32::MAX),
            Err("must be at least 1 (got 0)".into())
        );
        assert!(integer(Some(i64::MAX), 10, 1, u32::MAX).is_err());
    }

    #[test]
    fn floats() {
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        assert_eq!(float(None, 0.2, unit, "in 0.0..=1.0"), Ok(0.2));
        assert_eq!(float(Some(1.0), 0.2, unit, "in 0.0..=1.0"), Ok(1.0));
        assert!(float(Some(1.5), 0.2, unit, "in 0.0..=1.0").is_err());
        assert!(float(Some(f64::NAN), 0.2, |_| true, "a number").is_err());
        assert!(float(Some(f64::INFINITY), 0.2, |_| true, "a number").is_err());
    }
}
