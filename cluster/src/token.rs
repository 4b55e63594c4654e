//! Cluster credentials (sans-IO), MACed with the cluster's shared key:
//! - a relay token: a node that relays a stream from its origin presents one naming itself,
//!   the stream and an expiry; the origin accepts it in place of an anonymous viewer's admission;
//! - a placement token: a node that sends a publisher to another node (307) puts one in the
//!   redirect's URL, because clients drop `Authorization` on a redirect to another origin; the
//!   chosen node accepts it in place of the stream key, for that stream only;
//! - an operator token for the admin routes (`vitrine drain`).
//!
//! Each is scoped to its use (and its stream) and lives a minute, so one seen in a log is
//! worth little.
//!
//! **Must never:** accept a token for another stream, an expired one, or compare MACs in
//! variable time.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use vitrine_core::StreamId;

/// How long an issued token is accepted.
pub const TOKEN_LIFETIME_SECS: u64 = 60;
const ADMIN_PREFIX: &str = "vad1";

/// What a stream-scoped token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Subscribe to the stream's origin as another node's relay.
    Relay,
    /// Publish the stream on the node a redirect named.
    Placement,
}

impl Grant {
    fn prefix(self) -> &'static str {
        match self {
            Self::Relay => "vrl1",
            Self::Placement => "vpl1",
        }
    }
}

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

    fn mac(&self, grant: Grant, node: &str, stream: &StreamId, expires: u64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        let prefix = grant.prefix();
        mac.update(format!("{prefix}\n{node}\n{stream}\n{expires}").as_bytes());
        mac
    }

    /// A `grant` for `node` on `stream`, valid until `now_unix` + [`TOKEN_LIFETIME_SECS`].
    pub fn issue(&self, grant: Grant, node: &str, stream: &StreamId, now_unix: u64) -> String {
        let expires = now_unix + TOKEN_LIFETIME_SECS;
        let tag = self
            .mac(grant, node, stream, expires)
            .finalize()
            .into_bytes();
        format!("{}.{node}.{expires}.{}", grant.prefix(), hex::encode(tag))
    }

    /// The node a token names, when `token` is a valid `grant` for `stream` at `now_unix`.
    pub fn verify(
        &self,
        grant: Grant,
        token: &str,
        stream: &StreamId,
        now_unix: u64,
    ) -> Result<String, TokenError> {
        let mut parts = token.split('.');
        let (Some(prefix), Some(node), Some(expires), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        if prefix != grant.prefix() {
            return Err(TokenError::Malformed);
        }
        let expires: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
        let tag = hex::decode(tag).map_err(|_| TokenError::Malformed)?;
        if node.is_empty() || expires > now_unix + TOKEN_LIFETIME_SECS {
            return Err(TokenError::Malformed);
        }
        self.mac(grant, node, stream, expires)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadMac)?;
        if expires < now_unix {
            return Err(TokenError::Expired);
        }
        Ok(node.to_owned())
    }
}

impl ClusterKey {
    /// An operator's token for this cluster's admin routes (`vitrine drain`), valid until
    /// `now_unix` + [`TOKEN_LIFETIME_SECS`].
    pub fn issue_admin(&self, now_unix: u64) -> String {
        let expires = now_unix + TOKEN_LIFETIME_SECS;
        let tag = self.admin_mac(expires).finalize().into_bytes();
        format!("{ADMIN_PREFIX}.{expires}.{}", hex::encode(tag))
    }

    fn admin_mac(&self, expires: u64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(format!("admin\n{expires}").as_bytes());
        mac
    }

    /// Checks an operator's token at `now_unix`.
    pub fn verify_admin(&self, token: &str, now_unix: u64) -> Result<(), TokenError> {
        let mut parts = token.split('.');
        let (Some(ADMIN_PREFIX), Some(expires), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let expires: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
        let tag = hex::decode(tag).map_err(|_| TokenError::Malformed)?;
        if expires > now_unix + TOKEN_LIFETIME_SECS {
            return Err(TokenError::Malformed);
        }
        self.admin_mac(expires)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadMac)?;
        if expires < now_unix {
            return Err(TokenError::Expired);
        }
        Ok(())
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
        let t = key(1).issue(Grant::Relay, "node-b", &stream("st_1"), 1_000);
        assert_eq!(
            key(1)
                .verify(Grant::Relay, &t, &stream("st_1"), 1_000)
                .unwrap(),
            "node-b"
        );
        assert_eq!(
            key(1)
                .verify(Grant::Relay, &t, &stream("st_1"), 1_060)
                .unwrap(),
            "node-b"
        );
        assert_eq!(
            key(1).verify(Grant::Relay, &t, &stream("st_1"), 1_061),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_token_is_refused_for_another_stream_or_another_cluster() {
        let t = key(1).issue(Grant::Relay, "node-b", &stream("st_1"), 1_000);
        assert_eq!(
            key(1).verify(Grant::Relay, &t, &stream("st_2"), 1_000),
            Err(TokenError::BadMac)
        );
        assert_eq!(
            key(2).verify(Grant::Relay, &t, &stream("st_1"), 1_000),
            Err(TokenError::BadMac)
        );
    }

    #[test]
    fn tampered_or_malformed_tokens_are_refused() {
        let t = key(1).issue(Grant::Relay, "node-b", &stream("st_1"), 1_000);
        let renamed = t.replace("node-b", "node-c");
        assert_eq!(
            key(1).verify(Grant::Relay, &renamed, &stream("st_1"), 1_000),
            Err(TokenError::BadMac)
        );
        let later = t.replace(".1060.", ".9999.");
        assert_eq!(
            key(1).verify(Grant::Relay, &later, &stream("st_1"), 1_000),
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
                key(1).verify(Grant::Relay, bad, &stream("st_1"), 1_000),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn admin_tokens_verify_only_in_their_cluster_and_lifetime_and_are_not_relay_tokens() {
        let t = key(1).issue_admin(1_000);
        assert_eq!(key(1).verify_admin(&t, 1_030), Ok(()));
        assert_eq!(key(1).verify_admin(&t, 1_061), Err(TokenError::Expired));
        assert_eq!(key(2).verify_admin(&t, 1_000), Err(TokenError::BadMac));
        assert_eq!(
            key(1).verify(Grant::Relay, &t, &stream("st_1"), 1_000),
            Err(TokenError::Malformed)
        );
        let relay = key(1).issue(Grant::Relay, "a", &stream("st_1"), 1_000);
        assert_eq!(
            key(1).verify_admin(&relay, 1_000),
            Err(TokenError::Malformed)
        );
        // Shaped as the other kind (its number of parts), each is still refused by its prefix.
        let (expires, tag) = t.split_once('.').unwrap().1.split_once('.').unwrap();
        let as_relay = format!("vrl1.a.{expires}.{tag}");
        assert_eq!(
            key(1).verify(Grant::Relay, &as_relay, &stream("st_1"), 1_000),
            Err(TokenError::BadMac),
            "an admin MAC is no relay MAC"
        );
        let relay_tail = relay.splitn(3, '.').nth(2).unwrap();
        assert_eq!(
            key(1).verify_admin(&format!("{ADMIN_PREFIX}.{relay_tail}"), 1_000),
            Err(TokenError::BadMac),
            "a relay MAC is no admin MAC"
        );
    }

    #[test]
    fn a_relay_token_places_no_publisher_and_the_other_way_round() {
        let relay = key(1).issue(Grant::Relay, "b", &stream("st_1"), 1_000);
        let placed = key(1).issue(Grant::Placement, "b", &stream("st_1"), 1_000);
        assert_eq!(
            key(1).verify(Grant::Placement, &relay, &stream("st_1"), 1_000),
            Err(TokenError::Malformed)
        );
        let forged = placed.replacen("vpl1", "vrl1", 1);
        assert_eq!(
            key(1).verify(Grant::Relay, &forged, &stream("st_1"), 1_000),
            Err(TokenError::BadMac)
        );
        assert_eq!(
            key(1).verify(Grant::Placement, &placed, &stream("st_1"), 1_000),
            Ok("b".to_owned())
        );
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(ClusterKey::from_secret(&[7; 31]).is_none());
    }
}
