//! Webhook endpoints (`/api/v1/webhooks/...`): add, change, remove, rotate the signing secret,
//! read the delivery log and replay a delivery. Reading needs `webhooks:read`, the rest
//! `webhooks:write`. The signing secret appears once, when made or rotated.

use super::auth::{WebhooksRead, WebhooksWrite};
use super::{ApiError, AuthSeller, body};
use crate::app::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use vitrine_checkout::webhooks::{Endpoint, EndpointPatch, EventType, NewEndpoint};
use vitrine_core::Problem;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/webhooks/event-types", get(event_types))
        .route(
            "/api/v1/webhooks/endpoints",
            get(list_endpoints).post(create_endpoint),
        )
        .route(
            "/api/v1/webhooks/endpoints/{id}",
            get(get_endpoint)
                .patch(update_endpoint)
                .delete(delete_endpoint),
        )
        .route(
            "/api/v1/webhooks/endpoints/{id}/rotate-secret",
            post(rotate_secret),
        )
        .route(
            "/api/v1/webhooks/endpoints/{id}/deliveries",
            get(deliveries),
        )
        .route(
            "/api/v1/webhooks/endpoints/{id}/deliveries/{event}/replay",
            post(replay),
        )
}

async fn event_types(AuthSeller(_, _): AuthSeller<WebhooksRead>) -> Json<serde_json::Value> {
    let names: Vec<_> = EventType::ALL.iter().map(|e| e.as_str()).collect();
    Json(json!({ "event_types": names }))
}

#[derive(Serialize)]
struct EndpointWithSecret {
    #[serde(flatten)]
    endpoint: Endpoint,
    /// Shown once.
    secret: String,
}

async fn create_endpoint(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksWrite>,
    new: Result<Json<NewEndpoint>, JsonRejection>,
) -> Result<(StatusCode, Json<EndpointWithSecret>), ApiError> {
    let (endpoint, secret) = state
        .checkout
        .create_endpoint(&seller.id, body(new)?)
        .await?;
    tracing::info!(seller = %seller.id, endpoint = %endpoint.id, "webhook endpoint added");
    Ok((
        StatusCode::CREATED,
        Json(EndpointWithSecret {
            endpoint,
            secret: secret.expose(),
        }),
    ))
}

async fn list_endpoints(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksRead>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let endpoints = state.checkout.endpoints_of(&seller.id).await?;
    Ok(Json(json!({ "endpoints": endpoints })))
}

async fn get_endpoint(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksRead>,
    Path(id): Path<String>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(state.checkout.endpoint(&seller.id, &id).await?))
}

async fn update_endpoint(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksWrite>,
    Path(id): Path<String>,
    patch: Result<Json<EndpointPatch>, JsonRejection>,
) -> Result<Json<Endpoint>, ApiError> {
    let e = state
        .checkout
        .update_endpoint(&seller.id, &id, body(patch)?)
        .await?;
    Ok(Json(e))
}

async fn delete_endpoint(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.checkout.delete_endpoint(&seller.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate_secret(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksWrite>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let secret = state
        .checkout
        .rotate_endpoint_secret(&seller.id, &id)
        .await?;
    Ok(Json(json!({ "secret": secret.expose() })))
}

#[derive(Deserialize)]
struct LogQuery {
    limit: Option<i64>,
}

async fn deliveries(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksRead>,
    Path(id): Path<String>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    if q.limit.is_some_and(|n| !(1..=100).contains(&n)) {
        return Err(Problem::bad_request("invalid-query", "limit must be 1 to 100").into());
    }
    let log = state
        .checkout
        .deliveries(&seller.id, &id, q.limit.unwrap_or(50))
        .await?;
    Ok(Json(json!({ "deliveries": log })))
}

async fn replay(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksWrite>,
    Path((id, event)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .checkout
        .replay_delivery(&seller.id, &id, &event)
        .await?;
    Ok(StatusCode::ACCEPTED)
}
