//! [`UnixMillis`]: the timestamp Herald stores.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC). Stored big-endian in keys so byte order is time order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// This instant plus `d`, saturating.
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// This instant minus `d`, saturating at the epoch.
    pub fn minus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: UnixMillis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Whole seconds since the epoch (for `webhook-timestamp`).
    pub fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// The `SystemTime` of this instant.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = UnixMillis(1_000);
        assert_eq!(t.plus(Duration::from_millis(500)), UnixMillis(1_500));
        assert_eq!(t.minus(Duration::from_secs(5)), UnixMillis(0));
        assert_eq!(
            UnixMillis(u64::MAX).plus(Duration::from_secs(1)).0,
            u64::MAX
        );
        assert_eq!(UnixMillis(2_500).since(t), Duration::from_millis(1_500));
        assert_eq!(t.since(UnixMillis(2_500)), Duration::ZERO);
        assert_eq!(UnixMillis(2_999).as_secs(), 2);
    }
}
