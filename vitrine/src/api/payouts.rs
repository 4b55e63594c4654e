//! Sellers' money (`/api/v1/balance`, `/api/v1/payouts`, `/api/v1/ledger`): balances by
//! currency, payouts (standard or instant, with an `Idempotency-Key`), and the ledger statement.
//! Reading needs `payouts:read`, paying out `payouts:write`.

use super::auth::{PayoutsRead, PayoutsWrite};
use super::{ApiError, AuthSeller, body};
use crate::app::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use vitrine_checkout::payouts::{NewPayout, Payout};
use vitrine_core::Problem;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/balance", get(balance))
        .route("/api/v1/payouts", get(list_payouts).post(request_payout))
        .route("/api/v1/payouts/{id}", get(get_payout))
        .route("/api/v1/ledger", get(statement))
}

#[derive(Deserialize)]
struct Page {
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

async fn balance(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<PayoutsRead>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let balances = state.checkout.balances(&seller.id).await?;
    Ok(Json(json!({ "balances": balances })))
}

async fn request_payout(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<PayoutsWrite>,
    headers: HeaderMap,
    new: Result<Json<NewPayout>, JsonRejection>,
) -> Result<(StatusCode, Json<Payout>), ApiError> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            Problem::bad_request(
                "idempotency-key-required",
                "POST /api/v1/payouts needs an Idempotency-Key header (1 to 255 characters)",
            )
        })?
        .to_owned();
    let payout = state
        .checkout
        .request_payout(&seller.id, Some(&key), body(new)?)
        .await?;
    Ok((StatusCode::CREATED, Json(payout)))
}

async fn list_payouts(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<PayoutsRead>,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let payouts = state.checkout.payouts_of(&seller.id, page(q)?).await?;
    Ok(Json(json!({ "payouts": payouts })))
}

async fn get_payout(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<PayoutsRead>,
    Path(id): Path<String>,
) -> Result<Json<Payout>, ApiError> {
    Ok(Json(state.checkout.payout(&seller.id, &id).await?))
}

async fn statement(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<PayoutsRead>,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let lines = state.checkout.statement(&seller.id, page(q)?).await?;
    Ok(Json(json!({ "entries": lines })))
}
