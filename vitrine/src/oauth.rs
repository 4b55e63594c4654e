//! The OAuth2 authorization server's HTTP face: RFC 8414 metadata at
//! `/.well-known/oauth-authorization-server`, the authorization endpoint with its sign-in and
//! consent pages (`/oauth/authorize`), the token endpoint (`/oauth/token`) and RFC 7009
//! revocation (`/oauth/revoke`). The rules themselves live in the platform crate.

use crate::api::ApiError;
use crate::pages::{esc, hidden, page};
use crate::portal::{csrf_field, signed_in, signin_form};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use vitrine_platform::Scope;
use vitrine_platform::oauth::{
    AuthorizationParams, AuthorizationRequest, AuthorizeError, ClientCredentials, OAuthError,
    TokenParams, TokenResponse,
};
use vitrine_platform::sessions::csrf_matches;

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(metadata, authorize, token, revoke))]
pub struct Doc;

/// RFC 8414 authorization server metadata. Fields in alphabetical order: the JSON is the same,
/// byte for byte, as the `json!` object this replaced.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ServerMetadata {
    #[schema(format = "uri")]
    pub authorization_endpoint: String,
    pub authorization_response_iss_parameter_supported: bool,
    pub code_challenge_methods_supported: Vec<&'static str>,
    pub grant_types_supported: Vec<&'static str>,
    #[schema(format = "uri")]
    pub issuer: String,
    pub response_modes_supported: Vec<&'static str>,
    pub response_types_supported: Vec<&'static str>,
    #[schema(format = "uri")]
    pub revocation_endpoint: String,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    #[schema(value_type = Vec<Scope>)]
    pub scopes_supported: Vec<&'static str>,
    #[schema(format = "uri")]
    pub service_documentation: String,
    #[schema(format = "uri")]
    pub token_endpoint: String,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
}

/// An OAuth2 error answer of the token and revocation endpoints (RFC 6749 §5.2).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OAuthError)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `unsupported_token_type`, `invalid_scope` or `server_error`.
    pub error: &'static str,
    pub error_description: String,
}

/// The form of `POST /oauth/revoke` (RFC 7009).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RevokeParams {
    /// The access or refresh token to revoke.
    #[schema(value_type = String)]
    token: Option<String>,
    /// `access_token` or `refresh_token`.
    #[schema(nullable = false)]
    token_type_hint: Option<String>,
    /// When the client does not authenticate with HTTP Basic.
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// When a confidential client does not authenticate with HTTP Basic.
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/oauth/authorize", get(authorize).post(consent))
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
}

/// OAuth2 authorization server metadata (RFC 8414)
///
/// From which standard clients configure themselves.
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    responses((status = 200, description = "Metadata", body = ServerMetadata))
)]
async fn metadata(State(state): State<AppState>) -> impl IntoResponse {
    let issuer = state.public_url();
    let scopes: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    let auth_methods = vec!["client_secret_basic", "client_secret_post", "none"];
    Json(ServerMetadata {
        authorization_endpoint: format!("{issuer}/oauth/authorize"),
        authorization_response_iss_parameter_supported: true,
        code_challenge_methods_supported: vec!["S256"],
        grant_types_supported: vec!["authorization_code", "refresh_token"],
        issuer: issuer.to_owned(),
        response_modes_supported: vec!["query"],
        response_types_supported: vec!["code"],
        revocation_endpoint: format!("{issuer}/oauth/revoke"),
        revocation_endpoint_auth_methods_supported: auth_methods.clone(),
        scopes_supported: scopes,
        service_documentation: format!("{issuer}/developers"),
        token_endpoint: format!("{issuer}/oauth/token"),
        token_endpoint_auth_methods_supported: auth_methods,
    })
}

fn error_page(why: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Authorization failed",
        &format!(
            "<section class=\"panel\"><h1>This authorization request is not valid</h1>\
             <p class=\"error\" role=\"alert\">{}</p><p>Nothing was shared. \
             Tell the app's developer what this page says.</p></section>",
            esc(why)
        ),
    )
}

fn refused(e: AuthorizeError, issuer: &str) -> Response {
    match e.location(issuer) {
        Some(url) => Redirect::to(&url).into_response(),
        None => match e {
            AuthorizeError::Shown(why) => error_page(&why),
            AuthorizeError::Redirect { .. } => error_page("invalid request"),
        },
    }
}

fn parse_params(raw: &[u8]) -> Result<AuthorizationParams, Response> {
    // Each parameter at most once (RFC 6749 §3.1): duplicates fail to parse; parameters the
    // endpoint does not know are ignored.
    serde_urlencoded::from_bytes(raw).map_err(|e| error_page(&format!("malformed request: {e}")))
}

/// The authorization parameters as `(name, value)` pairs: the only fields the consent form
/// carries besides its CSRF token, and the query the sign-in page returns to. Nothing else of
/// the request travels, so an app cannot plant a field (`decision`, `csrf`) in the form.
fn authorization_fields(p: &AuthorizationParams) -> Vec<(&'static str, &str)> {
    [
        ("response_type", &p.response_type),
        ("client_id", &p.client_id),
        ("redirect_uri", &p.redirect_uri),
        ("scope", &p.scope),
        ("state", &p.state),
        ("code_challenge", &p.code_challenge),
        ("code_challenge_method", &p.code_challenge_method),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    .collect()
}

fn consent_page(
    req: &AuthorizationRequest,
    params: &AuthorizationParams,
    seller: &str,
    csrf: &str,
) -> Response {
    let scopes: String = req
        .scopes
        .iter()
        .map(|s| format!("<li><code>{}</code> {}</li>", s.as_str(), esc(s.describe())))
        .collect();
    let back_to = url::Url::parse(&req.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| req.redirect_uri.clone());
    page(
        StatusCode::OK,
        "Authorize app",
        &format!(
            "<section class=\"panel consent\"><h1><strong>{app}</strong> wants access to \
             <strong>{seller}</strong></h1><p>If you allow it, {app} will be able to:</p>\
             <ul class=\"scopes\">{scopes}</ul><p class=\"muted\">You will be sent back to \
             {back_to}. You can withdraw this access at any time in the developer portal.</p>\
             <form method=\"post\" action=\"/oauth/authorize\">{fields}{csrf}\
             <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button> \
             <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button>\
             </form></section>",
            app = esc(&req.app.name),
            seller = esc(seller),
            back_to = esc(&back_to),
            fields = hidden(&authorization_fields(params)),
        ),
    )
}

/// Authorization endpoint: the seller signs in and consents (HTML); then a redirect to the app with code, state and iss
#[utoipa::path(
    get,
    path = "/oauth/authorize",
    params(
        ("response_type" = String, Query, description = "`code`"),
        ("client_id" = String, Query, description = "The app's id"),
        ("redirect_uri" = String, Query, description = "One of the app's registered redirect URIs, exactly"),
        ("scope" = String, Query, description = "Space-separated scopes the app asks for"),
        ("state" = String, Query, min_length = 1, max_length = 500, description = "Echoed back to the redirect URI"),
        ("code_challenge" = String, Query, min_length = 43, max_length = 43, description = "PKCE: BASE64URL(SHA-256(code_verifier)), unpadded"),
        ("code_challenge_method" = String, Query, description = "`S256`")
    ),
    responses(
        (status = 200, description = "Sign-in or consent page", body = String, content_type = "text/html"),
        (
            status = 303,
            description = "Back to the app's redirect URI with an error",
            headers(("Location" = String, description = "The redirect URI with error, error_description, state and iss"))
        ),
        (
            status = 400,
            description = "Untrusted client or redirect URI: shown, never redirected",
            body = String,
            content_type = "text/html"
        )
    )
)]
async fn authorize(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = query.unwrap_or_default();
    let params = match parse_params(query.as_bytes()) {
        Ok(p) => p,
        Err(page) => return Ok(page),
    };
    let req = match state.platform.authorization_request(&params).await {
        Ok(r) => r,
        Err(e) => return Ok(refused(e, state.public_url())),
    };
    let Some((seller, session)) = signed_in(&state, &headers).await? else {
        let query = serde_urlencoded::to_string(authorization_fields(&params)).unwrap_or_default();
        return Ok(signin_form(&format!("/oauth/authorize?{query}"), None));
    };
    Ok(consent_page(
        &req,
        &params,
        &seller.name,
        &csrf_field(&session),
    ))
}

async fn consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let forbidden = |why: &str| {
        page(
            StatusCode::FORBIDDEN,
            "Authorization failed",
            &format!(
                "<section class=\"panel\"><p class=\"error\" role=\"alert\">{}</p></section>",
                esc(why)
            ),
        )
    };
    let Some((seller, session)) = signed_in(&state, &headers).await? else {
        return Ok(forbidden(
            "Your session has ended: start again from the app.",
        ));
    };
    let form = match ConsentForm::parse(&body) {
        Ok(f) => f,
        Err(why) => return Ok(error_page(why)),
    };
    if !csrf_matches(&session, &form.csrf) {
        return Ok(forbidden(
            "This form did not come from Vitrine's consent page.",
        ));
    }
    let params = form.params;
    let req = match state.platform.authorization_request(&params).await {
        Ok(r) => r,
        Err(e) => return Ok(refused(e, state.public_url())),
    };
    match form.decision.as_str() {
        "allow" => {
            let url = state
                .platform
                .approve(&seller.id, &req, state.public_url())
                .await?;
            tracing::info!(app = %req.app.id, seller = %seller.id, scopes = %req.scopes, "app authorized");
            Ok(Redirect::to(&url).into_response())
        }
        _ => Ok(refused(
            AuthorizeError::Redirect {
                redirect_uri: req.redirect_uri,
                error: "access_denied",
                description: "the seller denied the request".into(),
                state: Some(req.state),
            },
            state.public_url(),
        )),
    }
}

/// The consent form as posted: the seven authorization parameters, the CSRF token and the
/// button pressed, each exactly once. A field twice is refused rather than guessed at (which
/// copy would the seller have meant?); fields the form never carries are ignored.
struct ConsentForm {
    params: AuthorizationParams,
    csrf: String,
    decision: String,
}

impl ConsentForm {
    fn parse(body: &[u8]) -> Result<Self, &'static str> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|_| "malformed form")?;
        let mut seen = std::collections::HashSet::new();
        if !pairs.iter().all(|(k, _)| seen.insert(k.as_str())) {
            return Err("a field of the form was sent twice");
        }
        let take = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        Ok(Self {
            params: AuthorizationParams {
                response_type: take("response_type"),
                client_id: take("client_id"),
                redirect_uri: take("redirect_uri"),
                scope: take("scope"),
                state: take("state"),
                code_challenge: take("code_challenge"),
                code_challenge_method: take("code_challenge_method"),
            },
            csrf: take("csrf").unwrap_or_default(),
            decision: take("decision").ok_or("the form carried no decision")?,
        })
    }
}

/// An OAuth2 error answer (RFC 6749 §5.2).
fn oauth_error(e: OAuthError) -> Response {
    let status = match &e {
        OAuthError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
        OAuthError::Server(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let description = match &e {
        OAuthError::Server(inner) => {
            tracing::error!(error = %inner, "oauth endpoint");
            "the server failed; try again".to_owned()
        }
        other => other.to_string(),
    };
    let mut response = (
        status,
        Json(OAuthErrorBody {
            error: e.code(),
            error_description: description,
        }),
    )
        .into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let OAuthError::InvalidClient { basic: true } = e {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="vitrine""#),
        );
    }
    response
}

/// Reads a form body, refusing other content types and repeated parameters.
fn form<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, OAuthError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded".into(),
        ));
    }
    serde_urlencoded::from_bytes(body).map_err(|e| OAuthError::InvalidRequest(e.to_string()))
}

/// Client credentials from `Authorization: Basic` or the form (RFC 6749 §2.3.1), never both.
fn client_credentials(
    headers: &HeaderMap,
    form_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<ClientCredentials, OAuthError> {
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return Ok(ClientCredentials {
            id: form_id.map(str::to_owned),
            secret: form_secret.map(str::to_owned),
            basic: false,
        });
    };
    let invalid = || OAuthError::InvalidClient { basic: true };
    let encoded = auth
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic "))
        .ok_or_else(invalid)?;
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| invalid())?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(invalid)?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| invalid())
    };
    let (id, secret) = (unescape(id)?, unescape(secret)?);
    if form_secret.is_some() || form_id.is_some_and(|f| f != id) {
        return Err(OAuthError::InvalidRequest(
            "use one client authentication method".into(),
        ));
    }
    Ok(ClientCredentials {
        id: Some(id),
        secret: Some(secret),
        basic: true,
    })
}

/// Exchange an authorization code (with its PKCE verifier) or a refresh token (rotated on use) for tokens
///
/// The client authenticates with HTTP Basic or with `client_id` and `client_secret` in the form
/// (a public client sends only `client_id`), never both.
#[utoipa::path(
    post,
    path = "/oauth/token",
    request_body(content = TokenParams, content_type = "application/x-www-form-urlencoded"),
    responses(
        (
            status = 200,
            description = "Tokens",
            body = TokenResponse,
            headers(
                ("Cache-Control" = String, description = "no-store"),
                ("Pragma" = String, description = "no-cache")
            )
        ),
        (status = 400, description = "An OAuth2 error (RFC 6749 §5.2)", body = OAuthErrorBody),
        (
            status = 401,
            description = "An OAuth2 error (RFC 6749 §5.2): client authentication failed",
            body = OAuthErrorBody,
            headers(("WWW-Authenticate" = String, description = "When the client used HTTP Basic"))
        )
    )
)]
async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let params: TokenParams = form(&headers, &body)?;
        let creds = client_credentials(
            &headers,
            params.client_id.as_deref(),
            params.client_secret.as_deref(),
        )?;
        state.platform.token(&creds, &params).await
    }
    .await;
    match result {
        Ok(tokens) => {
            let mut r = Json(tokens).into_response();
            let h = r.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => {
            tracing::info!(error = e.code(), detail = %e, "token request refused");
            oauth_error(e)
        }
    }
}

/// Revoke a token (RFC 7009); a refresh token ends its whole grant
#[utoipa::path(
    post,
    path = "/oauth/revoke",
    request_body(content = RevokeParams, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or unknown"),
        (status = 400, description = "An OAuth2 error (RFC 6749 §5.2)", body = OAuthErrorBody),
        (
            status = 401,
            description = "An OAuth2 error (RFC 6749 §5.2): client authentication failed",
            body = OAuthErrorBody,
            headers(("WWW-Authenticate" = String, description = "When the client used HTTP Basic"))
        )
    )
)]
async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let params: RevokeParams = form(&headers, &body)?;
        let creds = client_credentials(
            &headers,
            params.client_id.as_deref(),
            params.client_secret.as_deref(),
        )?;
        let token = params
            .token
            .as_deref()
            .ok_or_else(|| OAuthError::InvalidRequest("token is missing".into()))?;
        state
            .platform
            .revoke(&creds, token, params.token_type_hint.as_deref())
            .await
    }
    .await;
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => oauth_error(e),
    }
}
