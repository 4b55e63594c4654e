//! Third-party apps: what a developer registers in the portal to become an OAuth2 client. An
//! app belongs to the seller account that registered it; sellers then grant it access to their
//! own data through the consent page. Confidential apps (a server) get a client secret, shown
//! once; public apps (a browser or a device) get none and rely on PKCE alone.

use crate::redirect::{self, RedirectError};
use crate::{Platform, PlatformError, corrupt, now, valid_name};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use vitrine_core::{AppId, Secret, SecretHash, SellerId, Timestamp};

pub const MAX_APP_NAME_CHARS: usize = 100;
/// Most apps one seller account may register.
pub const MAX_APPS_PER_OWNER: i64 = 50;

/// How the app authenticates: `confidential` (a server, with a client secret) or `public` (a
/// browser, a phone or a till: PKCE only, no secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    /// Runs on a server and can keep a secret.
    #[default]
    Confidential,
    /// Runs where a secret could be read (a browser, a phone, a till): PKCE only.
    Public,
}

impl ClientType {
    fn as_str(self) -> &'static str {
        match self {
            ClientType::Confidential => "confidential",
            ClientType::Public => "public",
        }
    }
}

/// The schema of a list of redirect URIs, with the limits [`redirect::validate_registration`]
/// applies.
fn redirect_uris_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(redirect::MAX_REDIRECT_URI_LEN)),
        )
        .min_items(Some(1))
        .max_items(Some(redirect::MAX_REDIRECT_URIS))
        .description(Some(
            "Matched exactly. https, http on loopback, or a reverse-domain private scheme.",
        ))
        .into()
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(schema_with = redirect_uris_schema)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    #[schema(default = "confidential")]
    pub client_type: ClientType,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppPatch {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    #[schema(schema_with = redirect_uris_schema)]
    pub redirect_uris: Option<Vec<String>>,
}

/// An app as its owner sees it (never with its secret).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct App {
    /// The OAuth2 `client_id`.
    pub id: AppId,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub client_type: ClientType,
    /// The rate-limit tier (set by the operator).
    pub tier: String,
    pub created_at: Timestamp,
    #[serde(skip)]
    pub owner: SellerId,
}

const COLUMNS: &str =
    "id, owner_seller_id, name, redirect_uris, client_type, tier, created_at, client_secret_hash";

fn app_from_row(r: &AnyRow) -> Result<(App, Option<SecretHash>), PlatformError> {
    let uris: String = r.try_get(3)?;
    let client_type = match r.try_get::<String, _>(4)?.as_str() {
        "confidential" => ClientType::Confidential,
        "public" => ClientType::Public,
        other => return Err(corrupt(format!("client type {other}"))),
    };
    let app = App {
        id: AppId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt)?,
        owner: SellerId::parse(&r.try_get::<String, _>(1)?).map_err(corrupt)?,
        name: r.try_get(2)?,
        redirect_uris: serde_json::from_str(&uris).map_err(corrupt)?,
        client_type,
        tier: r.try_get(5)?,
        created_at: Timestamp(r.try_get(6)?),
    };
    let secret = r.try_get::<Option<String>, _>(7)?.map(SecretHash);
    Ok((app, secret))
}

fn invalid_redirects(e: RedirectError) -> PlatformError {
    PlatformError::Invalid(e.to_string())
}

impl Platform {
    /// Registers an app; a confidential one comes back with its client secret (shown once).
    /// The app starts on rate-limit tier `tier` (the operator's configured default).
    pub async fn register_app(
        &self,
        owner: &SellerId,
        new: NewApp,
        tier: &str,
    ) -> Result<(App, Option<Secret>), PlatformError> {
        let name = valid_name(&new.name, MAX_APP_NAME_CHARS, "name")?;
        redirect::validate_registration(&new.redirect_uris).map_err(invalid_redirects)?;
        let count: i64 = sqlx::query(
            "SELECT COUNT(*) FROM apps WHERE owner_seller_id = $1 AND deleted_at IS NULL",
        )
        .bind(owner.as_str())
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        if count >= MAX_APPS_PER_OWNER {
            return Err(PlatformError::Invalid(format!(
                "an account may register at most {MAX_APPS_PER_OWNER} apps"
            )));
        }
        let secret = (new.client_type == ClientType::Confidential).then(|| Secret::generate("vcs"));
        let app = App {
            id: AppId::generate(),
            owner: owner.clone(),
            name,
            redirect_uris: new.redirect_uris,
            client_type: new.client_type,
            tier: tier.to_owned(),
            created_at: Timestamp::now(),
        };
        sqlx::query(
            "INSERT INTO apps (id, owner_seller_id, name, redirect_uris, client_type, \
             client_secret_hash, tier, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(app.id.as_str())
        .bind(owner.as_str())
        .bind(&app.name)
        .bind(serde_json::to_string(&app.redirect_uris).map_err(corrupt)?)
        .bind(app.client_type.as_str())
        .bind(secret.as_ref().map(|s| s.hash().0))
        .bind(&app.tier)
        .bind(app.created_at.millis())
        .execute(&self.pool)
        .await?;
        Ok((app, secret))
    }

    /// An app that is not deleted, with its secret's hash: what the OAuth2 endpoints need.
    pub async fn client(
        &self,
        id: &str,
    ) -> Result<Option<(App, Option<SecretHash>)>, PlatformError> {
        let Ok(id) = AppId::parse(id) else {
            return Ok(None);
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM apps WHERE id = $1 AND deleted_at IS NULL"
        )))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(app_from_row).transpose()
    }

    /// One of `owner`'s apps; another account's app is not found, like a missing one.
    pub async fn app_of(&self, owner: &SellerId, id: &AppId) -> Result<App, PlatformError> {
        match self.client(id.as_str()).await? {
            Some((app, _)) if &app.owner == owner => Ok(app),
            _ => Err(PlatformError::NotFound("no such app")),
        }
    }

    pub async fn apps_of(&self, owner: &SellerId) -> Result<Vec<App>, PlatformError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM apps WHERE owner_seller_id = $1 AND deleted_at IS NULL \
             ORDER BY created_at, id"
        )))
        .bind(owner.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| app_from_row(r).map(|(a, _)| a))
            .collect()
    }

    pub async fn update_app(
        &self,
        owner: &SellerId,
        id: &AppId,
        patch: AppPatch,
    ) -> Result<App, PlatformError> {
        let mut app = self.app_of(owner, id).await?;
        if let Some(name) = patch.name {
            app.name = valid_name(&name, MAX_APP_NAME_CHARS, "name")?;
        }
        if let Some(uris) = patch.redirect_uris {
            redirect::validate_registration(&uris).map_err(invalid_redirects)?;
            app.redirect_uris = uris;
        }
        sqlx::query("UPDATE apps SET name = $1, redirect_uris = $2 WHERE id = $3")
            .bind(&app.name)
            .bind(serde_json::to_string(&app.redirect_uris).map_err(corrupt)?)
            .bind(app.id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(app)
    }

    /// Replaces a confidential app's client secret; the old one stops working at once.
    pub async fn roll_client_secret(
        &self,
        owner: &SellerId,
        id: &AppId,
    ) -> Result<Secret, PlatformError> {
        let app = self.app_of(owner, id).await?;
        if app.client_type == ClientType::Public {
            return Err(PlatformError::Invalid(
                "a public app has no client secret".into(),
            ));
        }
        let secret = Secret::generate("vcs");
        sqlx::query("UPDATE apps SET client_secret_hash = $1 WHERE id = $2")
            .bind(secret.hash().0)
            .bind(app.id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(secret)
    }

    /// Deletes an app and revokes every grant (and so every token) sellers gave it.
    pub async fn delete_app(&self, owner: &SellerId, id: &AppId) -> Result<(), PlatformError> {
        let app = self.app_of(owner, id).await?;
        let now = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE apps SET deleted_at = $1 WHERE id = $2")
            .bind(now)
            .bind(app.id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE oauth_grants SET revoked_at = $1 WHERE app_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(app.id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves an app to another rate-limit tier (an operator's decision, not the developer's).
    pub async fn set_tier(&self, id: &AppId, tier: &str) -> Result<(), PlatformError> {
        let done = sqlx::query("UPDATE apps SET tier = $1 WHERE id = $2 AND deleted_at IS NULL")
            .bind(tier)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(PlatformError::NotFound("no such app"));
        }
        Ok(())
    }
}
