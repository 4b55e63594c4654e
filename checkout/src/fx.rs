//! Exchange rates and the conversion of buyer-facing prices (issue 6, multi-currency). A
//! [`RateTable`] holds each currency's rate against one base currency, with where the rates
//! came from and when; [`RateTable::convert`] turns an amount in minor units of one currency
//! into minor units of another, exactly (integer arithmetic, no floating point) and with one
//! documented rounding: **half away from zero** at the target currency's minor unit. A JPY price
//! is rounded to the yen, a KWD price to the fils (1/1000). Orders lock the rate they were
//! placed with, so a price never moves after the buyer saw it.
//!
//! Rates arrive as decimal strings (`"151.2345"`), never as JSON numbers, which would pass
//! through binary floating point on the way.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use vitrine_core::money::{Currency, MAX_AMOUNT, Money};

/// Decimal places a rate keeps: enough for a rate such as 0.000061 (VND against KWD).
pub const RATE_DECIMALS: u32 = 10;
const RATE_ONE: u64 = 10_u64.pow(RATE_DECIMALS);
/// Largest rate accepted (units of a currency per unit of the base).
const MAX_RATE: u64 = 1_000_000_000;
/// Most currencies in one table.
pub const MAX_CURRENCIES: usize = 200;
/// Longest `source` and `as_of` strings.
const MAX_LABEL: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FxError {
    #[error(
        "rate {0:?} is not a positive decimal below {MAX_RATE} with at most {RATE_DECIMALS} decimal places"
    )]
    BadRate(String),
    #[error("no rate for {0}")]
    NoRate(Currency),
    #[error("the base currency's own rate must be 1, not {0}")]
    BaseNotOne(Rate),
    #[error("at most {MAX_CURRENCIES} currencies in a rate table")]
    TooMany,
    #[error("rate table: {0}")]
    Invalid(String),
    #[error("the converted amount is out of range")]
    OutOfRange,
}

/// Units of a currency per unit of the base, as an exact decimal (`RATE_DECIMALS` places).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(u64);

impl Rate {
    /// The rate in units of 10^-[`RATE_DECIMALS`].
    pub fn scaled(self) -> u64 {
        self.0
    }
}

impl FromStr for Rate {
    type Err = FxError;

    fn from_str(raw: &str) -> Result<Self, FxError> {
        let bad = || FxError::BadRate(raw.chars().take(32).collect());
        let (whole, fraction) = raw.split_once('.').unwrap_or((raw, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || whole.len() > 10
            || fraction.len() > RATE_DECIMALS as usize
            || !digits(whole)
            || !digits(fraction)
            || (raw.contains('.') && fraction.is_empty())
        {
            return Err(bad());
        }
        let whole: u64 = whole.parse().map_err(|_| bad())?;
        let mut scaled_fraction: u64 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| bad())?
        };
        scaled_fraction *= 10_u64.pow(RATE_DECIMALS - fraction.len() as u32);
        let value = whole
            .checked_mul(RATE_ONE)
            .and_then(|w| w.checked_add(scaled_fraction))
            .ok_or_else(bad)?;
        if value == 0 || whole >= MAX_RATE {
            return Err(bad());
        }
        Ok(Self(value))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fraction = format!("{:010}", self.0 % RATE_ONE);
        let fraction = fraction.trim_end_matches('0');
        if fraction.is_empty() {
            write!(f, "{}", self.0 / RATE_ONE)
        } else {
            write!(f, "{}.{fraction}", self.0 / RATE_ONE)
        }
    }
}

/// Every rate against one base currency, where they came from and when (RFC 3339 UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateTable {
    base: Currency,
    rates: HashMap<Currency, Rate>,
    pub source: String,
    pub as_of: String,
}

/// A rate table as files and HTTP endpoints carry it:
/// `{"base": "USD", "source": "...", "as_of": "2026-11-30T16:00:00Z", "rates": {"EUR": "0.92"}}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RateFile {
    base: String,
    source: String,
    as_of: String,
    rates: BTreeMap<String, String>,
}

impl RateTable {
    /// Reads the JSON form; every currency and rate is checked, and the base gets rate 1.
    pub fn from_json(text: &str) -> Result<Self, FxError> {
        let file: RateFile =
            serde_json::from_str(text).map_err(|e| FxError::Invalid(e.to_string()))?;
        if file.rates.len() > MAX_CURRENCIES {
            return Err(FxError::TooMany);
        }
        let currency =
            |code: &str| Currency::parse(code).map_err(|e| FxError::Invalid(e.to_string()));
        let base = currency(&file.base)?;
        for (name, label) in [("source", &file.source), ("as_of", &file.as_of)] {
            if label.trim().is_empty() || label.len() > MAX_LABEL {
                return Err(FxError::Invalid(format!(
                    "{name} must be 1 to {MAX_LABEL} characters"
                )));
            }
        }
        let mut rates = HashMap::new();
        for (code, rate) in &file.rates {
            rates.insert(currency(code)?, rate.parse::<Rate>()?);
        }
        match rates.get(&base) {
            Some(r) if r.0 != RATE_ONE => return Err(FxError::BaseNotOne(*r)),
            _ => {
                rates.insert(base, Rate(RATE_ONE));
            }
        }
        Ok(Self {
            base,
            rates,
            source: file.source,
            as_of: file.as_of,
        })
    }

    pub fn base(&self) -> Currency {
        self.base
    }

    /// The currencies this table converts between.
    pub fn currencies(&self) -> impl Iterator<Item = Currency> + '_ {
        self.rates.keys().copied()
    }

    pub fn rate(&self, currency: Currency) -> Result<Rate, FxError> {
        self.rates
            .get(&currency)
            .copied()
            .ok_or(FxError::NoRate(currency))
    }

    /// The rates an order locks: from `from` into `to`, as the two rates against the base.
    pub fn quote(&self, from: Currency, to: Currency) -> Result<Quote, FxError> {
        Ok(Quote {
            from,
            to,
            from_rate: self.rate(from)?,
            to_rate: self.rate(to)?,
        })
    }

    /// `money` in `to`: see [`Quote::convert`].
    pub fn convert(&self, money: Money, to: Currency) -> Result<Money, FxError> {
        self.quote(money.currency, to)?.convert(money.amount)
    }
}

/// A conversion between two currencies at fixed rates, as an order records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub from: Currency,
    pub to: Currency,
    pub from_rate: Rate,
    pub to_rate: Rate,
}

impl Quote {
    /// `amount` minor units of `from` in minor units of `to`:
    /// `amount × 10^to_digits × to_rate / (10^from_digits × from_rate)`, computed exactly and
    /// rounded half away from zero (a refund of a converted price converts to the negative of
    /// the same number).
    pub fn convert(&self, amount: i64) -> Result<Money, FxError> {
        let pow = |digits: u8| 10_i128.pow(u32::from(digits));
        let numerator = i128::from(amount)
            .checked_mul(pow(self.to.minor_digits()))
            .and_then(|n| n.checked_mul(i128::from(self.to_rate.0)))
            .ok_or(FxError::OutOfRange)?;
        let denominator = pow(self.from.minor_digits()) * i128::from(self.from_rate.0);
        let quotient = numerator / denominator;
        let remainder = (numerator % denominator).abs();
        let rounded = if remainder * 2 >= denominator {
            quotient + numerator.signum()
        } else {
            quotient
        };
        let amount = i64::try_from(rounded).map_err(|_| FxError::OutOfRange)?;
        if amount.abs() > MAX_AMOUNT {
            return Err(FxError::OutOfRange);
        }
        Ok(Money {
            amount,
            currency: self.to,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RateTable {
        RateTable::from_json(
            r#"{"base": "USD", "source": "test fixture", "as_of": "2026-11-30T16:00:00Z",
                "rates": {"EUR": "0.92", "GBP": "0.79", "JPY": "150.5", "KWD": "0.3075",
                          "BHD": "0.376", "CHF": "0.88", "CAD": "1.39", "AUD": "1.53",
                          "INR": "84.3", "BRL": "5.8", "MXN": "20.4", "KRW": "1392",
                          "SEK": "10.9", "CLP": "975"}}"#,
        )
        .unwrap()
    }

    fn usd(cents: i64) -> Money {
        Money {
            amount: cents,
            currency: Currency::parse("USD").unwrap(),
        }
    }

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn rates_parse_exactly_and_print_back() {
        assert_eq!("150.5".parse::<Rate>().unwrap().scaled(), 1_505_000_000_000);
        assert_eq!(
            "0.0000610000".parse::<Rate>().unwrap().to_string(),
            "0.000061"
        );
        assert_eq!("1".parse::<Rate>().unwrap().to_string(), "1");
        for bad in [
            "",
            "0",
            "0.0",
            "-1",
            "1e3",
            "1.",
            ".5",
            "1.00000000001",
            "abc",
            "1000000000",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_table_has_many_currencies_and_checks_them() {
        let t = table();
        assert!(t.currencies().count() >= 12);
        assert_eq!(t.rate(cur("USD")).unwrap().to_string(), "1");
        assert!(matches!(
            RateTable::from_json(r#"{"base":"USD","source":"s","as_of":"t","rates":{"XYZ":"1"}}"#),
            Err(FxError::Invalid(_))
        ));
        assert!(matches!(
            RateTable::from_json(r#"{"base":"USD","source":"s","as_of":"t","rates":{"USD":"2"}}"#),
            Err(FxError::BaseNotOne(_))
        ));
        assert!(matches!(
            RateTable::from_json(r#"{"base":"USD","source":"","as_of":"t","rates":{}}"#),
            Err(FxError::Invalid(_))
        ));
        // JSON numbers would have gone through floating point: refused.
        assert!(
            RateTable::from_json(r#"{"base":"USD","source":"s","as_of":"t","rates":{"EUR":0.92}}"#)
                .is_err()
        );
        assert!(matches!(
            t.convert(usd(100), cur("NOK")),
            Err(FxError::NoRate(_))
        ));
    }

    /// Rounding table: (USD cents, target, expected minor units). Half away from zero at the
    /// target's minor unit: yen (0 digits), cents (2), fils (3).
    #[test]
    fn rounding_table_jpy_usd_kwd() {
        let t = table();
        for (cents, to, expected) in [
            // USD -> JPY at 150.5: $1.00 = 150.5 yen -> 151; $0.01 = 1.505 -> 2; $19.99 = 3008.495 -> 3008
            (100, "JPY", 151),
            (1, "JPY", 2),
            (1999, "JPY", 3008),
            (-100, "JPY", -151),
            (0, "JPY", 0),
            // USD -> KWD at 0.3075: $0.01 = 3.075 fils -> 3; $19.99 = 6146.925 fils -> 6147
            (1, "KWD", 3),
            (1999, "KWD", 6147),
            (2, "KWD", 6),
            // USD -> USD is the identity.
            (1999, "USD", 1999),
        ] {
            let got = t.convert(usd(cents), cur(to)).unwrap();
            assert_eq!(
                (got.amount, got.currency),
                (expected, cur(to)),
                "{cents} USD cents to {to}"
            );
        }
        // Into USD: 1,000 yen at 150.5 = $6.6445 -> 664.45 cents -> 664; 3 fils = 0.9756 cents -> 1.
        let jpy = Money {
            amount: 1000,
            currency: cur("JPY"),
        };
        assert_eq!(t.convert(jpy, cur("USD")).unwrap().amount, 664);
        let kwd = Money {
            amount: 3,
            currency: cur("KWD"),
        };
        assert_eq!(t.convert(kwd, cur("USD")).unwrap().amount, 1);
        // Cross rate through the base: 1 KWD (1000 fils) = 150.5 / 0.3075 yen = 489.43 -> 489.
        let one_kwd = Money {
            amount: 1000,
            currency: cur("KWD"),
        };
        assert_eq!(t.convert(one_kwd, cur("JPY")).unwrap().amount, 489);
    }

    #[test]
    fn exact_halves_round_away_from_zero_and_refunds_mirror_sales() {
        let t = RateTable::from_json(
            r#"{"base":"USD","source":"s","as_of":"t","rates":{"JPY":"0.5","KWD":"0.35"}}"#,
        )
        .unwrap();
        assert_eq!(t.convert(usd(100), cur("JPY")).unwrap().amount, 1); // 0.5 -> 1
        assert_eq!(t.convert(usd(300), cur("JPY")).unwrap().amount, 2); // 1.5 -> 2
        assert_eq!(t.convert(usd(-300), cur("JPY")).unwrap().amount, -2);
        assert_eq!(t.convert(usd(1), cur("KWD")).unwrap().amount, 4); // 3.5 fils -> 4
        assert_eq!(t.convert(usd(-1), cur("KWD")).unwrap().amount, -4);
    }

    #[test]
    fn a_locked_quote_converts_the_same_after_the_table_moves() {
        let t = table();
        let quote = t.quote(cur("USD"), cur("JPY")).unwrap();
        let moved = RateTable::from_json(
            r#"{"base":"USD","source":"s","as_of":"later","rates":{"JPY":"160"}}"#,
        )
        .unwrap();
        assert_eq!(quote.convert(100).unwrap().amount, 151);
        assert_eq!(moved.convert(usd(100), cur("JPY")).unwrap().amount, 160);
    }

    proptest::proptest! {
        /// A refund converts to exactly the negative of its sale, and a conversion is never
        /// off by more than half a minor unit of the target from the exact value.
        #[test]
        fn conversions_are_symmetric_and_within_half_a_unit(cents in 0i64..1_000_000_000, to in 0usize..4) {
            let t = table();
            let to = cur(["JPY", "KWD", "EUR", "CLP"][to]);
            let sale = t.convert(usd(cents), to).unwrap().amount;
            let refund = t.convert(usd(-cents), to).unwrap().amount;
            proptest::prop_assert_eq!(refund, -sale);
            let q = t.quote(cur("USD"), to).unwrap();
            let exact = i128::from(cents) * 10_i128.pow(u32::from(to.minor_digits()))
                * i128::from(q.to_rate.scaled());
            let denominator = 100 * i128::from(q.from_rate.scaled());
            let error = (i128::from(sale) * denominator - exact).abs();
            proptest::prop_assert!(error * 2 <= denominator);
        }
    }

    #[test]
    fn huge_amounts_are_refused_not_wrapped() {
        let t = table();
        let big = usd(MAX_AMOUNT);
        assert!(matches!(
            t.convert(big, cur("CLP")),
            Err(FxError::OutOfRange)
        ));
        assert!(t.convert(big, cur("EUR")).is_ok());
    }
}
