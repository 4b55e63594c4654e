//! Money: an integer amount of a currency's minor unit plus its ISO 4217 code. Never a float,
//! never an amount without its currency, so that a price cannot be silently read in the wrong
//! unit or currency.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an amount or currency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown ISO 4217 currency code {0:?}")]
    UnknownCurrency(String),
    #[error("amount must be between 0 and {max}")]
    OutOfRange { max: i64 },
    #[error("currencies differ: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount overflows")]
    Overflow,
}

/// ISO 4217 codes accepted, with their number of minor-unit digits. Active codes that are
/// traded; funds codes and precious metals are left out on purpose: a shop does not price in them.
#[rustfmt::skip]
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("ANG", 2), ("AOA", 2), ("ARS", 2),
    ("AUD", 2), ("AWG", 2), ("AZN", 2), ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2),
    ("BHD", 3), ("BIF", 0), ("BMD", 2), ("BND", 2), ("BOB", 2), ("BRL", 2), ("BSD", 2),
    ("BTN", 2), ("BWP", 2), ("BYN", 2), ("BZD", 2), ("CAD", 2), ("CDF", 2), ("CHF", 2),
    ("CLP", 0), ("CNY", 2), ("COP", 2), ("CRC", 2), ("CUP", 2), ("CVE", 2), ("CZK", 2),
    ("DJF", 0), ("DKK", 2), ("DOP", 2), ("DZD", 2), ("EGP", 2), ("ERN", 2), ("ETB", 2),
    ("EUR", 2), ("FJD", 2), ("FKP", 2), ("GBP", 2), ("GEL", 2), ("GHS", 2), ("GIP", 2),
    ("GMD", 2), ("GNF", 0), ("GTQ", 2), ("GYD", 2), ("HKD", 2), ("HNL", 2), ("HTG", 2),
    ("HUF", 2), ("IDR", 2), ("ILS", 2), ("INR", 2), ("IQD", 3), ("IRR", 2), ("ISK", 0),
    ("JMD", 2), ("JOD", 3), ("JPY", 0), ("KES", 2), ("KGS", 2), ("KHR", 2), ("KMF", 0),
    ("KRW", 0), ("KWD", 3), ("KYD", 2), ("KZT", 2), ("LAK", 2), ("LBP", 2), ("LKR", 2),
    ("LRD", 2), ("LSL", 2), ("LYD", 3), ("MAD", 2), ("MDL", 2), ("MGA", 2), ("MKD", 2),
    ("MMK", 2), ("MNT", 2), ("MOP", 2), ("MRU", 2), ("MUR", 2), ("MVR", 2), ("MWK", 2),
    ("MXN", 2), ("MYR", 2), ("MZN", 2), ("NAD", 2), ("NGN", 2), ("NIO", 2), ("NOK", 2),
    ("NPR", 2), ("NZD", 2), ("OMR", 3), ("PAB", 2), ("PEN", 2), ("PGK", 2), ("PHP", 2),
    ("PKR", 2), ("PLN", 2), ("PYG", 0), ("QAR", 2), ("RON", 2), ("RSD", 2), ("RUB", 2),
    ("RWF", 0), ("SAR", 2), ("SBD", 2), ("SCR", 2), ("SDG", 2), ("SEK", 2), ("SGD", 2),
    ("SHP", 2), ("SLE", 2), ("SOS", 2), ("SRD", 2), ("SSP", 2), ("STN", 2), ("SVC", 2),
    ("SYP", 2), ("SZL", 2), ("THB", 2), ("TJS", 2), ("TMT", 2), ("TND", 3), ("TOP", 2),
    ("TRY", 2), ("TTD", 2), ("TWD", 2), ("TZS", 2), ("UAH", 2), ("UGX", 0), ("USD", 2),
    ("UYU", 2), ("UZS", 2), ("VES", 2), ("VND", 0), ("VUV", 0), ("WST", 2), ("XAF", 0),
    ("XCD", 2), ("XOF", 0), ("XPF", 0), ("YER", 2), ("ZAR", 2), ("ZMW", 2), ("ZWG", 2),
];

/// Largest amount accepted in minor units: ten trillion, far above any order and far below
/// the point where sums of many of them could overflow an `i64`.
pub const MAX_AMOUNT: i64 = 10_000_000_000_000;

/// An ISO 4217 alphabetic code, validated against the table above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::pattern("An ISO 4217 alphabetic code.", "^[A-Z]{3}$")
    }
}

impl utoipa::ToSchema for Currency {}

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, MoneyError> {
        CURRENCIES
            .iter()
            .find(|(code, _)| *code == raw)
            .map(|(code, _)| {
                let b = code.as_bytes();
                Self([b[0], b[1], b[2]])
            })
            .ok_or_else(|| MoneyError::UnknownCurrency(raw.chars().take(8).collect()))
    }

    pub fn as_str(&self) -> &str {
        // Built only from the ASCII table above.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Every currency the server knows, in code order.
    pub fn all() -> impl Iterator<Item = Currency> {
        CURRENCIES.iter().map(|(code, _)| {
            let b = code.as_bytes();
            Self([b[0], b[1], b[2]])
        })
    }

    /// Digits after the decimal point (2 for USD, 0 for JPY, 3 for KWD).
    pub fn minor_digits(&self) -> u8 {
        CURRENCIES
            .iter()
            .find(|(code, _)| code.as_bytes() == self.0)
            .map_or(2, |(_, d)| *d)
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(raw: String) -> Result<Self, MoneyError> {
        Self::parse(&raw)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount in minor units of `currency` (4900 USD is $49.00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    /// Integer minor units (4900 USD is $49.00).
    #[schema(minimum = 0, maximum = 10_000_000_000_000_i64)]
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    /// A price: non-negative and bounded.
    pub fn new(amount: i64, currency: Currency) -> Result<Self, MoneyError> {
        if !(0..=MAX_AMOUNT).contains(&amount) {
            return Err(MoneyError::OutOfRange { max: MAX_AMOUNT });
        }
        Ok(Self { amount, currency })
    }

    /// Checks a value that arrived through deserialisation.
    pub fn validated(self) -> Result<Self, MoneyError> {
        Self::new(self.amount, self.currency)
    }

    /// `self × quantity`, refusing overflow and amounts above [`MAX_AMOUNT`].
    pub fn times(self, quantity: u32) -> Result<Self, MoneyError> {
        let amount = self
            .amount
            .checked_mul(i64::from(quantity))
            .ok_or(MoneyError::Overflow)?;
        Self::new(amount, self.currency).map_err(|_| MoneyError::Overflow)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = u32::from(self.currency.minor_digits());
        let scale = 10i64.pow(digits);
        if digits == 0 {
            write!(f, "{} {}", self.amount, self.currency)
        } else {
            let (whole, frac) = (self.amount / scale, (self.amount % scale).abs());
            write!(
                f,
                "{whole}.{frac:0width$} {}",
                self.currency,
                width = digits as usize
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_parse_and_know_their_minor_units() {
        assert_eq!(Currency::parse("USD").unwrap().minor_digits(), 2);
        assert_eq!(Currency::parse("JPY").unwrap().minor_digits(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().minor_digits(), 3);
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("XAU").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn money_serialises_as_amount_and_code() {
        let m: Money = serde_json::from_str(r#"{"amount":4900,"currency":"USD"}"#).unwrap();
        assert_eq!(m.amount, 4900);
        assert_eq!(m.to_string(), "49.00 USD");
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"amount":4900,"currency":"USD"}"#
        );
        assert!(serde_json::from_str::<Money>(r#"{"amount":1,"currency":"ZZZ"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":1.5,"currency":"USD"}"#).is_err());
    }

    #[test]
    fn bounds_and_overflow_are_refused() {
        let usd = Currency::parse("USD").unwrap();
        assert!(Money::new(-1, usd).is_err());
        assert!(Money::new(MAX_AMOUNT + 1, usd).is_err());
        assert_eq!(Money::new(250, usd).unwrap().times(3).unwrap().amount, 750);
        assert_eq!(
            Money::new(MAX_AMOUNT, usd).unwrap().times(2),
            Err(MoneyError::Overflow)
        );
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(Money::new(1005, kwd).unwrap().to_string(), "1.005 KWD");
    }
}
