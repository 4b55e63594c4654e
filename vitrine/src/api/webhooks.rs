//! Webhook endpoints (`/api/v1/webhooks/...`): add, change, remove, rotate the signing secret,
//! read the delivery log and replay a delivery. Reading needs `webhooks:read`, the rest
//! `webhooks:write`. The signing secret appears once, when made or rotated.

use super::auth::{WebhooksRead, WebhooksWrite};
use super::{ApiError, AuthSeller, body};
use crate::state::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use vitrine_checkout::webhooks::{Delivery, Endpoint, EndpointPatch, EventType, NewEndpoint};
use vitrine_core::Problem;

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    event_types,
    list_endpoints,
    create_endpoint,
    get_endpoint,
    update_endpoint,
    delete_endpoint,
    rotate_secret,
    deliveries,
    replay
))]
pub struct Doc;

/// The event types an endpoint can subscribe to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventTypeList {
    pub event_types: Vec<EventType>,
}

/// A seller's webhook endpoints.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointList {
    pub endpoints: Vec<Endpoint>,
}

/// An endpoint's new signing secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RotatedSecret {
    /// `whsec_...`, shown once.
    pub secret: String,
}

/// An endpoint's delivery log, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

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

/// The event types an endpoint can subscribe to
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/event-types",
    responses((status = 200, description = "Event types", body = EventTypeList)),
    security(("oauth2" = ["webhooks:read"]))
)]
async fn event_types(AuthSeller(_, _): AuthSeller<WebhooksRead>) -> Json<EventTypeList> {
    Json(EventTypeList {
        event_types: EventType::ALL.to_vec(),
    })
}

/// An endpoint with its signing secret.
#[derive(Serialize, utoipa::ToSchema)]
struct EndpointWithSecret {
    #[serde(flatten)]
    endpoint: Endpoint,
    /// `whsec_...`, shown once.
    secret: String,
}

/// Add an endpoint; its signing secret is shown once
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/endpoints",
    request_body = NewEndpoint,
    responses((status = 201, description = "Added", body = EndpointWithSecret)),
    security(("oauth2" = ["webhooks:write"]))
)]
async fn create_endpoint(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksWrite>,
    new: Result<Json<NewEndpoint>, JsonRejection>,
) -> Result<(StatusCode, Json<EndpointWithSecret>), ApiError> {
    let (endpoint, secret) = state
        .checkout
        .webhooks()
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

/// The seller's webhook endpoints
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/endpoints",
    responses((status = 200, description = "Endpoints", body = EndpointList)),
    security(("oauth2" = ["webhooks:read"]))
)]
async fn list_endpoints(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksRead>,
) -> Result<Json<EndpointList>, ApiError> {
    let endpoints = state.checkout.webhooks().endpoints_of(&seller.id).await?;
    Ok(Json(EndpointList { endpoints }))
}

/// One endpoint
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/endpoints/{id}",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, description = "The endpoint", body = Endpoint)),
    security(("oauth2" = ["webhooks:read"]))
)]
async fn get_endpoint(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksRead>,
    Path(id): Path<String>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(
        state.checkout.webhooks().endpoint(&seller.id, &id).await?,
    ))
}

/// Change an endpoint, or enable it again
#[utoipa::path(
    patch,
    path = "/api/v1/webhooks/endpoints/{id}",
    params(("id" = String, Path, description = "Endpoint id")),
    request_body = EndpointPatch,
    responses((status = 200, description = "The endpoint", body = Endpoint)),
    security(("oauth2" = ["webhooks:write"]))
)]
async fn update_endpoint(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksWrite>,
    Path(id): Path<String>,
    patch: Result<Json<EndpointPatch>, JsonRejection>,
) -> Result<Json<Endpoint>, ApiError> {
    let e = state
        .checkout
        .webhooks()
        .update_endpoint(&seller.id, &id, body(patch)?)
        .await?;
    Ok(Json(e))
}

/// Remove an endpoint (its pending deliveries are dropped)
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/endpoints/{id}",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 204, description = "Removed")),
    security(("oauth2" = ["webhooks:write"]))
)]
async fn delete_endpoint(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .checkout
        .webhooks()
        .delete_endpoint(&seller.id, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret, shown once; the previous one keeps signing for 24 hours
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/endpoints/{id}/rotate-secret",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, description = "The new secret", body = RotatedSecret)),
    security(("oauth2" = ["webhooks:write"]))
)]
async fn rotate_secret(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksWrite>,
    Path(id): Path<String>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let secret = state
        .checkout
        .webhooks()
        .rotate_endpoint_secret(&seller.id, &id)
        .await?;
    Ok(Json(RotatedSecret {
        secret: secret.expose(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogQuery {
    /// How many deliveries, newest first
    #[param(minimum = 1, maximum = 100, default = 50)]
    limit: Option<i64>,
}

/// The endpoint's delivery log, newest first
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/endpoints/{id}/deliveries",
    params(("id" = String, Path, description = "Endpoint id"), LogQuery),
    responses((status = 200, description = "Deliveries", body = DeliveryList)),
    security(("oauth2" = ["webhooks:read"]))
)]
async fn deliveries(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksRead>,
    Path(id): Path<String>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let Query(q) = q.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    if q.limit.is_some_and(|n| !(1..=100).contains(&n)) {
        return Err(Problem::bad_request("invalid-query", "limit must be 1 to 100").into());
    }
    let log = state
        .checkout
        .webhooks()
        .deliveries(&seller.id, &id, q.limit.unwrap_or(50))
        .await?;
    Ok(Json(DeliveryList { deliveries: log }))
}

/// Send an event to the endpoint again now (same webhook-id)
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/endpoints/{id}/deliveries/{event}/replay",
    params(
        ("id" = String, Path, description = "Endpoint id"),
        ("event" = String, Path, description = "Event (message) id")
    ),
    responses(
        (status = 202, description = "Queued"),
        (status = 409, description = "The endpoint is disabled", body = Problem)
    ),
    security(("oauth2" = ["webhooks:write"]))
)]
async fn replay(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<WebhooksWrite>,
    Path((id, event)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .checkout
        .webhooks()
        .replay_delivery(&seller.id, &id, &event)
        .await?;
    Ok(StatusCode::ACCEPTED)
}
