//! Sellers' money (`/api/v1/balance`, `/api/v1/payouts`, `/api/v1/ledger`): balances by
//! currency, payouts (standard or instant, with an `Idempotency-Key`), and the ledger statement.
//! Reading needs `payouts:read`, paying out `payouts:write`.

use super::auth::{PayoutsRead, PayoutsWrite};
use super::{ApiError, AuthSeller, body};
use crate::state::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use vitrine_checkout::ledger::{Balance, StatementLine};
use vitrine_checkout::payouts::{NewPayout, Payout};
use vitrine_core::Problem;

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(balance, list_payouts, request_payout, get_payout, statement))]
pub struct Doc;

/// A seller's balances, one per currency.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BalanceList {
    pub balances: Vec<Balance>,
}

/// A seller's payouts, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PayoutList {
    pub payouts: Vec<Payout>,
}

/// A seller's ledger statement, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LedgerStatement {
    pub entries: Vec<StatementLine>,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/balance", get(balance))
        .route("/api/v1/payouts", get(list_payouts).post(request_payout))
        .route("/api/v1/payouts/{id}", get(get_payout))
        .route("/api/v1/ledger", get(statement))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Page {
    /// How many, newest first
    #[param(minimum = 1, maximum = 200, default = 50)]
    limit: Option<i64>,
}

fn page(q: Result<Query<Page>, QueryRejection>) -> Result<i64, ApiError> {
    let Query(q) = q.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    match q.limit {
        None => Ok(50),
        Some(n @ 1..=200) => Ok(n),
        Some(_) => Err(Problem::bad_request("invalid-query", "limit must be 1 to 200").into()),
    }
}

/// The seller's balances, one per currency
#[utoipa::path(
    get,
    path = "/api/v1/balance",
    responses((status = 200, description = "Balances", body = BalanceList)),
    security(("oauth2" = ["payouts:read"]))
)]
async fn balance(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<PayoutsRead>,
) -> Result<Json<BalanceList>, ApiError> {
    let balances = state.checkout.orders().balances(&seller.id).await?;
    Ok(Json(BalanceList { balances }))
}

/// Pay out part of the available balance (Idempotency-Key required); instant payouts carry a fee
#[utoipa::path(
    post,
    path = "/api/v1/payouts",
    params((
        "Idempotency-Key" = String,
        Header,
        description = "Same key and body: the same payout is returned. Same key, another amount or method: 409.",
        min_length = 1,
        max_length = 255
    )),
    request_body = NewPayout,
    responses(
        (status = 201, description = "The payout", body = Payout),
        (status = 409, description = "Insufficient balance, or the key was used for another payout", body = Problem)
    ),
    security(("oauth2" = ["payouts:write"]))
)]
async fn request_payout(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<PayoutsWrite>,
    headers: HeaderMap,
    new: Result<Json<NewPayout>, JsonRejection>,
) -> Result<(StatusCode, Json<Payout>), ApiError> {
    let route = "POST /api/v1/payouts";
    let key = super::idempotency_key(&headers, route)?;
    if let Err(e) = vitrine_checkout::idempotency::validate_key(&key) {
        return Err(Problem::bad_request(
            "idempotency-key-required",
            format!("{route} needs an Idempotency-Key header: {e}"),
        )
        .into());
    }
    let payout = state
        .checkout
        .payouts()
        .request_payout(&seller.id, Some(&key), body(new)?)
        .await?;
    Ok((StatusCode::CREATED, Json(payout)))
}

/// The seller's payouts, newest first
#[utoipa::path(
    get,
    path = "/api/v1/payouts",
    params(Page),
    responses((status = 200, description = "Payouts", body = PayoutList)),
    security(("oauth2" = ["payouts:read"]))
)]
async fn list_payouts(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<PayoutsRead>,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<Json<PayoutList>, ApiError> {
    let payouts = state
        .checkout
        .payouts()
        .payouts_of(&seller.id, page(q)?)
        .await?;
    Ok(Json(PayoutList { payouts }))
}

/// One payout
#[utoipa::path(
    get,
    path = "/api/v1/payouts/{id}",
    params(("id" = String, Path, description = "Payout id")),
    responses((status = 200, description = "The payout", body = Payout)),
    security(("oauth2" = ["payouts:read"]))
)]
async fn get_payout(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<PayoutsRead>,
    Path(id): Path<String>,
) -> Result<Json<Payout>, ApiError> {
    Ok(Json(
        state.checkout.payouts().payout(&seller.id, &id).await?,
    ))
}

/// The seller's ledger statement, newest first
#[utoipa::path(
    get,
    path = "/api/v1/ledger",
    params(Page),
    responses((status = 200, description = "Entries", body = LedgerStatement)),
    security(("oauth2" = ["payouts:read"]))
)]
async fn statement(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<PayoutsRead>,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<Json<LedgerStatement>, ApiError> {
    let entries = state
        .checkout
        .orders()
        .statement(&seller.id, page(q)?)
        .await?;
    Ok(Json(LedgerStatement { entries }))
}
