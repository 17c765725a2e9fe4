//! How often a token naming an unknown `kid` may make us fetch the key set: a small token
//! bucket. A provider that rotates publishes the next key beside the current one; the
//! first token signed with it must find it within seconds, while a stranger sending made-up
//! kids must cause only a handful of fetches (Auth0 rate-limits its JWKS endpoint). This
//! is the jwks-rsa approach: a few fetches at once, then one per `period`.
//!
//! Pure: the caller passes the time, and holds the lock that serializes fetches.

use std::time::{Duration, Instant};

/// Fetches that may happen back to back before the rate applies.
pub const BURST: u32 = 3;

#[derive(Debug)]
pub struct RefetchBudget {
    /// One fetch is earned back per period; zero means no limit.
    period: Duration,
    tokens: u32,
    /// When the last token was earned (or the bucket was last full).
    earned_at: Instant,
}

impl RefetchBudget {
    /// A full bucket.
    pub fn new(period: Duration, now: Instant) -> Self {
        Self {
            period,
            tokens: BURST,
            earned_at: now,
        }
    }

    /// Takes one fetch if one is available at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.period.is_zero() {
            return true;
        }
        self.earn(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Adds the whole periods elapsed since the last token was earned, up to [`BURST`].
    fn earn(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.earned_at);
        let periods = elapsed.as_nanos() / self.period.as_nanos();
        if periods == 0 {
            return;
        }
        let room = u128::from(BURST - self.tokens);
        if periods >= room {
            self.tokens = BURST;
            self.earned_at = now;
        } else {
            // Fewer than BURST, so the cast and the multiplication are small.
            self.tokens += periods as u32;
            self.earned_at += self.period * periods as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(20);

    #[test]
    fn a_burst_then_one_per_period() {
        let start = Instant::now();
        let mut budget = RefetchBudget::new(PERIOD, start);
        for _ in 0..BURST {
            assert!(budget.try_take(start));
        }
        assert!(!budget.try_take(start));
        assert!(!budget.try_take(start + PERIOD - Duration::from_millis(1)));
        assert!(budget.try_take(start + PERIOD));
        assert!(!budget.try_take(start + PERIOD));
        // The part of a period already waited counts towards the next token.
        assert!(!budget.try_take(start + PERIOD * 2 - Duration::from_millis(1)));
        assert!(budget.try_take(start + PERIOD * 2));
    }

    #[test]
    fn a_long_quiet_time_refills_to_the_burst_only() {
        let start = Instant::now();
        let mut budget = RefetchBudget::new(PERIOD, start);
        for _ in 0..BURST {
            assert!(budget.try_take(start));
        }
        let later = start + PERIOD * 100;
        for _ in 0..BURST {
            assert!(budget.try_take(later));
        }
        assert!(!budget.try_take(later));
    }

    #[test]
    fn a_partial_refill_keeps_the_remainder() {
        let start = Instant::now();
        let mut budget = RefetchBudget::new(PERIOD, start);
        for _ in 0..BURST {
            assert!(budget.try_take(start));
        }
        // Two and a half periods: two tokens, and half a period towards the third.
        let at = start + PERIOD * 2 + PERIOD / 2;
        assert!(budget.try_take(at));
        assert!(budget.try_take(at));
        assert!(!budget.try_take(at));
        assert!(budget.try_take(start + PERIOD * 3));
    }

    #[test]
    fn a_zero_period_never_limits() {
        let start = Instant::now();
        let mut budget = RefetchBudget::new(Duration::ZERO, start);
        for _ in 0..100 {
            assert!(budget.try_take(start));
        }
    }
}
