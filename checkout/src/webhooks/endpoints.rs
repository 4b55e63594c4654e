//! Sellers' webhook endpoints: where events go, which ones, and the signing secret (shown once
//! when made or rotated; after a rotation the previous secret keeps signing for a day so that
//! receivers can switch without losing a message). Also the delivery log and manual replay.

use super::Webhooks;
use super::events::EventType;
use super::signature::SigningSecret;
use crate::error::{CheckoutError, corrupt};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use vitrine_core::ids::random_id;
use vitrine_core::{SellerId, Timestamp};

pub const MAX_ENDPOINTS_PER_SELLER: i64 = 20;
pub const MAX_URL_CHARS: usize = 2048;
pub const MAX_DESCRIPTION_CHARS: usize = 200;
/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_OVERLAP_MS: i64 = 24 * 3600 * 1000;
/// Most deliveries listed in one page.
pub const MAX_LOG_PAGE: i64 = 100;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// https, to a public host
    #[schema(max_length = 2048)]
    pub url: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub description: String,
    /// Empty or absent: every event.
    #[serde(default)]
    pub event_types: Vec<EventType>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    /// https, to a public host
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[schema(max_length = 200)]
    pub description: Option<String>,
    pub event_types: Option<Vec<EventType>>,
    /// `enabled` turns a disabled endpoint back on.
    pub status: Option<EndpointStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    Enabled,
    Disabled,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub description: String,
    /// Empty: every event.
    pub event_types: Vec<EventType>,
    pub status: EndpointStatus,
    /// Why the endpoint was disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
}

/// One delivery of one event to one endpoint, with its attempts so far.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// The webhook-id receivers de-duplicate by
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<Timestamp>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub updated_at: Timestamp,
}

/// Which destinations an endpoint may have (a deployment's policy, from its configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetPolicy {
    /// Allow `http://` and private, loopback and link-local hosts (development, tests).
    pub allow_private: bool,
}

impl TargetPolicy {
    /// Checks an endpoint URL: https to a public host, unless private targets are allowed.
    pub fn check(&self, raw: &str) -> Result<(), CheckoutError> {
        let bad = |why: &str| CheckoutError::Invalid(format!("url: {why}"));
        if raw.len() > MAX_URL_CHARS {
            return Err(bad("too long"));
        }
        let url = url::Url::parse(raw).map_err(|_| bad("not an absolute URL"))?;
        let host = url.host().ok_or_else(|| bad("no host"))?;
        let private = match host {
            url::Host::Domain(d) => {
                d == "localhost" || d.ends_with(".localhost") || d.ends_with(".internal")
            }
            url::Host::Ipv4(ip) => super::resolver::is_private_ip(ip.into()),
            url::Host::Ipv6(ip) => super::resolver::is_private_ip(ip.into()),
        };
        match url.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            _ => return Err(bad("must be https")),
        }
        if private && !self.allow_private {
            return Err(bad(
                "private, loopback and link-local hosts are not allowed",
            ));
        }
        Ok(())
    }
}

const COLUMNS: &str = "id, url, description, event_types, status, disabled_reason, created_at";

fn endpoint_from_row(r: &AnyRow) -> Result<Endpoint, CheckoutError> {
    Ok(Endpoint {
        id: r.try_get(0)?,
        url: r.try_get(1)?,
        description: r.try_get(2)?,
        event_types: serde_json::from_str(&r.try_get::<String, _>(3)?).map_err(corrupt)?,
        status: match r.try_get::<String, _>(4)?.as_str() {
            "enabled" => EndpointStatus::Enabled,
            "disabled" => EndpointStatus::Disabled,
            other => return Err(corrupt(format!("endpoint status {other}"))),
        },
        disabled_reason: r.try_get(5)?,
        created_at: Timestamp(r.try_get(6)?),
    })
}

fn check_description(d: &str) -> Result<(), CheckoutError> {
    if d.chars().count() > MAX_DESCRIPTION_CHARS || d.chars().any(char::is_control) {
        return Err(CheckoutError::Invalid(format!(
            "description: at most {MAX_DESCRIPTION_CHARS} printable characters"
        )));
    }
    Ok(())
}

fn types_json(types: &[EventType]) -> Result<String, CheckoutError> {
    let mut t = types.to_vec();
    t.sort_by_key(|e| e.as_str());
    t.dedup();
    serde_json::to_string(&t).map_err(corrupt)
}

impl Webhooks {
    /// Adds an endpoint; returns it with its signing secret (shown once).
    pub async fn create_endpoint(
        &self,
        seller: &SellerId,
        new: NewEndpoint,
    ) -> Result<(Endpoint, SigningSecret), CheckoutError> {
        self.targets.check(&new.url)?;
        check_description(&new.description)?;
        let count: i64 = sqlx::query(
            "SELECT COUNT(*) FROM webhook_endpoints WHERE seller_id = $1 AND deleted_at IS NULL",
        )
        .bind(seller.as_str())
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        if count >= MAX_ENDPOINTS_PER_SELLER {
            return Err(CheckoutError::Invalid(format!(
                "at most {MAX_ENDPOINTS_PER_SELLER} webhook endpoints"
            )));
        }
        let secret = SigningSecret::generate();
        let now = self.now();
        let id = random_id("we");
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, seller_id, url, description, event_types, secret, \
             status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'enabled', $7, $7)",
        )
        .bind(&id)
        .bind(seller.as_str())
        .bind(&new.url)
        .bind(&new.description)
        .bind(types_json(&new.event_types)?)
        .bind(self.secrets.seal(&secret.expose()))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok((self.endpoint(seller, &id).await?, secret))
    }

    pub async fn endpoint(&self, seller: &SellerId, id: &str) -> Result<Endpoint, CheckoutError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1 AND seller_id = $2 \
             AND deleted_at IS NULL"
        )))
        .bind(id)
        .bind(seller.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(CheckoutError::NotFound("no such webhook endpoint"))?;
        endpoint_from_row(&row)
    }

    pub async fn endpoints_of(&self, seller: &SellerId) -> Result<Vec<Endpoint>, CheckoutError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM webhook_endpoints WHERE seller_id = $1 AND deleted_at IS NULL \
             ORDER BY created_at, id"
        )))
        .bind(seller.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    pub async fn update_endpoint(
        &self,
        seller: &SellerId,
        id: &str,
        patch: EndpointPatch,
    ) -> Result<Endpoint, CheckoutError> {
        let mut e = self.endpoint(seller, id).await?;
        if let Some(url) = patch.url {
            self.targets.check(&url)?;
            e.url = url;
        }
        if let Some(d) = patch.description {
            check_description(&d)?;
            e.description = d;
        }
        if let Some(t) = patch.event_types {
            e.event_types = t;
        }
        let reenable = patch.status == Some(EndpointStatus::Enabled);
        if let Some(s) = patch.status {
            e.status = s;
        }
        sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, description = $2, event_types = $3, \
             status = $4, disabled_reason = CASE WHEN $4 = 'enabled' THEN NULL \
             ELSE COALESCE(disabled_reason, 'disabled by the seller') END, \
             failing_since = CASE WHEN $5 = 1 THEN NULL ELSE failing_since END, updated_at = $6 \
             WHERE id = $7",
        )
        .bind(&e.url)
        .bind(&e.description)
        .bind(types_json(&e.event_types)?)
        .bind(match e.status {
            EndpointStatus::Enabled => "enabled",
            EndpointStatus::Disabled => "disabled",
        })
        .bind(i64::from(reenable))
        .bind(self.now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.endpoint(seller, id).await
    }

    /// Removes an endpoint; its pending deliveries are dropped.
    pub async fn delete_endpoint(&self, seller: &SellerId, id: &str) -> Result<(), CheckoutError> {
        self.endpoint(seller, id).await?;
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE webhook_endpoints SET deleted_at = $1, status = 'disabled' WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = 'endpoint deleted', \
             updated_at = $1 WHERE endpoint_id = $2 AND status = 'pending'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A new signing secret (returned once); the previous one keeps signing for a day.
    pub async fn rotate_endpoint_secret(
        &self,
        seller: &SellerId,
        id: &str,
    ) -> Result<SigningSecret, CheckoutError> {
        self.endpoint(seller, id).await?;
        let secret = SigningSecret::generate();
        let now = self.now();
        sqlx::query(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_until = $1, \
             secret = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(now + ROTATION_OVERLAP_MS)
        .bind(self.secrets.seal(&secret.expose()))
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(secret)
    }

    /// The delivery log of an endpoint, newest first.
    pub async fn deliveries(
        &self,
        seller: &SellerId,
        endpoint: &str,
        limit: i64,
    ) -> Result<Vec<Delivery>, CheckoutError> {
        self.endpoint(seller, endpoint).await?;
        let rows = sqlx::query(
            "SELECT d.event_id, e.event_type, d.status, d.attempts, d.next_attempt_at, \
             d.last_status, d.last_error, d.updated_at FROM webhook_deliveries d \
             JOIN webhook_events e ON e.id = d.event_id WHERE d.endpoint_id = $1 \
             ORDER BY e.created_at DESC, d.event_id DESC LIMIT $2",
        )
        .bind(endpoint)
        .bind(limit.clamp(1, MAX_LOG_PAGE))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get(2)?;
                Ok(Delivery {
                    event_id: r.try_get(0)?,
                    event_type: r.try_get(1)?,
                    next_attempt_at: (status == "pending")
                        .then(|| r.try_get::<i64, _>(4).map(Timestamp))
                        .transpose()?,
                    status,
                    attempts: r.try_get(3)?,
                    last_status_code: r.try_get(5)?,
                    last_error: r.try_get(6)?,
                    updated_at: Timestamp(r.try_get(7)?),
                })
            })
            .collect()
    }

    /// Sends an event to an endpoint again, now, with a fresh schedule (the same message id,
    /// so a receiver that already has it can tell).
    pub async fn replay_delivery(
        &self,
        seller: &SellerId,
        endpoint: &str,
        event: &str,
    ) -> Result<(), CheckoutError> {
        let e = self.endpoint(seller, endpoint).await?;
        if e.status != EndpointStatus::Enabled {
            return Err(CheckoutError::Conflict("the endpoint is disabled".into()));
        }
        let owned = sqlx::query("SELECT 1 FROM webhook_events WHERE id = $1 AND seller_id = $2")
            .bind(event)
            .bind(seller.as_str())
            .fetch_optional(&self.pool)
            .await?;
        if owned.is_none() {
            return Err(CheckoutError::NotFound("no such event"));
        }
        let now = self.now();
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, \
             leased_until = 0, updated_at = $1 WHERE event_id = $2 AND endpoint_id = $3",
        )
        .bind(now)
        .bind(event)
        .bind(endpoint)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, \
                 next_attempt_at, leased_until, updated_at) VALUES ($1, $2, 'pending', 0, $3, 0, $3)",
            )
            .bind(event)
            .bind(endpoint)
            .bind(now)
            .execute(&self.pool)
            .await?;
        }
        self.wake.notify_one();
        Ok(())
    }
}

/// Disables an endpoint (it answered 410, or failed for too long) and fails its pending
/// deliveries, in the caller's transaction.
pub(crate) async fn disable(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    endpoint: &str,
    why: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = $1, updated_at = $2 \
         WHERE id = $3",
    )
    .bind(why)
    .bind(now)
    .bind(endpoint)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'failed', last_error = $1, updated_at = $2 \
         WHERE endpoint_id = $3 AND status = 'pending'",
    )
    .bind(format!("endpoint disabled: {why}"))
    .bind(now)
    .bind(endpoint)
    .execute(&mut **tx)
    .await?;
    tracing::warn!(endpoint, reason = why, "webhook endpoint disabled");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_be_public_https_unless_allowed() {
        let strict = TargetPolicy::default();
        strict.check("https://erp.example.com/hooks").unwrap();
        for bad in [
            "http://erp.example.com/hooks",
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://192.168.0.2/x",
            "https://169.254.169.254/latest/meta-data",
            "https://localhost/x",
            "https://[::1]/x",
            "ftp://erp.example.com/",
            "not a url",
        ] {
            assert!(strict.check(bad).is_err(), "{bad}");
        }
        let dev = TargetPolicy {
            allow_private: true,
        };
        dev.check("http://127.0.0.1:8080/hooks").unwrap();
        assert!(dev.check("ftp://127.0.0.1/").is_err());
    }
}
