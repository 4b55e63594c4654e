//! Exchange rates for buyers (`/api/v1/public/fx/...`, no credential): the table in force with
//! its source and time, and conversions of an amount with the documented rounding, so that a
//! watch page can show a price in the buyer's currency exactly as checkout would compute it.

use super::ApiError;
use crate::app::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use vitrine_checkout::fx::{FxError, RateTable};
use vitrine_core::money::MAX_AMOUNT;
use vitrine_core::{Currency, Problem};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/public/fx/rates", get(rates))
        .route("/api/v1/public/fx/convert", get(convert))
}

/// How conversions round, as the API documents it.
pub const ROUNDING: &str = "half away from zero, at the target currency's minor unit";

fn table(state: &AppState) -> Result<Arc<RateTable>, ApiError> {
    state.checkout.rates().current().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-exchange-rates",
            "no exchange rates",
        )
        .with_detail("the operator has not configured exchange rates, or they have not loaded yet")
        .into()
    })
}

fn fx_problem(e: FxError) -> ApiError {
    Problem::bad_request("conversion", e.to_string()).into()
}

async fn rates(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let t = table(&state)?;
    let mut rates = BTreeMap::new();
    for c in t.currencies() {
        rates.insert(
            c.as_str().to_owned(),
            t.rate(c).map_err(fx_problem)?.to_string(),
        );
    }
    Ok(Json(json!({
        "base": t.base().as_str(),
        "source": t.source,
        "as_of": t.as_of,
        "rates": rates,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConvertQuery {
    /// Minor units of `from`.
    amount: i64,
    from: String,
    to: String,
}

async fn convert(
    State(state): State<AppState>,
    q: Result<Query<ConvertQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let currency = |raw: &str| {
        Currency::parse(raw)
            .map_err(|e| ApiError::from(Problem::bad_request("invalid-query", e.to_string())))
    };
    let (from, to) = (currency(&q.from)?, currency(&q.to)?);
    if !(0..=MAX_AMOUNT).contains(&q.amount) {
        return Err(Problem::bad_request(
            "invalid-query",
            format!("amount must be 0 to {MAX_AMOUNT} minor units"),
        )
        .into());
    }
    let t = table(&state)?;
    let quote = t.quote(from, to).map_err(fx_problem)?;
    let converted = quote.convert(q.amount).map_err(fx_problem)?;
    Ok(Json(json!({
        "from": { "amount": q.amount, "currency": from.as_str() },
        "to": converted,
        "rate": {
            "base": t.base().as_str(),
            "from": quote.from_rate.to_string(),
            "to": quote.to_rate.to_string(),
        },
        "source": t.source,
        "as_of": t.as_of,
        "rounding": ROUNDING,
    })))
}
