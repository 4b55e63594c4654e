//! OAuth2 scopes: what a credential may do. Every API route names the one scope it needs; a
//! seller's own API token carries all of them, an app's token only what the seller granted.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One permission. The wire names (`products:read`, ...) are public surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "products:read")]
    ProductsRead,
    #[serde(rename = "products:write")]
    ProductsWrite,
    #[serde(rename = "orders:read")]
    OrdersRead,
    #[serde(rename = "orders:write")]
    OrdersWrite,
    #[serde(rename = "streams:read")]
    StreamsRead,
    #[serde(rename = "streams:write")]
    StreamsWrite,
    #[serde(rename = "webhooks:read")]
    WebhooksRead,
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
    #[serde(rename = "payouts:read")]
    PayoutsRead,
    #[serde(rename = "payouts:write")]
    PayoutsWrite,
}

impl Scope {
    pub const ALL: [Scope; 10] = [
        Scope::ProductsRead,
        Scope::ProductsWrite,
        Scope::OrdersRead,
        Scope::OrdersWrite,
        Scope::StreamsRead,
        Scope::StreamsWrite,
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
        Scope::PayoutsRead,
        Scope::PayoutsWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ProductsRead => "products:read",
            Scope::ProductsWrite => "products:write",
            Scope::OrdersRead => "orders:read",
            Scope::OrdersWrite => "orders:write",
            Scope::StreamsRead => "streams:read",
            Scope::StreamsWrite => "streams:write",
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::PayoutsRead => "payouts:read",
            Scope::PayoutsWrite => "payouts:write",
        }
    }

    pub fn parse(raw: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// What the consent page tells the seller this scope lets the app do.
    pub fn describe(self) -> &'static str {
        match self {
            Scope::ProductsRead => "See your products, prices and stock",
            Scope::ProductsWrite => "Create and change your products, prices and stock",
            Scope::OrdersRead => "See your orders and the buyers' names on them",
            Scope::OrdersWrite => "Fulfil, cancel and refund your orders",
            Scope::StreamsRead => "See your live streams and pinned products",
            Scope::StreamsWrite => "Create streams and pin products to them",
            Scope::WebhooksRead => "See your webhook endpoints and their deliveries",
            Scope::WebhooksWrite => "Add, change and remove webhook endpoints",
            Scope::PayoutsRead => "See your balance and payouts",
            Scope::PayoutsWrite => "Request payouts of your balance",
        }
    }

    /// The write scope includes its read scope (`orders:write` may also read orders).
    fn implied_by(self) -> Option<Scope> {
        match self {
            Scope::ProductsRead => Some(Scope::ProductsWrite),
            Scope::OrdersRead => Some(Scope::OrdersWrite),
            Scope::StreamsRead => Some(Scope::StreamsWrite),
            Scope::WebhooksRead => Some(Scope::WebhooksWrite),
            Scope::PayoutsRead => Some(Scope::PayoutsWrite),
            _ => None,
        }
    }
}

impl utoipa::PartialSchema for Scope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "One permission; a write scope includes its read scope.",
            ))
            .enum_values(Some(Scope::ALL.map(Scope::as_str)))
            .into()
    }
}

impl utoipa::ToSchema for Scope {}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes, written on the wire as RFC 6749's space-separated list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u16);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}`")]
pub struct UnknownScope(pub String);

impl Scopes {
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    /// Parses `products:read orders:write`; an unknown scope is an error, not dropped, so that a
    /// typo in an app's request is seen at once.
    pub fn parse(raw: &str) -> Result<Self, UnknownScope> {
        let mut set = Scopes::default();
        for name in raw.split(' ').filter(|s| !s.is_empty()) {
            let scope = Scope::parse(name).ok_or_else(|| UnknownScope(name.to_owned()))?;
            set.0 |= 1 << scope as u16;
        }
        Ok(set)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn has(self, scope: Scope) -> bool {
        self.0 & (1 << scope as u16) != 0
    }

    /// Whether a holder of these scopes may do what `scope` guards.
    pub fn allows(self, scope: Scope) -> bool {
        self.has(scope) || scope.implied_by().is_some_and(|w| self.has(w))
    }

    /// Whether every scope of `other` is in this set (a refresh may narrow, never widen).
    pub fn contains(self, other: Scopes) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.has(*s))
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |acc, s| acc | (1 << s as u16)))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(" "))
    }
}

impl Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// On the wire, a list of [`Scope`] names.
impl utoipa::PartialSchema for Scopes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(
                utoipa::openapi::schema::RefBuilder::new()
                    .ref_location_from_schema_name(<Scope as utoipa::ToSchema>::name()),
            )
            .into()
    }
}

impl utoipa::ToSchema for Scopes {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            <Scope as utoipa::ToSchema>::name().into(),
            <Scope as utoipa::PartialSchema>::schema(),
        ));
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Scope>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_wire_form() {
        let s = Scopes::parse("orders:write  products:read").unwrap();
        assert_eq!(s.to_string(), "products:read orders:write");
        assert_eq!(Scopes::parse(&s.to_string()).unwrap(), s);
        assert_eq!(
            Scopes::parse("orders:write admin"),
            Err(UnknownScope("admin".into()))
        );
        assert!(Scopes::parse("").unwrap().is_empty());
    }

    #[test]
    fn write_implies_read_and_nothing_else() {
        let s = Scopes::parse("orders:write").unwrap();
        assert!(s.allows(Scope::OrdersRead));
        assert!(s.allows(Scope::OrdersWrite));
        assert!(!s.allows(Scope::ProductsRead));
        let r = Scopes::parse("orders:read").unwrap();
        assert!(!r.allows(Scope::OrdersWrite));
    }

    #[test]
    fn containment_is_per_scope() {
        let all = Scopes::all();
        let some = Scopes::parse("payouts:read streams:write").unwrap();
        assert!(all.contains(some));
        assert!(!some.contains(all));
        assert_eq!(all.iter().count(), Scope::ALL.len());
    }

    #[test]
    fn json_is_a_list_of_names() {
        let s = Scopes::parse("webhooks:write products:read").unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"["products:read","webhooks:write"]"#);
        assert_eq!(serde_json::from_str::<Scopes>(&json).unwrap(), s);
    }
}
