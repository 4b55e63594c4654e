//! Limits per client address on what anyone may call without a seller credential: minting
//! guest buyers, signing in, the OAuth2 token endpoint, buyers' orders and order polling, the
//! public reads. Each request is counted under one class ([`classify`]) against its address
//! (an IPv6 client by its /64), in the same store as the seller API's tiers, so the limit holds
//! across nodes when Redis is configured. Also here: the back-off of failed sign-ins, sign-ins
//! per account, and a flash sale's per-buyer limit held per address too.
//!
//! What this module must never do: count a request against an address it did not get from
//! [`ClientIp`] (the edge decides who the client is), or let a write through when the store
//! cannot be asked (see `limits::store_failed`).

use super::ApiError;
use super::limits::{add_headers, refused, store_failed};
use crate::sale_shares::{SaleShares, Share};
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use vitrine_checkout::{NewOrder, OrderResult, Placed};
use vitrine_core::{BuyerId, ClientIp, Problem, SellerId};
use vitrine_platform::ratelimit::{Limit, LimitError};

/// What a request without a seller credential is counted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Creating a guest buyer: each new buyer is a fresh per-buyer flash-sale allowance.
    Signup,
    /// Signing in or out, and the OAuth2 endpoints that take credentials.
    Auth,
    /// A buyer placing an order.
    Orders,
    /// Everything else: public reads, buyers reading their orders, calls that will be 401.
    Public,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Self::Signup => "signup",
            Self::Auth => "auth",
            Self::Orders => "orders",
            Self::Public => "public",
        }
    }
}

/// The class of a request by its method and path.
pub fn classify(method: &Method, path: &str) -> Class {
    // The operator's routes take a token, whatever the method: guessing one is an auth attempt.
    // A sandbox payment check is opened by its address alone: trying addresses is guessing a
    // secret too, so it counts as an auth attempt.
    if path.starts_with("/admin/") || path.starts_with(vitrine_checkout::sandbox::ACTION_PATH) {
        return Class::Auth;
    }
    if method != Method::POST {
        return Class::Public;
    }
    match path {
        "/api/v1/buyers" => Class::Signup,
        "/signin" | "/signout" | "/oauth/token" | "/oauth/revoke" | "/oauth/authorize" => {
            Class::Auth
        }
        "/api/v1/orders" => Class::Orders,
        // Paying an order (an auction's) charges a card, as placing one does.
        pay if pay.starts_with("/api/v1/orders/") && pay.ends_with("/pay") => Class::Orders,
        _ => Class::Public,
    }
}

fn limit_of(state: &AppState, class: Class) -> Option<Limit> {
    let l = &state.edge.ip_limits;
    match class {
        Class::Signup => l.signup,
        Class::Auth => l.auth,
        Class::Orders => l.orders,
        Class::Public => l.public,
    }
}

/// The middleware of the routes anyone may call (OAuth2, sign-in), and what the seller API's
/// limiter falls back to when a request carries no seller credential.
pub async fn per_address(
    State(state): State<AppState>,
    ip: ClientIp,
    req: Request,
    next: Next,
) -> Response {
    count(&state, ip, req, next).await
}

/// The media endpoints' `OPTIONS`, which hand anyone the ICE servers with TURN credentials
/// (RFC 9725 §4.6): counted per address as public reads. Their other requests pass (offers
/// go through the SFU's own viewer admission).
pub async fn media_options(
    State(state): State<AppState>,
    ip: ClientIp,
    req: Request,
    next: Next,
) -> Response {
    if req.method() == Method::OPTIONS {
        count(&state, ip, req, next).await
    } else {
        next.run(req).await
    }
}

/// Counts `req` against its address under its class; 429 when over. A 401 answer carries no
/// RateLimit headers: the caller's policy, once it authenticates, is its tier's.
pub async fn count(state: &AppState, ip: ClientIp, req: Request, next: Next) -> Response {
    let class = classify(req.method(), req.uri().path());
    let Some(limit) = limit_of(state, class) else {
        return next.run(req).await;
    };
    let key = format!("ip:{}:{}", class.name(), ip.limit_key());
    let decision = match state.limiter.check_limit(&key, class.name(), &limit).await {
        Ok(d) => d,
        Err(e) => return store_failed(state, e, req, next).await,
    };
    if !decision.allowed {
        return refused(
            state,
            &decision,
            format!("too many {} requests from this address", class.name()),
        );
    }
    let mut response = next.run(req).await;
    if response.status() != StatusCode::UNAUTHORIZED {
        add_headers(&mut response, &decision);
    }
    response
}

/// The store failed while deciding a sign-in step: refuse (a sign-in is a write).
fn unavailable(state: &AppState, e: LimitError) -> Response {
    tracing::warn!(error = %e, "rate limiter unavailable; sign-in refused");
    state.api_metrics.limiter_errors.inc();
    super::limits::unavailable_problem()
}

/// Before a sign-in's token is looked at: refused while its address is backing off after too
/// many failed sign-ins. A right token is refused too then, so that guessing learns nothing.
pub async fn signin_backoff(state: &AppState, ip: &ClientIp) -> Result<(), Response> {
    let Some(limit) = state.edge.ip_limits.signin_failures else {
        return Ok(());
    };
    let key = format!("signin-failed:{}", ip.limit_key());
    match state
        .limiter
        .probe_limit(&key, "signin-failures", &limit)
        .await
    {
        Ok(d) if d.allowed => Ok(()),
        Ok(d) => Err(refused(
            state,
            &d,
            "too many failed sign-ins from this address; wait before trying again".into(),
        )),
        Err(e) => Err(unavailable(state, e)),
    }
}

/// Counts a failed sign-in against its address.
pub async fn signin_failed(state: &AppState, ip: &ClientIp) {
    let Some(limit) = state.edge.ip_limits.signin_failures else {
        return;
    };
    let key = format!("signin-failed:{}", ip.limit_key());
    if let Err(e) = state
        .limiter
        .check_limit(&key, "signin-failures", &limit)
        .await
    {
        tracing::warn!(error = %e, "could not count a failed sign-in");
        state.api_metrics.limiter_errors.inc();
    }
}

/// Counts a sign-in against its account: a token that leaked cannot mint sessions without end.
pub async fn signin_account(state: &AppState, seller: &SellerId) -> Result<(), Response> {
    let Some(limit) = state.edge.ip_limits.signin_account else {
        return Ok(());
    };
    let key = format!("signin-account:{seller}");
    match state
        .limiter
        .check_limit(&key, "signin-account", &limit)
        .await
    {
        Ok(d) if d.allowed => Ok(()),
        Ok(d) => Err(refused(
            state,
            &d,
            "too many sign-ins to this account; wait before trying again".into(),
        )),
        Err(e) => Err(unavailable(state, e)),
    }
}

/// Places a buyer's order with a flash sale's per-buyer limit held per address too (see
/// [`crate::sale_shares`]): the address takes the units first and gets them back when the
/// order does not happen, so that minting buyers from one address does not multiply the limit.
pub async fn place_order(
    state: &AppState,
    ip: &ClientIp,
    buyer: &BuyerId,
    key: &str,
    new: NewOrder,
) -> Result<Placed, ApiError> {
    let shares = SaleShares::new(
        state.store.clone(),
        state.edge.ip_limits.flash_sale_buyers_per_address,
    );
    let share = shares
        .take(
            &new.product_id,
            new.pin_id.as_ref(),
            new.stream_id.as_ref(),
            ip,
            new.quantity,
        )
        .await?;
    let taken = match share {
        Share::Unlimited => return Ok(state.checkout.sale().place_order(buyer, key, new).await?),
        Share::Refused { cap, per_buyer } => {
            state.api_metrics.limited("flash-sale-address");
            return Err(
                Problem::new(StatusCode::CONFLICT, "limit-exceeded", "conflict")
                    .with_detail(Share::refusal_detail(cap, per_buyer))
                    .into(),
            );
        }
        Share::Taken(taken) => taken,
    };
    // The order and the settling run in a task of their own: a client that hangs up mid-order
    // drops this future, and the units it took must still come back if no order happened
    // (otherwise every dropped request would shrink the address's share of the sale for good).
    let (state, buyer, key) = (state.clone(), buyer.clone(), key.to_owned());
    let task = tokio::spawn(async move {
        let placed = state.checkout.sale().place_order(&buyer, &key, new).await;
        let happened = matches!(
            &placed,
            Ok(Placed {
                result: OrderResult::Created(_),
                replayed: false
            })
        );
        shares.settle(taken, happened).await?;
        Ok::<_, ApiError>(placed?)
    });
    task.await.map_err(|e| {
        tracing::error!(error = %e, "order task failed");
        ApiError::from(Problem::internal())
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classed_by_method_and_path() {
        let post = Method::POST;
        assert_eq!(classify(&post, "/api/v1/buyers"), Class::Signup);
        assert_eq!(classify(&Method::GET, "/api/v1/buyers"), Class::Public);
        for auth in [
            "/signin",
            "/oauth/token",
            "/oauth/revoke",
            "/oauth/authorize",
        ] {
            assert_eq!(classify(&post, auth), Class::Auth, "{auth}");
        }
        assert_eq!(classify(&Method::GET, "/signin"), Class::Public);
        assert_eq!(classify(&post, "/api/v1/orders"), Class::Orders);
        assert_eq!(classify(&Method::GET, "/admin/cluster"), Class::Auth);
        assert_eq!(classify(&post, "/admin/drain"), Class::Auth);
        assert_eq!(
            classify(&Method::GET, "/api/v1/orders/ord_1"),
            Class::Public
        );
        assert_eq!(classify(&post, "/api/v1/products"), Class::Public);
        assert_eq!(classify(&post, "/api/v1/orders/or_1/pay"), Class::Orders);
        assert_eq!(classify(&post, "/api/v1/orders/or_1/refund"), Class::Public);
        for method in [Method::GET, post] {
            assert_eq!(
                classify(&method, "/sandbox/payments/py_0123"),
                Class::Auth,
                "a payment check's address is a secret: {method}"
            );
        }
    }
}
