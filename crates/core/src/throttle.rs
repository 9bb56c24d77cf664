//! The error-rate throttle's controller (SPEC §5), as plain state: AIMD over a sliding window.
//!
//! One implementation for both places that keep it: the dispatcher holds one per subscriber in
//! memory (a single node), and the PostgreSQL engine keeps one per subscriber in a row shared by
//! the cluster. Times are milliseconds on the caller's clock (the dispatcher counts from a
//! monotonic origin, the database uses wall-clock milliseconds).
//!
//! Outcomes are counted in a window of `window`, split into [`THROTTLE_BUCKETS`] buckets. Each
//! [`ThrottleWindow::record`] may change the limit, at most once per *step*
//! (`window / THROTTLE_BUCKETS`):
//!
//! | condition over the window | effect |
//! |---|---|
//! | `attempts ≥ min_requests` and `failures/attempts > error_rate` | limit ← max(1, limit / 2) |
//! | otherwise (healthy, or too few attempts to judge) | limit ← min(max, limit + max(1, max/10)) |
//!
//! A subscriber that fails everything is cut 500 → 250 → … → 1 within about nine steps and then
//! probes with a single request at a time; once its endpoint heals, the failures age out of the
//! window and the limit climbs back in ten steps.

use crate::ThrottleConfig;

/// Buckets per window; also the number of steps per window.
pub const THROTTLE_BUCKETS: usize = 10;

/// The counts of one step of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleBucket {
    /// The step this bucket counts (milliseconds / step length); negative: unused.
    pub slot: i64,
    /// Successful attempts.
    pub ok: u32,
    /// Failed attempts.
    pub failed: u32,
}

impl ThrottleBucket {
    /// A bucket that counts no step.
    pub const UNUSED: Self = Self {
        slot: -1,
        ok: 0,
        failed: 0,
    };
}

/// The controller's whole state for one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleWindow {
    /// The effective concurrency limit, 1..=`max`.
    pub limit: u32,
    /// The `max_in_flight` the limit was last clamped to.
    pub max: u32,
    /// When the limit last changed (milliseconds).
    pub last_change: i64,
    /// The window's buckets, indexed by `slot % THROTTLE_BUCKETS`.
    pub buckets: [ThrottleBucket; THROTTLE_BUCKETS],
}

/// The length of one step of `config`'s window in milliseconds (at least 1).
pub fn throttle_step_ms(config: &ThrottleConfig) -> i64 {
    i64::try_from((config.window.as_millis() / THROTTLE_BUCKETS as u128).max(1)).unwrap_or(i64::MAX)
}

impl ThrottleWindow {
    /// A healthy subscriber at its maximum, with an empty window.
    pub fn new(max: u32, now: i64) -> Self {
        Self {
            limit: max.max(1),
            max: max.max(1),
            last_change: now,
            buckets: [ThrottleBucket::UNUSED; THROTTLE_BUCKETS],
        }
    }

    /// (attempts, failures) within the window ending at step `current`.
    fn totals(&self, current: i64) -> (u32, u32) {
        self.buckets
            .iter()
            .filter(|b| {
                b.slot >= 0 && b.slot <= current && current - b.slot < THROTTLE_BUCKETS as i64
            })
            .fold((0u32, 0u32), |(n, f), b| {
                (
                    n.saturating_add(b.ok).saturating_add(b.failed),
                    f.saturating_add(b.failed),
                )
            })
    }

    fn unhealthy_at(&self, config: &ThrottleConfig, current: i64) -> bool {
        let (n, f) = self.totals(current);
        n >= config.min_requests && n > 0 && f64::from(f) / f64::from(n) > config.error_rate
    }

    /// The failure share over the window ending at `now` (0 when nothing was attempted).
    pub fn error_rate(&self, config: &ThrottleConfig, now: i64) -> f64 {
        let (n, f) = self.totals(now / throttle_step_ms(config));
        if n == 0 {
            0.0
        } else {
            f64::from(f) / f64::from(n)
        }
    }

    /// Applies a new `max_in_flight` (reload): the limit is clamped to it, and a raised maximum
    /// applies at once to a healthy subscriber. The counts are kept.
    pub fn set_max(&mut self, config: &ThrottleConfig, max: u32, now: i64) {
        let max = max.max(1);
        if max == self.max {
            return;
        }
        let grew = max > self.max;
        self.max = max;
        self.limit = self.limit.min(max);
        if grew && !self.unhealthy_at(config, now / throttle_step_ms(config)) {
            self.limit = max;
        }
    }

    /// Counts `ok` successes and `failed` failures at `now` and applies at most one AIMD step;
    /// returns the limit after it. `max` is the subscriber's current `max_in_flight`.
    pub fn record(
        &mut self,
        config: &ThrottleConfig,
        max: u32,
        ok: u32,
        failed: u32,
        now: i64,
    ) -> u32 {
        self.set_max(config, max, now);
        let step = throttle_step_ms(config);
        let current = now / step;
        let i = usize::try_from(current.rem_euclid(THROTTLE_BUCKETS as i64)).unwrap_or(0);
        let bucket = &mut self.buckets[i];
        if bucket.slot != current {
            *bucket = ThrottleBucket {
                slot: current,
                ok: 0,
                failed: 0,
            };
        }
        bucket.ok = bucket.ok.saturating_add(ok);
        bucket.failed = bucket.failed.saturating_add(failed);
        if now.saturating_sub(self.last_change) < step {
            return self.limit;
        }
        let next = if self.unhealthy_at(config, current) {
            (self.limit / 2).max(1)
        } else {
            self.limit
                .saturating_add((self.max / 10).max(1))
                .min(self.max)
        };
        if next != self.limit {
            self.limit = next;
            self.last_change = now;
        }
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config() -> ThrottleConfig {
        ThrottleConfig {
            error_rate: 0.5,
            window: Duration::from_secs(1),
            min_requests: 4,
        }
    }

    /// Counts reported in one batch (a cluster node's) move the limit as the same outcomes
    /// reported one by one within the same step do.
    #[test]
    fn batched_counts_step_like_single_ones() {
        let c = config();
        let mut single = ThrottleWindow::new(100, 0);
        let mut batched = ThrottleWindow::new(100, 0);
        for t in 1..=30i64 {
            let now = t * 100;
            for _ in 0..8 {
                single.record(&c, 100, 0, 1, now);
            }
            batched.record(&c, 100, 0, 8, now);
            assert_eq!(single, batched, "at {now} ms");
        }
        assert_eq!(batched.limit, 1);
        assert!((batched.error_rate(&c, 3000) - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn a_raised_max_applies_at_once_only_when_healthy() {
        let c = config();
        let mut w = ThrottleWindow::new(10, 0);
        w.set_max(&c, 20, 0);
        assert_eq!(w.limit, 20);
        for t in 1..=5i64 {
            w.record(&c, 20, 0, 10, t * 100);
        }
        assert!(w.limit < 20);
        let cut = w.limit;
        w.set_max(&c, 40, 600);
        assert_eq!(w.limit, cut, "unhealthy: no jump to the new max");
        w.set_max(&c, 2, 600);
        assert_eq!(w.limit, cut.min(2));
    }
}
