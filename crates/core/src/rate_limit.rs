//! Keyed fixed-window rate limiting, sans-IO: callers pass `now` and get a retry delay back.

use std::collections::HashMap;

/// Keys one limiter holds at most. Stale keys are swept every window, so only a flood of distinct
/// clients inside one window reaches this; each key is ~100 bytes, so 65 536 keys are ~7 MiB per
/// limiter, and far more clients than a self-hosted server sees failing within minutes.
pub const MAX_KEYS: usize = 65_536;

/// At most `limit` hits per key in each window of `window` seconds, the window starting at a key's
/// first hit. Fixed windows are what the Verstak server used; they are cheap (one counter per key)
/// and their worst case (2 × limit across a boundary) is acceptable for the abuse they stop.
#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    window: i64,
    /// Key → (window start, hits in it). Stale entries are swept once per window so memory stays
    /// bounded by the keys seen in the last two windows, and never above `max_keys`.
    hits: HashMap<String, (i64, u32)>,
    max_keys: usize,
    next_sweep: i64,
}

/// Refused: try again after this many seconds (≥ 1), the value of the `Retry-After` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl RateLimiter {
    pub fn new(limit: u32, window_secs: i64) -> RateLimiter {
        RateLimiter::with_max_keys(limit, window_secs, MAX_KEYS)
    }

    /// A limiter that holds at most `max_keys` keys. When that many are live, a new key is refused
    /// until the oldest window ends: forgetting a live key would hand its hits back, so a full
    /// table fails closed (only during a flood of distinct clients), and memory stays bounded.
    pub fn with_max_keys(limit: u32, window_secs: i64, max_keys: usize) -> RateLimiter {
        RateLimiter { limit, window: window_secs.max(1), hits: HashMap::new(), max_keys, next_sweep: i64::MIN }
    }

    /// Counts a hit for `key` at `now` (unix seconds) unless the key is over its limit. Refused
    /// hits are not counted, so a client that keeps retrying is not locked out beyond the window.
    pub fn check(&mut self, key: &str, now: i64) -> Result<(), RetryAfter> {
        self.peek(key, now)?;
        self.hit(key, now);
        Ok(())
    }

    /// Whether `key` is over its limit, without counting anything. With [`RateLimiter::hit`] this
    /// limits only failures (wrong passwords) while successes stay free.
    pub fn peek(&mut self, key: &str, now: i64) -> Result<(), RetryAfter> {
        self.sweep(now);
        match self.hits.get(key) {
            Some(&(start, count)) if now < start + self.window && count >= self.limit => {
                Err(RetryAfter((start + self.window - now).max(1) as u64))
            }
            Some(_) => Ok(()),
            None if self.hits.len() < self.max_keys => Ok(()),
            None => {
                // Full: sweep now rather than at the next scheduled sweep, then ask again.
                self.next_sweep = i64::MIN;
                self.sweep(now);
                match self.hits.values().map(|(start, _)| start + self.window).min() {
                    Some(end) if self.hits.len() >= self.max_keys => Err(RetryAfter((end - now).max(1) as u64)),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Counts a hit for `key` at `now` and returns the start of the window it was counted in, which
    /// [`RateLimiter::release`] needs to take it back.
    pub fn hit(&mut self, key: &str, now: i64) -> i64 {
        if self.hits.len() >= self.max_keys && !self.hits.contains_key(key) {
            // Only reached by a hit that did not ask first; a full table counts no new key.
            return now;
        }
        let window = self.window;
        let entry = self.hits.entry(key.to_owned()).or_insert((now, 0));
        if now >= entry.0 + window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.0
    }

    /// Takes back a hit counted in the window that started at `window_start`. Counting an attempt
    /// before its outcome is known and releasing it on success is what keeps parallel attempts
    /// within the limit while successes stay free. A hit whose window has ended is gone already.
    pub fn release(&mut self, key: &str, window_start: i64) {
        if let Some(entry) = self.hits.get_mut(key)
            && entry.0 == window_start
        {
            entry.1 = entry.1.saturating_sub(1);
        }
    }

    fn sweep(&mut self, now: i64) {
        if now < self.next_sweep {
            return;
        }
        let window = self.window;
        self.hits.retain(|_, (start, _)| now < *start + window);
        self.next_sweep = now.saturating_add(window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_limit_hits_per_window_then_says_when() {
        let mut rl = RateLimiter::new(3, 3600);
        for t in [0, 10, 20] {
            assert_eq!(rl.check("a", t), Ok(()), "hit at {t}");
        }
        assert_eq!(rl.check("a", 30), Err(RetryAfter(3570)));
        assert_eq!(rl.check("a", 3599), Err(RetryAfter(1)));
        // Other keys are independent.
        assert_eq!(rl.check("b", 30), Ok(()));
        // A new window starts once the old one is over.
        assert_eq!(rl.check("a", 3600), Ok(()));
    }

    #[test]
    fn refused_hits_do_not_extend_the_window() {
        let mut rl = RateLimiter::new(1, 60);
        assert!(rl.check("k", 0).is_ok());
        for t in 1..60 {
            assert!(rl.check("k", t).is_err());
        }
        assert!(rl.check("k", 60).is_ok());
    }

    #[test]
    fn peek_counts_nothing_and_hit_counts_without_asking() {
        let mut rl = RateLimiter::new(2, 60);
        for _ in 0..10 {
            assert!(rl.peek("k", 0).is_ok());
        }
        rl.hit("k", 1);
        rl.hit("k", 2);
        assert_eq!(rl.peek("k", 3), Err(RetryAfter(58)));
        assert!(rl.peek("k", 61).is_ok());
    }

    #[test]
    fn released_hits_free_their_place_only_in_their_own_window() {
        let mut rl = RateLimiter::new(2, 60);
        let first = rl.hit("k", 0);
        let second = rl.hit("k", 1);
        assert_eq!((first, second), (0, 0));
        assert!(rl.peek("k", 2).is_err());
        rl.release("k", second);
        assert!(rl.peek("k", 2).is_ok());
        // A release from an ended window does not touch the new one.
        assert_eq!(rl.hit("k", 60), 60);
        rl.hit("k", 61);
        rl.release("k", first);
        assert!(rl.peek("k", 62).is_err());
        rl.release("unknown", 0);
    }

    #[test]
    fn sweeps_stale_keys() {
        let mut rl = RateLimiter::new(5, 10);
        for i in 0..100 {
            rl.check(&format!("ip{i}"), 0).unwrap();
        }
        rl.check("late", 25).unwrap();
        assert_eq!(rl.hits.len(), 1);
    }

    #[test]
    fn a_flood_of_distinct_keys_is_pruned_and_bounded() {
        // Keys from ended windows go at the next sweep, however many there were.
        let mut rl = RateLimiter::with_max_keys(5, 10, 1000);
        for window in 0..50 {
            for i in 0..900 {
                rl.check(&format!("w{window}-{i}"), window * 10).unwrap();
            }
            assert!(rl.hits.len() <= 1000, "window {window}: {}", rl.hits.len());
        }
        // Within one window the table fills to its bound; then new keys wait for the oldest
        // window to end, while known keys keep their own counts.
        let mut rl = RateLimiter::with_max_keys(2, 60, 3);
        rl.check("a", 0).unwrap();
        rl.check("b", 10).unwrap();
        rl.check("c", 20).unwrap();
        assert_eq!(rl.check("d", 30), Err(RetryAfter(30)));
        assert_eq!(rl.hit("d", 30), 30);
        assert_eq!(rl.hits.len(), 3, "a hit that did not ask adds no key either");
        assert_eq!(rl.check("a", 30), Ok(()));
        assert_eq!(rl.check("a", 31), Err(RetryAfter(29)));
        // Once "a"'s window has ended, a full table makes room for the new key at once.
        assert_eq!(rl.check("d", 60), Ok(()));
        assert!(rl.hits.contains_key("d") && !rl.hits.contains_key("a"));
    }
}
