//! Guest buyers (`/api/v1/buyers`) and orders (`/api/v1/orders`). Placing an order needs an
//! `Idempotency-Key`; the answer to a key is stored and replayed (with `Idempotent-Replayed:
//! true`). A buyer sees only their orders, a seller only orders for their products.

use super::auth::OrdersWrite;
use super::{ApiError, AuthBuyer, AuthSeller, Caller, body, path_id};
use crate::state::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use vitrine_checkout::{
    NewOrder, Order, OrderBody, OrderOwner, OrderPage, OrderQuery, OrderResult, OrderSource,
    OrderStatus, Placed,
};
use vitrine_core::{BuyerId, OrderId, Problem};

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_buyer,
    current_buyer,
    list_orders,
    place_order,
    get_order,
    fulfil,
    deliver,
    refund,
    cancel
))]
pub struct Doc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/buyers", post(create_buyer))
        .route("/api/v1/buyers/me", get(current_buyer))
        .route("/api/v1/orders", get(list_orders).post(place_order))
        .route("/api/v1/orders/{id}", get(get_order))
        .route("/api/v1/orders/{id}/fulfil", post(fulfil))
        .route("/api/v1/orders/{id}/deliver", post(deliver))
        .route("/api/v1/orders/{id}/refund", post(refund))
        .route("/api/v1/orders/{id}/cancel", post(cancel))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewBuyer {
    /// Shown in the chat: 1 to 40 printable characters, trimmed.
    #[schema(max_length = 40)]
    display_name: String,
}

/// A new guest buyer and their session token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Buyer)]
struct CreatedBuyer {
    buyer_id: BuyerId,
    display_name: String,
    /// Shown once; stored hashed.
    token: String,
}

/// Create a guest buyer (no authentication)
#[utoipa::path(
    post,
    path = "/api/v1/buyers",
    request_body = NewBuyer,
    responses((status = 201, description = "Created; the token is shown once", body = CreatedBuyer))
)]
async fn create_buyer(
    State(state): State<AppState>,
    new: Result<Json<NewBuyer>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedBuyer>), ApiError> {
    let new = body(new)?;
    let (buyer, token) = state
        .checkout
        .catalog()
        .create_buyer(&new.display_name)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedBuyer {
            buyer_id: buyer.id,
            display_name: buyer.display_name,
            token: token.expose().to_owned(),
        }),
    ))
}

/// The buyer a token belongs to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CurrentBuyer {
    buyer_id: BuyerId,
    display_name: String,
}

/// The buyer of the bearer token (another region's node asks this of a buyer's home region)
#[utoipa::path(
    get,
    path = "/api/v1/buyers/me",
    responses(
        (status = 200, description = "The buyer", body = CurrentBuyer),
        (status = 401, description = "No valid buyer token", body = Problem)
    ),
    security(("buyerToken" = []))
)]
async fn current_buyer(AuthBuyer(buyer): AuthBuyer) -> Json<CurrentBuyer> {
    Json(CurrentBuyer {
        buyer_id: buyer.id,
        display_name: buyer.display_name,
    })
}

/// Buy: reserve stock atomically, charge the card, answer with the paid order
#[utoipa::path(
    post,
    path = "/api/v1/orders",
    params((
        "Idempotency-Key" = String,
        Header,
        description = "Same key and body: the stored response is returned (with Idempotent-Replayed: true). Same key, other body: 422. Keys are kept 24 h, per buyer.",
        min_length = 1,
        max_length = 255
    )),
    request_body = NewOrder,
    responses(
        (status = 201, description = "Paid", body = OrderBody, headers(
            ("Idempotent-Replayed" = String, description = "`true` when this is the stored response to an earlier request with the same key")
        )),
        (status = 202, description = "payment_pending: the processor confirms later (a bank debit) or the buyer has a step to take at `next_action.url` (3-D Secure); the units stay reserved meanwhile. Follow the order with GET /api/v1/orders/{id} or the order.paid / payment.failed webhooks; the same key answers the order as it stands", body = OrderBody),
        (status = 400, description = "invalid-source: `live`, `media_ms` without `replay`, or a replay order without its stream_id and media_ms", body = Problem),
        (status = 401, description = "No valid buyer token", body = Problem),
        (status = 402, description = "Card declined (type .../payment-declined)", body = Problem),
        (status = 404, description = "No such product", body = Problem),
        (status = 409, description = "sold-out, limit-exceeded, sale-ended, not-pinned or request-in-progress", body = Problem),
        (status = 422, description = "idempotency-key-reused: the key was used with another body", body = Problem),
        (status = 503, description = "Payment provider unreachable; retry with the same key", body = Problem),
        (status = 504, description = "payment-timeout: the processor did not confirm in time; nothing was charged", body = Problem)
    ),
    security(("buyerToken" = []))
)]
#[tracing::instrument(skip_all, fields(buyer = %buyer.id))]
async fn place_order(
    State(state): State<AppState>,
    AuthBuyer(buyer): AuthBuyer,
    ip: vitrine_core::ClientIp,
    headers: HeaderMap,
    new: Result<Json<NewOrder>, JsonRejection>,
) -> Result<Response, ApiError> {
    let key = super::idempotency_key(&headers, "POST /api/v1/orders")?;
    let new = body(new)?;
    check_source(&state, &new).await?;
    // A flash sale's per-buyer limit holds per address too (see ip_limits::place_order).
    let placed = super::ip_limits::place_order(&state, &ip, &buyer.id, &key, new).await?;
    Ok(placed_response(placed))
}

/// The answer to an order request: the order, or the refusal as a problem; marked when it is
/// the stored answer to an earlier request.
pub(super) fn placed_response(placed: Placed) -> Response {
    let mut response = match placed.result {
        // Waiting for a payment the processor confirms later (the body's `next_action` says
        // what the buyer does): accepted, not yet created for good.
        OrderResult::Created(order) if order.status == OrderStatus::PaymentPending => {
            (StatusCode::ACCEPTED, show(&order)).into_response()
        }
        OrderResult::Created(order) => (StatusCode::CREATED, show(&order)).into_response(),
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
    response
}

/// The longest replay a `media_ms` may point into (a week).
const MAX_MEDIA_MS: u64 = 7 * 24 * 3600 * 1000;

/// Where an order over the API says it comes from: `api`, or `replay` with the replay's stream
/// (which must exist and be the product's seller's) and the moment; `live` is the live room's.
async fn check_source(state: &AppState, new: &NewOrder) -> Result<(), ApiError> {
    let invalid = |detail: &str| Problem::bad_request("invalid-source", detail);
    match new.source {
        OrderSource::Live => Err(invalid("live orders are placed in the live room's chat").into()),
        OrderSource::Api if new.media_ms.is_some() => {
            Err(invalid("media_ms goes with source replay").into())
        }
        OrderSource::Api => Ok(()),
        OrderSource::Replay => {
            let (Some(stream), Some(ms)) = (&new.stream_id, new.media_ms) else {
                return Err(invalid("a replay order names its stream_id and media_ms").into());
            };
            if new.pin_id.is_some() || ms > MAX_MEDIA_MS {
                return Err(invalid(
                    "a replay order buys at the catalog price (no pin_id), media_ms at most a week",
                )
                .into());
            }
            let row = state
                .store
                .stream(stream)
                .await?
                .ok_or_else(|| Problem::not_found("no such stream"))?;
            // Another seller's product is "no such product", as for any order.
            state
                .checkout
                .catalog()
                .product(&row.seller_id, &new.product_id)
                .await?;
            Ok(())
        }
    }
}

/// Orders newest first, filtered, a page at a time: a buyer's own, or a seller's for their products
///
/// `next_cursor` leads to the next page.
#[utoipa::path(
    get,
    path = "/api/v1/orders",
    params(OrderQuery),
    responses((status = 200, description = "Orders", body = OrderPage)),
    security(("oauth2" = ["orders:read"]), ("buyerToken" = []))
)]
async fn list_orders(
    State(state): State<AppState>,
    caller: Caller,
    vitrine_core::ClientIp(ip): vitrine_core::ClientIp,
    uri: axum::http::Uri,
    headers: HeaderMap,
    q: Result<Query<OrderQuery>, QueryRejection>,
) -> Result<Json<OrderPage>, ApiError> {
    let Query(q) = q.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let buyer = match &caller {
        Caller::Seller(s) => {
            let mut page = state
                .checkout
                .orders()
                .orders_page(OrderOwner::Seller(&s.id), &q)
                .await?;
            page.orders = page.orders.into_iter().map(OrderBody::for_seller).collect();
            return Ok(Json(page));
        }
        Caller::Buyer(b) => b,
    };
    let local = state
        .checkout
        .orders()
        .orders_page(OrderOwner::Buyer(&buyer.id), &q)
        .await?;
    // A buyer's orders abroad are kept in their sellers' regions: the buyer's home asks them.
    let token = vitrine_sfu::signaling::bearer(&headers);
    match (&state.homes, token) {
        (Some(homes), Some(token)) if !crate::regions::orders::this_region_only(&headers) => {
            let page = crate::regions::orders::everywhere(homes, ip, local, token, uri.query(), &q)
                .await?;
            Ok(Json(page))
        }
        _ => Ok(Json(local)),
    }
}

fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    path_id(raw, OrderId::parse, "no such order")
}

/// An order its buyer or seller may see
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}",
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, description = "The order", body = OrderBody)),
    security(("oauth2" = ["orders:read"]), ("buyerToken" = []))
)]
async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderBody>, ApiError> {
    let id = order_id(&id)?;
    Ok(Json(match caller {
        Caller::Seller(s) => {
            let order = state.checkout.orders().order_for_seller(&s.id, &id).await?;
            OrderBody::from(&order).for_seller()
        }
        Caller::Buyer(b) => {
            OrderBody::from(&state.checkout.orders().order_for_buyer(&b.id, &id).await?)
        }
    }))
}

/// How an order was shipped, given when fulfilling it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FulfilRequest {
    /// 1 to 64 characters; with `tracking_number`.
    #[schema(max_length = 64)]
    #[serde(default)]
    pub carrier: Option<String>,
    /// 1 to 64 of letters, digits, space, `-`, `_`, `.` and `/`; with `carrier`.
    #[schema(max_length = 64)]
    #[serde(default)]
    pub tracking_number: Option<String>,
}

/// Mark a paid order fulfilled (shipped), with its carrier and tracking number when given
///
/// The body is optional: without one the order is fulfilled without tracking. Sends the `order.shipped` webhook.
#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/fulfil",
    params(("id" = String, Path, description = "Order id")),
    request_body(content = Option<FulfilRequest>, description = "The shipment, when tracked"),
    responses(
        (status = 200, description = "Fulfilled", body = OrderBody),
        (status = 400, description = "A malformed body, or a carrier or tracking number out of bounds", body = Problem),
        (status = 409, description = "The order is not paid, or changed meanwhile", body = Problem)
    ),
    security(("oauth2" = ["orders:write"]))
)]
async fn fulfil(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<OrdersWrite>,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<OrderBody>, ApiError> {
    let id = order_id(&id)?;
    let shipment = if raw.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let asked: FulfilRequest = serde_json::from_slice(&raw)
            .map_err(|e| Problem::bad_request("invalid-body", e.to_string()))?;
        match (asked.carrier, asked.tracking_number) {
            (None, None) => None,
            (Some(carrier), Some(tracking)) => Some(
                vitrine_checkout::Shipment::new(&carrier, &tracking)
                    .map_err(|e| Problem::bad_request("invalid-shipment", e.to_string()))?,
            ),
            _ => {
                return Err(Problem::bad_request(
                    "invalid-shipment",
                    "carrier and tracking_number go together",
                )
                .into());
            }
        }
    };
    Ok(show(
        &state
            .checkout
            .orders()
            .fulfil(&seller.id, &id, shipment.as_ref())
            .await?,
    ))
}

/// Mark a shipped order delivered
///
/// Sends the `order.delivered` webhook.
#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/deliver",
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "Delivered", body = OrderBody),
        (status = 409, description = "The order is not shipped, or changed meanwhile", body = Problem)
    ),
    security(("oauth2" = ["orders:write"]))
)]
async fn deliver(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<OrdersWrite>,
    Path(id): Path<String>,
) -> Result<Json<OrderBody>, ApiError> {
    Ok(show(
        &state
            .checkout
            .orders()
            .deliver(&seller.id, &order_id(&id)?)
            .await?,
    ))
}

/// Cancel an order: a pending one is released (its payment cancelled), a paid one not yet shipped is refunded
#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/cancel",
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = OrderBody),
        (status = 409, description = "The order cannot be cancelled in its state, or changed meanwhile", body = Problem),
        (status = 503, description = "Payment provider unreachable; retry", body = Problem)
    ),
    security(("oauth2" = ["orders:write"]))
)]
async fn cancel(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<OrdersWrite>,
    Path(id): Path<String>,
) -> Result<Json<OrderBody>, ApiError> {
    Ok(show(
        &state
            .checkout
            .payments()
            .cancel(&seller.id, &order_id(&id)?)
            .await?,
    ))
}

/// Refund a paid or fulfilled order in full; the units go back to stock
#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/refund",
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "Refunded", body = OrderBody),
        (status = 409, description = "The order is not paid or fulfilled, its payment cannot be refunded, or it changed meanwhile", body = Problem),
        (status = 503, description = "Payment provider unreachable; retry", body = Problem)
    ),
    security(("oauth2" = ["orders:write"]))
)]
async fn refund(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<OrdersWrite>,
    Path(id): Path<String>,
) -> Result<Json<OrderBody>, ApiError> {
    Ok(show(
        &state
            .checkout
            .payments()
            .refund(&seller.id, &order_id(&id)?)
            .await?,
    ))
}

/// An order as this API shows it.
fn show(order: &Order) -> Json<OrderBody> {
    Json(OrderBody::from(order))
}
