//! The replay form's inputs: instants (RFC 3339, or a duration ago like the CLI's `2h`) and
//! statuses.

use herald_core::{DeliveryStatus, UnixMillis};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `2026-12-03T09:00:00Z` (any offset), or `90s`, `30m`, `2h`, `7d` before `now`.
pub(crate) fn parse_instant(text: &str, now: UnixMillis) -> Result<UnixMillis, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("required: an RFC 3339 time or a duration ago such as 2h".to_owned());
    }
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        return u64::try_from(ms)
            .map(UnixMillis)
            .map_err(|_| "a time before 1970".to_owned());
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor a duration such as 2h"))?;
    let unit_ms: u64 = match unit.trim() {
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{text:?} is neither an RFC 3339 time nor a duration such as 2h"
            ))
        }
    };
    Ok(UnixMillis(now.0.saturating_sub(n.saturating_mul(unit_ms))))
}

/// `dead` (also the default), `delivered`, or `delivered,dead`.
pub(crate) fn parse_statuses(text: &str) -> Result<Vec<DeliveryStatus>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let status = match part {
            "dead" => DeliveryStatus::Dead,
            "delivered" => DeliveryStatus::Delivered,
            other => return Err(format!("status {other:?}: expected delivered or dead")),
        };
        if !out.contains(&status) {
            out.push(status);
        }
    }
    if out.is_empty() {
        out.push(DeliveryStatus::Dead);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants() {
        let now = UnixMillis(10_000_000);
        assert_eq!(
            parse_instant("2h", now),
            Ok(UnixMillis(10_000_000 - 7_200_000))
        );
        assert_eq!(parse_instant(" 30s ", now), Ok(UnixMillis(9_970_000)));
        assert_eq!(
            parse_instant("1970-01-01T00:00:01.5Z", now),
            Ok(UnixMillis(1_500))
        );
        assert!(parse_instant("", now).is_err());
        assert!(parse_instant("soon", now).is_err());
        assert!(parse_instant("3 weeks", now).is_err());
    }

    #[test]
    fn statuses() {
        assert_eq!(parse_statuses(""), Ok(vec![DeliveryStatus::Dead]));
        assert_eq!(
            parse_statuses("delivered,dead"),
            Ok(vec![DeliveryStatus::Delivered, DeliveryStatus::Dead])
        );
        assert!(parse_statuses("pending").is_err());
    }
}
