//! The generic cell rate algorithm: a token bucket kept as one number, the *theoretical arrival
//! time* (TAT) of the next request. A request at `now` conforms when `now >= TAT - tolerance`;
//! each conforming request pushes TAT one emission interval on. No timers and no refill loop,
//! which is why it fits one Redis key per client. All times are microseconds.

/// A rate with a burst, as GCRA's two numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Microseconds between requests at the sustained rate.
    pub interval_us: i64,
    /// How far ahead of the sustained rate a client may run: `(burst - 1) * interval`.
    pub tolerance_us: i64,
    pub burst: u32,
}

/// What one check decided, with what the response headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// The TAT to store (unchanged when refused).
    pub tat_us: i64,
    /// Requests that would still be allowed right now.
    pub remaining: u32,
    /// Microseconds until the full burst is available again.
    pub reset_us: i64,
    /// Microseconds until the next request can conform (0 when allowed).
    pub retry_after_us: i64,
}

impl Gcra {
    /// `per_second` requests a second on average, `burst` at once. Both must be positive.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let interval_us = ((1_000_000.0 / per_second).round() as i64).max(1);
        let burst = burst.max(1);
        Self {
            interval_us,
            tolerance_us: interval_us * (i64::from(burst) - 1),
            burst,
        }
    }

    /// Decides a request at `now_us` given the stored TAT (none for a new client).
    pub fn check(&self, stored_tat_us: Option<i64>, now_us: i64) -> Outcome {
        let tat = stored_tat_us.unwrap_or(now_us).max(now_us);
        let allow_at = tat - self.tolerance_us;
        if now_us < allow_at {
            return Outcome {
                allowed: false,
                tat_us: tat,
                remaining: 0,
                reset_us: tat - now_us,
                retry_after_us: allow_at - now_us,
            };
        }
        self.allowed(tat + self.interval_us, now_us)
    }

    /// The outcome of an allowed request that left TAT at `new_tat_us` (also how a decision
    /// made elsewhere, in Redis, is turned into headers).
    pub fn allowed(&self, new_tat_us: i64, now_us: i64) -> Outcome {
        let headroom = now_us - new_tat_us + self.tolerance_us;
        let remaining = if headroom < 0 {
            0
        } else if self.interval_us == 0 {
            // A probe (see [`Gcra::probe`]) costs nothing: the burst is not drawn on.
            self.burst
        } else {
            (headroom / self.interval_us + 1).min(i64::from(self.burst)) as u32
        };
        Outcome {
            allowed: true,
            tat_us: new_tat_us,
            remaining,
            reset_us: (new_tat_us - now_us).max(0),
            retry_after_us: 0,
        }
    }

    /// The outcome of a refused request, TAT standing at `tat_us`.
    pub fn refused(&self, tat_us: i64, now_us: i64) -> Outcome {
        Outcome {
            allowed: false,
            tat_us,
            remaining: 0,
            reset_us: (tat_us - now_us).max(0),
            retry_after_us: (tat_us - self.tolerance_us - now_us).max(0),
        }
    }

    /// The same limit at no cost: a check with it answers whether one more request would
    /// conform now, without counting one (how a back-off is consulted before the attempt that
    /// may count against it).
    pub fn probe(&self) -> Self {
        Self {
            interval_us: 0,
            ..*self
        }
    }

    /// The window the IETF RateLimit headers describe: the time to earn a full burst.
    pub fn window_s(&self) -> i64 {
        (self.interval_us * i64::from(self.burst) + 999_999) / 1_000_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: i64 = 1_000_000;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let g = Gcra::new(2.0, 4); // one every 0.5 s, four at once
        let mut tat = None;
        let mut remaining = vec![];
        for _ in 0..4 {
            let o = g.check(tat, 0);
            assert!(o.allowed);
            remaining.push(o.remaining);
            tat = Some(o.tat_us);
        }
        assert_eq!(remaining, [3, 2, 1, 0]);
        let refused = g.check(tat, 0);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_us, S / 2);
        assert_eq!(refused.tat_us, tat.unwrap(), "a refusal does not move TAT");
        // Half a second later exactly one more fits.
        let o = g.check(tat, S / 2);
        assert!(o.allowed);
        assert!(!g.check(Some(o.tat_us), S / 2).allowed);
        // After two seconds of quiet the whole burst is back.
        assert_eq!(g.check(Some(o.tat_us), 3 * S).remaining, 3);
        assert_eq!(g.window_s(), 2);
    }

    #[test]
    fn slow_rates_keep_their_burst() {
        let g = Gcra::new(1.0 / 3600.0, 5);
        let mut tat = None;
        let allowed = (0..10)
            .filter(|i| {
                let o = g.check(tat, i * 1000);
                tat = Some(o.tat_us);
                o.allowed
            })
            .count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn a_probe_answers_without_counting() {
        let g = Gcra::new(1.0, 2);
        let mut tat = None;
        for _ in 0..2 {
            assert!(g.probe().check(tat, 0).allowed);
            tat = Some(g.check(tat, 0).tat_us);
        }
        let probe = g.probe().check(tat, 0);
        assert!(!probe.allowed);
        assert_eq!(probe.retry_after_us, S);
        assert_eq!(
            g.probe().check(tat, S).tat_us,
            tat.unwrap(),
            "a probe moves nothing"
        );
    }

    proptest! {
        /// Over any schedule, allowed requests never exceed burst + elapsed × rate.
        #[test]
        fn never_more_than_burst_plus_rate(
            rate in 0.5f64..50.0,
            burst in 1u32..20,
            gaps in proptest::collection::vec(0i64..200_000, 1..300),
        ) {
            let g = Gcra::new(rate, burst);
            let (mut tat, mut now, mut allowed) = (None, 0i64, 0i64);
            for gap in gaps {
                now += gap;
                let o = g.check(tat, now);
                tat = Some(o.tat_us);
                if o.allowed {
                    allowed += 1;
                    prop_assert!(o.remaining < burst);
                } else {
                    prop_assert!(o.retry_after_us > 0);
                }
            }
            let bound = i64::from(burst) + now / g.interval_us;
            prop_assert!(allowed <= bound, "{allowed} > {bound}");
        }
    }
}
