//! Rate limiting of the seller API. Runs before the handlers: resolves the caller's credential
//! once (the scope extractors reuse it), counts the request against its app's tier (or the
//! account tier for a seller's own token and keys), and answers 429 with `Retry-After` when
//! over. Every limited response carries the IETF `RateLimit-Policy` and `RateLimit` headers.
//! If the limiter's store fails the request goes through: limits protect fairness, and an
//! outage of Redis should not become an outage of the API. The failure is logged and counted.

use super::auth::{Principal, Via};
use crate::app::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use vitrine_core::Problem;
use vitrine_platform::ratelimit::{Decision, Subject};
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

fn add_headers(response: &mut Response, decision: &Decision) {
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

pub async fn rate_limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let principal = match bearer(req.headers()) {
        Some(raw) => match Principal::resolve(&state, raw).await {
            Ok(Some(p)) => p,
            // Not a seller credential (a buyer's token, or a bad one): the handler answers.
            Ok(None) => return next.run(req).await,
            Err(e) => return e.into_response(),
        },
        // The portal's session counts against the account, like its token.
        None if crate::portal::session_cookie(req.headers()).is_some() => {
            let (parts, body) = req.into_parts();
            let found = super::auth::portal_principal(&parts, &state).await;
            req = Request::from_parts(parts, body);
            match found {
                Ok(p) => p,
                // No CSRF header, or an ended session: the handler answers.
                Err(_) => return next.run(req).await,
            }
        }
        None => return next.run(req).await,
    };
    let subject = subject(&principal);
    req.extensions_mut().insert(principal);
    let decision = match state.limiter.check(&subject).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "rate limiter unavailable; request let through");
            state.api_metrics.limiter_errors.inc();
            return next.run(req).await;
        }
    };
    if !decision.allowed {
        state.api_metrics.limited(&decision.tier);
        let detail = if decision.answer.day_exhausted {
            format!("the daily quota of the {} tier is spent", decision.tier)
        } else {
            format!("over the {} tier's rate", decision.tier)
        };
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
        add_headers(&mut response, &decision);
        return response;
    }
    let mut response = next.run(req).await;
    add_headers(&mut response, &decision);
    response
}
