//! Sellers signing in with the browser, for the pages where they act in person (the OAuth2
//! consent page, the developer portal): `GET/POST /signin`, `POST /signout`, and the session
//! cookie those pages read. A seller signs in with the account's API token; the cookie holds a
//! session secret of its own, HttpOnly and SameSite=Lax, and Secure whenever the request came
//! over HTTPS. The sign-in form is bound to a nonce cookie of its own (login CSRF), and failed
//! sign-ins back off per address (`api::ip_limits`).

use crate::api::ApiError;
use crate::edge::Https;
use crate::pages::{esc, hidden, html_response, page};
use crate::state::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use vitrine_core::{ClientIp, Secret};
use vitrine_platform::sessions::{
    COOKIE, SESSION_TTL_MS, SIGNIN_COOKIE, csrf_matches, csrf_token, signin_nonce,
};

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
    cookie(headers, COOKIE)
}

fn cookie(headers: &HeaderMap, wanted: &str) -> Option<Secret> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| Secret::from_presented(value))
}

/// A local path to go back to after signing in; anything else becomes `/`, so the sign-in page
/// cannot be used as an open redirector. The path is read the way a browser reads a `Location`
/// (WHATWG URL parsing, which drops tabs and newlines and takes `\\` for `/`) against our own
/// origin, and kept only if it stays there; what is returned is that parse, re-serialised, so the
/// browser cannot read it any other way.
pub fn local_path(raw: Option<&str>) -> String {
    const HERE: &str = "http://vitrine.invalid/";
    let Some(raw) = raw.filter(|p| p.starts_with('/')) else {
        return "/".to_owned();
    };
    let (Ok(base), Ok(to)) = (
        url::Url::parse(HERE),
        url::Url::parse(HERE).and_then(|b| b.join(raw)),
    ) else {
        return "/".to_owned();
    };
    if to.origin() != base.origin() || to.username() != "" || to.password().is_some() {
        return "/".to_owned();
    }
    to[url::Position::BeforePath..].to_owned()
}

#[derive(Debug, Default, Deserialize)]
struct ReturnTo {
    return_to: Option<String>,
}

/// The sign-in form.
pub fn signin_form(return_to: &str, error: Option<&str>) -> Response {
    let status = if error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    signin_form_with(status, return_to, error)
}

/// The sign-in form answered with `status`, bound to a fresh nonce cookie (login CSRF).
fn signin_form_with(status: StatusCode, return_to: &str, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let nonce = signin_nonce();
    let mut response = page(
        status,
        "Sign in",
        &format!(
            "<section class=\"panel\"><h1>Sign in to continue</h1>{error}\
             <form method=\"post\" action=\"/signin\">{}\
             <label>Account API token <input name=\"api_token\" type=\"password\" \
             autocomplete=\"current-password\" required></label>\
             <button type=\"submit\">Sign in</button></form></section>",
            hidden(&[("return_to", return_to), ("csrf", &csrf_token(&nonce))])
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SIGNIN_COOKIE}={}; Path=/signin; HttpOnly; SameSite=Strict; Max-Age=3600",
        nonce.expose()
    )) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

async fn signin_page(Query(q): Query<ReturnTo>) -> Response {
    signin_form(&local_path(q.return_to.as_deref()), None)
}

#[derive(Debug, Deserialize)]
struct SigninForm {
    api_token: String,
    return_to: Option<String>,
    /// The form's token, derived from the sign-in nonce cookie.
    csrf: Option<String>,
}

fn session_cookie_header(https: bool, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn signin(
    State(state): State<AppState>,
    ip: ClientIp,
    Https(https): Https,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Ok(form) = serde_urlencoded::from_bytes::<SigninForm>(&body) else {
        return Ok(signin_form("/", Some("The form was incomplete.")));
    };
    let return_to = local_path(form.return_to.as_deref());
    // Login CSRF: only our own sign-in form, in this browser, can post here.
    let nonce = cookie(&headers, SIGNIN_COOKIE);
    if !nonce.is_some_and(|n| form.csrf.is_some_and(|c| csrf_matches(&n, &c))) {
        return Ok(signin_form_with(
            StatusCode::FORBIDDEN,
            &return_to,
            Some("The sign-in form expired or came from another site; sign in again here."),
        ));
    }
    if let Err(refused) = crate::api::ip_limits::signin_backoff(&state, &ip).await {
        return Ok(refused);
    }
    let token = Secret::from_presented(form.api_token.trim());
    let Some(seller) = state.store.seller_by_token(&token).await? else {
        crate::api::ip_limits::signin_failed(&state, &ip).await;
        return Ok(signin_form(
            &return_to,
            Some("That token is not a Vitrine account token."),
        ));
    };
    if let Err(refused) = crate::api::ip_limits::signin_account(&state, &seller.id).await {
        return Ok(refused);
    }
    let session = state.platform.start_session(&seller.id).await?;
    tracing::info!(seller = %seller.id, "signed in");
    let mut response = Redirect::to(&return_to).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie_header(https, session.expose(), SESSION_TTL_MS / 1000),
    );
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct SignoutForm {
    csrf: String,
}

async fn signout(
    State(state): State<AppState>,
    Https(https): Https,
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
        .insert(header::SET_COOKIE, session_cookie_header(https, "", 0));
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
            "/\t/evil.example/",
            "/\n/evil.example/",
            "\t//evil.example",
            "/\r\n/evil.example",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
        // What stays local is re-serialised as a browser would read it.
        assert_eq!(local_path(Some("/a b/../c")), "/c");
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
