//! Error-rate throttling of one subscriber on one node: the AIMD controller of
//! [`herald_core::throttle`] (the same one the PostgreSQL engine keeps for a cluster) on this
//! process's monotonic clock, and its limit published for the pump.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use herald_core::{ThrottleConfig, ThrottleWindow};
use parking_lot::Mutex;

/// The controller state of one subscriber, on a monotonic clock.
#[derive(Debug)]
pub(crate) struct Throttle {
    config: ThrottleConfig,
    origin: Instant,
    window: ThrottleWindow,
}

impl Throttle {
    pub(crate) fn new(config: ThrottleConfig, max: u32, now: Instant) -> Self {
        Self {
            config,
            origin: now,
            window: ThrottleWindow::new(max, 0),
        }
    }

    /// Milliseconds since the origin.
    fn ms(&self, now: Instant) -> i64 {
        i64::try_from(now.saturating_duration_since(self.origin).as_millis()).unwrap_or(i64::MAX)
    }

    /// Applies new settings (reload): the counts are kept, the limit clamped to the new max, and
    /// a raised max applies at once to a healthy subscriber.
    pub(crate) fn reconfigure(&mut self, config: ThrottleConfig, max: u32, now: Instant) {
        self.config = config;
        let now = self.ms(now);
        self.window.set_max(&self.config, max, now);
    }

    pub(crate) fn limit(&self) -> u32 {
        self.window.limit
    }

    /// The failure share over the window (0 when nothing was attempted).
    pub(crate) fn error_rate(&self, now: Instant) -> f64 {
        self.window.error_rate(&self.config, self.ms(now))
    }

    /// Records one attempt's outcome and adjusts the limit; returns the new limit.
    pub(crate) fn record(&mut self, success: bool, now: Instant) -> u32 {
        let now = self.ms(now);
        let max = self.window.max;
        let (ok, failed) = if success { (1, 0) } else { (0, 1) };
        self.window.record(&self.config, max, ok, failed, now)
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
    use std::time::Duration;

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
