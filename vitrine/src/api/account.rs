//! The account's own credentials, managed with the account token or in the portal, never by a
//! key or an app: the account token itself (`/api/v1/account/token`), third-party apps
//! (`/api/v1/apps`), API keys (`/api/v1/api-keys`) and the grants the seller gave to other apps
//! (`/api/v1/grants`). Secrets appear once, in the answer that creates or rolls them.

use super::{AccountOwner, ApiError, body, path_id};
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use vitrine_core::{ApiKeyId, AppId, GrantId, Problem};
use vitrine_platform::oauth::GrantView;
use vitrine_platform::{ApiKey, App, AppPatch, Mode, NewApiKey, NewApp};

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_apps,
    register_app,
    get_app,
    update_app,
    delete_app,
    roll_secret,
    list_keys,
    create_key,
    revoke_key,
    roll_key,
    list_grants,
    revoke_grant,
    rotate_token
))]
pub struct Doc;

/// The account's apps.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AppList {
    pub apps: Vec<App>,
}

/// An app's new client secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientSecret {
    /// Shown once.
    pub client_secret: String,
}

/// The account's API keys.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKey>,
}

/// The grants this seller gave to apps.
#[derive(Serialize, utoipa::ToSchema)]
pub struct GrantList {
    pub grants: Vec<GrantView>,
}

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
        .route("/api/v1/account/token", post(rotate_token))
}

/// The account's new token.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountToken {
    /// Shown once; stored hashed.
    pub token: String,
}

/// Rotate the account token: the old one is refused from now on, and every browser session of the account ends
#[utoipa::path(
    post,
    path = "/api/v1/account/token",
    responses((status = 200, description = "The new token, shown this once", body = AccountToken)),
    security(("apiToken" = []))
)]
async fn rotate_token(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
) -> Result<Json<AccountToken>, ApiError> {
    let token = state.store.rotate_seller_token(&owner.id).await?;
    // Whoever signed in with the old token (it may be why it is rotated) is signed out.
    let ended = state.platform.end_sessions_of(&owner.id).await?;
    tracing::info!(seller = %owner.id, sessions_ended = ended, "account token rotated");
    Ok(Json(AccountToken {
        token: token.expose().to_owned(),
    }))
}

fn app_id(raw: &str) -> Result<AppId, ApiError> {
    path_id(raw, AppId::parse, "no such app")
}

fn key_id(raw: &str) -> Result<ApiKeyId, ApiError> {
    path_id(raw, ApiKeyId::parse, "no such api key")
}

/// An app with its client secret, in the one answer that shows it.
#[derive(Serialize, utoipa::ToSchema)]
struct AppWithSecret {
    #[serde(flatten)]
    app: App,
    /// Shown once; confidential apps only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

/// Register an app (an OAuth2 client)
#[utoipa::path(
    post,
    path = "/api/v1/apps",
    request_body = NewApp,
    responses((
        status = 201,
        description = "Registered; the client secret is shown this once",
        body = AppWithSecret
    )),
    security(("apiToken" = []))
)]
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

/// The account's apps
#[utoipa::path(
    get,
    path = "/api/v1/apps",
    responses((status = 200, description = "Apps", body = AppList)),
    security(("apiToken" = []))
)]
async fn list_apps(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
) -> Result<Json<AppList>, ApiError> {
    let apps = state.platform.apps_of(&owner.id).await?;
    Ok(Json(AppList { apps }))
}

/// One app
#[utoipa::path(
    get,
    path = "/api/v1/apps/{id}",
    params(("id" = String, Path, description = "App id (client_id)")),
    responses((status = 200, description = "The app", body = App)),
    security(("apiToken" = []))
)]
async fn get_app(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
    Path(id): Path<String>,
) -> Result<Json<App>, ApiError> {
    Ok(Json(state.platform.app_of(&owner.id, &app_id(&id)?).await?))
}

/// Rename an app or change its redirect URIs
#[utoipa::path(
    patch,
    path = "/api/v1/apps/{id}",
    params(("id" = String, Path, description = "App id (client_id)")),
    request_body = AppPatch,
    responses((status = 200, description = "The app", body = App)),
    security(("apiToken" = []))
)]
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

/// Delete an app; every grant sellers gave it is revoked
#[utoipa::path(
    delete,
    path = "/api/v1/apps/{id}",
    params(("id" = String, Path, description = "App id (client_id)")),
    responses((status = 204, description = "Deleted")),
    security(("apiToken" = []))
)]
async fn delete_app(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.platform.delete_app(&owner.id, &app_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Roll a confidential app's client secret (the old one stops working)
#[utoipa::path(
    post,
    path = "/api/v1/apps/{id}/secret",
    params(("id" = String, Path, description = "App id")),
    responses(
        (status = 200, description = "The new secret, shown once", body = ClientSecret),
        (status = 400, description = "A public app has no client secret", body = Problem)
    ),
    security(("apiToken" = []))
)]
async fn roll_secret(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
    Path(id): Path<String>,
) -> Result<Json<ClientSecret>, ApiError> {
    let secret = state
        .platform
        .roll_client_secret(&owner.id, &app_id(&id)?)
        .await?;
    Ok(Json(ClientSecret {
        client_secret: secret.expose().to_owned(),
    }))
}

/// A key with its secret, in the one answer that shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ApiKeyWithSecret)]
struct KeyWithSecret {
    #[serde(flatten)]
    key: ApiKey,
    /// Shown once.
    secret: String,
}

/// Create an API key in test or live mode
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    request_body = NewApiKey,
    responses((
        status = 201,
        description = "Created; the secret is shown this once",
        body = KeyWithSecret
    )),
    security(("apiToken" = []))
)]
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

/// The account's API keys (hints, never secrets)
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    responses((status = 200, description = "Keys", body = ApiKeyList)),
    security(("apiToken" = []))
)]
async fn list_keys(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
) -> Result<Json<ApiKeyList>, ApiError> {
    let api_keys = state.platform.keys_of(&owner.id).await?;
    Ok(Json(ApiKeyList { api_keys }))
}

/// Give a key a new secret (the old one stops working)
#[utoipa::path(
    post,
    path = "/api/v1/api-keys/{id}/roll",
    params(("id" = String, Path, description = "API key id")),
    responses((
        status = 200,
        description = "The key and its new secret, shown once",
        body = KeyWithSecret
    )),
    security(("apiToken" = []))
)]
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

/// Revoke an API key
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{id}",
    params(("id" = String, Path, description = "API key id")),
    responses((status = 204, description = "Revoked")),
    security(("apiToken" = []))
)]
async fn revoke_key(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.platform.revoke_key(&owner.id, &key_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The apps this seller has authorized
#[utoipa::path(
    get,
    path = "/api/v1/grants",
    responses((status = 200, description = "Grants", body = GrantList)),
    security(("apiToken" = []))
)]
async fn list_grants(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
) -> Result<Json<GrantList>, ApiError> {
    let grants = state.platform.grants_of(&owner.id).await?;
    Ok(Json(GrantList { grants }))
}

/// Withdraw an app's access (its tokens stop working)
#[utoipa::path(
    delete,
    path = "/api/v1/grants/{id}",
    params(("id" = String, Path, description = "Grant id")),
    responses((status = 204, description = "Revoked")),
    security(("apiToken" = []))
)]
async fn revoke_grant(
    State(state): State<AppState>,
    AccountOwner(owner): AccountOwner,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id, GrantId::parse, "no such grant")?;
    state.platform.revoke_grant(&owner.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
