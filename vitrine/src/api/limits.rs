//! Rate limiting of the seller API. Runs before the handlers: resolves the caller's credential
//! once (the scope extractors reuse it), counts the request against its app's tier (or the
//! account tier for a seller's own token and keys), and answers 429 with `Retry-After` when
//! over. Every limited response carries the IETF `RateLimit-Policy` and `RateLimit` headers.
//! A request without a seller credential is counted against its client address instead (see
//! [`super::ip_limits`]).
//!
//! If the limiter's store fails, reads go through (an outage of Redis should not become an
//! outage of the storefront) but writes are refused with 503: letting them through would turn
//! the outage into an open door for exactly what the limits stop (minting buyers, guessing
//! credentials, flooding orders). The failure is logged, counted, and `/healthz` says so.

use super::auth::{Principal, Via};
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use vitrine_core::{ClientIp, Problem};
use vitrine_platform::ratelimit::{Decision, LimitError, Subject};
use vitrine_sfu::signaling::bearer;

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

fn subject(principal: &Principal) -> Subject {
    match &principal.via {
        Via::App { app, tier, .. } => Subject::App {
            id: app.to_string(),
            tier: tier.clone(),
        },
        Via::AccountToken | Via::ApiKey { .. } | Via::PortalSession => Subject::Account {
            seller: principal.seller.id.to_string(),
        },
    }
}

pub(crate) fn add_headers(response: &mut Response, decision: &Decision) {
    let h = response.headers_mut();
    for (name, value) in [
        (&RATELIMIT_POLICY, decision.policy_header()),
        (&RATELIMIT, decision.limit_header()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name.clone(), v);
        }
    }
}

/// How long a client refused for an unreachable limiter store should wait.
const STORE_RETRY_AFTER_S: u64 = 5;

/// The 503 of a write refused because the limiter's store cannot be asked.
pub(crate) fn unavailable_problem() -> Response {
    let mut response = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "rate-limiter-unavailable",
        "service unavailable",
    )
    .with_detail(
        "the rate limiter cannot be reached; writes are refused until it can (reads still work)",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(STORE_RETRY_AFTER_S));
    response
}

/// The limiter's store failed: reads go through, writes are refused (fail closed).
pub(crate) async fn store_failed(
    state: &AppState,
    e: LimitError,
    req: Request,
    next: Next,
) -> Response {
    state.api_metrics.limiter_errors.inc();
    if req.method().is_safe() {
        tracing::warn!(error = %e, "rate limiter unavailable; read let through");
        return next.run(req).await;
    }
    tracing::warn!(error = %e, "rate limiter unavailable; write refused");
    unavailable_problem()
}

/// The 429 of a refused decision, with `Retry-After` and the RateLimit headers.
pub(crate) fn refused(state: &AppState, decision: &Decision, detail: String) -> Response {
    state.api_metrics.limited(&decision.tier);
    let mut response = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "too many requests",
    )
    .with_detail(detail)
    .into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(decision.retry_after_s()),
    );
    add_headers(&mut response, decision);
    response
}

/// The seller credential of a request, if it carries one the seller API knows.
async fn principal_of(
    state: &AppState,
    req: Request,
) -> (Request, Result<Option<Principal>, Response>) {
    match bearer(req.headers()) {
        Some(raw) => {
            let found = match Principal::resolve(state, raw).await {
                // Not a seller credential (a buyer's token, or a bad one): counted by address.
                Ok(p) => Ok(p),
                Err(e) => Err(e.into_response()),
            };
            (req, found)
        }
        // The portal's session counts against the account, like its token.
        None if crate::portal::session_cookie(req.headers()).is_some() => {
            let (parts, body) = req.into_parts();
            // No CSRF header, or an ended session: counted by address; the handler answers.
            let found = super::auth::portal_principal(&parts, state).await.ok();
            (Request::from_parts(parts, body), Ok(found))
        }
        None => (req, Ok(None)),
    }
}

pub async fn rate_limit(
    State(state): State<AppState>,
    ip: ClientIp,
    req: Request,
    next: Next,
) -> Response {
    let (mut req, principal) = principal_of(&state, req).await;
    let principal = match principal {
        Ok(Some(p)) => p,
        Ok(None) => return super::ip_limits::count(&state, ip, req, next).await,
        Err(response) => return response,
    };
    let subject = subject(&principal);
    req.extensions_mut().insert(principal);
    let decision = match state.limiter.check(&subject).await {
        Ok(d) => d,
        Err(e) => return store_failed(&state, e, req, next).await,
    };
    if !decision.allowed {
        let detail = if decision.answer.day_exhausted {
            format!("the daily quota of the {} tier is spent", decision.tier)
        } else {
            format!("over the {} tier's rate", decision.tier)
        };
        return refused(&state, &decision, detail);
    }
    let mut response = next.run(req).await;
    add_headers(&mut response, &decision);
    response
}
