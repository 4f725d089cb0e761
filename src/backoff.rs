//! The one retry policy: exponential backoff with full jitter, capped.
//!
//! Every retry loop in hoist (notifications, forwards to peers, the engine's
//! event stream, repairs, registry requests) takes its waits from a
//! [`Backoff`], so that many hoists (or many targets) that fail together do
//! not retry in lock-step, and so that the policy is tuned in one place.

use std::time::Duration;

/// An exponential backoff: attempt `n` waits a random time in
/// `[base·2ⁿ⁻¹ / 2, base·2ⁿ⁻¹]`, never more than `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry (before jitter).
    pub base: Duration,
    /// No wait is longer than this.
    pub max: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Backoff {
        Backoff { base, max }
    }

    /// The wait before retry number `attempt` (1 for the first retry).
    pub fn wait(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        // "Equal jitter": half fixed, half random, so a wait never collapses to ~0.
        let half = ceiling / 2;
        half + half.mul_f64(jitter_fraction())
    }

    /// The wait before retry number `attempt` without jitter: the upper bound of [`Backoff::wait`].
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1).min(30))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The waits of a whole series, for `attempts` retries.
    pub fn waits(self, attempts: u32) -> impl Iterator<Item = Duration> {
        (1..=attempts).map(move |attempt| self.wait(attempt))
    }
}

/// A number in `[0, 1)`, good enough to spread retries apart (not for secrets).
pub fn jitter_fraction() -> f64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_are_jittered_and_capped() {
        let policy = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let ceilings: Vec<u64> = (1..=7).map(|a| policy.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(policy.ceiling(u32::MAX), Duration::from_secs(30));
        for attempt in 1..=10 {
            let wait = policy.wait(attempt);
            let ceiling = policy.ceiling(attempt);
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "attempt {attempt}: {wait:?} vs {ceiling:?}"
            );
        }
    }

    #[test]
    fn jitter_spreads_waits() {
        let policy = Backoff::new(Duration::from_secs(8), Duration::from_secs(60));
        let waits: std::collections::HashSet<Duration> = (0..20).map(|_| policy.wait(1)).collect();
        assert!(waits.len() > 10, "waits should differ: {waits:?}");
    }
}
