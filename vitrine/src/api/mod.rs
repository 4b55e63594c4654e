//! The REST API under `/api/v1`: what every handler shares (errors as problem responses, the
//! authenticated caller, JSON bodies) and the routes of each resource, one module each.

pub mod account;
pub mod auctions;
pub mod auth;
pub mod catalog;
pub mod fx;
pub mod ip_limits;
pub mod limits;
pub mod metrics;
pub mod moderation;
pub mod orders;
pub mod payouts;
pub mod sales;
pub mod sandbox;
pub mod showcase;
pub mod streams;
pub mod timeline;
pub mod webhooks;

pub use auth::{AccountOwner, AuthSeller, Authorized, Principal};

use crate::state::AppState;
use crate::store::{Seller, StoreError, StreamRow};
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Json};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use vitrine_checkout::payment::PaymentError;
use vitrine_checkout::{Buyer, CheckoutError};
use vitrine_core::{Problem, Secret, StreamId};
use vitrine_platform::{PlatformError, Scope};
use vitrine_sfu::signaling::bearer;

/// The seller API's routes, rate-limited (see [`limits`]).
pub fn routes(state: &AppState) -> Router<AppState> {
    streams::routes()
        .merge(catalog::routes())
        .merge(orders::routes())
        .merge(account::routes())
        .merge(webhooks::routes())
        .merge(payouts::routes())
        .merge(fx::routes())
        .merge(moderation::routes())
        .merge(timeline::routes())
        .merge(sales::routes())
        .merge(auctions::routes())
        .merge(showcase::routes())
        .merge(sandbox::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::rate_limit,
        ))
}

/// API errors, mapped to problem responses in one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{}", .0.title)]
    Problem(Box<Problem>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Checkout(#[from] CheckoutError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("invalid token")]
    InvalidToken,
    #[error("the credential lacks the {0} scope")]
    InsufficientScope(Scope),
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self::Problem(Box::new(p))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::Problem(p) => *p,
            // RFC 6750 §3: say why in WWW-Authenticate too, for clients that read only that.
            Self::InvalidToken => {
                let mut r = Problem::unauthorized("the token is unknown, expired or revoked")
                    .into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
                return r;
            }
            Self::InsufficientScope(scope) => {
                let mut r = Problem::new(StatusCode::FORBIDDEN, "insufficient-scope", "forbidden")
                    .with_detail(format!("this call needs the {scope} scope"))
                    .into_response();
                if let Ok(v) = HeaderValue::from_str(&format!(
                    r#"Bearer error="insufficient_scope", scope="{scope}""#
                )) {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                return r;
            }
            Self::Platform(e) => match e {
                PlatformError::NotFound(what) => Problem::not_found(what),
                PlatformError::Invalid(why) => Problem::bad_request("invalid-request", why),
                e => {
                    tracing::error!(error = %e, "platform error");
                    Problem::internal()
                }
            },
            Self::Store(e) => {
                tracing::error!(error = %e, "store error");
                Problem::internal()
            }
            Self::Checkout(e) => match e {
                CheckoutError::NotFound(what) => Problem::not_found(what),
                CheckoutError::Invalid(why) => Problem::bad_request("invalid-request", why),
                CheckoutError::InsufficientBalance => Problem::new(
                    StatusCode::CONFLICT,
                    "insufficient-balance",
                    "insufficient balance",
                )
                .with_detail("the available balance is less than the payout"),
                CheckoutError::Unavailable(why) => Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily-unavailable",
                    "temporarily unavailable",
                )
                .with_detail(why),
                CheckoutError::Conflict(why) => {
                    Problem::new(StatusCode::CONFLICT, "conflict", "conflict").with_detail(why)
                }
                CheckoutError::Payment(PaymentError::NotRefundable) => Problem::new(
                    StatusCode::CONFLICT,
                    "not-refundable",
                    "payment cannot be refunded",
                ),
                CheckoutError::Payment(e) => {
                    tracing::warn!(error = %e, "payment provider");
                    Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "payment-provider-unavailable",
                        "payment provider unavailable",
                    )
                    .with_detail("retry with the same Idempotency-Key")
                }
                e => {
                    tracing::error!(error = %e, "checkout error");
                    Problem::internal()
                }
            },
        };
        problem.into_response()
    }
}

/// A JSON body, refused with a problem response when it does not parse.
pub fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| Problem::bad_request("invalid-body", e.body_text()).into())
}

/// The guest buyer authenticated by `Authorization: Bearer <buyer token>`.
pub struct AuthBuyer(pub Buyer);

impl FromRequestParts<AppState> for AuthBuyer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers)
            .ok_or_else(|| Problem::unauthorized("missing bearer buyer token"))?;
        state
            .buyers
            .by_token(
                &Secret::from_presented(token),
                vitrine_core::ClientIp::of(parts).0,
            )
            .await?
            .map(AuthBuyer)
            .ok_or_else(|| Problem::unauthorized("invalid buyer token").into())
    }
}

/// Either kind of caller, for routes both may use (their own orders): a seller credential
/// with the `orders:read` scope, or a guest buyer's token.
pub enum Caller {
    Seller(Seller),
    Buyer(Buyer),
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = bearer(&parts.headers) else {
            // No bearer: the seller's portal session, or a 401 that says what is missing.
            let Authorized(principal, _) =
                Authorized::<auth::OrdersRead>::from_request_parts(parts, state).await?;
            return Ok(Self::Seller(principal.seller));
        };
        if let Some(principal) = Principal::of_request(parts, state, token).await? {
            principal.require(Scope::OrdersRead)?;
            return Ok(Self::Seller(principal.seller));
        }
        state
            .buyers
            .by_token(
                &Secret::from_presented(token),
                vitrine_core::ClientIp::of(parts).0,
            )
            .await?
            .map(Self::Buyer)
            .ok_or(ApiError::InvalidToken)
    }
}

/// The `Idempotency-Key` header that `route` (named in the problem's detail) needs.
pub fn idempotency_key(headers: &axum::http::HeaderMap, route: &str) -> Result<String, ApiError> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            Problem::bad_request(
                "idempotency-key-required",
                format!("{route} needs an Idempotency-Key header"),
            )
            .into()
        })
}

/// Parses a path id; a malformed id is a resource that does not exist.
pub fn path_id<T>(
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, vitrine_core::IdError>,
    what: &'static str,
) -> Result<T, ApiError> {
    parse(raw).map_err(|_| Problem::not_found(what).into())
}

/// A stream of `seller`; another seller's stream is 404 like a missing one.
pub async fn owned_stream(
    state: &AppState,
    seller: &Seller,
    raw: &str,
) -> Result<StreamRow, ApiError> {
    let id = path_id(raw, StreamId::parse, "no such stream")?;
    state
        .store
        .stream(&id)
        .await?
        .filter(|r| r.seller_id == seller.id)
        .ok_or_else(|| Problem::not_found("no such stream").into())
}
