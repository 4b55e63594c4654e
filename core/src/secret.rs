//! Bearer secrets (API tokens, stream keys): generated with enough entropy to be unguessable,
//! shown to their owner once, and stored only as a SHA-256 hash.
//!
//! A fast hash is the right tool here (unlike passwords): the secrets are 192-bit random values,
//! so there is nothing for a slow hash to protect against, and checking one must be cheap
//! because every API call and every WHIP offer checks one.

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;

/// A secret in clear text. `Debug` and `Display` redact it so that it never reaches a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// The stored form of a [`Secret`]: lowercase hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretHash(pub String);

impl Secret {
    /// A new random secret with a prefix saying what it unlocks (`vt_` API token, `sk_` stream key).
    pub fn generate(prefix: &str) -> Self {
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{prefix}_{}", hex::encode(bytes)))
    }

    /// Wraps a secret presented by a client.
    pub fn from_presented(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    /// The clear text, for the one response that hands it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

impl SecretHash {
    /// Compares in constant time so that response timing says nothing about how close a guess was.
    pub fn matches(&self, presented: &Secret) -> bool {
        constant_time_eq(self.0.as_bytes(), presented.hash().0.as_bytes())
    }
}

/// Whether two byte strings are equal, in time that depends only on their length: for comparing
/// anything derived from a secret (hashes, PKCE challenges, CSRF tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_only_its_secret() {
        let s = Secret::generate("sk");
        let h = s.hash();
        assert!(h.matches(&Secret::from_presented(s.expose())));
        assert!(!h.matches(&Secret::from_presented("sk_wrong")));
        assert_eq!(h.0.len(), 64);
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::generate("vt");
        assert!(!format!("{s:?} {s}").contains(s.expose()));
    }
}
