//! Persistence of sellers and streams through sqlx's Any driver, so that the same queries run on
//! SQLite (the embedded default, WAL mode) and PostgreSQL (`--database-url postgres://...`).
//! Each backend has its own migration folder, kept in step.

use async_trait::async_trait;
use serde::Serialize;
use sqlx::{AnyPool, Row};
use std::time::{SystemTime, UNIX_EPOCH};
use vitrine_checkout::Backend;
use vitrine_checkout::webhooks::{EventType, outbox};
use vitrine_core::{
    DirectoryError, PinId, ProductId, Region, Secret, SecretHash, SellerId, StreamDirectory,
    StreamId, StreamRecord, StreamState,
};

/// Longest stream title accepted.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest seller name accepted.
pub const MAX_NAME_CHARS: usize = 100;
/// Most streams listed in one response.
pub const MAX_LIST: i64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Connect(#[from] vitrine_checkout::DbError),
    #[error(transparent)]
    Platform(#[from] vitrine_platform::PlatformError),
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
}

/// A seller as the API sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Seller {
    pub id: SellerId,
    pub name: String,
}

/// A stream row.
#[derive(Debug, Clone)]
pub struct StreamRow {
    pub id: StreamId,
    pub seller_id: SellerId,
    pub title: String,
    pub state: StreamState,
    pub stream_key_hash: SecretHash,
    pub created_at: i64,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// This node's region in a deployment of several: sellers, their tokens and streams made
    /// here carry it (see `vitrine_core::region`).
    home: Option<Region>,
}

/// A seller's or operator's name given to the CLI, trimmed: 1 to [`MAX_NAME_CHARS`] characters.
pub fn checked_name(raw: &str) -> anyhow::Result<&str> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        anyhow::bail!("--name must be 1 to {MAX_NAME_CHARS} characters");
    }
    Ok(name)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A seller from a row of `SELECT id, name`.
fn seller_from_row(r: &sqlx::any::AnyRow) -> Result<Seller, StoreError> {
    Ok(Seller {
        id: SellerId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)?,
        name: r.try_get(1)?,
    })
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl Store {
    /// Connects and runs the migrations: the binary's own (sellers, streams) and checkout's.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, None).await
    }

    /// [`Store::connect`] with a pool of at most `max_connections` (default: the driver's).
    pub async fn connect_with(url: &str, max_connections: Option<u32>) -> Result<Self, StoreError> {
        let (pool, backend) = vitrine_checkout::db::connect_with(url, max_connections).await?;
        // The same SQL on both engines (see vitrine_core::migrations).
        vitrine_core::migrations::merged(&sqlx::migrate!("./migrations/common"), None)?
            .run(&pool)
            .await?;
        vitrine_checkout::db::migrate(&pool, backend).await?;
        vitrine_platform::Platform::migrate(&pool, backend == Backend::Sqlite).await?;
        Ok(Self { pool, home: None })
    }

    /// Tags the sellers, tokens and streams made from now on with `home`.
    pub fn with_home(mut self, home: Option<Region>) -> Self {
        self.home = home;
        self
    }

    /// A new seller account token, tagged with this node's region.
    fn seller_token(&self) -> Secret {
        Secret::generate(&Region::tag(self.home.as_ref(), "vt"))
    }

    /// The pool, shared with checkout.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Creates a seller and returns it with its API token (shown once, stored hashed).
    pub async fn create_seller(&self, name: &str) -> Result<(Seller, Secret), StoreError> {
        let seller = Seller {
            id: SellerId::generate_in(self.home.as_ref()),
            name: name.to_owned(),
        };
        let token = self.seller_token();
        sqlx::query(
            "INSERT INTO sellers (id, name, api_token_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(seller.id.as_str())
        .bind(&seller.name)
        .bind(token.hash().0)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok((seller, token))
    }

    /// Replaces a seller's API token (the old one stops working) and returns the new one.
    pub async fn rotate_seller_token(&self, seller: &SellerId) -> Result<Secret, StoreError> {
        let token = self.seller_token();
        sqlx::query("UPDATE sellers SET api_token_hash = $1 WHERE id = $2")
            .bind(token.hash().0)
            .bind(seller.as_str())
            .execute(&self.pool)
            .await?;
        Ok(token)
    }

    /// The seller owning an API token, if any.
    pub async fn seller_by_token(&self, token: &Secret) -> Result<Option<Seller>, StoreError> {
        let row = sqlx::query("SELECT id, name FROM sellers WHERE api_token_hash = $1")
            .bind(token.hash().0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(seller_from_row).transpose()
    }

    /// A seller by id.
    pub async fn seller(&self, id: &SellerId) -> Result<Option<Seller>, StoreError> {
        let row = sqlx::query("SELECT id, name FROM sellers WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(seller_from_row).transpose()
    }

    /// The sandbox account of `owner` that test-mode keys act on, created on first use. It has
    /// no API token of its own (its token hash is of a secret nobody keeps).
    pub async fn sandbox_of(&self, owner: &Seller) -> Result<Seller, StoreError> {
        let find = || async {
            let row = sqlx::query("SELECT id, name FROM sellers WHERE sandbox_of = $1")
                .bind(owner.id.as_str())
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(seller_from_row).transpose()
        };
        if let Some(s) = find().await? {
            return Ok(s);
        }
        let sandbox = Seller {
            id: SellerId::generate_in(self.home.as_ref()),
            name: format!("{} (test)", owner.name),
        };
        let inserted = sqlx::query(
            "INSERT INTO sellers (id, name, api_token_hash, created_at, sandbox_of) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(sandbox.id.as_str())
        .bind(&sandbox.name)
        .bind(Secret::generate("vt").hash().0)
        .bind(now_ms())
        .bind(owner.id.as_str())
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(sandbox),
            // Another request created it first (the unique index on sandbox_of): use that one.
            Err(e) => find().await?.ok_or(StoreError::Database(e)),
        }
    }

    /// Creates a stream for `seller` and returns it with its stream key (shown once).
    pub async fn create_stream(
        &self,
        seller: &SellerId,
        title: &str,
    ) -> Result<(StreamRow, Secret), StoreError> {
        let key = Secret::generate("sk");
        let now = now_ms();
        let row = StreamRow {
            id: StreamId::generate_in(self.home.as_ref()),
            seller_id: seller.clone(),
            title: title.to_owned(),
            state: StreamState::Idle,
            stream_key_hash: key.hash(),
            created_at: now,
        };
        sqlx::query(
            "INSERT INTO streams (id, seller_id, title, stream_key_hash, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(row.id.as_str())
        .bind(row.seller_id.as_str())
        .bind(&row.title)
        .bind(&row.stream_key_hash.0)
        .bind(row.state.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok((row, key))
    }

    fn stream_from_row(r: &sqlx::any::AnyRow) -> Result<StreamRow, StoreError> {
        let state: String = r.try_get(3)?;
        Ok(StreamRow {
            id: StreamId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)?,
            seller_id: SellerId::parse(&r.try_get::<String, _>(1)?).map_err(corrupt)?,
            title: r.try_get(2)?,
            state: StreamState::parse(&state).ok_or_else(|| corrupt(state))?,
            stream_key_hash: SecretHash(r.try_get(4)?),
            created_at: r.try_get(5)?,
        })
    }

    /// A stream by id, whoever owns it (callers check ownership).
    pub async fn stream(&self, id: &StreamId) -> Result<Option<StreamRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, seller_id, title, state, stream_key_hash, created_at \
             FROM streams WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::stream_from_row).transpose()
    }

    /// The newest streams of a seller.
    pub async fn streams_of(&self, seller: &SellerId) -> Result<Vec<StreamRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, seller_id, title, state, stream_key_hash, created_at \
             FROM streams WHERE seller_id = $1 ORDER BY created_at DESC LIMIT $2",
        )
        .bind(seller.as_str())
        .bind(MAX_LIST)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::stream_from_row).collect()
    }

    /// Moves a stream to `state`; going live or ending is also a webhook event, written in the
    /// same transaction.
    pub async fn set_stream_state(
        &self,
        id: &StreamId,
        state: StreamState,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE streams SET state = $1, updated_at = $2 WHERE id = $3 AND state <> $1 \
             RETURNING seller_id, title",
        )
        .bind(state.as_str())
        .bind(now_ms())
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let event = match state {
            StreamState::Live => Some(EventType::StreamStarted),
            StreamState::Ended => Some(EventType::StreamEnded),
            StreamState::Idle => None,
        };
        if let (Some(row), Some(kind)) = (row, event) {
            let seller = SellerId::parse(&row.try_get::<String, _>(0)?).map_err(corrupt)?;
            let title: String = row.try_get(1)?;
            let data =
                serde_json::json!({ "stream_id": id, "title": title, "state": state.as_str() });
            outbox::record(&mut tx, &seller, kind, &data).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes a stream (its orders and pins keep their history under its id).
    pub async fn delete_stream(&self, id: &StreamId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM streams WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives a stream a new key and returns it (shown once); the old key is refused from now
    /// on. `None` when the stream is gone.
    pub async fn rotate_stream_key(&self, id: &StreamId) -> Result<Option<Secret>, StoreError> {
        let key = Secret::generate("sk");
        let done =
            sqlx::query("UPDATE streams SET stream_key_hash = $1, updated_at = $2 WHERE id = $3")
                .bind(key.hash().0)
                .bind(now_ms())
                .bind(id.as_str())
                .execute(&self.pool)
                .await?;
        Ok((done.rows_affected() > 0).then_some(key))
    }

    /// The flash sale an order would buy through, when it has a per-buyer limit: its pin and
    /// that limit. Reads checkout's pins the way checkout picks one (the named pin, else the
    /// stream's active pin), for the same product; checkout still decides the order itself.
    pub async fn sale_limit(
        &self,
        product: &ProductId,
        pin: Option<&PinId>,
        stream: Option<&StreamId>,
    ) -> Result<Option<(PinId, u32)>, StoreError> {
        const COLUMNS: &str = "SELECT id, per_buyer_limit FROM pins";
        let row = match (pin, stream) {
            (Some(pin), _) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{COLUMNS} WHERE id = $1 AND product_id = $2"
                )))
                .bind(pin.as_str())
                .bind(product.as_str())
                .fetch_optional(&self.pool)
                .await?
            }
            (None, Some(stream)) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{COLUMNS} WHERE stream_id = $1 AND product_id = $2 AND active = 1"
                )))
                .bind(stream.as_str())
                .bind(product.as_str())
                .fetch_optional(&self.pool)
                .await?
            }
            (None, None) => None,
        };
        let Some(row) = row else { return Ok(None) };
        let Some(limit) = row.try_get::<Option<i64>, _>(1)? else {
            return Ok(None);
        };
        let pin = PinId::parse(&row.try_get::<String, _>(0)?).map_err(corrupt)?;
        Ok(Some((pin, u32::try_from(limit).map_err(corrupt)?)))
    }

    /// Takes `quantity` units of a sale for a client address, unless that would pass `cap`;
    /// whether it was taken. One statement, so concurrent orders cannot both squeeze in.
    pub async fn take_address_units(
        &self,
        pin: &PinId,
        address: &str,
        quantity: u32,
        cap: u64,
    ) -> Result<bool, StoreError> {
        if u64::from(quantity) > cap {
            return Ok(false);
        }
        let done = sqlx::query(
            "INSERT INTO pin_addresses (pin_id, address, quantity) VALUES ($1, $2, $3) \
             ON CONFLICT (pin_id, address) DO UPDATE \
             SET quantity = pin_addresses.quantity + excluded.quantity \
             WHERE pin_addresses.quantity + excluded.quantity <= $4",
        )
        .bind(pin.as_str())
        .bind(address)
        .bind(i64::from(quantity))
        .bind(i64::try_from(cap).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives back units taken for an order that did not happen (refused, or a replay).
    pub async fn give_back_address_units(
        &self,
        pin: &PinId,
        address: &str,
        quantity: u32,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE pin_addresses SET quantity = quantity - $1 \
             WHERE pin_id = $2 AND address = $3 AND quantity >= $1",
        )
        .bind(i64::from(quantity))
        .bind(pin.as_str())
        .bind(address)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The oldest seller with that name, if any (the demo reuses its seller across restarts).
    pub async fn seller_by_name(&self, name: &str) -> Result<Option<SellerId>, StoreError> {
        let row = sqlx::query("SELECT id FROM sellers WHERE name = $1 ORDER BY created_at LIMIT 1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| SellerId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt))
            .transpose()
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl StreamDirectory for Store {
    async fn find(&self, id: &StreamId) -> Result<Option<StreamRecord>, DirectoryError> {
        let row = self
            .stream(id)
            .await
            .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
        Ok(row.map(|r| StreamRecord {
            id: r.id,
            seller_id: r.seller_id,
            title: r.title,
            state: r.state,
            stream_key_hash: r.stream_key_hash,
        }))
    }

    async fn set_state(&self, id: &StreamId, state: StreamState) -> Result<(), DirectoryError> {
        self.set_stream_state(id, state)
            .await
            .map_err(|e| DirectoryError::Unavailable(e.to_string()))
    }
}
