//! Products: a seller's catalog with price and available stock. Every query is scoped by seller,
//! so another seller's product is indistinguishable from one that does not exist.
//!
//! [`Catalog`] is the service of products, guest buyers (`crate::buyers`) and pins
//! (`crate::pins`). The order path reads through it; it knows nothing of orders.

use crate::db::sql;
use crate::error::{CheckoutError, corrupt};
use crate::facts::Facts;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::sync::Arc;
use vitrine_core::Region;
use vitrine_core::time::Clock;
use vitrine_core::{Currency, Money, ProductId, SellerId, Timestamp};

pub const MAX_SKU_CHARS: usize = 64;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 5000;
pub const MAX_URL_CHARS: usize = 2048;
/// Largest stock a product may hold; far above any real shelf, far below overflow.
pub const MAX_STOCK: i64 = 1_000_000_000;
/// Most products listed in one page.
pub const MAX_PAGE: i64 = 200;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// The seller's own code, unique among their products.
    #[schema(max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub sku: String,
    #[schema(max_length = 200)]
    pub title: String,
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: String,
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub image_url: Option<String>,
    pub price: Money,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: i64,
}

/// A partial update. `stock` sets the count; `stock_delta` adds to it atomically (negative to
/// remove), which is what a warehouse feed racing live orders should use.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    #[schema(max_length = 200)]
    pub title: Option<String>,
    #[schema(max_length = 5000)]
    pub description: Option<String>,
    #[schema(max_length = 2048)]
    pub image_url: Option<String>,
    pub price: Option<Money>,
    /// Sets the available count.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: Option<i64>,
    /// Adds to the available count atomically (negative removes); refused if it would go
    /// below zero.
    pub stock_delta: Option<i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Product {
    pub id: ProductId,
    pub seller_id: SellerId,
    pub sku: String,
    pub title: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    pub price: Money,
    /// Units available to buy now (reserved units are already taken out).
    pub stock: i64,
    /// Unix milliseconds (kept for existing clients; `created_at_iso` is the same instant).
    pub created_at: i64,
    /// Unix milliseconds (kept for existing clients; `updated_at_iso` is the same instant).
    pub updated_at: i64,
    pub created_at_iso: Timestamp,
    pub updated_at_iso: Timestamp,
}

fn invalid(msg: impl Into<String>) -> CheckoutError {
    CheckoutError::Invalid(msg.into())
}

fn check_title(title: &str) -> Result<(), CheckoutError> {
    if title.trim().is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err(invalid(format!(
            "title must be 1 to {MAX_TITLE_CHARS} characters"
        )));
    }
    Ok(())
}

/// A product image is loaded by every watch page: it must be `https://` (no mixed content, no
/// credentials in the URL) or a path on our own origin. A protocol-relative `//host/...` or
/// `/\host/...` is neither: browsers read both as another host.
fn check_url(url: &str) -> Result<(), CheckoutError> {
    let refused = || invalid("image_url must be an https:// URL or a path on this server (/...)");
    if url.len() > MAX_URL_CHARS
        || url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '<' || c == '>')
    {
        return Err(refused());
    }
    if let Some(rest) = url.strip_prefix('/') {
        return match rest.chars().next() {
            Some('/' | '\\') => Err(refused()),
            _ => Ok(()),
        };
    }
    let parsed = url::Url::parse(url).map_err(|_| refused())?;
    let ok = parsed.scheme() == "https"
        && parsed.host_str().is_some_and(|h| !h.is_empty())
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && url
            .get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("https://"));
    if ok { Ok(()) } else { Err(refused()) }
}

fn check_stock(stock: i64) -> Result<(), CheckoutError> {
    if !(0..=MAX_STOCK).contains(&stock) {
        return Err(invalid(format!("stock must be 0 to {MAX_STOCK}")));
    }
    Ok(())
}

impl NewProduct {
    fn validate(&self) -> Result<(), CheckoutError> {
        let sku_ok = !self.sku.is_empty()
            && self.sku.len() <= MAX_SKU_CHARS
            && self
                .sku
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !sku_ok {
            return Err(invalid(format!(
                "sku must be 1 to {MAX_SKU_CHARS} characters of A-Z, a-z, 0-9, '-', '_', '.'"
            )));
        }
        check_title(&self.title)?;
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(invalid(format!(
                "description is longer than {MAX_DESCRIPTION_CHARS} characters"
            )));
        }
        if let Some(url) = &self.image_url {
            check_url(url)?;
        }
        self.price.validated().map_err(|e| invalid(e.to_string()))?;
        check_stock(self.stock)
    }
}

pub(crate) const PRODUCT_COLUMNS: &str = "id, seller_id, sku, title, description, image_url, \
     price_amount, currency, stock, created_at, updated_at";

pub(crate) fn product_from_row(r: &AnyRow) -> Result<Product, CheckoutError> {
    product_at(r, 0)
}

/// Reads the product columns ([`PRODUCT_COLUMNS`]) starting at column `o` of a row.
pub(crate) fn product_at(r: &AnyRow, o: usize) -> Result<Product, CheckoutError> {
    let currency: String = r.try_get(o + 7)?;
    Ok(Product {
        id: ProductId::parse(&r.try_get::<String, _>(o)?).map_err(corrupt)?,
        seller_id: SellerId::parse(&r.try_get::<String, _>(o + 1)?).map_err(corrupt)?,
        sku: r.try_get(o + 2)?,
        title: r.try_get(o + 3)?,
        description: r.try_get(o + 4)?,
        image_url: r.try_get(o + 5)?,
        price: Money {
            amount: r.try_get(o + 6)?,
            currency: Currency::parse(&currency).map_err(corrupt)?,
        },
        stock: r.try_get(o + 8)?,
        created_at: r.try_get(o + 9)?,
        updated_at: r.try_get(o + 10)?,
        created_at_iso: Timestamp(r.try_get(o + 9)?),
        updated_at_iso: Timestamp(r.try_get(o + 10)?),
    })
}

/// [`PRODUCT_COLUMNS`] qualified with the table name, for joins.
pub(crate) fn product_columns_qualified() -> String {
    PRODUCT_COLUMNS
        .split(", ")
        .map(|c| format!("products.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// The catalog service; cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    pub(crate) pool: sqlx::AnyPool,
    /// What pins and stock edits tell the rooms.
    pub(crate) facts: Facts,
    /// The region new ids are minted in.
    pub(crate) home: Option<Region>,
    /// Where the catalog's time comes from (pins' ends, edits; tests move it).
    pub(crate) clock: Arc<dyn Clock>,
}

impl Catalog {
    pub(crate) fn new(
        pool: sqlx::AnyPool,
        facts: Facts,
        home: Option<Region>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            pool,
            facts,
            home,
            clock,
        }
    }

    /// Unix milliseconds by the catalog's clock.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}

impl Catalog {
    pub async fn create_product(
        &self,
        seller: &SellerId,
        new: NewProduct,
    ) -> Result<Product, CheckoutError> {
        new.validate()?;
        let now = self.now();
        let product = Product {
            id: ProductId::generate_in(self.home.as_ref()),
            seller_id: seller.clone(),
            sku: new.sku,
            title: new.title.trim().to_owned(),
            description: new.description,
            image_url: new.image_url,
            price: new.price,
            stock: new.stock,
            created_at: now,
            updated_at: now,
            created_at_iso: Timestamp(now),
            updated_at_iso: Timestamp(now),
        };
        let inserted = sqlx::query(
            "INSERT INTO products (id, seller_id, sku, title, description, image_url, \
             price_amount, currency, stock, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        )
        .bind(product.id.as_str())
        .bind(product.seller_id.as_str())
        .bind(&product.sku)
        .bind(&product.title)
        .bind(&product.description)
        .bind(&product.image_url)
        .bind(product.price.amount)
        .bind(product.price.currency.as_str())
        .bind(product.stock)
        .bind(now)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(product),
            Err(e) if is_unique_violation(&e) => Err(CheckoutError::Conflict(format!(
                "a product with sku {} already exists",
                product.sku
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// A product of `seller` (archived ones are gone).
    pub async fn product(
        &self,
        seller: &SellerId,
        id: &ProductId,
    ) -> Result<Product, CheckoutError> {
        let row = sqlx::query(sql(format!(
            "SELECT {PRODUCT_COLUMNS} FROM products \
             WHERE id = $1 AND seller_id = $2 AND archived = 0"
        )))
        .bind(id.as_str())
        .bind(seller.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(product_from_row)
            .transpose()?
            .ok_or(CheckoutError::NotFound("no such product"))
    }

    /// A product by id whoever sells it (the order path).
    pub(crate) async fn any_product(
        &self,
        id: &ProductId,
    ) -> Result<Option<Product>, CheckoutError> {
        let row = sqlx::query(sql(format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1 AND archived = 0"
        )))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(product_from_row).transpose()
    }

    /// A product on sale (not archived), whoever sells it: what buyers may see of it.
    pub async fn public_product(&self, id: &ProductId) -> Result<Option<Product>, CheckoutError> {
        self.any_product(id).await
    }

    /// The seller's products, newest first.
    pub async fn products_of(&self, seller: &SellerId) -> Result<Vec<Product>, CheckoutError> {
        let rows = sqlx::query(sql(format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE seller_id = $1 AND archived = 0 \
             ORDER BY created_at DESC, id LIMIT $2"
        )))
        .bind(seller.as_str())
        .bind(MAX_PAGE)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(product_from_row).collect()
    }

    pub async fn update_product(
        &self,
        seller: &SellerId,
        id: &ProductId,
        patch: ProductPatch,
    ) -> Result<Product, CheckoutError> {
        let current = self.product(seller, id).await?;
        if let Some(t) = &patch.title {
            check_title(t)?;
        }
        if let Some(d) = &patch.description
            && d.chars().count() > MAX_DESCRIPTION_CHARS
        {
            return Err(invalid("description too long"));
        }
        if let Some(u) = &patch.image_url {
            check_url(u)?;
        }
        if let Some(p) = &patch.price {
            p.validated().map_err(|e| invalid(e.to_string()))?;
            if p.currency != current.price.currency {
                return Err(invalid(
                    "a product's currency cannot change; create another product",
                ));
            }
        }
        if patch.stock.is_some() && patch.stock_delta.is_some() {
            return Err(invalid("give stock or stock_delta, not both"));
        }
        if let Some(s) = patch.stock {
            check_stock(s)?;
        }
        // A range check, not `abs()`: i64::MIN has no absolute value.
        if let Some(d) = patch.stock_delta
            && !(-MAX_STOCK..=MAX_STOCK).contains(&d)
        {
            return Err(invalid("stock_delta out of range"));
        }
        let mut tx = self.pool.begin().await?;
        // Stock first: it is the statement that can fail, and on SQLite a write first takes the
        // write lock before anything is read.
        if patch.stock.is_some() || patch.stock_delta.is_some() {
            let (set, delta) = (patch.stock, patch.stock_delta.unwrap_or(0));
            let done = sqlx::query(
                "UPDATE products SET stock = COALESCE($1, stock + $2), updated_at = $3 \
                 WHERE id = $4 AND seller_id = $5 AND COALESCE($1, stock + $2) BETWEEN 0 AND $6",
            )
            .bind(set)
            .bind(delta)
            .bind(self.now())
            .bind(id.as_str())
            .bind(seller.as_str())
            .bind(MAX_STOCK)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(CheckoutError::Conflict(
                    "stock would fall below zero (units are reserved or sold)".into(),
                ));
            }
        }
        sqlx::query(
            "UPDATE products SET title = COALESCE($1, title), \
             description = COALESCE($2, description), image_url = COALESCE($3, image_url), \
             price_amount = COALESCE($4, price_amount), updated_at = $5 \
             WHERE id = $6 AND seller_id = $7",
        )
        .bind(patch.title.map(|t| t.trim().to_owned()))
        .bind(patch.description)
        .bind(patch.image_url)
        .bind(patch.price.map(|p| p.amount))
        .bind(self.now())
        .bind(id.as_str())
        .bind(seller.as_str())
        .execute(&mut *tx)
        .await?;
        let facts = crate::pins::stock_facts(&mut tx, id).await?;
        self.facts.commit(tx, facts, &[], self.now()).await?;
        self.product(seller, id).await
    }

    /// Archives a product: it can no longer be bought or pinned; its orders keep pointing at it.
    pub async fn archive_product(
        &self,
        seller: &SellerId,
        id: &ProductId,
    ) -> Result<(), CheckoutError> {
        let done = sqlx::query(
            "UPDATE products SET archived = 1, updated_at = $1 \
             WHERE id = $2 AND seller_id = $3 AND archived = 0",
        )
        .bind(self.now())
        .bind(id.as_str())
        .bind(seller.as_str())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(CheckoutError::NotFound("no such product"));
        }
        self.unpin_product(id).await?;
        Ok(())
    }
}

/// Puts `units` back in a product's stock (an order that did not sell, an auction nobody won).
pub(crate) async fn put_back(
    tx: &mut crate::ledger::Tx<'_>,
    product: &ProductId,
    units: i64,
    now: i64,
) -> Result<(), CheckoutError> {
    sqlx::query("UPDATE products SET stock = stock + $1, updated_at = $2 WHERE id = $3")
        .bind(units)
        .bind(now)
        .bind(product.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
