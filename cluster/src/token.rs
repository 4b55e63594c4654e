//! Relay credentials (sans-IO): a node that relays a stream from its origin presents a token
//! that names itself, the stream and an expiry, MACed with the cluster's shared key. The origin
//! accepts it in place of an anonymous viewer's admission. A token is scoped to one stream and
//! lives a minute, so one seen in a log is worth little.
//!
//! **Must never:** accept a token for another stream, an expired one, or compare MACs in
//! variable time.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use vitrine_core::StreamId;

/// How long an issued token is accepted.
pub const TOKEN_LIFETIME_SECS: u64 = 60;
const PREFIX: &str = "vrl1";

/// The key every node of one cluster shares (derived from the operator's secret).
#[derive(Clone)]
pub struct ClusterKey([u8; 32]);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// Why a presented token is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a relay token")]
    Malformed,
    #[error("relay token expired")]
    Expired,
    #[error("relay token does not verify")]
    BadMac,
}

impl ClusterKey {
    /// Derives the key from the operator's secret (at least 32 bytes: a file of random bytes).
    pub fn from_secret(secret: &[u8]) -> Option<Self> {
        (secret.len() >= 32).then(|| {
            let mut h = Sha256::new();
            h.update(b"vitrine cluster key\n");
            h.update(secret);
            Self(h.finalize().into())
        })
    }

    fn mac(&self, node: &str, stream: &StreamId, expires: u64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(format!("relay\n{node}\n{stream}\n{expires}").as_bytes());
        mac
    }

    /// A token for `node` to relay `stream`, valid until `now_unix` + [`TOKEN_LIFETIME_SECS`].
    pub fn issue(&self, node: &str, stream: &StreamId, now_unix: u64) -> String {
        let expires = now_unix + TOKEN_LIFETIME_SECS;
        let tag = self.mac(node, stream, expires).finalize().into_bytes();
        format!("{PREFIX}.{node}.{expires}.{}", hex::encode(tag))
    }

    /// The relaying node's id, when `token` is valid for `stream` at `now_unix`.
    pub fn verify(
        &self,
        token: &str,
        stream: &StreamId,
        now_unix: u64,
    ) -> Result<String, TokenError> {
        let mut parts = token.split('.');
        let (Some(PREFIX), Some(node), Some(expires), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let expires: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
        let tag = hex::decode(tag).map_err(|_| TokenError::Malformed)?;
        if node.is_empty() || expires > now_unix + TOKEN_LIFETIME_SECS {
            return Err(TokenError::Malformed);
        }
        self.mac(node, stream, expires)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadMac)?;
        if expires < now_unix {
            return Err(TokenError::Expired);
        }
        Ok(node.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> ClusterKey {
        ClusterKey::from_secret(&[byte; 32]).unwrap()
    }

    fn stream(s: &str) -> StreamId {
        StreamId::parse(s).unwrap()
    }

    #[test]
    fn a_token_verifies_for_its_stream_until_it_expires() {
        let t = key(1).issue("node-b", &stream("st_1"), 1_000);
        assert_eq!(key(1).verify(&t, &stream("st_1"), 1_000).unwrap(), "node-b");
        assert_eq!(key(1).verify(&t, &stream("st_1"), 1_060).unwrap(), "node-b");
        assert_eq!(
            key(1).verify(&t, &stream("st_1"), 1_061),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_token_is_refused_for_another_stream_or_another_cluster() {
        let t = key(1).issue("node-b", &stream("st_1"), 1_000);
        assert_eq!(
            key(1).verify(&t, &stream("st_2"), 1_000),
            Err(TokenError::BadMac)
        );
        assert_eq!(
            key(2).verify(&t, &stream("st_1"), 1_000),
            Err(TokenError::BadMac)
        );
    }

    #[test]
    fn tampered_or_malformed_tokens_are_refused() {
        let t = key(1).issue("node-b", &stream("st_1"), 1_000);
        let renamed = t.replace("node-b", "node-c");
        assert_eq!(
            key(1).verify(&renamed, &stream("st_1"), 1_000),
            Err(TokenError::BadMac)
        );
        let later = t.replace(".1060.", ".9999.");
        assert_eq!(
            key(1).verify(&later, &stream("st_1"), 1_000),
            Err(TokenError::Malformed),
            "an expiry beyond a token's lifetime was never issued"
        );
        for bad in [
            "",
            "vrl1",
            "Bearer x",
            "vrl1.a.b.c",
            "vrl1.a.1.zz",
            "vrl1..1060.00",
            "vrl1.a.1.00.x",
        ] {
            assert_eq!(
                key(1).verify(bad, &stream("st_1"), 1_000),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(ClusterKey::from_secret(&[7; 31]).is_none());
    }
}
