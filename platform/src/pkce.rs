//! PKCE (RFC 7636) with the S256 method only, as RFC 9700 advises: the app sends
//! `BASE64URL(SHA256(verifier))` when it asks for a code and the verifier when it redeems it,
//! so a code stolen on the way back is useless without the verifier.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A code challenge as the authorization request carried it (validated shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge(String);

/// Why a challenge or verifier is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_challenge_method must be S256")]
    Method,
    #[error("code_challenge must be 43 base64url characters (a SHA-256 digest)")]
    ChallengeShape,
    #[error("code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")]
    VerifierShape,
}

impl Challenge {
    /// Validates the pair from an authorization request. The method is required: a request
    /// without it would mean `plain`, which is refused.
    pub fn from_request(challenge: &str, method: Option<&str>) -> Result<Self, PkceError> {
        if method != Some("S256") {
            return Err(PkceError::Method);
        }
        let decoded = URL_SAFE_NO_PAD
            .decode(challenge)
            .map_err(|_| PkceError::ChallengeShape)?;
        if challenge.len() != 43 || decoded.len() != 32 {
            return Err(PkceError::ChallengeShape);
        }
        Ok(Self(challenge.to_owned()))
    }

    /// A stored challenge, read back.
    pub fn stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `verifier` is the one this challenge was made from (constant-time compare).
    pub fn verify(&self, verifier: &str) -> Result<bool, PkceError> {
        let ok_len = (43..=128).contains(&verifier.len());
        let ok_chars = verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !ok_len || !ok_chars {
            return Err(PkceError::VerifierShape);
        }
        let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Ok(vitrine_core::constant_time_eq(
            computed.as_bytes(),
            self.0.as_bytes(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn the_rfc_example_verifies() {
        let c = Challenge::from_request(CHALLENGE, Some("S256")).unwrap();
        assert_eq!(c.verify(VERIFIER), Ok(true));
        let other = format!("{}A", &VERIFIER[..VERIFIER.len() - 1]);
        assert_eq!(c.verify(&other), Ok(false));
    }

    #[test]
    fn plain_and_missing_methods_are_refused() {
        assert_eq!(
            Challenge::from_request(CHALLENGE, Some("plain")),
            Err(PkceError::Method)
        );
        assert_eq!(
            Challenge::from_request(CHALLENGE, None),
            Err(PkceError::Method)
        );
    }

    #[test]
    fn malformed_challenges_and_verifiers_are_refused() {
        for bad in [
            "",
            "short",
            &format!("{CHALLENGE}A"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM",
        ] {
            assert_eq!(
                Challenge::from_request(bad, Some("S256")),
                Err(PkceError::ChallengeShape),
                "{bad}"
            );
        }
        let c = Challenge::from_request(CHALLENGE, Some("S256")).unwrap();
        assert_eq!(c.verify("too-short"), Err(PkceError::VerifierShape));
        assert_eq!(c.verify(&"a".repeat(129)), Err(PkceError::VerifierShape));
        let with_space = format!("{} ", &VERIFIER[..42]);
        assert_eq!(c.verify(&with_space), Err(PkceError::VerifierShape));
    }
}
