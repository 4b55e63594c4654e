//! The OAuth2 authorization server's state machine (RFC 6749 with RFC 7636 PKCE, RFC 7009
//! revocation and RFC 9700's advice): validating an authorization request, issuing a one-time
//! code bound to the app, the redirect URI, the granted scopes and the PKCE challenge, exchanging
//! it for an access token and a refresh token, rotating refresh tokens, and revoking.
//!
//! Each seller's consent becomes a *grant*; every token descends from one. Replaying a used
//! code or a rotated refresh token revokes the whole grant, since it means one of them leaked
//! (RFC 6749 §4.1.2, RFC 9700 §4.14.2). Tokens are opaque random strings stored hashed.

use crate::apps::{App, ClientType};
use crate::pkce::Challenge;
use crate::redirect;
use crate::scope::Scopes;
use crate::{Platform, PlatformError, corrupt, now};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use vitrine_core::{AppId, GrantId, Region, Secret, SellerId};

/// How long an authorization code may wait to be exchanged.
pub const CODE_TTL_MS: i64 = 60_000;
/// How long an access token works.
pub const ACCESS_TTL_MS: i64 = 3600 * 1000;
/// How long a refresh token works if unused (each use gives a fresh one).
pub const REFRESH_TTL_MS: i64 = 30 * 24 * 3600 * 1000;
/// Longest `state` accepted (it is echoed back).
pub const MAX_STATE_LEN: usize = 500;

/// The query of `GET /oauth/authorize`, as received.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizationParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

/// A valid authorization request, ready to show on the consent page.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub app: App,
    pub redirect_uri: String,
    pub scopes: Scopes,
    pub state: String,
    pub challenge: Challenge,
}

/// Why an authorization request fails, and so where the answer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: tell the person in the browser, never
    /// redirect (RFC 6749 §4.1.2.1), or the server would be an open redirector.
    Shown(String),
    /// Everything else goes back to the app's (verified) redirect URI.
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

impl AuthorizeError {
    /// The URL to send the browser to, for the redirect kind.
    pub fn location(&self, issuer: &str) -> Option<String> {
        match self {
            AuthorizeError::Shown(_) => None,
            AuthorizeError::Redirect {
                redirect_uri,
                error,
                description,
                state,
            } => {
                let mut params = vec![
                    ("error", *error),
                    ("error_description", description.as_str()),
                ];
                if let Some(s) = state {
                    params.push(("state", s));
                }
                params.push(("iss", issuer));
                Some(redirect::with_params(redirect_uri, &params))
            }
        }
    }
}

/// The form of `POST /oauth/token`, as received.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct TokenParams {
    /// `authorization_code` or `refresh_token`.
    #[schema(value_type = String)]
    pub grant_type: Option<String>,
    /// The authorization code (`authorization_code` grant).
    #[schema(nullable = false)]
    pub code: Option<String>,
    /// The redirect URI of the authorization request (`authorization_code` grant).
    #[schema(nullable = false)]
    pub redirect_uri: Option<String>,
    /// The PKCE verifier of the code's challenge (`authorization_code` grant).
    #[schema(nullable = false)]
    pub code_verifier: Option<String>,
    /// The refresh token (`refresh_token` grant); it is rotated on use.
    #[schema(nullable = false)]
    pub refresh_token: Option<String>,
    /// Space-separated scopes, to narrow a refresh (never widen).
    #[schema(nullable = false)]
    pub scope: Option<String>,
    /// When the client does not authenticate with HTTP Basic.
    #[schema(nullable = false)]
    pub client_id: Option<String>,
    /// When a confidential client does not authenticate with HTTP Basic.
    #[schema(nullable = false)]
    pub client_secret: Option<String>,
}

/// The schema of the constant `token_type`.
fn bearer_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["Bearer"]))
        .into()
}

/// How the client authenticated: HTTP Basic, or in the form body.
#[derive(Debug, Clone, Default)]
pub struct ClientCredentials {
    pub id: Option<String>,
    pub secret: Option<String>,
    /// Sent with `Authorization: Basic`, which changes how `invalid_client` is answered.
    pub basic: bool,
}

/// The token endpoint's success answer (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// The access token (`vat_...`).
    pub access_token: String,
    #[schema(schema_with = bearer_schema)]
    pub token_type: &'static str,
    /// Seconds the access token works.
    pub expires_in: i64,
    /// The refresh token; each use answers a new one and retires this one.
    pub refresh_token: String,
    /// The granted scopes, space-separated.
    pub scope: String,
}

/// Token and revocation endpoint errors (RFC 6749 §5.2), each with its wire `error` code.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("client authentication failed")]
    InvalidClient { basic: bool },
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    UnauthorizedClient(String),
    #[error("grant_type must be authorization_code or refresh_token")]
    UnsupportedGrantType,
    #[error("only access_token and refresh_token can be revoked")]
    UnsupportedTokenType,
    #[error("{0}")]
    InvalidScope(String),
    #[error(transparent)]
    Server(#[from] PlatformError),
}

impl From<sqlx::Error> for OAuthError {
    fn from(e: sqlx::Error) -> Self {
        OAuthError::Server(e.into())
    }
}

impl OAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient { .. } => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::UnsupportedTokenType => "unsupported_token_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::Server(_) => "server_error",
        }
    }
}

/// What an access token lets its bearer do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    pub grant: GrantId,
    pub app: AppId,
    pub seller: SellerId,
    pub scopes: Scopes,
    /// The app's rate-limit tier.
    pub tier: String,
}

/// A seller's grant to an app, as the seller sees it in the portal.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Grant)]
pub struct GrantView {
    pub id: GrantId,
    pub app_id: AppId,
    pub app_name: String,
    #[schema(inline)]
    pub scopes: Scopes,
    pub created_at: vitrine_core::Timestamp,
}

fn redirect_error(
    redirect_uri: &str,
    error: &'static str,
    description: impl Into<String>,
    state: Option<&str>,
) -> AuthorizeError {
    AuthorizeError::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        error,
        description: description.into(),
        state: state.map(str::to_owned),
    }
}

/// Parses a token's hash out of a stored row's string.
fn grant_id(raw: String) -> Result<GrantId, PlatformError> {
    GrantId::parse(&raw).map_err(corrupt)
}

impl Platform {
    /// Validates an authorization request. The client and its redirect URI are checked first,
    /// because until they are known good no error may be redirected anywhere.
    pub async fn authorization_request(
        &self,
        p: &AuthorizationParams,
    ) -> Result<AuthorizationRequest, AuthorizeError> {
        let shown = |why: &str| AuthorizeError::Shown(why.to_owned());
        let client_id = p
            .client_id
            .as_deref()
            .ok_or_else(|| shown("client_id is missing"))?;
        let (app, _) = self
            .client(client_id)
            .await
            .map_err(|e| AuthorizeError::Shown(format!("the server could not check the app: {e}")))?
            .ok_or_else(|| shown("no app has this client_id"))?;
        let presented = p
            .redirect_uri
            .as_deref()
            .ok_or_else(|| shown("redirect_uri is missing"))?;
        let redirect_uri = redirect::matching(&app.redirect_uris, presented)
            .ok_or_else(|| shown("redirect_uri is not one the app registered"))?
            .to_owned();
        let state = p.state.as_deref().filter(|s| s.len() <= MAX_STATE_LEN);
        let Some(state) = state.filter(|s| !s.is_empty()) else {
            return Err(redirect_error(
                &redirect_uri,
                "invalid_request",
                format!("state is required (1 to {MAX_STATE_LEN} characters)"),
                None,
            ));
        };
        let fail = |error, why: String| redirect_error(&redirect_uri, error, why, Some(state));
        if p.response_type.as_deref() != Some("code") {
            return Err(fail(
                "unsupported_response_type",
                "response_type must be code".into(),
            ));
        }
        let challenge = Challenge::from_request(
            p.code_challenge.as_deref().unwrap_or_default(),
            p.code_challenge_method.as_deref(),
        )
        .map_err(|e| fail("invalid_request", e.to_string()))?;
        let scopes = Scopes::parse(p.scope.as_deref().unwrap_or_default())
            .map_err(|e| fail("invalid_scope", e.to_string()))?;
        if scopes.is_empty() {
            return Err(fail("invalid_scope", "scope is required".into()));
        }
        Ok(AuthorizationRequest {
            app,
            redirect_uri,
            scopes,
            state: state.to_owned(),
            challenge,
        })
    }

    /// Records the seller's consent as a one-time code and returns the URL that carries it back
    /// to the app (with `state` and, per RFC 9207, `iss`).
    pub async fn approve(
        &self,
        seller: &SellerId,
        req: &AuthorizationRequest,
        issuer: &str,
    ) -> Result<String, PlatformError> {
        let code = Secret::generate("vac");
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, app_id, seller_id, redirect_uri, scopes, \
             code_challenge, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(code.hash().0)
        .bind(req.app.id.as_str())
        .bind(seller.as_str())
        .bind(&req.redirect_uri)
        .bind(req.scopes.to_string())
        .bind(req.challenge.as_str())
        .bind(now() + CODE_TTL_MS)
        .execute(&self.pool)
        .await?;
        Ok(redirect::with_params(
            &req.redirect_uri,
            &[
                ("code", code.expose()),
                ("state", &req.state),
                ("iss", issuer),
            ],
        ))
    }

    /// Authenticates the client of a token or revocation request (RFC 6749 §2.3).
    pub async fn authenticate_client(&self, creds: &ClientCredentials) -> Result<App, OAuthError> {
        let invalid = || OAuthError::InvalidClient { basic: creds.basic };
        let id = creds.id.as_deref().ok_or_else(invalid)?;
        let (app, secret_hash) = self.client(id).await?.ok_or_else(invalid)?;
        match (app.client_type, &creds.secret, secret_hash) {
            (ClientType::Confidential, Some(secret), Some(hash))
                if hash.matches(&Secret::from_presented(secret)) =>
            {
                Ok(app)
            }
            (ClientType::Public, None, _) => Ok(app),
            _ => Err(invalid()),
        }
    }

    /// The token endpoint.
    pub async fn token(
        &self,
        creds: &ClientCredentials,
        p: &TokenParams,
    ) -> Result<TokenResponse, OAuthError> {
        let app = self.authenticate_client(creds).await?;
        match p.grant_type.as_deref() {
            Some("authorization_code") => self.redeem_code(&app, p).await,
            Some("refresh_token") => self.refresh(&app, p).await,
            None => Err(OAuthError::InvalidRequest("grant_type is missing".into())),
            Some(_) => Err(OAuthError::UnsupportedGrantType),
        }
    }

    async fn redeem_code(&self, app: &App, p: &TokenParams) -> Result<TokenResponse, OAuthError> {
        let missing = |what: &str| OAuthError::InvalidRequest(format!("{what} is missing"));
        let code = p.code.as_deref().ok_or_else(|| missing("code"))?;
        let verifier = p
            .code_verifier
            .as_deref()
            .ok_or_else(|| missing("code_verifier"))?;
        let redirect_uri = p
            .redirect_uri
            .as_deref()
            .ok_or_else(|| missing("redirect_uri"))?;
        let hash = Secret::from_presented(code).hash();
        let now = now();
        let mut tx = self.pool.begin().await?;
        // Spend the code first, whatever follows: a code is good for one attempt only, so a
        // wrong verifier cannot be retried against it.
        let spent = sqlx::query(
            "UPDATE oauth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(&hash.0)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT app_id, seller_id, redirect_uri, scopes, code_challenge, expires_at, grant_id \
             FROM oauth_codes WHERE code_hash = $1",
        )
        .bind(&hash.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(OAuthError::InvalidGrant(
                "unknown authorization code".into(),
            ));
        };
        if spent.rows_affected() == 0 {
            // A replay: revoke whatever the first redemption produced.
            if let Some(grant) = row.try_get::<Option<String>, _>(6)? {
                revoke_grant_in(&mut tx, &grant, now).await?;
            }
            tx.commit().await?;
            return Err(OAuthError::InvalidGrant(
                "authorization code was already used".into(),
            ));
        }
        let invalid = |why: &str| OAuthError::InvalidGrant(why.to_owned());
        let checks = (|| -> Result<(SellerId, Scopes), OAuthError> {
            if row.try_get::<String, _>(0)? != app.id.as_str() {
                return Err(invalid("authorization code was issued to another client"));
            }
            if row.try_get::<i64, _>(5)? <= now {
                return Err(invalid("authorization code has expired"));
            }
            if row.try_get::<String, _>(2)? != redirect_uri {
                return Err(invalid(
                    "redirect_uri differs from the authorization request's",
                ));
            }
            let challenge = Challenge::stored(row.try_get(4)?);
            match challenge.verify(verifier) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(invalid("code_verifier does not match the code_challenge"));
                }
                Err(e) => return Err(OAuthError::InvalidRequest(e.to_string())),
            }
            let seller = SellerId::parse(&row.try_get::<String, _>(1)?).map_err(corrupt)?;
            let scopes = Scopes::parse(&row.try_get::<String, _>(3)?).map_err(corrupt)?;
            Ok((seller, scopes))
        })();
        let (seller, scopes) = match checks {
            Ok(v) => v,
            Err(e) => {
                tx.commit().await?;
                return Err(e);
            }
        };
        let grant = GrantId::generate();
        sqlx::query(
            "INSERT INTO oauth_grants (id, app_id, seller_id, scopes, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(grant.as_str())
        .bind(app.id.as_str())
        .bind(seller.as_str())
        .bind(scopes.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE oauth_codes SET grant_id = $1 WHERE code_hash = $2")
            .bind(grant.as_str())
            .bind(&hash.0)
            .execute(&mut *tx)
            .await?;
        let response = issue_pair(&mut tx, &grant, scopes, now, self.home.as_ref()).await?;
        tx.commit().await?;
        Ok(response)
    }

    async fn refresh(&self, app: &App, p: &TokenParams) -> Result<TokenResponse, OAuthError> {
        let presented = p
            .refresh_token
            .as_deref()
            .ok_or_else(|| OAuthError::InvalidRequest("refresh_token is missing".into()))?;
        let hash = Secret::from_presented(presented).hash();
        let now = now();
        let mut tx = self.pool.begin().await?;
        let rotated = sqlx::query(
            "UPDATE oauth_tokens SET rotated_at = $1 WHERE token_hash = $2 AND kind = 'refresh' \
             AND rotated_at IS NULL AND revoked_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(&hash.0)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT t.grant_id, t.scopes, t.rotated_at, g.app_id, g.revoked_at \
             FROM oauth_tokens t JOIN oauth_grants g ON g.id = t.grant_id \
             WHERE t.token_hash = $1 AND t.kind = 'refresh'",
        )
        .bind(&hash.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(OAuthError::InvalidGrant("unknown refresh token".into()));
        };
        let grant = grant_id(row.try_get(0)?)?;
        if row.try_get::<String, _>(3)? != app.id.as_str() {
            // Leave the token alone: the wrong client cannot spend someone else's token.
            tx.rollback().await?;
            return Err(OAuthError::InvalidGrant(
                "refresh token was issued to another client".into(),
            ));
        }
        if rotated.rows_affected() == 0 {
            let reused = row.try_get::<Option<i64>, _>(2)?.is_some()
                && row.try_get::<Option<i64>, _>(4)?.is_none();
            if reused {
                revoke_grant_in(&mut tx, grant.as_str(), now).await?;
                tx.commit().await?;
                return Err(OAuthError::InvalidGrant(
                    "refresh token was already used; the grant is revoked".into(),
                ));
            }
            return Err(OAuthError::InvalidGrant(
                "refresh token is expired or revoked".into(),
            ));
        }
        if row.try_get::<Option<i64>, _>(4)?.is_some() {
            tx.rollback().await?;
            return Err(OAuthError::InvalidGrant("the grant was revoked".into()));
        }
        let granted = Scopes::parse(&row.try_get::<String, _>(1)?).map_err(corrupt)?;
        let scopes = match p.scope.as_deref() {
            None => granted,
            Some(raw) => {
                let asked =
                    Scopes::parse(raw).map_err(|e| OAuthError::InvalidScope(e.to_string()))?;
                if asked.is_empty() || !granted.contains(asked) {
                    return Err(OAuthError::InvalidScope(
                        "a refresh may narrow the granted scopes, never widen them".into(),
                    ));
                }
                asked
            }
        };
        let response = issue_pair(&mut tx, &grant, scopes, now, self.home.as_ref()).await?;
        tx.commit().await?;
        Ok(response)
    }

    /// RFC 7009 revocation. An unknown token is not an error (the answer is the same 200), but
    /// a token of another client is refused. Revoking a refresh token ends the whole grant.
    pub async fn revoke(
        &self,
        creds: &ClientCredentials,
        token: &str,
        hint: Option<&str>,
    ) -> Result<(), OAuthError> {
        let app = self.authenticate_client(creds).await?;
        if let Some(h) = hint
            && !matches!(h, "access_token" | "refresh_token")
        {
            return Err(OAuthError::UnsupportedTokenType);
        }
        let hash = Secret::from_presented(token).hash();
        let row = sqlx::query(
            "SELECT t.grant_id, t.kind, g.app_id FROM oauth_tokens t \
             JOIN oauth_grants g ON g.id = t.grant_id WHERE t.token_hash = $1",
        )
        .bind(&hash.0)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(()) };
        if row.try_get::<String, _>(2)? != app.id.as_str() {
            return Err(OAuthError::UnauthorizedClient(
                "the token was issued to another client".into(),
            ));
        }
        let now = now();
        if row.try_get::<String, _>(1)? == "refresh" {
            let grant: String = row.try_get(0)?;
            let mut tx = self.pool.begin().await?;
            revoke_grant_in(&mut tx, &grant, now).await?;
            tx.commit().await?;
        } else {
            sqlx::query(
                "UPDATE oauth_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(&hash.0)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// What a presented access token allows, if it is current.
    pub async fn access_grant(&self, token: &Secret) -> Result<Option<AccessGrant>, PlatformError> {
        let row = sqlx::query(
            "SELECT g.id, g.app_id, g.seller_id, t.scopes, a.tier FROM oauth_tokens t \
             JOIN oauth_grants g ON g.id = t.grant_id JOIN apps a ON a.id = g.app_id \
             WHERE t.token_hash = $1 AND t.kind = 'access' AND t.revoked_at IS NULL \
             AND t.expires_at > $2 AND g.revoked_at IS NULL AND a.deleted_at IS NULL",
        )
        .bind(token.hash().0)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(AccessGrant {
                grant: grant_id(r.try_get(0)?)?,
                app: AppId::parse(&r.try_get::<String, _>(1)?).map_err(corrupt)?,
                seller: SellerId::parse(&r.try_get::<String, _>(2)?).map_err(corrupt)?,
                scopes: Scopes::parse(&r.try_get::<String, _>(3)?).map_err(corrupt)?,
                tier: r.try_get(4)?,
            })
        })
        .transpose()
    }

    /// The apps a seller has granted access to (current grants only).
    pub async fn grants_of(&self, seller: &SellerId) -> Result<Vec<GrantView>, PlatformError> {
        let rows = sqlx::query(
            "SELECT g.id, g.app_id, a.name, g.scopes, g.created_at FROM oauth_grants g \
             JOIN apps a ON a.id = g.app_id WHERE g.seller_id = $1 AND g.revoked_at IS NULL \
             AND a.deleted_at IS NULL ORDER BY g.created_at, g.id",
        )
        .bind(seller.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(GrantView {
                    id: grant_id(r.try_get(0)?)?,
                    app_id: AppId::parse(&r.try_get::<String, _>(1)?).map_err(corrupt)?,
                    app_name: r.try_get(2)?,
                    scopes: Scopes::parse(&r.try_get::<String, _>(3)?).map_err(corrupt)?,
                    created_at: vitrine_core::Timestamp(r.try_get(4)?),
                })
            })
            .collect()
    }

    /// A seller withdraws an app's access: the grant and all its tokens stop working.
    pub async fn revoke_grant(
        &self,
        seller: &SellerId,
        grant: &GrantId,
    ) -> Result<(), PlatformError> {
        let owned = sqlx::query(
            "SELECT 1 FROM oauth_grants WHERE id = $1 AND seller_id = $2 AND revoked_at IS NULL",
        )
        .bind(grant.as_str())
        .bind(seller.as_str())
        .fetch_optional(&self.pool)
        .await?;
        if owned.is_none() {
            return Err(PlatformError::NotFound("no such grant"));
        }
        let mut tx = self.pool.begin().await?;
        revoke_grant_in(&mut tx, grant.as_str(), now()).await?;
        tx.commit().await?;
        Ok(())
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

async fn revoke_grant_in(tx: &mut Tx<'_>, grant: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oauth_grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(grant)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE oauth_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(grant)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn issue_pair(
    tx: &mut Tx<'_>,
    grant: &GrantId,
    scopes: Scopes,
    now: i64,
    home: Option<&Region>,
) -> Result<TokenResponse, sqlx::Error> {
    let access = Secret::generate(&Region::tag(home, "vat"));
    let refresh = Secret::generate(&Region::tag(home, "vrt"));
    for (secret, kind, ttl) in [
        (&access, "access", ACCESS_TTL_MS),
        (&refresh, "refresh", REFRESH_TTL_MS),
    ] {
        sqlx::query(
            "INSERT INTO oauth_tokens (token_hash, grant_id, kind, scopes, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(secret.hash().0)
        .bind(grant.as_str())
        .bind(kind)
        .bind(scopes.to_string())
        .bind(now + ttl)
        .execute(&mut **tx)
        .await?;
    }
    Ok(TokenResponse {
        access_token: access.expose().to_owned(),
        token_type: "Bearer",
        expires_in: ACCESS_TTL_MS / 1000,
        refresh_token: refresh.expose().to_owned(),
        scope: scopes.to_string(),
    })
}
