//! Latency samples and their percentiles.

use std::time::Duration;

use serde::Serialize;

/// Latencies, in microseconds. Kept whole (a few hundred thousand per step at most) so that percentiles are exact.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<u32>);

impl Samples {
    pub fn record(&mut self, latency: Duration) {
        self.0.push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn record_micros(&mut self, micros: u64) {
        self.0.push(u32::try_from(micros).unwrap_or(u32::MAX));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn summary(&self) -> Latency {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let at = |q: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            // Nearest rank: the smallest sample with at least q of all samples at or below it.
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            f64::from(sorted[rank - 1]) / 1000.0
        };
        Latency { count: sorted.len(), p50: at(0.50), p99: at(0.99), p999: at(0.999), max: at(1.0) }
    }
}

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_in_milliseconds() {
        let mut samples = Samples::default();
        for micros in 1..=1000 {
            samples.record_micros(micros * 1000);
        }
        let summary = samples.summary();
        assert_eq!(
            (summary.count, summary.p50, summary.p99, summary.p999, summary.max),
            (1000, 500.0, 990.0, 999.0, 1000.0)
        );
    }

    #[test]
    fn no_samples_give_zeros_not_a_panic() {
        assert_eq!(Samples::default().summary(), Latency::default());
    }
}
