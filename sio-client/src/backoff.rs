//! The reconnection delay, computed exactly as the reference JavaScript client does: exponential growth from
//! `min` by `factor`, spread by a random `jitter`, capped at `max`.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    factor: u32,
    jitter: f64,
    attempts: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, jitter: f64) -> Self {
        Self { min, max, factor: 2, jitter: jitter.clamp(0.0, 1.0), attempts: 0 }
    }

    /// The delay before the next attempt; `random` is a uniform sample in `[0, 1)`.
    pub fn next_delay(&mut self, random: f64) -> Duration {
        let min_ms = self.min.as_millis() as f64;
        let mut ms = min_ms * f64::from(self.factor).powi(self.attempts.min(64) as i32);
        self.attempts = self.attempts.saturating_add(1);
        if self.jitter > 0.0 {
            let deviation = (random * self.jitter * ms).floor();
            // The reference client picks the direction from the same sample: an even tenth goes down.
            ms = if ((random * 10.0).floor() as i64) & 1 == 0 { ms - deviation } else { ms + deviation };
        }
        let capped = ms.min(self.max.as_millis() as f64).max(0.0);
        Duration::from_millis(capped as u64)
    }

    /// The number of delays handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn reset(&mut self) {
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Backoff {
        Backoff::new(Duration::from_millis(1000), Duration::from_millis(5000), 0.5)
    }

    #[test]
    fn without_jitter_the_delay_doubles_up_to_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(1000), Duration::from_millis(5000), 0.0);
        let delays: Vec<u64> = (0..5).map(|_| backoff.next_delay(0.3).as_millis() as u64).collect();
        assert_eq!(delays, vec![1000, 2000, 4000, 5000, 5000]);
    }

    #[test]
    fn jitter_moves_the_delay_by_at_most_the_randomization_factor() {
        // 0.3 → tenth 3 is odd → up by floor(0.3 × 0.5 × 1000) = 150.
        assert_eq!(reference().next_delay(0.3), Duration::from_millis(1150));
        // 0.44 → tenth 4 is even → down by floor(0.44 × 0.5 × 1000) = 220.
        assert_eq!(reference().next_delay(0.44), Duration::from_millis(780));
    }

    #[test]
    fn a_reset_starts_again_from_the_minimum() {
        let mut backoff = Backoff::new(Duration::from_millis(1000), Duration::from_millis(5000), 0.0);
        backoff.next_delay(0.0);
        backoff.next_delay(0.0);
        assert_eq!(backoff.attempts(), 2);
        backoff.reset();
        assert_eq!(backoff.next_delay(0.0), Duration::from_millis(1000));
    }

    #[test]
    fn many_attempts_never_overflow() {
        let mut backoff = reference();
        for _ in 0..10_000 {
            assert!(backoff.next_delay(0.99) <= Duration::from_millis(5000));
        }
    }
}
