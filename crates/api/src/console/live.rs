//! Deliveries per second for the overview's sparklines, sampled only while someone looks.
//!
//! There is no background task: each overview request (the page, then its script's poll every
//! few seconds) offers the delivered counts it has just read anyway, and one sample is kept per
//! [`SAMPLE_EVERY`] at most, [`SAMPLES`] of them. Nobody watching means nothing runs; the
//! delivery path is never touched.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The shortest interval between two samples.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept (about two minutes at the script's pace).
pub(crate) const SAMPLES: usize = 60;

/// Recent samples of delivered counts per subscriber.
#[derive(Default)]
pub(crate) struct Sampler {
    samples: Mutex<VecDeque<(Instant, HashMap<String, u64>)>>,
}

impl Sampler {
    /// Keeps these counts as a sample unless the last one is younger than [`SAMPLE_EVERY`].
    pub(crate) fn offer(&self, now: Instant, delivered: impl Iterator<Item = (String, u64)>) {
        let mut samples = self.samples.lock();
        if samples
            .back()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) < SAMPLE_EVERY)
        {
            return;
        }
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back((now, delivered.collect()));
    }

    /// The subscriber's deliveries per second between consecutive samples, oldest first.
    pub(crate) fn rates(&self, subscriber: &str) -> Vec<f64> {
        let samples = self.samples.lock();
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|((t0, a), (t1, b))| {
                let secs = t1.saturating_duration_since(*t0).as_secs_f64();
                match (a.get(subscriber), b.get(subscriber)) {
                    // Counts fall when finished deliveries are purged or retried: not negative.
                    (Some(x), Some(y)) if secs > 0.0 => y.saturating_sub(*x) as f64 / secs,
                    _ => 0.0,
                }
            })
            .collect()
    }
}

/// SVG polyline points for `rates` in a `width`×`height` box (y grows downwards).
pub(crate) fn sparkline_points(rates: &[f64], width: f64, height: f64) -> String {
    let max = rates.iter().copied().fold(0.0_f64, f64::max);
    let n = rates.len();
    rates
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let x = if n > 1 {
                width * i as f64 / (n - 1) as f64
            } else {
                width
            };
            let y = if max > 0.0 {
                height - (r / max) * (height - 1.0)
            } else {
                height
            };
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_spaced_samples_only() {
        let s = Sampler::default();
        let t0 = Instant::now();
        s.offer(t0, [("a".to_owned(), 0)].into_iter());
        // Too soon: ignored.
        s.offer(
            t0 + Duration::from_millis(500),
            [("a".to_owned(), 999)].into_iter(),
        );
        s.offer(
            t0 + Duration::from_secs(2),
            [("a".to_owned(), 10)].into_iter(),
        );
        s.offer(
            t0 + Duration::from_secs(4),
            [("a".to_owned(), 4)].into_iter(),
        );
        assert_eq!(s.rates("a"), vec![5.0, 0.0]);
        assert_eq!(s.rates("b"), vec![0.0, 0.0]);
    }

    #[test]
    fn keeps_a_bounded_window() {
        let s = Sampler::default();
        let t0 = Instant::now();
        for i in 0..(SAMPLES as u64 + 10) {
            s.offer(
                t0 + SAMPLE_EVERY * u32::try_from(i).expect("small"),
                [("a".to_owned(), i)].into_iter(),
            );
        }
        assert_eq!(s.rates("a").len(), SAMPLES - 1);
    }

    #[test]
    fn points_fit_the_box() {
        assert_eq!(
            sparkline_points(&[0.0, 2.0], 100.0, 21.0),
            "0.0,21.0 100.0,1.0"
        );
        assert_eq!(sparkline_points(&[], 100.0, 20.0), "");
    }
}
