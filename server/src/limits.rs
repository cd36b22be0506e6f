//! Rate limiting: a token bucket per member (all of a person's tabs share one), driven by the instants it is given.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How fast one member may send: `burst` messages at once, then `per_second` on average.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_second: f64,
}

/// A token bucket: full at `burst` tokens, refilled continuously at `per_second`; each message takes one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        Self { limit, tokens: f64::from(limit.burst), last: now }
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - self.tokens;
        // A rate so small that the wait overflows a Duration means "not in this lifetime", not a panic.
        Err(Duration::try_from_secs_f64(missing / self.limit.per_second).unwrap_or(Duration::MAX))
    }
}

impl TokenBucket {
    /// Whether the bucket would be full at `now`: then forgetting it changes nothing.
    fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.limit.per_second >= f64::from(self.limit.burst)
    }
}

/// One [`TokenBucket`] per key (a member), so that opening more tabs buys no more messages.
#[derive(Debug)]
pub struct Limiter<K> {
    limit: RateLimit,
    buckets: Mutex<Buckets<K>>,
}

#[derive(Debug)]
struct Buckets<K> {
    by_key: HashMap<K, TokenBucket>,
    /// Full buckets are forgotten (a full bucket is the same as none) once there are this many. Twice what a
    /// pruning leaves, so that many busy members make pruning rarer, not a scan on every message.
    prune_at: usize,
    /// Prunings so far, for the tests.
    prunings: u64,
}

/// The fewest buckets that make a pruning worth it.
const PRUNE_ABOVE: usize = 4096;

impl<K: Eq + Hash + Clone> Limiter<K> {
    pub fn new(limit: RateLimit) -> Self {
        Self { limit, buckets: Mutex::new(Buckets { by_key: HashMap::new(), prune_at: PRUNE_ABOVE, prunings: 0 }) }
    }

    /// Takes a token from `key`'s bucket, or says how long until one is available.
    pub fn try_take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        // Held only for this arithmetic, never across an await. A poisoned lock still holds valid numbers.
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let buckets = &mut *buckets;
        if buckets.by_key.len() >= buckets.prune_at {
            buckets.by_key.retain(|_, bucket| !bucket.is_full_at(now));
            buckets.prune_at = (2 * buckets.by_key.len()).max(PRUNE_ABOVE);
            buckets.prunings += 1;
        }
        buckets.by_key.entry(key.clone()).or_insert_with(|| TokenBucket::new(self.limit, now)).try_take(now)
    }

    #[cfg(test)]
    fn prunings(&self) -> u64 {
        self.buckets.lock().map_or(0, |b| b.prunings)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().map_or(0, |b| b.by_key.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_busy_members_make_pruning_rarer_instead_of_a_scan_per_message() {
        let limiter = Limiter::new(RateLimit { burst: 5, per_second: 1.0 });
        let t0 = Instant::now();
        // 40,000 members each sending once: none of their buckets is full again yet, so none can be forgotten.
        for member in 0..40_000_u32 {
            limiter.try_take(&member, t0).unwrap();
        }
        assert_eq!(limiter.len(), 40_000);
        // Each pruning doubles the next threshold: 4096, 8192, 16384, 32768.
        assert_eq!(limiter.prunings(), 4);
    }

    fn bucket(burst: u32, per_second: f64) -> (TokenBucket, Instant) {
        let now = Instant::now();
        (TokenBucket::new(RateLimit { burst, per_second }, now), now)
    }

    #[test]
    fn a_burst_up_to_the_capacity_is_allowed_and_the_next_message_waits() {
        let (mut bucket, t0) = bucket(3, 1.0);
        for _ in 0..3 {
            assert_eq!(bucket.try_take(t0), Ok(()));
        }
        let wait = bucket.try_take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
    }

    #[test]
    fn tokens_come_back_at_the_sustained_rate() {
        let (mut bucket, t0) = bucket(2, 2.0);
        bucket.try_take(t0).unwrap();
        bucket.try_take(t0).unwrap();
        assert!(bucket.try_take(t0 + Duration::from_millis(400)).is_err(), "0.8 of a token after 400 ms");
        assert_eq!(bucket.try_take(t0 + Duration::from_millis(500)), Ok(()), "a whole token after 500 ms");
    }

    #[test]
    fn a_long_pause_refills_no_more_than_the_burst() {
        let (mut bucket, t0) = bucket(2, 10.0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(bucket.try_take(later), Ok(()));
        assert_eq!(bucket.try_take(later), Ok(()));
        assert!(bucket.try_take(later).is_err());
    }

    #[test]
    fn an_absurdly_small_rate_waits_forever_instead_of_panicking() {
        let (mut bucket, t0) = bucket(1, 1e-300);
        bucket.try_take(t0).unwrap();
        assert_eq!(bucket.try_take(t0), Err(Duration::MAX));
    }

    #[test]
    fn sustained_sending_at_the_limit_is_never_refused() {
        let (mut bucket, t0) = bucket(1, 4.0);
        for i in 0..100 {
            assert_eq!(bucket.try_take(t0 + Duration::from_millis(250 * i)), Ok(()), "message {i}");
        }
    }

    #[test]
    fn a_limiter_keeps_one_budget_per_key() {
        let limiter = Limiter::new(RateLimit { burst: 2, per_second: 1.0 });
        let t0 = Instant::now();
        assert_eq!(limiter.try_take(&"ada", t0), Ok(()));
        assert_eq!(limiter.try_take(&"ada", t0), Ok(()));
        assert!(limiter.try_take(&"ada", t0).is_err(), "ada's burst is spent");
        assert_eq!(limiter.try_take(&"bob", t0), Ok(()), "bob has a budget of his own");
    }

    #[test]
    fn a_limiter_forgets_full_buckets_but_not_spent_ones() {
        let limiter = Limiter::new(RateLimit { burst: 1, per_second: 1.0 });
        let t0 = Instant::now();
        for key in 0..=PRUNE_ABOVE {
            assert_eq!(limiter.try_take(&key, t0), Ok(()));
        }
        // Half a second on, nothing is full: pruning must not hand key 0 a fresh bucket.
        assert!(limiter.try_take(&0, t0 + Duration::from_millis(500)).is_err());
        assert_eq!(limiter.len(), PRUNE_ABOVE + 1);
        // Ten seconds on, every bucket is full again: the next pruning (at twice as many) forgets them all, and
        // keeps only the newcomers, whose buckets are spent.
        let later = t0 + Duration::from_secs(10);
        let mut key = PRUNE_ABOVE + 1;
        while limiter.prunings() < 2 {
            assert_eq!(limiter.try_take(&key, later), Ok(()));
            key += 1;
        }
        assert_eq!(limiter.len(), key - (PRUNE_ABOVE + 1));
    }
}
