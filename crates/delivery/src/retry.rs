//! The retry schedule: when to try a failed delivery again, or when to give up.
//!
//! The model is the `backoff` crate's exponential one (initial interval, multiplier, max
//! interval, randomization factor, max elapsed time), but computed from the *attempt number*
//! rather than held in an in-memory iterator, so the dispatcher can store the result and the
//! schedule survives restarts:
//!
//! ```text
//! base(n)  = min(initial · multiplier^(n−1), max_interval)      n = attempts made so far (≥ 1)
//! delay(n) = base(n) · (1 + u),  u uniform in [−randomization, +randomization]
//! delay    = max(delay(n), Retry-After)
//! next     = now + delay, unless attempts_made ≥ max_attempts or next > created_at + max_age
//! ```
//!
//! As in `backoff`, jitter is applied after the cap, so a delay can exceed `max_interval` by up
//! to the randomization share. The arithmetic is done in `f64` seconds and saturates: huge
//! attempt numbers or multipliers give `max_interval`, never an overflow or a panic, and
//! out-of-range policy values (which the config layer already rejects) are clamped.

use std::time::Duration;

use rand::Rng;

use herald_core::{RetryPolicy, UnixMillis};

/// The next attempt's due time after `attempts_made` attempts have failed, or `None` when the
/// delivery is dead: `attempts_made >= max_attempts`, or the next time would fall after
/// `created_at + max_age`.
///
/// `retry_after` (the receiver's `Retry-After`) is honoured as the least delay. `attempts_made`
/// of 0 is treated as 1.
pub fn next_attempt_at(
    policy: &RetryPolicy,
    attempts_made: u32,
    created_at: UnixMillis,
    now: UnixMillis,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Option<UnixMillis> {
    if attempts_made >= policy.max_attempts {
        return None;
    }
    let mut delay = jittered_delay(policy, attempts_made, rng);
    if let Some(least) = retry_after {
        delay = delay.max(least);
    }
    let next = now.plus(delay);
    if let Some(max_age) = policy.max_age {
        if next > created_at.plus(max_age) {
            return None;
        }
    }
    Some(next)
}

/// `base_delay` with jitter applied: uniform in `base · (1 ± randomization)`.
pub fn jittered_delay(policy: &RetryPolicy, attempts_made: u32, rng: &mut impl Rng) -> Duration {
    let base = base_delay(policy, attempts_made);
    let r = randomization(policy);
    if r > 0.0 {
        secs_to_duration(base.as_secs_f64() * (1.0 + rng.random_range(-r..=r)))
    } else {
        base
    }
}

/// The delay before jitter: `min(initial · multiplier^(n−1), max_interval)`.
pub fn base_delay(policy: &RetryPolicy, attempts_made: u32) -> Duration {
    let initial = policy.initial_interval.as_secs_f64();
    if initial <= 0.0 {
        return Duration::ZERO;
    }
    let multiplier = if policy.multiplier >= 1.0 {
        policy.multiplier // includes +inf
    } else {
        1.0 // below 1 or NaN
    };
    let exponent = i32::try_from(attempts_made.max(1) - 1).unwrap_or(i32::MAX);
    // +inf (overflow) saturates to Duration::MAX, then the cap applies.
    let grown = secs_to_duration(initial * multiplier.powi(exponent));
    grown.min(policy.max_interval)
}

fn randomization(policy: &RetryPolicy) -> f64 {
    let r = policy.randomization;
    if r > 0.0 {
        r.min(1.0)
    } else {
        0.0 // zero, negative or NaN
    }
}

fn secs_to_duration(secs: f64) -> Duration {
    if secs > 0.0 {
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            initial_interval: Duration::from_secs(5),
            multiplier: 2.0,
            max_interval: Duration::from_secs(3600),
            randomization: 0.0,
            max_age: None,
        }
    }

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let p = policy();
        let secs: Vec<u64> = (1..=12).map(|n| base_delay(&p, n).as_secs()).collect();
        assert_eq!(
            secs,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(base_delay(&p, 0), Duration::from_secs(5));
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(1);
        let t0 = UnixMillis(1_000_000);
        assert_eq!(
            next_attempt_at(&p, 1, t0, t0, None, &mut rng),
            Some(UnixMillis(1_005_000))
        );
        assert!(next_attempt_at(&p, 9, t0, t0, None, &mut rng).is_some());
        assert_eq!(next_attempt_at(&p, 10, t0, t0, None, &mut rng), None);
        assert_eq!(next_attempt_at(&p, u32::MAX, t0, t0, None, &mut rng), None);
    }

    #[test]
    fn gives_up_past_max_age() {
        let p = RetryPolicy {
            max_age: Some(Duration::from_secs(60)),
            ..policy()
        };
        let mut rng = StdRng::seed_from_u64(2);
        let created = UnixMillis(0);
        // 50 s old, next in 5 s: 55 s ≤ 60 s.
        assert_eq!(
            next_attempt_at(&p, 1, created, UnixMillis(50_000), None, &mut rng),
            Some(UnixMillis(55_000))
        );
        // 50 s old, next in 20 s: 70 s > 60 s.
        assert_eq!(
            next_attempt_at(&p, 3, created, UnixMillis(50_000), None, &mut rng),
            None
        );
        // Retry-After can push it past max_age too.
        assert_eq!(
            next_attempt_at(
                &p,
                1,
                created,
                UnixMillis(50_000),
                Some(Duration::from_secs(30)),
                &mut rng
            ),
            None
        );
    }

    #[test]
    fn retry_after_is_the_least_delay() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(3);
        let t0 = UnixMillis(0);
        assert_eq!(
            next_attempt_at(&p, 1, t0, t0, Some(Duration::from_secs(120)), &mut rng),
            Some(UnixMillis(120_000))
        );
        // A shorter Retry-After does not shorten the schedule.
        assert_eq!(
            next_attempt_at(&p, 3, t0, t0, Some(Duration::from_secs(1)), &mut rng),
            Some(UnixMillis(20_000))
        );
    }

    #[test]
    fn jitter_spreads_within_the_band() {
        let p = RetryPolicy {
            randomization: 0.2,
            ..policy()
        };
        let mut rng = StdRng::seed_from_u64(4);
        let samples: Vec<Duration> = (0..2000).map(|_| jittered_delay(&p, 2, &mut rng)).collect();
        let lo = samples.iter().min().copied().unwrap_or_default();
        let hi = samples.iter().max().copied().unwrap_or_default();
        assert!(lo >= Duration::from_secs(8) && hi <= Duration::from_secs(12));
        // Actually spread, not constant.
        assert!(lo < Duration::from_millis(8_400) && hi > Duration::from_millis(11_600));
    }

    /// Property: for arbitrary (including absurd) policies and inputs, the schedule never
    /// panics, never goes back in time, respects its bounds and its give-up rules.
    #[test]
    fn property_bounds_hold_for_all_inputs() {
        let mut gen = StdRng::seed_from_u64(0x4845_5241_4c44);
        let mut rng = StdRng::seed_from_u64(99);
        let pick_duration = |gen: &mut StdRng| match gen.random_range(0..6) {
            0 => Duration::ZERO,
            1 => Duration::from_millis(gen.random_range(1..1000)),
            2 => Duration::from_secs(gen.random_range(1..100_000)),
            3 => Duration::from_secs(u64::MAX / 2),
            4 => Duration::MAX,
            _ => Duration::from_secs(gen.random_range(0..86_400 * 365)),
        };
        for case in 0..20_000 {
            let p = RetryPolicy {
                max_attempts: match gen.random_range(0..3) {
                    0 => gen.random_range(1..20),
                    1 => u32::MAX,
                    _ => gen.random_range(1..u32::MAX),
                },
                initial_interval: pick_duration(&mut gen),
                multiplier: match gen.random_range(0..6) {
                    0 => 1.0,
                    1 => gen.random_range(1.0..10.0),
                    2 => 1e300,
                    3 => f64::INFINITY,
                    4 => f64::NAN,
                    _ => gen.random_range(-5.0..1.0),
                },
                max_interval: pick_duration(&mut gen),
                randomization: match gen.random_range(0..4) {
                    0 => 0.0,
                    1 => gen.random_range(0.0..=1.0),
                    2 => f64::NAN,
                    _ => gen.random_range(-2.0..3.0),
                },
                max_age: if gen.random_bool(0.5) {
                    Some(pick_duration(&mut gen))
                } else {
                    None
                },
            };
            let attempts = match gen.random_range(0..3) {
                0 => gen.random_range(0..30),
                1 => u32::MAX - gen.random_range(0..3),
                _ => gen.random(),
            };
            let created = UnixMillis(gen.random_range(0..u64::MAX / 2));
            let now = UnixMillis(created.0.saturating_add(gen.random_range(0..1 << 40)));
            let retry_after = gen
                .random_bool(0.3)
                .then(|| pick_duration(&mut gen).min(Duration::from_secs(86_400)));

            let base = base_delay(&p, attempts);
            assert!(
                base <= p.max_interval,
                "case {case}: {base:?} > {:?}",
                p.max_interval
            );
            // Non-decreasing in the attempt number.
            assert!(
                base_delay(&p, attempts.saturating_add(1)) >= base,
                "case {case}"
            );

            let r = randomization(&p);
            let jittered = jittered_delay(&p, attempts, &mut rng);
            let (lo, hi) = (
                base.as_secs_f64() * (1.0 - r),
                base.as_secs_f64() * (1.0 + r),
            );
            let j = jittered.as_secs_f64();
            assert!(
                j >= lo * (1.0 - 1e-9) - 1e-9
                    && (j <= hi * (1.0 + 1e-9) + 1e-9 || jittered == Duration::MAX),
                "case {case}: {j} not in [{lo}, {hi}]"
            );

            match next_attempt_at(&p, attempts, created, now, retry_after, &mut rng) {
                None => {
                    let exhausted = attempts >= p.max_attempts;
                    let aged = p.max_age.is_some();
                    assert!(exhausted || aged, "case {case}: gave up without a reason");
                }
                Some(next) => {
                    assert!(attempts < p.max_attempts, "case {case}");
                    assert!(next >= now, "case {case}: back in time");
                    if let Some(least) = retry_after {
                        assert!(next >= now.plus(least), "case {case}: Retry-After ignored");
                    }
                    if let Some(max_age) = p.max_age {
                        assert!(next <= created.plus(max_age), "case {case}: past max_age");
                    }
                }
            }
        }
    }
}
