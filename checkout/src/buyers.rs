//! Guest buyers: a display name and a session token (stored hashed), enough to buy, to be named
//! in the chat and to see one's own orders, with no account to create.

use crate::catalog::Catalog;
use crate::error::{CheckoutError, corrupt};
use serde::Serialize;
use sqlx::Row;
use vitrine_core::{BuyerId, Region, Secret};

pub const MAX_DISPLAY_NAME_CHARS: usize = 40;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Buyer {
    pub id: BuyerId,
    pub display_name: String,
}

/// Trims a display name and refuses empty, overlong or control-character names.
pub fn clean_display_name(raw: &str) -> Result<String, CheckoutError> {
    let name = raw.trim();
    if name.is_empty()
        || name.chars().count() > MAX_DISPLAY_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(CheckoutError::Invalid(format!(
            "display_name must be 1 to {MAX_DISPLAY_NAME_CHARS} printable characters"
        )));
    }
    Ok(name.to_owned())
}

impl Catalog {
    /// Creates a guest buyer and returns its session token (shown once).
    pub async fn create_buyer(&self, display_name: &str) -> Result<(Buyer, Secret), CheckoutError> {
        let buyer = Buyer {
            id: BuyerId::generate_in(self.home.as_ref()),
            display_name: clean_display_name(display_name)?,
        };
        let token = Secret::generate(&Region::tag(self.home.as_ref(), "bt"));
        sqlx::query(
            "INSERT INTO buyers (id, display_name, token_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(buyer.id.as_str())
        .bind(&buyer.display_name)
        .bind(token.hash().0)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok((buyer, token))
    }

    pub async fn buyer_by_token(&self, token: &Secret) -> Result<Option<Buyer>, CheckoutError> {
        let row = sqlx::query("SELECT id, display_name FROM buyers WHERE token_hash = $1")
            .bind(token.hash().0)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Buyer {
                id: BuyerId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)?,
                display_name: r.try_get(1)?,
            })
        })
        .transpose()
    }
}
