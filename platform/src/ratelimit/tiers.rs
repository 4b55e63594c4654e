//! Rate-limit tiers as the operator configures them (`[rate_limits]` in the TOML file), with
//! defaults that a new deployment can live with.

use super::gcra::Gcra;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One tier: a sustained rate, a burst, and optionally a quota per UTC day.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub requests_per_second: f64,
    pub burst: u32,
    #[serde(default)]
    pub requests_per_day: Option<u64>,
}

impl Tier {
    pub fn gcra(&self) -> Gcra {
        Gcra::new(self.requests_per_second, self.burst)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TiersError {
    #[error("rate-limit tier `{0}`: requests_per_second must be above 0 and at most 100000")]
    Rate(String),
    #[error("rate-limit tier `{0}`: burst must be 1 to 100000")]
    Burst(String),
    #[error("rate-limit tier `{0}`: requests_per_day must be at least 1")]
    Day(String),
    #[error("rate-limit tier `{0}` is named as a default but not defined")]
    Missing(String),
}

/// The tiers by name, which tier new apps start on, and which one sellers' own credentials use.
#[derive(Debug, Clone, PartialEq)]
pub struct Tiers {
    tiers: BTreeMap<String, Tier>,
    default_tier: String,
    account_tier: String,
}

/// The file form.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiersFile {
    #[serde(default)]
    pub default_tier: Option<String>,
    #[serde(default)]
    pub account_tier: Option<String>,
    #[serde(default)]
    pub tiers: BTreeMap<String, Tier>,
}

impl Default for Tiers {
    fn default() -> Self {
        let tier = |rps, burst, day| Tier {
            requests_per_second: rps,
            burst,
            requests_per_day: day,
        };
        Self {
            tiers: BTreeMap::from([
                ("free".to_owned(), tier(5.0, 10, Some(10_000))),
                ("standard".to_owned(), tier(25.0, 50, Some(250_000))),
                ("enterprise".to_owned(), tier(200.0, 400, None)),
            ]),
            default_tier: "free".into(),
            account_tier: "standard".into(),
        }
    }
}

impl Tiers {
    /// The defaults with the file's tiers added or replaced.
    pub fn from_file(file: TiersFile) -> Result<Self, TiersError> {
        let mut tiers = Self::default();
        for (name, tier) in file.tiers {
            if !(tier.requests_per_second > 0.0 && tier.requests_per_second <= 100_000.0) {
                return Err(TiersError::Rate(name));
            }
            if !(1..=100_000).contains(&tier.burst) {
                return Err(TiersError::Burst(name));
            }
            if tier.requests_per_day == Some(0) {
                return Err(TiersError::Day(name));
            }
            tiers.tiers.insert(name, tier);
        }
        for (slot, name) in [
            (&mut tiers.default_tier, file.default_tier),
            (&mut tiers.account_tier, file.account_tier),
        ] {
            if let Some(name) = name {
                if !tiers.tiers.contains_key(&name) {
                    return Err(TiersError::Missing(name));
                }
                *slot = name;
            }
        }
        Ok(tiers)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tiers.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tiers.contains_key(name)
    }

    pub fn default_tier(&self) -> &str {
        &self.default_tier
    }

    pub fn account_tier(&self) -> &str {
        &self.account_tier
    }

    /// A tier by name; an app on a tier the configuration no longer has falls back to the
    /// default tier rather than going unlimited.
    pub fn get<'a>(&'a self, name: &'a str) -> (&'a str, &'a Tier) {
        match self.tiers.get_key_value(name) {
            Some((n, t)) => (n, t),
            None => {
                let t = &self.tiers[&self.default_tier];
                (&self.default_tier, t)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_tiers_replace_and_extend_the_defaults() {
        let file: TiersFile = toml::from_str(
            r#"
            default_tier = "trial"
            [tiers.trial]
            requests_per_second = 0.5
            burst = 3
            requests_per_day = 100
            [tiers.free]
            requests_per_second = 1
            burst = 2
            "#,
        )
        .unwrap();
        let t = Tiers::from_file(file).unwrap();
        assert_eq!(t.default_tier(), "trial");
        assert_eq!(t.get("free").1.burst, 2);
        assert_eq!(t.get("enterprise").1.burst, 400);
        assert_eq!(t.get("gone").0, "trial");
        assert_eq!(t.names().count(), 4);
    }

    #[test]
    fn nonsense_is_refused() {
        let one = |toml: &str| Tiers::from_file(toml::from_str(toml).unwrap());
        assert_eq!(
            one("[tiers.x]\nrequests_per_second = 0\nburst = 1"),
            Err(TiersError::Rate("x".into()))
        );
        assert_eq!(
            one("[tiers.x]\nrequests_per_second = 1\nburst = 0"),
            Err(TiersError::Burst("x".into()))
        );
        assert_eq!(
            one("[tiers.x]\nrequests_per_second = 1\nburst = 1\nrequests_per_day = 0"),
            Err(TiersError::Day("x".into()))
        );
        assert_eq!(
            one("account_tier = \"gold\""),
            Err(TiersError::Missing("gold".into()))
        );
        assert!(toml::from_str::<TiersFile>("[tiers.x]\nrps = 1").is_err());
    }
}
