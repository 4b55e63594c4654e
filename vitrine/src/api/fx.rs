//! Exchange rates for buyers (`/api/v1/public/fx/...`, no credential): the table in force with
//! its source and time, and conversions of an amount with the documented rounding, so that a
//! watch page can show a price in the buyer's currency exactly as checkout would compute it.
//! A server configured without rates answers the table empty (200): it prices in each product's
//! own currency by choice. Rates that have not loaded yet, or are older than their age limit,
//! answer 503 with a problem: they may come back.

use super::ApiError;
use crate::state::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use vitrine_checkout::fx::{FxError, RateTable};
use vitrine_checkout::rates::RatesUnavailable;
use vitrine_core::money::MAX_AMOUNT;
use vitrine_core::{Currency, Money, Problem};

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(rates, convert, currencies))]
pub struct Doc;

// The bodies below were JSON objects with sorted keys; their fields stay in that order so that
// the bytes on the wire do not change.

/// The exchange rates in force. Without rates configured: `rates` is empty and the other
/// fields are absent.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FxRates {
    /// When the rates were published, as their source gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub as_of: Option<String>,
    /// The currency the rates are against.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub base: Option<Currency>,
    /// Units of each currency per unit of the base, as exact decimal strings.
    pub rates: BTreeMap<String, String>,
    /// Where the rates come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub source: Option<String>,
}

/// An amount converted at the rates in force.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Conversion {
    /// When the rates were published, as their source gives it.
    pub as_of: String,
    pub from: Money,
    #[schema(inline)]
    pub rate: ConversionRate,
    /// How the result was rounded.
    pub rounding: String,
    /// Where the rates come from.
    pub source: String,
    pub to: Money,
}

/// The two rates a conversion used, against the base currency (exact decimal strings).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConversionRate {
    pub base: Currency,
    pub from: String,
    pub to: String,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/public/fx/rates", get(rates))
        .route("/api/v1/public/fx/convert", get(convert))
        .route("/api/v1/public/currencies", get(currencies))
}

/// A currency the server prices in.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CurrencyInfo {
    pub code: Currency,
    /// Decimal places of its minor unit (ISO 4217: JPY 0, USD 2, KWD 3).
    pub minor_units: u8,
}

/// Every currency the server knows.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CurrencyList {
    pub currencies: Vec<CurrencyInfo>,
}

/// The ISO 4217 currencies the server knows and their minor units, so clients show and parse
/// amounts as the server counts them
#[utoipa::path(
    get,
    path = "/api/v1/public/currencies",
    responses((status = 200, description = "The currencies", body = CurrencyList))
)]
async fn currencies() -> Json<CurrencyList> {
    Json(CurrencyList {
        currencies: Currency::all()
            .map(|code| CurrencyInfo {
                minor_units: code.minor_digits(),
                code,
            })
            .collect(),
    })
}

/// How conversions round, as the API documents it.
pub const ROUNDING: &str = "half away from zero, at the target currency's minor unit";

fn table(state: &AppState) -> Result<Arc<RateTable>, ApiError> {
    state.checkout.rates().fresh().map_err(|e| {
        let slug = match e {
            RatesUnavailable::Stale { .. } => "stale-exchange-rates",
            RatesUnavailable::NotConfigured | RatesUnavailable::NotLoaded => "no-exchange-rates",
        };
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            slug,
            &slug.replace('-', " "),
        )
        .with_detail(e.to_string())
        .into()
    })
}

fn fx_problem(e: FxError) -> ApiError {
    Problem::bad_request("conversion", e.to_string()).into()
}

/// The exchange rates in force, with their source and time (no credential)
#[utoipa::path(
    get,
    path = "/api/v1/public/fx/rates",
    responses(
        (status = 200, description = "Rates against the base currency, as exact decimal strings; an empty table when the server has no rates configured", body = FxRates),
        (status = 503, description = "The rates have not loaded yet (no-exchange-rates), or are past their age limit (stale-exchange-rates)", body = Problem)
    )
)]
async fn rates(State(state): State<AppState>) -> Result<Json<FxRates>, ApiError> {
    if !state.checkout.rates().is_configured() {
        return Ok(Json(FxRates {
            as_of: None,
            base: None,
            rates: BTreeMap::new(),
            source: None,
        }));
    }
    let t = table(&state)?;
    let mut rates = BTreeMap::new();
    for c in t.currencies() {
        rates.insert(
            c.as_str().to_owned(),
            t.rate(c).map_err(fx_problem)?.to_string(),
        );
    }
    Ok(Json(FxRates {
        as_of: Some(t.as_of.clone()),
        base: Some(t.base()),
        rates,
        source: Some(t.source.clone()),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ConvertQuery {
    /// Minor units of `from`
    #[param(minimum = 0, maximum = 10_000_000_000_000_i64)]
    amount: i64,
    /// ISO 4217
    #[param(pattern = "^[A-Z]{3}$")]
    from: String,
    /// ISO 4217
    #[param(pattern = "^[A-Z]{3}$")]
    to: String,
}

/// Convert an amount between currencies at the rates in force, rounded half away from zero at the target's minor unit (no credential)
#[utoipa::path(
    get,
    path = "/api/v1/public/fx/convert",
    params(ConvertQuery),
    responses(
        (status = 200, description = "The conversion", body = Conversion),
        (status = 503, description = "No exchange rates are configured or loaded (no-exchange-rates), or they are past their age limit (stale-exchange-rates)", body = Problem)
    )
)]
async fn convert(
    State(state): State<AppState>,
    q: Result<Query<ConvertQuery>, QueryRejection>,
) -> Result<Json<Conversion>, ApiError> {
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
    Ok(Json(Conversion {
        as_of: t.as_of.clone(),
        from: Money {
            amount: q.amount,
            currency: from,
        },
        rate: ConversionRate {
            base: t.base(),
            from: quote.from_rate.to_string(),
            to: quote.to_rate.to_string(),
        },
        rounding: ROUNDING.to_owned(),
        source: t.source.clone(),
        to: converted,
    }))
}
