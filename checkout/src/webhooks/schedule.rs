//! When a failed delivery is tried again. The default follows the Standard Webhooks advice of
//! exponential backoff and stretches it to about three days: a receiver that is down over a
//! weekend still gets every message. A `Retry-After` from the receiver (on 429 or 503) moves
//! the next attempt later, never earlier, and never beyond a day.

use std::time::Duration;

/// Delays before attempts 2, 3, ...; the first attempt is immediate.
pub const DEFAULT_SCHEDULE_SECS: [u64; 9] = [
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    20 * 3600,
];

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::new(
            DEFAULT_SCHEDULE_SECS
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
        )
    }
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// Attempts in all, the first included.
    pub fn attempts(&self) -> u32 {
        self.delays.len() as u32 + 1
    }

    /// The delay before the next attempt after `failed` attempts, or `None` when they are spent.
    pub fn next_delay(&self, failed: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let base = *self.delays.get(failed.checked_sub(1)? as usize)?;
        Some(match retry_after {
            Some(r) => base.max(r.min(MAX_RETRY_AFTER)),
            None => base,
        })
    }

    /// The whole span from the first attempt to the last.
    pub fn span(&self) -> Duration {
        self.delays.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_spans_about_three_days() {
        let s = RetrySchedule::default();
        assert_eq!(s.attempts(), 10);
        let days = s.span().as_secs_f64() / 86_400.0;
        assert!((2.9..3.1).contains(&days), "{days}");
        assert_eq!(s.next_delay(1, None), Some(Duration::from_secs(5)));
        assert_eq!(s.next_delay(9, None), Some(Duration::from_secs(20 * 3600)));
        assert_eq!(s.next_delay(10, None), None);
        assert_eq!(s.next_delay(0, None), None);
    }

    #[test]
    fn retry_after_delays_but_never_hastens_or_stalls() {
        let s = RetrySchedule::default();
        let h = Duration::from_secs(3600);
        assert_eq!(s.next_delay(1, Some(h)), Some(h));
        assert_eq!(s.next_delay(4, Some(Duration::from_secs(1))), Some(2 * h));
        assert_eq!(
            s.next_delay(1, Some(Duration::from_secs(10 * 86_400))),
            Some(Duration::from_secs(86_400))
        );
    }
}
