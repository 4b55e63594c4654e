//! The account's own credentials, managed with the account token or in the portal, never by a
//! key or an app: third-party apps (`/api/v1/apps`), API keys (`/api/v1/api-keys`) and the
//! grants the seller gave to other apps (`/api/v1/grants`). Secrets appear once, in the answer
//! that creates or rolls them.

use super::{AccountOwner, ApiError, body, path_id};
use crate::app::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use vitrine_core::{ApiKeyId, AppId, GrantId};
use vitrine_platform::{ApiKey, App, AppPatch, Mode, NewApiKey, NewApp};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/apps", get(list_apps).post(register_app))
        .route(
            "/api/v1/apps/{id}",
            get(get_app).patch(update_app).delete(delete_app),
        )
        .route("/api/v1/apps/{id}/secret", post(roll_secret))
        .route("/api/v1/api-keys", get(list_keys).post(create_key))
        .route("/api/v1/api-keys/{id}", axum::routing::delete(revoke_key))
        .route("/api/v1/api-keys/{id}/roll", post(roll_key))
        .route("/api/v1/grants", get(list_grants))
        .route("/api/v1/grants/{id}", axum::routing::delete(revoke_grant))
}

fn app_id(raw: &str) -> Result<AppId, ApiError> {
    path_id(raw, AppId::parse, "no such app")
}

fn key_id(raw: &str) -> Result<ApiKeyId, ApiError> {
    path_id(raw, ApiKeyId::parse, "no such api key")
}

/// An app with its client secret, in the one answer that shows it.
#[derive(Serialize)]
struct AppWithSecret {
    #[serde(flatten)]
    app: App,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
}

async fn register_app(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
    new: Result<Json<NewApp>, JsonRejection>,
) -> Result<(StatusCode, Json<AppWithSecret>), ApiError> {
    let tier = state.limiter.tiers().default_tier();
    let (app, secret) = state
        .platform
        .register_app(&owner.id, body(new)?, tier)
        .await?;
    tracing::info!(app = %app.id, owner = %owner.id, "app registered");
    Ok((
        StatusCode::CREATED,
        Json(AppWithSecret {
            app,
            client_secret: secret.map(|s| s.expose().to_owned()),
        }),
    ))
}

async fn list_apps(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
) -> Result<Json<serde_json::Value>, ApiError> {
    let apps = state.platform.apps_of(&owner.id).await?;
    Ok(Json(json!({ "apps": apps })))
}

async fn get_app(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
    Path(id): Path<String>,
) -> Result<Json<App>, ApiError> {
    Ok(Json(state.platform.app_of(&owner.id, &app_id(&id)?).await?))
}

async fn update_app(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
    Path(id): Path<String>,
    patch: Result<Json<AppPatch>, JsonRejection>,
) -> Result<Json<App>, ApiError> {
    let app = state
        .platform
        .update_app(&owner.id, &app_id(&id)?, body(patch)?)
        .await?;
    Ok(Json(app))
}

async fn delete_app(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.platform.delete_app(&owner.id, &app_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn roll_secret(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let secret = state
        .platform
        .roll_client_secret(&owner.id, &app_id(&id)?)
        .await?;
    Ok(Json(json!({ "client_secret": secret.expose() })))
}

/// A key with its secret, in the one answer that shows it.
#[derive(Serialize)]
struct KeyWithSecret {
    #[serde(flatten)]
    key: ApiKey,
    secret: String,
}

async fn create_key(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
    new: Result<Json<NewApiKey>, JsonRejection>,
) -> Result<(StatusCode, Json<KeyWithSecret>), ApiError> {
    let new = body(new)?;
    let acts_on = match new.mode {
        Mode::Live => owner.clone(),
        Mode::Test => state.store.sandbox_of(&owner).await?,
    };
    let (key, secret) = state
        .platform
        .create_key(&owner.id, &acts_on.id, new)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyWithSecret {
            key,
            secret: secret.expose().to_owned(),
        }),
    ))
}

async fn list_keys(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
) -> Result<Json<serde_json::Value>, ApiError> {
    let keys = state.platform.keys_of(&owner.id).await?;
    Ok(Json(json!({ "api_keys": keys })))
}

async fn roll_key(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
    Path(id): Path<String>,
) -> Result<Json<KeyWithSecret>, ApiError> {
    let (key, secret) = state.platform.roll_key(&owner.id, &key_id(&id)?).await?;
    Ok(Json(KeyWithSecret {
        key,
        secret: secret.expose().to_owned(),
    }))
}

async fn revoke_key(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.platform.revoke_key(&owner.id, &key_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_grants(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
) -> Result<Json<serde_json::Value>, ApiError> {
    let grants = state.platform.grants_of(&owner.id).await?;
    Ok(Json(json!({ "grants": grants })))
}

async fn revoke_grant(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id, GrantId::parse, "no such grant")?;
    state.platform.revoke_grant(&owner.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
