//! Card numbers as they arrive from a buyer: checked (digits, length, Luhn) and reduced at once
//! to what may be kept (the last four digits, and a fingerprint keyed with a server secret for
//! idempotency). The full number never reaches storage or a log: every type that holds it
//! prints only `****1234` in `Debug`, and none of them serialises it.

use crate::webhooks::sealing::{SealError, load_or_create_key};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

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
}

/// `****` and the last four digits of whatever was typed (fewer digits: just `****`).
fn masked(raw: &str) -> String {
    let digits: Vec<char> = raw.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 8 {
        return "****".into();
    }
    let last4: String = digits[digits.len() - 4..].iter().collect();
    format!("****{last4}")
}

/// A card number as the request carried it, before it is checked: what the buyer typed.
/// Deserialised from a plain JSON string; `Debug` masks it, and it is never serialised.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct CardInput(String);

impl CardInput {
    /// The typed text, for [`CardNumber::parse`] only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for CardInput {
    fn from(raw: &str) -> Self {
        Self(raw.to_owned())
    }
}

impl From<String> for CardInput {
    fn from(raw: String) -> Self {
        Self(raw)
    }
}

impl fmt::Debug for CardInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardInput({})", masked(&self.0))
    }
}

/// The server secret that keys card fingerprints (HMAC-SHA256). Unkeyed, a fingerprint of a
/// 16-digit number whose first six and last four digits are known falls to a brute force in
/// minutes; keyed, it is worthless without this secret, which lives in a file of the data
/// directory (never in the database, never in a log) and must be the same on every node.
#[derive(Clone)]
pub struct CardKey(Arc<[u8; 32]>);

impl CardKey {
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(Arc::new(key))
    }

    /// A key for one process only (tests, tools).
    pub fn ephemeral() -> Self {
        Self::from_bytes(rand::random())
    }

    /// Reads the key file, creating it (mode 0600) with a fresh random key when missing.
    pub fn load_or_create(path: &Path) -> Result<Self, SealError> {
        load_or_create_key(path).map(Self::from_bytes)
    }

    /// HMAC-SHA256 of `text` under the key, hex.
    pub fn mac(&self, text: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_slice()).expect("any key length");
        mac.update(text.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// What lets two requests with the same card be compared without keeping the number.
    pub fn fingerprint(&self, card: &CardNumber) -> String {
        self.mac(&format!("card-fingerprint\n{}", card.0))
    }
}

impl fmt::Debug for CardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CardKey(..)")
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
    fn fingerprints_are_keyed_and_differ_between_keys() {
        use sha2::Digest;
        let card = CardNumber::parse("4242424242424242").unwrap();
        let (a, b) = (CardKey::ephemeral(), CardKey::ephemeral());
        let unkeyed = hex::encode(sha2::Sha256::digest(b"4242424242424242"));
        assert_ne!(a.fingerprint(&card), unkeyed);
        assert_ne!(a.fingerprint(&card), b.fingerprint(&card));
        assert_eq!(a.fingerprint(&card), a.clone().fingerprint(&card));
        assert_eq!(format!("{a:?}"), "CardKey(..)");
    }

    #[test]
    fn typed_card_numbers_print_only_the_last_four() {
        let typed = CardInput::from("4242 4242 4242 4242");
        assert_eq!(format!("{typed:?}"), "CardInput(****4242)");
        assert_eq!(format!("{:?}", CardInput::from("42")), "CardInput(****)");
        let parsed: CardInput = serde_json::from_str(r#""5555555555554444""#).unwrap();
        assert!(!format!("{parsed:?}").contains("55555555"));
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
