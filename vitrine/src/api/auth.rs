//! Who is calling the API and what they may do. Three kinds of bearer credential reach the
//! seller API, told apart by their prefix:
//!
//! - `vt_...`, a seller's account token: the seller itself, every scope;
//! - `vk_test_...` / `vk_live_...`, an API key: the scopes it was created with, on the seller's
//!   live data or on its sandbox account;
//! - `vat_...`, an OAuth2 access token: the scopes the seller granted that app.
//!
//! Every handler states the one scope it needs in its signature (`AuthSeller<ProductsWrite>`),
//! so a route cannot forget its check and the check cannot drift from the route.

use super::ApiError;
use crate::state::AppState;
use crate::store::Seller;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::marker::PhantomData;
use vitrine_core::{ApiKeyId, AppId, GrantId, Problem, Secret};
use vitrine_platform::{Mode, Scope, Scopes};
use vitrine_sfu::signaling::bearer;

/// How a caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    AccountToken,
    ApiKey {
        key: ApiKeyId,
        mode: Mode,
    },
    App {
        app: AppId,
        grant: GrantId,
        tier: String,
    },
    /// The seller signed in to the developer portal (a session cookie plus its CSRF header).
    PortalSession,
}

/// An authenticated caller of the seller API.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Whose data the call reaches (for a test key, the sandbox account).
    pub seller: Seller,
    pub scopes: Scopes,
    pub via: Via,
}

impl Principal {
    /// Resolves a bearer credential; `None` when it is not one the seller API knows.
    pub async fn resolve(state: &AppState, raw: &str) -> Result<Option<Principal>, ApiError> {
        let secret = Secret::from_presented(raw);
        if raw.starts_with("vt_") {
            let seller = state.store.seller_by_token(&secret).await?;
            return Ok(seller.map(|seller| Principal {
                seller,
                scopes: Scopes::all(),
                via: Via::AccountToken,
            }));
        }
        if raw.starts_with("vk_") {
            let Some(key) = state.platform.key_principal(&secret).await? else {
                return Ok(None);
            };
            let seller = state.store.seller(&key.seller).await?;
            return Ok(seller.map(|seller| Principal {
                seller,
                scopes: key.scopes,
                via: Via::ApiKey {
                    key: key.key,
                    mode: key.mode,
                },
            }));
        }
        if raw.starts_with("vat_") {
            let Some(grant) = state.platform.access_grant(&secret).await? else {
                return Ok(None);
            };
            let seller = state.store.seller(&grant.seller).await?;
            return Ok(seller.map(|seller| Principal {
                seller,
                scopes: grant.scopes,
                via: Via::App {
                    app: grant.app,
                    grant: grant.grant,
                    tier: grant.tier,
                },
            }));
        }
        Ok(None)
    }

    /// The principal of a request's bearer credential `raw`: the one the rate limiter already
    /// resolved for this request when there is one, so the credential is looked up once.
    pub async fn of_request(
        parts: &Parts,
        state: &AppState,
        raw: &str,
    ) -> Result<Option<Principal>, ApiError> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(Some(p.clone()));
        }
        Self::resolve(state, raw).await
    }

    /// Refuses the call unless the credential carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::InsufficientScope(scope))
        }
    }
}

/// The scope a route needs, as a type (see [`AuthSeller`]).
pub trait Needs: Send + Sync + 'static {
    const SCOPE: Scope;
}

macro_rules! scopes {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub struct $name;
            impl Needs for $name {
                const SCOPE: Scope = Scope::$name;
            }
        )*
    };
}

scopes!(
    ProductsRead,
    ProductsWrite,
    OrdersRead,
    OrdersWrite,
    StreamsRead,
    StreamsWrite,
    WebhooksRead,
    WebhooksWrite,
    PayoutsRead,
    PayoutsWrite,
);

/// The seller a call acts for, once its credential is checked to carry the scope `N`.
pub struct AuthSeller<N: Needs>(pub Seller, pub PhantomData<N>);

/// The whole principal, for handlers that need more than the seller (rate limits, apps).
pub struct Authorized<N: Needs>(pub Principal, pub PhantomData<N>);

/// The caller: its bearer credential, or else the portal's browser session, which is the
/// account itself (the portal manages webhooks and payouts too).
async fn principal_from(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let Some(raw) = bearer(&parts.headers) else {
        if crate::portal::session_cookie(&parts.headers).is_none() {
            return Err(Problem::unauthorized("missing bearer token").into());
        }
        return portal_principal(parts, state).await;
    };
    Principal::of_request(parts, state, raw)
        .await?
        .ok_or(ApiError::InvalidToken)
}

impl<N: Needs> FromRequestParts<AppState> for Authorized<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = principal_from(parts, state).await?;
        principal.require(N::SCOPE)?;
        Ok(Self(principal, PhantomData))
    }
}

impl<N: Needs> FromRequestParts<AppState> for AuthSeller<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authorized(principal, _) = Authorized::<N>::from_request_parts(parts, state).await?;
        Ok(Self(principal.seller, PhantomData))
    }
}

/// The account itself, for what no key or app may do: managing apps, keys and grants. Accepts
/// the account token, or the portal's browser session with its CSRF header.
pub struct AccountOwner(pub Seller);

/// The header the portal's scripts send the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

impl FromRequestParts<AppState> for AccountOwner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(raw) = bearer(&parts.headers) {
            let principal = Principal::of_request(parts, state, raw)
                .await?
                .ok_or(ApiError::InvalidToken)?;
            if principal.via != Via::AccountToken {
                return Err(Problem::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "account-token-required",
                    "forbidden",
                )
                .with_detail("apps, API keys and grants are managed with the account's own token or in the portal")
                .into());
            }
            return Ok(Self(principal.seller));
        }
        if crate::portal::session_cookie(&parts.headers).is_none() {
            return Err(Problem::unauthorized("missing bearer token or portal session").into());
        }
        portal_principal(parts, state).await.map(|p| Self(p.seller))
    }
}

/// The account behind the portal's session: the one the rate limiter already resolved for
/// this request when there is one, so the session is looked up once.
pub(crate) async fn portal_principal(
    parts: &Parts,
    state: &AppState,
) -> Result<Principal, ApiError> {
    if let Some(p) = parts.extensions.get::<Principal>()
        && p.via == Via::PortalSession
    {
        return Ok(p.clone());
    }
    Ok(Principal {
        seller: portal_seller(parts, state).await?,
        scopes: Scopes::all(),
        via: Via::PortalSession,
    })
}

/// The seller signed in to the portal, once the request's CSRF header matches its session:
/// the cookie alone rides along on cross-site requests, the header cannot.
async fn portal_seller(parts: &Parts, state: &AppState) -> Result<Seller, ApiError> {
    let session = crate::portal::session_cookie(&parts.headers)
        .ok_or_else(|| Problem::unauthorized("missing bearer token or portal session"))?;
    let csrf = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !vitrine_platform::sessions::csrf_matches(&session, csrf) {
        return Err(
            Problem::new(axum::http::StatusCode::FORBIDDEN, "csrf", "forbidden")
                .with_detail("the portal session's X-CSRF-Token header is missing or wrong")
                .into(),
        );
    }
    let seller = match state.platform.session_seller(&session).await? {
        Some(id) => state.store.seller(&id).await?,
        None => None,
    };
    seller.ok_or_else(|| Problem::unauthorized("the portal session has ended").into())
}
