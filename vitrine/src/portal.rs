//! Sellers signing in with the browser, for the pages where they act in person (the OAuth2
//! consent page, the developer portal): `GET/POST /signin`, `POST /signout`, and the session
//! cookie those pages read. A seller signs in with the account's API token; the cookie holds a
//! session secret of its own, HttpOnly and SameSite=Lax.

use crate::api::ApiError;
use crate::app::AppState;
use crate::pages::{esc, hidden, html_response, page};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use vitrine_core::Secret;
use vitrine_platform::sessions::{COOKIE, SESSION_TTL_MS, csrf_matches, csrf_token};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/developers", get(developers))
}

/// The developer portal: the page itself is static; the signed-in session's CSRF token and the
/// account's name are filled in here, and its script does the rest through the JSON API.
async fn developers(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some((seller, session)) = signed_in(&state, &headers).await? else {
        return Ok(Redirect::to("/signin?return_to=/developers").into_response());
    };
    let html = vitrine_web_demo::DEVELOPERS_HTML
        .replace("{{csrf}}", &esc(&csrf_token(&session)))
        .replace("{{seller}}", &esc(&seller.name));
    Ok(html_response(
        StatusCode::OK,
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self'; form-action 'self'; frame-ancestors 'none'",
        html,
    ))
}

/// The session secret in the request's cookie, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<Secret> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| Secret::from_presented(value))
}

/// A local path to go back to after signing in; anything else (another origin, `//host`)
/// becomes `/`, so the sign-in page cannot be used as an open redirector.
pub fn local_path(raw: Option<&str>) -> String {
    match raw {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_owned(),
        _ => "/".to_owned(),
    }
}

#[derive(Debug, Default, Deserialize)]
struct ReturnTo {
    return_to: Option<String>,
}

/// The sign-in form.
pub fn signin_form(return_to: &str, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    page(
        if error.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        },
        "Sign in",
        &format!(
            "<section class=\"panel\"><h1>Sign in to continue</h1>{error}\
             <form method=\"post\" action=\"/signin\">{}\
             <label>Account API token <input name=\"api_token\" type=\"password\" \
             autocomplete=\"current-password\" required></label>\
             <button type=\"submit\">Sign in</button></form></section>",
            hidden(&[("return_to", return_to)])
        ),
    )
}

async fn signin_page(Query(q): Query<ReturnTo>) -> Response {
    signin_form(&local_path(q.return_to.as_deref()), None)
}

#[derive(Debug, Deserialize)]
struct SigninForm {
    api_token: String,
    return_to: Option<String>,
}

fn session_cookie_header(state: &AppState, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if state.public_url().starts_with("https:") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn signin(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let Ok(form) = serde_urlencoded::from_bytes::<SigninForm>(&body) else {
        return Ok(signin_form("/", Some("The form was incomplete.")));
    };
    let return_to = local_path(form.return_to.as_deref());
    let token = Secret::from_presented(form.api_token.trim());
    let Some(seller) = state.store.seller_by_token(&token).await? else {
        return Ok(signin_form(
            &return_to,
            Some("That token is not a Vitrine account token."),
        ));
    };
    let session = state.platform.start_session(&seller.id).await?;
    tracing::info!(seller = %seller.id, "signed in");
    let mut response = Redirect::to(&return_to).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie_header(&state, session.expose(), SESSION_TTL_MS / 1000),
    );
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct SignoutForm {
    csrf: String,
}

async fn signout(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Some(session) = session_cookie(&headers) {
        let form = serde_urlencoded::from_bytes::<SignoutForm>(&body).ok();
        if form.is_some_and(|f| csrf_matches(&session, &f.csrf)) {
            state.platform.end_session(&session).await?;
        }
    }
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie_header(&state, "", 0));
    Ok(response)
}

/// The signed-in seller and the session, or `None`.
pub async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(crate::store::Seller, Secret)>, ApiError> {
    let Some(session) = session_cookie(headers) else {
        return Ok(None);
    };
    let Some(id) = state.platform.session_seller(&session).await? else {
        return Ok(None);
    };
    Ok(state.store.seller(&id).await?.map(|s| (s, session)))
}

/// The CSRF field of a signed-in page's forms.
pub fn csrf_field(session: &Secret) -> String {
    hidden(&[("csrf", &csrf_token(session))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(
            local_path(Some("/oauth/authorize?x=1")),
            "/oauth/authorize?x=1"
        );
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "relative",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; vitrine_session=vss_abc; b=2"),
        );
        assert_eq!(session_cookie(&h).unwrap().expose(), "vss_abc");
        assert!(session_cookie(&HeaderMap::new()).is_none());
    }
}
