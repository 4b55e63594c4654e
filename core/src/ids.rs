//! Identifier newtypes, validated once at the edge so that the rest of the code never handles a
//! bare string that might contain a path separator, a quote or a megabyte of junk.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("identifier is empty")]
    Empty,
    #[error("identifier is longer than {max} characters")]
    TooLong { max: usize },
    #[error("identifier may contain only a-z, 0-9, '-' and '_'")]
    BadCharacter,
}

/// Longest identifier accepted from the network; ours are 22 characters, operators may pick
/// readable ones for demos.
const MAX_ID_LEN: usize = 64;

fn validate(raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if raw.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { max: MAX_ID_LEN });
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(IdError::BadCharacter);
    }
    Ok(())
}

/// A random identifier: a short prefix naming the kind plus 12 random bytes in hex, so an id seen
/// in a log says what it identifies and cannot be guessed. For records that need no id type of
/// their own (ledger entries, payouts, webhook endpoints and messages).
pub fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// An identifier of the same shape as [`random_id`] whose first six bytes are the time it was
/// made (Unix milliseconds, big-endian) and whose last six are random: ids made one after the
/// other sort one after the other, so a table keyed by them grows at its end instead of
/// touching a random page of its index per row. For records written many per second (orders,
/// ledger entries); an id that must not be guessed (a capability) stays [`random_id`].
pub fn ordered_id(prefix: &str) -> String {
    ordered_id_at(prefix, crate::Timestamp::now().millis())
}

fn ordered_id_at(prefix: &str, unix_ms: i64) -> String {
    let mut bytes = [0u8; 12];
    bytes[..6].copy_from_slice(&unix_ms.max(0).to_be_bytes()[2..]);
    rand::rng().fill_bytes(&mut bytes[6..]);
    format!("{prefix}_{}", hex::encode(bytes))
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// A fresh random identifier.
            pub fn generate() -> Self {
                Self(random_id($prefix))
            }

            /// A fresh random identifier tagged with its home region, when there is one.
            pub fn generate_in(home: Option<&crate::Region>) -> Self {
                Self(random_id(&crate::Region::tag(home, $prefix)))
            }

            /// A fresh identifier that sorts after those made before it (see [`ordered_id`]),
            /// tagged with its home region, when there is one.
            pub fn generate_ordered_in(home: Option<&crate::Region>) -> Self {
                Self(ordered_id(&crate::Region::tag(home, $prefix)))
            }

            /// Validates an identifier received from outside.
            pub fn parse(raw: &str) -> Result<Self, IdError> {
                validate(raw)?;
                Ok(Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::schema::string(concat!("An identifier (`", $prefix, "_...`)."))
            }
        }

        impl utoipa::ToSchema for $name {}

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(raw: String) -> Result<Self, IdError> {
                validate(&raw)?;
                Ok(Self(raw))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// One live stream: the unit that has a publisher, a router and viewers.
    StreamId,
    "st"
);
id_type!(
    /// One seller account (a tenant): owns streams and, later, products and orders.
    SellerId,
    "sl"
);
id_type!(
    /// One product in a seller's catalog.
    ProductId,
    "pr"
);
id_type!(
    /// One guest buyer (a session token and a display name).
    BuyerId,
    "by"
);
id_type!(
    /// One order: a reservation of stock that a payment turns into a sale.
    OrderId,
    "or"
);
id_type!(
    /// One pin of a product to a stream (a flash sale when it carries a sale price or cap).
    PinId,
    "pn"
);
id_type!(
    /// One third-party app registered in the developer portal (its OAuth2 `client_id`).
    AppId,
    "ap"
);
id_type!(
    /// One API key of a seller (the key itself is a secret; this names it in lists and logs).
    ApiKeyId,
    "ak"
);
id_type!(
    /// One OAuth2 grant: a seller's consent to one app, which its tokens descend from.
    GrantId,
    "gr"
);
id_type!(
    /// One WHIP or WHEP session resource (the `Location` a client PATCHes and DELETEs).
    SessionId,
    "ss"
);
id_type!(
    /// One live auction of a pinned product: bids in the room's currency, a hammer, a winner.
    AuctionId,
    "au"
);
id_type!(
    /// One of the platform's operators (the cluster page, draining nodes), never a seller.
    OperatorId,
    "op"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_ids_sort_by_time_and_keep_the_random_shape() {
        let early = ordered_id_at("or", 1_764_640_000_000);
        let later = ordered_id_at("or", 1_764_640_000_001);
        let same_ms = ordered_id_at("or", 1_764_640_000_001);
        assert!(early < later, "{early} {later}");
        assert_ne!(later, same_ms, "random within a millisecond");
        assert_eq!(early.len(), random_id("or").len());
        assert_eq!(&early[3..15], "019adcbd8800", "the time, in hex");
        let id = OrderId::generate_ordered_in(None);
        assert_eq!(OrderId::parse(id.as_str()), Ok(id.clone()));
        assert!(id > OrderId::parse(&early).unwrap());
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = StreamId::generate();
        let b = StreamId::generate();
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("st_"));
        assert_eq!(StreamId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn hostile_ids_are_refused() {
        assert_eq!(StreamId::parse(""), Err(IdError::Empty));
        assert_eq!(StreamId::parse("../etc"), Err(IdError::BadCharacter));
        assert_eq!(StreamId::parse("Upper"), Err(IdError::BadCharacter));
        assert_eq!(
            StreamId::parse(&"a".repeat(65)),
            Err(IdError::TooLong { max: 64 })
        );
        assert!(serde_json::from_str::<SellerId>("\"a b\"").is_err());
    }
}
