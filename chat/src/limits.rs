//! Rate limits without I/O: a token bucket that the connection loop asks before acting, given
//! the current time, so it is tested without clocks or sockets.

use std::time::{Duration, Instant};

/// `burst` tokens, refilled at `per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    burst: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(burst: u32, per_second: f64, now: Instant) -> Self {
        Self {
            burst: f64::from(burst),
            per_second,
            tokens: f64::from(burst),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.last = now;
    }

    /// Takes a token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.per_second;
            Err(Duration::from_secs_f64(wait))
        }
    }
}

/// Slow mode: one chat line per `interval` per member (seller and moderators are exempt).
#[derive(Debug, Clone, Default)]
pub struct SlowMode {
    last: Option<Instant>,
}

impl SlowMode {
    /// Records a line at `now` if `interval` has passed since the last one.
    pub fn admit(&mut self, interval: Duration, now: Instant) -> Result<(), Duration> {
        if let Some(last) = self.last {
            let since = now.saturating_duration_since(last);
            if since < interval {
                return Err(interval - since);
            }
        }
        self.last = Some(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, 2.0, t0);
        assert!(b.take(t0).is_ok() && b.take(t0).is_ok() && b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        assert!(b.take(t0 + Duration::from_millis(500)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(500)).is_err());
        // Idle time refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.take(later).is_ok());
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn slow_mode_spaces_lines() {
        let t0 = Instant::now();
        let mut s = SlowMode::default();
        let gap = Duration::from_secs(5);
        assert!(s.admit(gap, t0).is_ok());
        assert_eq!(
            s.admit(gap, t0 + Duration::from_secs(2)),
            Err(Duration::from_secs(3))
        );
        assert!(s.admit(gap, t0 + Duration::from_secs(5)).is_ok());
        assert!(s.admit(Duration::ZERO, t0 + Duration::from_secs(5)).is_ok());
    }
}
