//! Guest buyers (`/api/v1/buyers`) and orders (`/api/v1/orders`). Placing an order needs an
//! `Idempotency-Key`; the answer to a key is stored and replayed (with `Idempotent-Replayed:
//! true`). A buyer sees only their orders, a seller only orders for their products.

use super::auth::OrdersWrite;
use super::{ApiError, AuthBuyer, AuthSeller, Caller, body, path_id};
use crate::app::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use vitrine_checkout::{NewOrder, Order, OrderOwner, OrderPage, OrderQuery, OrderResult};
use vitrine_core::{BuyerId, OrderId, Problem};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/buyers", post(create_buyer))
        .route("/api/v1/orders", get(list_orders).post(place_order))
        .route("/api/v1/orders/{id}", get(get_order))
        .route("/api/v1/orders/{id}/fulfil", post(fulfil))
        .route("/api/v1/orders/{id}/refund", post(refund))
        .route("/api/v1/orders/{id}/cancel", post(cancel))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBuyer {
    display_name: String,
}

#[derive(Debug, Serialize)]
struct CreatedBuyer {
    buyer_id: BuyerId,
    display_name: String,
    /// Shown once; stored hashed.
    token: String,
}

async fn create_buyer(
    State(state): State<AppState>,
    new: Result<Json<NewBuyer>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedBuyer>), ApiError> {
    let new = body(new)?;
    let (buyer, token) = state.checkout.create_buyer(&new.display_name).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedBuyer {
            buyer_id: buyer.id,
            display_name: buyer.display_name,
            token: token.expose().to_owned(),
        }),
    ))
}

#[tracing::instrument(skip_all, fields(buyer = %buyer.id))]
async fn place_order(
    State(state): State<AppState>,
    AuthBuyer(buyer): AuthBuyer,
    headers: HeaderMap,
    new: Result<Json<NewOrder>, JsonRejection>,
) -> Result<Response, ApiError> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Problem::bad_request(
                "idempotency-key-required",
                "POST /api/v1/orders needs an Idempotency-Key header",
            )
        })?
        .to_owned();
    let placed = state
        .checkout
        .place_order(&buyer.id, &key, body(new)?)
        .await?;
    let mut response = match placed.result {
        OrderResult::Created(order) => (StatusCode::CREATED, Json(order)).into_response(),
        OrderResult::Rejected(rejection) => {
            let (status, slug) = rejection.http();
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CONFLICT);
            let title = status
                .canonical_reason()
                .unwrap_or("refused")
                .to_lowercase();
            Problem::new(status, slug, &title)
                .with_detail(rejection.detail)
                .into_response()
        }
    };
    if placed.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Orders newest first, filtered, a page at a time (`next_cursor` leads to the next page).
async fn list_orders(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<OrderQuery>, QueryRejection>,
) -> Result<Json<OrderPage>, ApiError> {
    let Query(q) = q.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let owner = match &caller {
        Caller::Seller(s) => OrderOwner::Seller(&s.id),
        Caller::Buyer(b) => OrderOwner::Buyer(&b.id),
    };
    Ok(Json(state.checkout.orders_page(owner, &q).await?))
}

fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    path_id(raw, OrderId::parse, "no such order")
}

async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    let id = order_id(&id)?;
    let order = match caller {
        Caller::Seller(s) => state.checkout.order_for_seller(&s.id, &id).await?,
        Caller::Buyer(b) => state.checkout.order_for_buyer(&b.id, &id).await?,
    };
    Ok(Json(order))
}

async fn fulfil(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<OrdersWrite>,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(
        state.checkout.fulfil(&seller.id, &order_id(&id)?).await?,
    ))
}

async fn cancel(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<OrdersWrite>,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(
        state.checkout.cancel(&seller.id, &order_id(&id)?).await?,
    ))
}

async fn refund(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<OrdersWrite>,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(
        state.checkout.refund(&seller.id, &order_id(&id)?).await?,
    ))
}
