//! Live auctions: the seller starts one on the stream's pinned product
//! (`POST /api/v1/streams/{id}/auctions`), anyone reads one (`GET /api/v1/auctions/{id}`), buyers
//! bid (`POST /api/v1/auctions/{id}/bids`, with an `Idempotency-Key`, held to a per-buyer rate
//! shared with the chat's `bid` frames), and the winner pays the order the hammer made
//! (`POST /api/v1/orders/{id}/pay`).

use super::auth::StreamsWrite;
use super::{ApiError, AuthBuyer, AuthSeller, body, owned_stream, path_id};
use crate::bids::Held;
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use vitrine_checkout::NewAuction;
use vitrine_checkout::orders::PaymentDetails;
use vitrine_core::{
    AuctionId, AuctionView, BidFailure, BidOutcome, BidRequest, Money, OrderId, Problem,
};

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(start_auction, get_auction, place_bid, pay_order))]
pub struct Doc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/streams/{id}/auctions", post(start_auction))
        .route("/api/v1/auctions/{id}", get(get_auction))
        .route("/api/v1/auctions/{id}/bids", post(place_bid))
        .route("/api/v1/orders/{id}/pay", post(pay_order))
}

/// Start an auction of the stream's pinned product; the room sees it at once
///
/// One unit leaves stock for the auction and comes back if nobody bids. At the hammer, the
/// highest bidder's order is created at the hammer price, pending their payment
/// (`POST /api/v1/orders/{id}/pay`) for the reservation window.
#[utoipa::path(
    post,
    path = "/api/v1/streams/{id}/auctions",
    params(("id" = String, Path, description = "The stream's id")),
    request_body = NewAuction,
    responses(
        (status = 201, description = "Started", body = AuctionView),
        (status = 400, description = "Out of bounds, or prices not in the product's currency", body = Problem),
        (status = 404, description = "No such stream or product of this seller", body = Problem),
        (status = 409, description = "The product is not pinned there, the stream already has an open auction, or nothing is left to auction", body = Problem)
    ),
    security(("oauth2" = ["streams:write"]))
)]
async fn start_auction(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<StreamsWrite>,
    Path(id): Path<String>,
    new: Result<Json<NewAuction>, JsonRejection>,
) -> Result<(StatusCode, Json<AuctionView>), ApiError> {
    let stream = owned_stream(&state, &seller, &id).await?;
    let auction = state
        .checkout
        .sale()
        .start_auction(&seller.id, &stream.id, body(new)?)
        .await?;
    Ok((StatusCode::CREATED, Json(auction)))
}

/// An auction as the room sees it: the current bid, the bidder, the clock, and once ended the
/// winner's order
#[utoipa::path(
    get,
    path = "/api/v1/auctions/{id}",
    params(("id" = String, Path, description = "The auction's id")),
    responses(
        (status = 200, description = "The auction", body = AuctionView),
        (status = 404, description = "No such auction", body = Problem)
    )
)]
async fn get_auction(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AuctionView>, ApiError> {
    let id = path_id(&id, AuctionId::parse, "no such auction")?;
    Ok(Json(state.checkout.sale().auction(&id).await?))
}

/// A bid.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewBid {
    /// In the auction's currency: at least its `next_min_bid`.
    amount: Money,
}

/// Bid: leads when at least the start price, or the highest bid plus the increment
///
/// A bid in the last `extend_secs` puts the clock back to `extend_secs` (not in sudden death).
#[utoipa::path(
    post,
    path = "/api/v1/auctions/{id}/bids",
    params(
        ("id" = String, Path, description = "The auction's id"),
        ("Idempotency-Key" = String, Header, description = "The bid's key, per buyer: a retry with it gets the same answer; with another amount, 422.", min_length = 1, max_length = 255)
    ),
    request_body = NewBid,
    responses(
        (status = 201, description = "The bid leads; the auction as it stands", body = AuctionView),
        (status = 400, description = "Malformed, or not in the auction's currency", body = Problem),
        (status = 401, description = "No valid buyer token", body = Problem),
        (status = 404, description = "No such auction", body = Problem),
        (status = 409, description = "bid-too-low, auction-ended or already-highest", body = Problem),
        (status = 422, description = "idempotency-key-reused: the key was used for another bid", body = Problem),
        (status = 429, description = "Too many bids from this buyer", body = Problem),
        (status = 503, description = "Not written; retry with the same key", body = Problem)
    ),
    security(("buyerToken" = []))
)]
#[tracing::instrument(skip_all, fields(buyer = %buyer.id))]
async fn place_bid(
    State(state): State<AppState>,
    AuthBuyer(buyer): AuthBuyer,
    Path(id): Path<String>,
    headers: HeaderMap,
    new: Result<Json<NewBid>, JsonRejection>,
) -> Result<Response, ApiError> {
    let auction = path_id(&id, AuctionId::parse, "no such auction")?;
    let key = super::idempotency_key(&headers, "POST /api/v1/auctions/{id}/bids")?;
    let new = body(new)?;
    if let Err(held) = state.bids.admit(&buyer.id).await {
        return Ok(match held {
            Held::Limited(decision) => {
                super::limits::refused(&state, &decision, "too many bids from this buyer".into())
            }
            Held::Unavailable => super::limits::unavailable_problem(),
        });
    }
    let request = BidRequest {
        buyer: buyer.id,
        bidder_name: buyer.display_name,
        auction,
        stream: None,
        amount: new.amount,
        request_id: key,
    };
    match state.checkout.sale().place_bid(&request).await? {
        BidOutcome::Accepted(view) => Ok((StatusCode::CREATED, Json(*view)).into_response()),
        BidOutcome::Refused { reason, detail } => Ok(bid_problem(reason, detail).into_response()),
    }
}

/// The problem response of a refused bid.
fn bid_problem(reason: BidFailure, detail: String) -> Problem {
    let (status, slug, title) = match reason {
        BidFailure::TooLow => (StatusCode::CONFLICT, "bid-too-low", "bid too low"),
        BidFailure::AuctionEnded => (StatusCode::CONFLICT, "auction-ended", "auction ended"),
        BidFailure::AlreadyHighest => (
            StatusCode::CONFLICT,
            "already-highest",
            "already the highest bid",
        ),
        BidFailure::NotFound => (StatusCode::NOT_FOUND, "not-found", "not found"),
        BidFailure::Invalid if detail.contains("request id") => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "idempotency key reused",
        ),
        BidFailure::Invalid => (
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "invalid request",
        ),
        BidFailure::RateLimited => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "too many requests",
        ),
        BidFailure::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily-unavailable",
            "temporarily unavailable",
        ),
    };
    Problem::new(status, slug, title).with_detail(detail)
}

/// What paying an order takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Payment {
    #[schema(inline)]
    payment: PaymentDetails,
}

/// Pay an order made without a card (an auction's winning bid): idempotent per order
#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/pay",
    params(("id" = String, Path, description = "The order's id")),
    request_body = Payment,
    responses(
        (status = 201, description = "Paid", body = vitrine_checkout::OrderBody, headers(
            ("Idempotent-Replayed" = String, description = "`true` when the order was paid by an earlier request")
        )),
        (status = 401, description = "No valid buyer token", body = Problem),
        (status = 402, description = "Card declined (type .../payment-declined)", body = Problem),
        (status = 404, description = "No such order of this buyer", body = Problem),
        (status = 409, description = "Paid when placed, a payment under way, or the reservation expired", body = Problem),
        (status = 503, description = "Payment provider unreachable; retry", body = Problem)
    ),
    security(("buyerToken" = []))
)]
#[tracing::instrument(skip_all, fields(buyer = %buyer.id))]
async fn pay_order(
    State(state): State<AppState>,
    AuthBuyer(buyer): AuthBuyer,
    Path(id): Path<String>,
    new: Result<Json<Payment>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, OrderId::parse, "no such order")?;
    let new = body(new)?;
    let placed = state
        .checkout
        .sale()
        .pay_order(&buyer.id, &id, new.payment.card_number.expose())
        .await?;
    Ok(super::orders::placed_response(placed))
}
