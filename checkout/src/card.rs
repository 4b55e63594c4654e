//! Card numbers as they arrive from a buyer: checked (digits, length, Luhn) and reduced at once
//! to what may be kept (the last four digits and a hash for idempotency fingerprints). The full
//! number never reaches storage or a log.

use sha2::{Digest, Sha256};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("card number must be 12 to 19 digits")]
    Length,
    #[error("card number fails its check digit")]
    CheckDigit,
}

/// A validated card number. `Debug` shows only the last four digits.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

impl CardNumber {
    /// Accepts digits with optional spaces or dashes, as people type them.
    pub fn parse(raw: &str) -> Result<Self, CardError> {
        if raw.len() > 40 {
            return Err(CardError::Length);
        }
        let digits: String = raw.chars().filter(|c| *c != ' ' && *c != '-').collect();
        if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CardError::Length);
        }
        if !luhn(&digits) {
            return Err(CardError::CheckDigit);
        }
        Ok(Self(digits))
    }

    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    /// The number itself, for the payment provider only.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// A hash that lets two requests be compared without keeping the number.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber(****{})", self.last4())
    }
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_test_cards_and_keeps_only_last_four() {
        let c = CardNumber::parse("4242 4242 4242 4242").unwrap();
        assert_eq!(c.last4(), "4242");
        assert_eq!(format!("{c:?}"), "CardNumber(****4242)");
        assert!(CardNumber::parse("5555-5555-5555-4444").is_ok());
    }

    #[test]
    fn refuses_bad_numbers() {
        assert_eq!(
            CardNumber::parse("4242424242424241"),
            Err(CardError::CheckDigit)
        );
        assert_eq!(CardNumber::parse("42"), Err(CardError::Length));
        assert_eq!(
            CardNumber::parse("4242a24242424242"),
            Err(CardError::Length)
        );
        assert_eq!(CardNumber::parse(&"4".repeat(100)), Err(CardError::Length));
    }
}
