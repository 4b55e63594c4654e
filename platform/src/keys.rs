//! Sellers' API keys: named bearer secrets for a seller's own systems, in `live` mode (the
//! seller's real data) or `test` mode (a sandbox account of its own, so that an integration can
//! be tried without touching real orders). Shown once, stored hashed, listed by a hint,
//! rolled (the old secret stops working at once) or revoked.

use crate::scope::Scopes;
use crate::{Platform, PlatformError, corrupt, now, valid_name};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use vitrine_core::{ApiKeyId, Region, Secret, SellerId, Timestamp};

pub const MAX_KEY_NAME_CHARS: usize = 100;
/// Most keys (not revoked) one account may hold.
pub const MAX_KEYS_PER_OWNER: i64 = 100;
/// `last_used_at` is written at most this often per key, so that reads stay reads.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// `live` keys reach the seller's real data, `test` keys the seller's sandbox account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }

    fn parse(raw: &str) -> Result<Self, PlatformError> {
        match raw {
            "test" => Ok(Mode::Test),
            "live" => Ok(Mode::Live),
            other => Err(corrupt(format!("key mode {other}"))),
        }
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub mode: Mode,
    /// Restricts the key; all scopes when absent.
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::Scope>>, min_items = 1)]
    pub scopes: Option<Scopes>,
}

/// A key as its owner sees it: never the secret, only a hint to recognise it by.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub name: String,
    pub mode: Mode,
    /// The first and last characters of the secret (`vk_test_1f2e…9a0b`).
    pub hint: String,
    #[schema(inline)]
    pub scopes: Scopes,
    pub created_at: Timestamp,
    /// Null until the key is first used.
    #[schema(required = true)]
    pub last_used_at: Option<Timestamp>,
}

/// Who a presented key acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrincipal {
    pub key: ApiKeyId,
    /// The account the key belongs to.
    pub owner: SellerId,
    /// The seller whose data the key reaches: the owner, or the owner's sandbox in test mode.
    pub seller: SellerId,
    pub mode: Mode,
    pub scopes: Scopes,
}

const COLUMNS: &str = "id, name, mode, key_hint, scopes, created_at, last_used_at, \
                       owner_seller_id, seller_id";

fn key_from_row(r: &AnyRow) -> Result<(ApiKey, SellerId, SellerId), PlatformError> {
    let key = ApiKey {
        id: ApiKeyId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)?,
        name: r.try_get(1)?,
        mode: Mode::parse(&r.try_get::<String, _>(2)?)?,
        hint: r.try_get(3)?,
        scopes: Scopes::parse(&r.try_get::<String, _>(4)?).map_err(corrupt)?,
        created_at: Timestamp(r.try_get(5)?),
        last_used_at: r.try_get::<Option<i64>, _>(6)?.map(Timestamp),
    };
    let owner = SellerId::parse(&r.try_get::<String, _>(7)?).map_err(corrupt)?;
    let seller = SellerId::parse(&r.try_get::<String, _>(8)?).map_err(corrupt)?;
    Ok((key, owner, seller))
}

fn new_secret(mode: Mode, home: Option<&Region>) -> (Secret, String) {
    let secret = Secret::generate(&Region::tag(home, &format!("vk_{}", mode.as_str())));
    let raw = secret.expose();
    let hint = format!("{}…{}", &raw[..12], &raw[raw.len() - 4..]);
    (secret, hint)
}

impl Platform {
    /// Creates a key for `owner` acting on `seller` (the owner, or its sandbox for test mode;
    /// the caller decides which, since sellers live in the server's store).
    pub async fn create_key(
        &self,
        owner: &SellerId,
        seller: &SellerId,
        new: NewApiKey,
    ) -> Result<(ApiKey, Secret), PlatformError> {
        let name = valid_name(&new.name, MAX_KEY_NAME_CHARS, "name")?;
        let scopes = new.scopes.unwrap_or_else(Scopes::all);
        if scopes.is_empty() {
            return Err(PlatformError::Invalid(
                "a key needs at least one scope".into(),
            ));
        }
        let count: i64 = sqlx::query(
            "SELECT COUNT(*) FROM api_keys WHERE owner_seller_id = $1 AND revoked_at IS NULL",
        )
        .bind(owner.as_str())
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        if count >= MAX_KEYS_PER_OWNER {
            return Err(PlatformError::Invalid(format!(
                "an account may hold at most {MAX_KEYS_PER_OWNER} keys"
            )));
        }
        let (secret, hint) = new_secret(new.mode, self.home.as_ref());
        let key = ApiKey {
            id: ApiKeyId::generate(),
            name,
            mode: new.mode,
            hint,
            scopes,
            created_at: Timestamp::now(),
            last_used_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, owner_seller_id, seller_id, name, mode, key_hash, key_hint, \
             scopes, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(key.id.as_str())
        .bind(owner.as_str())
        .bind(seller.as_str())
        .bind(&key.name)
        .bind(key.mode.as_str())
        .bind(secret.hash().0)
        .bind(&key.hint)
        .bind(key.scopes.to_string())
        .bind(key.created_at.millis())
        .execute(&self.pool)
        .await?;
        Ok((key, secret))
    }

    /// `owner`'s keys that are not revoked, oldest first.
    pub async fn keys_of(&self, owner: &SellerId) -> Result<Vec<ApiKey>, PlatformError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE owner_seller_id = $1 AND revoked_at IS NULL \
             ORDER BY created_at, id"
        )))
        .bind(owner.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| key_from_row(r).map(|(k, _, _)| k))
            .collect()
    }

    async fn key_of(&self, owner: &SellerId, id: &ApiKeyId) -> Result<ApiKey, PlatformError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE id = $1 AND owner_seller_id = $2 \
             AND revoked_at IS NULL"
        )))
        .bind(id.as_str())
        .bind(owner.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(PlatformError::NotFound("no such api key"))?;
        key_from_row(&row).map(|(k, _, _)| k)
    }

    /// Gives a key a new secret (returned once); the old secret stops working at once.
    pub async fn roll_key(
        &self,
        owner: &SellerId,
        id: &ApiKeyId,
    ) -> Result<(ApiKey, Secret), PlatformError> {
        let mut key = self.key_of(owner, id).await?;
        let (secret, hint) = new_secret(key.mode, self.home.as_ref());
        sqlx::query("UPDATE api_keys SET key_hash = $1, key_hint = $2 WHERE id = $3")
            .bind(secret.hash().0)
            .bind(&hint)
            .bind(key.id.as_str())
            .execute(&self.pool)
            .await?;
        key.hint = hint;
        Ok((key, secret))
    }

    pub async fn revoke_key(&self, owner: &SellerId, id: &ApiKeyId) -> Result<(), PlatformError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND owner_seller_id = $3 \
             AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(id.as_str())
        .bind(owner.as_str())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(PlatformError::NotFound("no such api key"));
        }
        Ok(())
    }

    /// The principal of a presented key, if it is a live (not revoked) one.
    pub async fn key_principal(
        &self,
        secret: &Secret,
    ) -> Result<Option<KeyPrincipal>, PlatformError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
        )))
        .bind(secret.hash().0)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let (key, owner, seller) = key_from_row(&row)?;
        let now = now();
        if key
            .last_used_at
            .is_none_or(|t| now - t.millis() >= LAST_USED_GRANULARITY_MS)
        {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(key.id.as_str())
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(KeyPrincipal {
            key: key.id,
            owner,
            seller,
            mode: key.mode,
            scopes: key.scopes,
        }))
    }
}
