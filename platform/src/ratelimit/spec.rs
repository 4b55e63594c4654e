//! A limit as an operator writes it in a flag or the TOML file: `"6/min burst 10"` (six a
//! minute on average, ten at once), `"20/s"` (burst defaults to the count), or `"off"`.
//! One spelling for both places, so the documented default reads the same in each.

use super::gcra::Gcra;
use std::fmt;

/// A sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "limit {0:?}: write COUNT/UNIT with UNIT s, min or h, optionally `burst N` (like \"6/min burst 10\"), or `off`"
)]
pub struct LimitSpecError(pub String);

impl Limit {
    pub fn gcra(&self) -> Gcra {
        Gcra::new(self.per_second, self.burst)
    }

    /// Parses a spec; `Ok(None)` is `off`.
    pub fn parse(raw: &str) -> Result<Option<Self>, LimitSpecError> {
        let bad = || LimitSpecError(raw.to_owned());
        let words: Vec<&str> = raw.split_whitespace().collect();
        let (rate, burst) = match words.as_slice() {
            ["off"] => return Ok(None),
            [rate] => (*rate, None),
            [rate, "burst", b] => (*rate, Some(b.parse::<u32>().map_err(|_| bad())?)),
            _ => return Err(bad()),
        };
        let (count, unit) = rate.split_once('/').ok_or_else(bad)?;
        let count: f64 = count.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "s" => 1.0,
            "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        if !(count.is_finite() && count > 0.0 && count <= 1_000_000.0) {
            return Err(bad());
        }
        let burst = burst.unwrap_or(count.ceil() as u32);
        if !(1..=100_000).contains(&burst) {
            return Err(bad());
        }
        Ok(Some(Self {
            per_second: count / seconds,
            burst,
        }))
    }
}

impl fmt::Display for Limit {
    /// Back in the spec's words, in the largest unit that keeps the count whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (count, unit) = [(1.0, "s"), (60.0, "min"), (3600.0, "h")]
            .into_iter()
            .map(|(s, u)| (self.per_second * s, u))
            .find(|(c, _)| (c - c.round()).abs() < 1e-9 && *c >= 1.0)
            .unwrap_or((self.per_second * 3600.0, "h"));
        write!(f, "{count}/{unit} burst {}", self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        let l = Limit::parse("6/min burst 10").unwrap().unwrap();
        assert_eq!(l.burst, 10);
        assert!((l.per_second - 0.1).abs() < 1e-12);
        assert_eq!(l.to_string(), "6/min burst 10");
        let l = Limit::parse("20/s").unwrap().unwrap();
        assert_eq!((l.per_second, l.burst), (20.0, 20));
        assert_eq!(Limit::parse("off"), Ok(None));
        assert_eq!(
            Limit::parse("1/h").unwrap().unwrap().to_string(),
            "1/h burst 1"
        );
        for bad in [
            "",
            "6",
            "6/day",
            "0/s",
            "-1/s",
            "5/s burst 0",
            "5/s burst",
            "x/s",
            "5/s b 2",
        ] {
            assert!(Limit::parse(bad).is_err(), "{bad:?}");
        }
    }
}
