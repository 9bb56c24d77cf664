//! Error-rate throttling: an AIMD controller of a subscriber's effective concurrency.
//!
//! Outcomes are counted in a sliding window of `window`, split into [`BUCKETS`] buckets.
//! Every completed attempt feeds [`Throttle::record`], which may change the limit, at most once
//! per *step* (`window / BUCKETS`):
//!
//! | condition over the window                                   | effect                         |
//! |-------------------------------------------------------------|--------------------------------|
//! | `attempts ≥ min_requests` and `failures/attempts > error_rate` | limit ← max(1, limit / 2)   |
//! | otherwise (healthy, or too few attempts to judge)            | limit ← min(max, limit + max(1, max/10)) |
//!
//! A subscriber that fails everything is cut 500 → 250 → … → 1 within about nine steps and then
//! probes with a single request at a time; once its endpoint heals, the failures age out of the
//! window and the limit climbs back in ten steps.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use herald_core::ThrottleConfig;
use parking_lot::Mutex;

/// Buckets per window; also the number of steps per window.
pub(crate) const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which step (since `origin`) this bucket counts; reused every `BUCKETS` steps.
    slot: u64,
    ok: u32,
    failed: u32,
}

/// The controller state of one subscriber.
#[derive(Debug)]
pub(crate) struct Throttle {
    config: ThrottleConfig,
    max: u32,
    limit: u32,
    origin: Instant,
    buckets: [Bucket; BUCKETS],
    last_change: Instant,
}

impl Throttle {
    pub(crate) fn new(config: ThrottleConfig, max: u32, now: Instant) -> Self {
        Self {
            config,
            max: max.max(1),
            limit: max.max(1),
            origin: now,
            // Slot 0 is "now"; mark every bucket as belonging to no live step.
            buckets: [Bucket {
                slot: u64::MAX,
                ..Bucket::default()
            }; BUCKETS],
            last_change: now,
        }
    }

    /// Applies new settings (reload): the counts are kept, the limit clamped to the new max, and
    /// a raised max applies at once to a healthy subscriber.
    pub(crate) fn reconfigure(&mut self, config: ThrottleConfig, max: u32, now: Instant) {
        let grew = max > self.max;
        self.config = config;
        self.max = max.max(1);
        self.limit = self.limit.min(self.max);
        if grew && !self.unhealthy(now) {
            self.limit = self.max;
        }
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    fn step(&self) -> Duration {
        (self.config.window / BUCKETS as u32).max(Duration::from_millis(1))
    }

    fn slot(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since / self.step().as_nanos().max(1)).unwrap_or(u64::MAX - 1)
    }

    /// (attempts, failures) within the window ending at `now`.
    fn totals(&self, now: Instant) -> (u32, u32) {
        let current = self.slot(now);
        self.buckets
            .iter()
            .filter(|b| b.slot <= current && current - b.slot < BUCKETS as u64)
            .fold((0, 0), |(n, f), b| {
                (
                    n.saturating_add(b.ok + b.failed),
                    f.saturating_add(b.failed),
                )
            })
    }

    fn unhealthy(&self, now: Instant) -> bool {
        let (n, f) = self.totals(now);
        n >= self.config.min_requests
            && n > 0
            && f64::from(f) / f64::from(n) > self.config.error_rate
    }

    /// The failure share over the window (0 when nothing was attempted).
    pub(crate) fn error_rate(&self, now: Instant) -> f64 {
        let (n, f) = self.totals(now);
        if n == 0 {
            0.0
        } else {
            f64::from(f) / f64::from(n)
        }
    }

    /// Records one attempt's outcome and adjusts the limit; returns the new limit.
    pub(crate) fn record(&mut self, success: bool, now: Instant) -> u32 {
        let slot = self.slot(now);
        let bucket = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if bucket.slot != slot {
            *bucket = Bucket {
                slot,
                ..Bucket::default()
            };
        }
        if success {
            bucket.ok = bucket.ok.saturating_add(1);
        } else {
            bucket.failed = bucket.failed.saturating_add(1);
        }
        if now.saturating_duration_since(self.last_change) < self.step() {
            return self.limit;
        }
        let next = if self.unhealthy(now) {
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

/// A subscriber's throttle as its attempts share it: the controller behind a lock, and its limit
/// published for lock-free reads by the pump.
///
/// The limit is published while the lock is held, so publications happen in the order the
/// limits were computed: two completions can never leave an older limit published over a newer
/// one (which happened when the limit was stored after the lock was released).
#[derive(Debug)]
pub(crate) struct SharedThrottle {
    state: Mutex<Throttle>,
    published: AtomicU32,
}

impl SharedThrottle {
    pub(crate) fn new(config: ThrottleConfig, max: u32, now: Instant) -> Self {
        let throttle = Throttle::new(config, max, now);
        Self {
            published: AtomicU32::new(throttle.limit()),
            state: Mutex::new(throttle),
        }
    }

    /// The published limit (no lock).
    pub(crate) fn limit(&self) -> u32 {
        self.published.load(Ordering::Acquire)
    }

    /// The failure share over the window ending at `now`.
    pub(crate) fn error_rate(&self, now: Instant) -> f64 {
        self.state.lock().error_rate(now)
    }

    /// Records one outcome; returns the published limit before and after.
    pub(crate) fn record(&self, success: bool, now: Instant) -> (u32, u32) {
        let mut state = self.state.lock();
        let limit = state.record(success, now);
        let before = self.published.swap(limit, Ordering::AcqRel);
        drop(state);
        (before, limit)
    }

    /// [`Throttle::reconfigure`], published under the lock; returns the new limit.
    pub(crate) fn reconfigure(&self, config: ThrottleConfig, max: u32, now: Instant) -> u32 {
        let mut state = self.state.lock();
        state.reconfigure(config, max, now);
        let limit = state.limit();
        self.published.store(limit, Ordering::Release);
        limit
    }

    /// Cluster mode: publishes the limit the cluster's throttle computed (the local controller
    /// is not consulted then); returns the limit before. Under the lock, like every publication.
    pub(crate) fn publish(&self, limit: u32) -> u32 {
        let _state = self.state.lock();
        self.published.swap(limit, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Threads completing attempts at once: whatever the interleaving, the published limit is
    /// the controller's current limit when they are done, and each thread sees the limits it
    /// published in the order they were computed.
    #[test]
    fn the_published_limit_is_never_older_than_the_controllers() {
        let config = ThrottleConfig {
            error_rate: 0.5,
            window: Duration::from_millis(10),
            min_requests: 1,
        };
        for round in 0..50 {
            let shared =
                std::sync::Arc::new(SharedThrottle::new(config.clone(), 500, Instant::now()));
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let shared = std::sync::Arc::clone(&shared);
                    std::thread::spawn(move || {
                        for i in 0..2_000u32 {
                            shared.record((i / 50 + t) % 3 == 0, Instant::now());
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let controller = shared.state.lock().limit();
            assert_eq!(shared.limit(), controller, "round {round}");
        }
    }

    fn config() -> ThrottleConfig {
        ThrottleConfig {
            error_rate: 0.5,
            window: Duration::from_secs(10),
            min_requests: 20,
        }
    }

    /// Feeds `per_step` outcomes in each of `steps` steps of 1 s; returns the limit after each.
    fn run(t: &mut Throttle, start: Instant, steps: u32, per_step: u32, ok: bool) -> Vec<u32> {
        (0..steps)
            .map(|s| {
                let at = start + Duration::from_secs(u64::from(s) + 1);
                for _ in 0..per_step {
                    t.record(ok, at);
                }
                t.limit()
            })
            .collect()
    }

    #[test]
    fn total_outage_cuts_down_to_one_then_recovers_to_max() {
        let start = Instant::now();
        let mut t = Throttle::new(config(), 500, start);
        let down = run(&mut t, start, 12, 30, false);
        assert_eq!(down[0], 250, "first cut halves: {down:?}");
        assert!(down.windows(2).all(|w| w[1] <= w[0]), "{down:?}");
        assert_eq!(*down.last().unwrap_or(&0), 1, "{down:?}");

        // Healed: failures age out of the 10 s window, then the limit grows in steps of 50.
        let later = start + Duration::from_secs(12);
        let up = run(&mut t, later, 30, 30, true);
        assert!(up.windows(2).all(|w| w[1] >= w[0]), "{up:?}");
        assert_eq!(*up.last().unwrap_or(&0), 500, "{up:?}");
        assert!(
            up.iter().any(|&l| l > 1 && l < 500),
            "grows step by step: {up:?}"
        );
    }

    #[test]
    fn too_few_requests_never_cut() {
        let start = Instant::now();
        let mut t = Throttle::new(config(), 100, start);
        let limits = run(&mut t, start, 10, 1, false); // 10 failures < min_requests
        assert!(limits.iter().all(|&l| l == 100), "{limits:?}");
    }

    #[test]
    fn failure_share_at_threshold_is_healthy() {
        let start = Instant::now();
        let mut t = Throttle::new(config(), 100, start);
        for s in 1..=5u64 {
            let at = start + Duration::from_secs(s);
            for i in 0..20 {
                t.record(i % 2 == 0, at); // exactly 50 % failures
            }
        }
        assert_eq!(t.limit(), 100);
        assert!((t.error_rate(start + Duration::from_secs(5)) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn reconfigure_clamps_and_raises() {
        let start = Instant::now();
        let mut t = Throttle::new(config(), 100, start);
        t.reconfigure(config(), 10, start);
        assert_eq!(t.limit(), 10);
        t.reconfigure(config(), 40, start);
        assert_eq!(t.limit(), 40);
    }
}
