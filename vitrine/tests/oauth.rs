//! OAuth2 for third-party apps end to end, driven by a standard OAuth2 client library (the
//! `oauth2` crate) configured from the server's RFC 8414 metadata: registration, the seller's
//! sign-in and consent in the browser's place, the code exchange with PKCE, scoped calls,
//! refresh rotation and revocation; then each way the RFCs say a request must fail. API keys
//! (test and live mode, roll, revoke, scopes) at the end.

mod support;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, RevocationUrl, Scope,
    StandardRevocableToken, TokenResponse, TokenUrl,
};
use serde_json::{Value, json};
use support::{TestServer, hidden_fields};
use vitrine_checkout::db::Backend;

const REDIRECT: &str = "https://erp.example.com/oauth/callback";
const OTHER_REDIRECT: &str = "http://127.0.0.1:9/other";

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointSet, EndpointSet>;

struct World {
    server: TestServer,
    /// A browser-like client: no redirects followed, so each 303 can be read.
    http: reqwest::Client,
    developer: String,
    seller: String,
    other_seller: String,
    app: Value,
}

impl World {
    async fn new(backend: Backend) -> Self {
        // OAuth2 over TLS, as RFC 6749 requires (the client library refuses plain HTTP for
        // revocation).
        let db = std::sync::Arc::new(
            vitrine_checkout::testing::TestDatabase::create(backend)
                .await
                .unwrap(),
        );
        let server = TestServer::start_with(support::ServerOptions {
            database: Some(db),
            tls: true,
            ..Default::default()
        })
        .await;
        let developer = server.seller("Integrations Ltd").await;
        let seller = server.seller("Ann's boutique").await;
        let other_seller = server.seller("Bob's shoes").await;
        let http = support::client_builder(server.tls_cert_pem.as_deref())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = http
            .post(server.url("/api/v1/apps"))
            .bearer_auth(&developer)
            .json(&json!({ "name": "Acme ERP", "redirect_uris": [REDIRECT, OTHER_REDIRECT] }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let app: Value = r.json().await.unwrap();
        assert!(app["client_secret"].as_str().unwrap().starts_with("vcs_"));
        Self {
            server,
            http,
            developer,
            seller,
            other_seller,
            app,
        }
    }

    /// The client library, configured from the server's metadata document.
    async fn client(&self, redirect: &str, secret: Option<&str>) -> Client {
        let meta: Value = self
            .http
            .get(self.server.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(meta["issuer"], self.server.base.trim_end_matches('/'));
        assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
        let endpoint = |k: &str| meta[k].as_str().unwrap().to_owned();
        let secret = secret.unwrap_or_else(|| self.app["client_secret"].as_str().unwrap());
        BasicClient::new(ClientId::new(self.client_id().into()))
            .set_client_secret(ClientSecret::new(secret.into()))
            .set_auth_uri(AuthUrl::new(endpoint("authorization_endpoint")).unwrap())
            .set_token_uri(TokenUrl::new(endpoint("token_endpoint")).unwrap())
            .set_revocation_url(RevocationUrl::new(endpoint("revocation_endpoint")).unwrap())
            .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap())
    }

    fn client_id(&self) -> &str {
        self.app["id"].as_str().unwrap()
    }

    /// Signs `token`'s seller in; returns the session cookie.
    async fn sign_in(&self, token: &str) -> String {
        // The sign-in page's form: its nonce cookie and the CSRF token derived from it.
        let page = self
            .http
            .get(self.server.url("/signin?return_to=/developers"))
            .send()
            .await
            .unwrap();
        let nonce = page.headers()["set-cookie"].to_str().unwrap().to_owned();
        let nonce = nonce.split(';').next().unwrap().to_owned();
        let html = page.text().await.unwrap();
        let csrf = hidden_fields(&html)
            .into_iter()
            .find(|(k, _)| k == "csrf")
            .unwrap()
            .1;
        let r = self
            .http
            .post(self.server.url("/signin"))
            .header("cookie", nonce)
            .form(&[
                ("api_token", token),
                ("return_to", "/developers"),
                ("csrf", &csrf),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/developers");
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        cookie.split(';').next().unwrap().to_owned()
    }

    /// The seller opens the authorization URL, reads the consent page and presses `decision`;
    /// returns where the browser is sent.
    async fn consent(&self, seller_token: &str, url: &str, decision: &str) -> url::Url {
        let cookie = self.sign_in(seller_token).await;
        let page = self
            .http
            .get(url)
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()["x-frame-options"], "DENY");
        let html = page.text().await.unwrap();
        assert!(html.contains("Acme ERP"), "{html}");
        let mut form = hidden_fields(&html);
        form.push(("decision".into(), decision.into()));
        let r = self
            .http
            .post(self.server.url("/oauth/authorize"))
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap()
    }

    /// A full authorization for `scopes`: returns the token response.
    async fn authorize(
        &self,
        client: &Client,
        scopes: &[&str],
    ) -> oauth2::basic::BasicTokenResponse {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(scopes.iter().map(|s| Scope::new(s.to_string())))
            .set_pkce_challenge(challenge)
            .url();
        let back = self.consent(&self.seller, url.as_str(), "allow").await;
        assert!(back.as_str().starts_with(REDIRECT));
        assert_eq!(
            param(&back, "state").as_deref(),
            Some(state.secret().as_str())
        );
        assert_eq!(
            param(&back, "iss").as_deref(),
            Some(self.server.base.trim_end_matches('/'))
        );
        let code = param(&back, "code").unwrap();
        client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .unwrap()
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::Response {
        let mut req = self
            .http
            .request(method.clone(), self.server.url(path))
            .bearer_auth(token);
        if method == reqwest::Method::POST {
            req = req.json(&json!({
                "sku": "SKU-1", "title": "Scarf", "price": {"amount": 1500, "currency": "EUR"}, "stock": 3
            }));
        }
        req.send().await.unwrap()
    }

    async fn status(&self, method: reqwest::Method, path: &str, token: &str) -> u16 {
        self.call(method, path, token).await.status().as_u16()
    }
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn server_error<T>(
    r: Result<
        T,
        RequestTokenError<
            oauth2::HttpClientError<reqwest::Error>,
            oauth2::basic::BasicErrorResponse,
        >,
    >,
) -> BasicErrorResponseType {
    match r {
        Err(RequestTokenError::ServerResponse(e)) => e.error().clone(),
        Err(other) => panic!("expected an OAuth2 error response, got {other:?}"),
        Ok(_) => panic!("expected an OAuth2 error response, got tokens"),
    }
}

async fn round_trip(backend: Backend) {
    let w = World::new(backend).await;
    let client = w.client(REDIRECT, None).await;
    // Data of two sellers: the app will be granted access to the first only.
    let mine = w
        .call(reqwest::Method::POST, "/api/v1/products", &w.seller)
        .await;
    assert_eq!(mine.status(), 201);
    let mine: Value = mine.json().await.unwrap();
    let theirs: Value = w
        .call(reqwest::Method::POST, "/api/v1/products", &w.other_seller)
        .await
        .json()
        .await
        .unwrap();

    let tokens = w
        .authorize(&client, &["products:read", "orders:read"])
        .await;
    assert_eq!(
        tokens
            .scopes()
            .unwrap()
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
        ["products:read", "orders:read"]
    );
    let access = tokens.access_token().secret().clone();
    assert!(access.starts_with("vat_"));
    assert!(tokens.expires_in().unwrap().as_secs() > 0);

    // In scope, on the granting seller's data only.
    let list = w
        .call(reqwest::Method::GET, "/api/v1/products", &access)
        .await;
    assert_eq!(list.status(), 200);
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["products"].as_array().unwrap().len(), 1);
    assert_eq!(list["products"][0]["id"], mine["id"]);
    let theirs_path = format!("/api/v1/products/{}", theirs["id"].as_str().unwrap());
    assert_eq!(
        w.status(reqwest::Method::GET, &theirs_path, &access).await,
        404
    );
    assert_eq!(
        w.status(reqwest::Method::GET, "/api/v1/orders", &access)
            .await,
        200
    );

    // Out of scope: 403 naming the missing scope (RFC 6750 §3.1).
    let write = w
        .call(reqwest::Method::POST, "/api/v1/products", &access)
        .await;
    assert_eq!(write.status(), 403);
    assert_eq!(
        write.headers()["www-authenticate"],
        r#"Bearer error="insufficient_scope", scope="products:write""#
    );
    let problem: Value = write.json().await.unwrap();
    assert_eq!(problem["type"], "/docs/problems/insufficient-scope");
    assert_eq!(
        w.status(reqwest::Method::GET, "/api/v1/streams", &access)
            .await,
        403
    );
    // An app never manages the account's credentials, whatever its scopes.
    assert_eq!(
        w.status(reqwest::Method::GET, "/api/v1/api-keys", &access)
            .await,
        403
    );

    // Refresh rotation: a new pair; the old refresh token is spent.
    let first_refresh = tokens.refresh_token().unwrap().clone();
    let rotated = client
        .exchange_refresh_token(&first_refresh)
        .request_async(&w.http)
        .await
        .unwrap();
    let new_access = rotated.access_token().secret().clone();
    let new_refresh = rotated.refresh_token().unwrap().clone();
    assert_ne!(new_refresh.secret(), first_refresh.secret());
    assert_eq!(
        w.status(reqwest::Method::GET, "/api/v1/products", &new_access)
            .await,
        200
    );
    // Narrowing on refresh is allowed, widening is not.
    let narrowed = client
        .exchange_refresh_token(&new_refresh)
        .add_scope(Scope::new("products:read".into()))
        .request_async(&w.http)
        .await
        .unwrap();
    assert_eq!(
        w.status(
            reqwest::Method::GET,
            "/api/v1/orders",
            narrowed.access_token().secret()
        )
        .await,
        403
    );
    let widened = client
        .exchange_refresh_token(narrowed.refresh_token().unwrap())
        .add_scope(Scope::new("products:write".into()))
        .request_async(&w.http)
        .await;
    assert_eq!(server_error(widened), BasicErrorResponseType::InvalidScope);

    // Replaying a rotated refresh token means it leaked: the whole grant is revoked.
    let replay = client
        .exchange_refresh_token(&first_refresh)
        .request_async(&w.http)
        .await;
    assert_eq!(server_error(replay), BasicErrorResponseType::InvalidGrant);
    let dead = w
        .call(
            reqwest::Method::GET,
            "/api/v1/products",
            narrowed.access_token().secret(),
        )
        .await;
    assert_eq!(dead.status(), 401);
    assert_eq!(
        dead.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );

    // Revocation (RFC 7009) of a fresh grant's refresh token ends its access token too.
    let tokens = w.authorize(&client, &["orders:write"]).await;
    let access = tokens.access_token().secret().clone();
    assert_eq!(
        w.status(reqwest::Method::GET, "/api/v1/orders", &access)
            .await,
        200
    );
    let refresh = tokens.refresh_token().unwrap().clone();
    client
        .revoke_token(StandardRevocableToken::RefreshToken(refresh.clone()))
        .unwrap()
        .request_async(&w.http)
        .await
        .unwrap();
    assert_eq!(
        w.status(reqwest::Method::GET, "/api/v1/orders", &access)
            .await,
        401
    );
    let after = client
        .exchange_refresh_token(&refresh)
        .request_async(&w.http)
        .await;
    assert_eq!(server_error(after), BasicErrorResponseType::InvalidGrant);
    // Revoking an unknown token is not an error.
    client
        .revoke_token(StandardRevocableToken::AccessToken(
            oauth2::AccessToken::new("vat_unknown".into()),
        ))
        .unwrap()
        .request_async(&w.http)
        .await
        .unwrap();

    // The seller sees and withdraws grants in the account.
    let tokens = w.authorize(&client, &["payouts:read"]).await;
    let grants: Value = w
        .http
        .get(w.server.url("/api/v1/grants"))
        .bearer_auth(&w.seller)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let grant = grants["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["scopes"] == json!(["payouts:read"]))
        .unwrap();
    assert_eq!(grant["app_name"], "Acme ERP");
    let r = w
        .http
        .delete(
            w.server
                .url(&format!("/api/v1/grants/{}", grant["id"].as_str().unwrap())),
        )
        .bearer_auth(&w.seller)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let refreshed = client
        .exchange_refresh_token(tokens.refresh_token().unwrap())
        .request_async(&w.http)
        .await;
    assert_eq!(
        server_error(refreshed),
        BasicErrorResponseType::InvalidGrant
    );
    let _ = w.developer;
    w.server.stop().await;
}

#[tokio::test]
async fn oauth2_round_trip_on_sqlite() {
    round_trip(Backend::Sqlite).await;
}

#[tokio::test]
async fn oauth2_round_trip_on_postgres() {
    round_trip(Backend::Postgres).await;
}

#[tokio::test]
async fn token_requests_fail_as_the_rfcs_say() {
    let w = World::new(Backend::Sqlite).await;
    let client = w.client(REDIRECT, None).await;
    let get_code = |scopes: &'static [&'static str]| {
        let client = &client;
        let w = &w;
        async move {
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            let (url, _) = client
                .authorize_url(CsrfToken::new_random)
                .add_scopes(scopes.iter().map(|s| Scope::new(s.to_string())))
                .set_pkce_challenge(challenge)
                .url();
            let back = w.consent(&w.seller, url.as_str(), "allow").await;
            (param(&back, "code").unwrap(), verifier)
        }
    };

    // A wrong verifier: invalid_grant, and the code is spent by the attempt.
    let (code, verifier) = get_code(&["orders:read"]).await;
    let wrong = PkceCodeVerifier::new("x".repeat(64));
    let r = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(wrong)
        .request_async(&w.http)
        .await;
    assert_eq!(server_error(r), BasicErrorResponseType::InvalidGrant);
    let r = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&w.http)
        .await;
    assert_eq!(server_error(r), BasicErrorResponseType::InvalidGrant);

    // A reused code: refused, and the tokens of its first use are revoked.
    let (code, verifier) = get_code(&["orders:read"]).await;
    let verifier_again = PkceCodeVerifier::new(verifier.secret().clone());
    let first = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(verifier)
        .request_async(&w.http)
        .await
        .unwrap();
    let access = first.access_token().secret().clone();
    assert_eq!(
        w.status(reqwest::Method::GET, "/api/v1/orders", &access)
            .await,
        200
    );
    let again = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier_again)
        .request_async(&w.http)
        .await;
    assert_eq!(server_error(again), BasicErrorResponseType::InvalidGrant);
    assert_eq!(
        w.status(reqwest::Method::GET, "/api/v1/orders", &access)
            .await,
        401
    );

    // A redirect URI at the token endpoint other than the authorization request's.
    let (code, verifier) = get_code(&["orders:read"]).await;
    let elsewhere = w.client(OTHER_REDIRECT, None).await;
    let r = elsewhere
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&w.http)
        .await;
    assert_eq!(server_error(r), BasicErrorResponseType::InvalidGrant);

    // A wrong client secret: invalid_client.
    let (code, verifier) = get_code(&["orders:read"]).await;
    let impostor = w.client(REDIRECT, Some("vcs_wrong")).await;
    let r = impostor
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&w.http)
        .await;
    assert_eq!(server_error(r), BasicErrorResponseType::InvalidClient);
    w.server.stop().await;
}

#[tokio::test]
async fn authorization_requests_fail_as_the_rfcs_say() {
    let w = World::new(Backend::Sqlite).await;
    let cookie = w.sign_in(&w.seller).await;
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let good = [
        ("response_type", "code"),
        ("client_id", w.client_id()),
        ("redirect_uri", REDIRECT),
        ("scope", "orders:read"),
        ("state", "st-1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let open = |changes: Vec<(&'static str, Option<&'static str>)>| {
        let mut params: Vec<(&str, String)> =
            good.iter().map(|(k, v)| (*k, v.to_string())).collect();
        for (k, v) in changes {
            params.retain(|(pk, _)| *pk != k);
            if let Some(v) = v {
                params.push((k, v.into()));
            }
        }
        let url = url::Url::parse_with_params(&w.server.url("/oauth/authorize"), &params).unwrap();
        let http = w.http.clone();
        let cookie = cookie.clone();
        async move { http.get(url).header("cookie", cookie).send().await.unwrap() }
    };

    // The untrusted cases are shown, never redirected.
    for changes in [
        vec![("redirect_uri", Some("https://evil.example/cb"))],
        vec![(
            "redirect_uri",
            Some("https://erp.example.com/oauth/callback/"),
        )],
        vec![("redirect_uri", None)],
        vec![("client_id", Some("ap_000000000000000000000000"))],
    ] {
        let r = open(changes.clone()).await;
        assert_eq!(r.status(), 400, "{changes:?}");
        assert!(r.headers().get("location").is_none());
    }

    // The rest go back to the app with an error code (and the state when there was one).
    for (changes, error, state) in [
        (vec![("state", None)], "invalid_request", None),
        (
            vec![("code_challenge_method", Some("plain"))],
            "invalid_request",
            Some("st-1"),
        ),
        (
            vec![("code_challenge", None)],
            "invalid_request",
            Some("st-1"),
        ),
        (
            vec![("scope", Some("orders:read admin"))],
            "invalid_scope",
            Some("st-1"),
        ),
        (
            vec![("response_type", Some("token"))],
            "unsupported_response_type",
            Some("st-1"),
        ),
    ] {
        let r = open(changes.clone()).await;
        assert_eq!(r.status(), 303, "{changes:?}");
        let back = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        assert!(back.as_str().starts_with(REDIRECT));
        assert_eq!(param(&back, "error").as_deref(), Some(error), "{changes:?}");
        assert_eq!(param(&back, "state").as_deref(), state);
        assert!(param(&back, "code").is_none());
    }

    // Signed out: the sign-in form, which comes back here.
    let r = w
        .http
        .get(open(vec![]).await.url().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("action=\"/signin\""));

    // Denying sends access_denied; a form without the session's CSRF token is refused.
    let page = open(vec![]).await.text().await.unwrap();
    let mut form = hidden_fields(&page);
    let denied = {
        let mut f = form.clone();
        f.push(("decision".into(), "deny".into()));
        w.http
            .post(w.server.url("/oauth/authorize"))
            .header("cookie", &cookie)
            .form(&f)
            .send()
            .await
            .unwrap()
    };
    let back = url::Url::parse(denied.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    form.retain(|(k, _)| k != "csrf");
    form.push(("csrf".into(), "0".repeat(32)));
    form.push(("decision".into(), "allow".into()));
    let forged = w
        .http
        .post(w.server.url("/oauth/authorize"))
        .header("cookie", &cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(forged.headers().get("location").is_none());
    w.server.stop().await;
}

#[tokio::test]
async fn api_keys_in_test_and_live_mode() {
    let w = World::new(Backend::Sqlite).await;
    let create = |body: Value| {
        let http = w.http.clone();
        let url = w.server.url("/api/v1/api-keys");
        let token = w.seller.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()
        }
    };
    let live = create(json!({ "name": "Warehouse sync", "mode": "live" })).await;
    let test = create(json!({ "name": "Staging", "mode": "test" })).await;
    let read_only =
        create(json!({ "name": "BI", "mode": "live", "scopes": ["orders:read"] })).await;
    let live_key = live["secret"].as_str().unwrap();
    let test_key = test["secret"].as_str().unwrap();
    assert!(live_key.starts_with("vk_live_") && test_key.starts_with("vk_test_"));

    // Each mode has its own data: a test product is not a live one.
    assert_eq!(
        w.status(reqwest::Method::POST, "/api/v1/products", test_key)
            .await,
        201
    );
    let count = |key: &str| {
        let http = w.http.clone();
        let url = w.server.url("/api/v1/products");
        let key = key.to_owned();
        async move {
            let v: Value = http
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["products"].as_array().unwrap().len()
        }
    };
    assert_eq!(count(test_key).await, 1);
    assert_eq!(count(live_key).await, 0);
    assert_eq!(count(&w.seller).await, 0);

    // Scopes hold for keys too.
    let ro = read_only["secret"].as_str().unwrap();
    assert_eq!(
        w.status(reqwest::Method::GET, "/api/v1/orders", ro).await,
        200
    );
    assert_eq!(
        w.status(reqwest::Method::GET, "/api/v1/products", ro).await,
        403
    );

    // The list shows hints, never secrets; secrets are stored hashed.
    let list = w
        .http
        .get(w.server.url("/api/v1/api-keys"))
        .bearer_auth(&w.seller)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!list.contains(live_key) && list.contains(&live["hint"].as_str().unwrap().to_string()));
    let pool = w
        .server
        .running
        .as_ref()
        .unwrap()
        .state
        .store
        .pool()
        .clone();
    let stored: Vec<(String,)> = sqlx::query_as("SELECT key_hash FROM api_keys")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .all(|(h,)| h.len() == 64 && !h.contains("vk_"))
    );

    // Roll: the old secret stops, the new one works. Revoke: nothing works.
    let id = live["id"].as_str().unwrap();
    let rolled: Value = w
        .http
        .post(w.server.url(&format!("/api/v1/api-keys/{id}/roll")))
        .bearer_auth(&w.seller)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_key = rolled["secret"].as_str().unwrap();
    assert_eq!(
        w.status(reqwest::Method::GET, "/api/v1/products", live_key)
            .await,
        401
    );
    assert_eq!(
        w.status(reqwest::Method::GET, "/api/v1/products", new_key)
            .await,
        200
    );
    // A key cannot manage keys; another seller cannot touch this one.
    assert_eq!(
        w.status(reqwest::Method::GET, "/api/v1/api-keys", new_key)
            .await,
        403
    );
    let r = w
        .http
        .delete(w.server.url(&format!("/api/v1/api-keys/{id}")))
        .bearer_auth(&w.other_seller)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = w
        .http
        .delete(w.server.url(&format!("/api/v1/api-keys/{id}")))
        .bearer_auth(&w.seller)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        w.status(reqwest::Method::GET, "/api/v1/products", new_key)
            .await,
        401
    );

    // Bad requests are problems, not panics.
    for body in [
        json!({ "name": "", "mode": "live" }),
        json!({ "name": "x", "mode": "sandbox" }),
        json!({ "name": "x", "mode": "live", "scopes": ["admin"] }),
        json!({ "name": "x", "mode": "live", "scopes": [] }),
    ] {
        let r = w
            .http
            .post(w.server.url("/api/v1/api-keys"))
            .bearer_auth(&w.seller)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    w.server.stop().await;
}

/// The portal's session reaches the seller API as the account itself, but only with the CSRF
/// header its page carries: the cookie alone, which a cross-site form would send, gets 403.
#[tokio::test]
async fn the_portal_session_reaches_the_api_only_with_its_csrf_header() {
    let w = World::new(Backend::Sqlite).await;
    let cookie = w.sign_in(&w.seller).await;
    let page = w
        .http
        .get(w.server.url("/developers"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the portal page carries its CSRF token")
        .to_owned();
    let get = |path: &'static str, csrf: Option<String>| {
        let mut r = w.http.get(w.server.url(path)).header("cookie", &cookie);
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        async move { r.send().await.unwrap() }
    };
    for path in [
        "/api/v1/balance",
        "/api/v1/webhooks/endpoints",
        "/api/v1/apps",
        "/api/v1/orders",
    ] {
        let r = get(path, None).await;
        assert_eq!(r.status(), 403, "{path} without the header");
        assert!(r.text().await.unwrap().contains("csrf"));
        assert_eq!(
            get(path, Some("0".repeat(csrf.len()))).await.status(),
            403,
            "{path} with a forged header"
        );
        let r = get(path, Some(csrf.clone())).await;
        assert_eq!(r.status(), 200, "{path}");
        // Counted against the account like its token.
        assert!(r.headers().contains_key("ratelimit-policy"), "{path}");
    }
    // What the session creates belongs to its seller, and to no one else.
    let r = w
        .http
        .post(w.server.url("/api/v1/webhooks/endpoints"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({ "url": "https://hooks.example.com/vitrine" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (_, own) = w
        .server
        .call(
            reqwest::Method::GET,
            "/api/v1/webhooks/endpoints",
            &w.seller,
            None,
            None,
        )
        .await;
    assert_eq!(
        own["endpoints"][0]["url"],
        "https://hooks.example.com/vitrine"
    );
    let (_, endpoints) = w
        .server
        .call(
            reqwest::Method::GET,
            "/api/v1/webhooks/endpoints",
            &w.other_seller,
            None,
            None,
        )
        .await;
    assert_eq!(endpoints["endpoints"], serde_json::json!([]));
    // Signed out: the cookie is worth nothing.
    let r = w
        .http
        .post(w.server.url("/signout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection() || r.status().is_success());
    assert_eq!(get("/api/v1/balance", Some(csrf)).await.status(), 401);
    w.server.stop().await;
}
