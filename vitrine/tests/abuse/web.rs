//! Attacks on the web surface.

use crate::browser::{Browser, session_set_cookie};
use crate::commerce::flash_sale;
use crate::support::{self, ServerOptions, TestPublisher, TestServer, eventually};
use reqwest::Method;
use serde_json::{Value, json};
use vitrine::edge::{EdgeConfig, IpLimits, MetricsConfig};
use vitrine_core::TrustedProxies;
use vitrine_platform::ratelimit::Limit;

fn limit(spec: &str) -> Option<Limit> {
    Limit::parse(spec).unwrap()
}

/// A server behind a "proxy" on loopback: `X-Forwarded-For` from 127.0.0.1 names the client.
async fn behind_proxy(ip_limits: IpLimits) -> TestServer {
    TestServer::with_edge(EdgeConfig {
        trusted_proxies: TrustedProxies::parse(&["127.0.0.1/32"]).unwrap(),
        ip_limits,
        ..Default::default()
    })
    .await
}

/// POSTs JSON as the client at `from` (through the trusted proxy); the answer.
async fn post_from(
    server: &TestServer,
    from: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut r = server
        .http
        .post(server.url(path))
        .header("x-forwarded-for", from)
        .json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

/// Mints a guest buyer named `name` as the client at `from`; the answer.
async fn buyer_from(server: &TestServer, from: &str, name: &str) -> reqwest::Response {
    let body = json!({ "display_name": name });
    post_from(server, from, "/api/v1/buyers", None, body).await
}

/// GETs `url`, bearing `token` when given; the answer.
async fn get(server: &TestServer, url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = server.http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn assert_limited(r: reqwest::Response, what: &str) {
    assert_eq!(r.status(), 429, "{what}");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{what}: Retry-After {retry}");
    assert!(r.headers().contains_key("ratelimit-policy"), "{what}");
    assert!(
        r.headers()["ratelimit"].to_str().unwrap().contains("r=0"),
        "{what}"
    );
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "/docs/problems/rate-limited", "{what}: {p}");
}

/// Item 3: minting buyers, the OAuth2 token endpoint, order polling and the public reads of
/// replays' timelines and products are limited per client
/// address (429, Retry-After, problem JSON, the RateLimit headers); another address is not.
#[tokio::test]
async fn anonymous_routes_are_limited_per_client_address() {
    let server = behind_proxy(IpLimits {
        signup: limit("1/h burst 3"),
        auth: limit("1/h burst 3"),
        public: limit("1/h burst 3"),
        ..IpLimits::off()
    })
    .await;
    let mut buyer = String::new();
    for _ in 0..3 {
        let r = buyer_from(&server, "198.51.100.7", "Eve").await;
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["ratelimit-policy"], "\"burst\";q=3;w=10800");
        buyer = r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let r = buyer_from(&server, "198.51.100.7", "Eve").await;
    assert_limited(r, "the fourth buyer from one address").await;
    let r = buyer_from(&server, "198.51.100.8", "Ann").await;
    assert_eq!(r.status(), 201, "another address has its own allowance");

    // The token endpoint, hammered with made-up client credentials.
    let token = |from: &'static str| {
        server
            .http
            .post(server.url("/oauth/token"))
            .header("x-forwarded-for", from)
            .basic_auth("app_nope", Some("vcs_guess"))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    for _ in 0..3 {
        assert_ne!(token("198.51.100.9").await.unwrap().status(), 429);
    }
    assert_limited(token("198.51.100.9").await.unwrap(), "/oauth/token").await;

    // A buyer polling its orders.
    let poll = || {
        server
            .http
            .get(server.url("/api/v1/orders"))
            .header("x-forwarded-for", "198.51.100.10")
            .bearer_auth(&buyer)
            .send()
    };
    for _ in 0..3 {
        let r = poll().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("ratelimit"));
    }
    assert_limited(poll().await.unwrap(), "order polling").await;

    // Scraping replays' timelines and products' stock: public reads, each address its own
    // allowance (the ids need not exist: the limit comes before the handler).
    for (i, path) in [
        "/api/v1/public/streams/st_000000000000000000000000/timeline?limit=1000",
        "/api/v1/public/products/pr_000000000000000000000000",
    ]
    .into_iter()
    .enumerate()
    {
        let from = format!("198.51.100.{}", 20 + i);
        let read = || {
            server
                .http
                .get(server.url(path))
                .header("x-forwarded-for", &from)
                .send()
        };
        for _ in 0..3 {
            assert_eq!(read().await.unwrap().status(), 404, "{path}");
        }
        assert_limited(read().await.unwrap(), path).await;
    }
    server.stop().await;
}

/// Item 3: without trusted proxies a client cannot pick its own address with a header.
#[tokio::test]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    let server = TestServer::with_edge(EdgeConfig {
        ip_limits: IpLimits {
            signup: limit("1/h burst 2"),
            ..IpLimits::off()
        },
        ..Default::default()
    })
    .await;
    for from in ["203.0.113.1", "203.0.113.2"] {
        let r = buyer_from(&server, from, "M").await;
        assert_eq!(r.status(), 201);
    }
    let r = buyer_from(&server, "203.0.113.3", "M").await;
    assert_limited(r, "a spoofed X-Forwarded-For from an untrusted peer").await;
    let r = server
        .http
        .post(server.url("/api/v1/buyers"))
        .header("forwarded", "for=203.0.113.4")
        .json(&json!({"display_name": "M"}))
        .send()
        .await
        .unwrap();
    assert_limited(r, "a spoofed Forwarded from an untrusted peer").await;
    server.stop().await;
}

/// Item 3: buyers minted from one address cannot multiply a flash sale's per-buyer limit; the
/// limit holds per buyer and per address (times the configured factor).
#[tokio::test]
async fn flash_sale_limit_holds_per_address_as_well_as_per_buyer() {
    let server = behind_proxy(IpLimits {
        flash_sale_buyers_per_address: 2,
        ..IpLimits::off()
    })
    .await;
    let seller = server.seller("Shop").await;
    let stream = server.stream(&seller, "Drop").await;
    let stream_id = stream["id"].as_str().unwrap();
    let product = flash_sale(&server, &seller, stream_id).await;
    let order = |from: &'static str, buyer: String, key: &'static str| {
        let body = json!({ "product_id": product, "quantity": 1, "stream_id": stream_id,
                           "payment": { "card_number": "4242424242424242" } });
        let req = server
            .http
            .post(server.url("/api/v1/orders"))
            .header("x-forwarded-for", from)
            .header("idempotency-key", key)
            .bearer_auth(buyer)
            .json(&body);
        async move { req.send().await.unwrap() }
    };
    let mut statuses = Vec::new();
    for i in 0..4 {
        let buyer = server.buyer(&format!("Sock puppet {i}")).await;
        let r = order("192.0.2.50", buyer.clone(), "k1").await;
        statuses.push(r.status().as_u16());
        if r.status() == 409 {
            let p: Value = r.json().await.unwrap();
            assert_eq!(p["type"], "/docs/problems/limit-exceeded", "{p}");
        }
        // The same buyer again: the per-buyer limit still holds.
        if i == 0 {
            let again = order("192.0.2.99", buyer, "k2").await;
            assert_eq!(again.status(), 409, "one per buyer");
        }
    }
    assert_eq!(
        statuses,
        [201, 201, 409, 409],
        "two buyers' worth per address"
    );
    let other = server.buyer("Someone else").await;
    assert_eq!(order("192.0.2.51", other, "k1").await.status(), 201);
    server.stop().await;
}

/// Item 3: failed sign-ins back off per address (then even the right token waits, so a guess
/// learns nothing), and sign-ins per account are limited.
#[tokio::test]
async fn failed_sign_ins_back_off_and_sign_ins_per_account_are_limited() {
    let server = behind_proxy(IpLimits {
        signin_failures: limit("1/h burst 3"),
        signin_account: limit("1/h burst 2"),
        ..IpLimits::off()
    })
    .await;
    let seller = server.seller("Ann").await;
    let mut guesser = Browser::new(&server);
    guesser.from = Some("198.51.100.66");
    for i in 0..3 {
        let r = guesser.sign_in(&server, &format!("vt_guess{i}")).await;
        assert_eq!(r.status(), 401, "a wrong token is told so");
    }
    let r = guesser.sign_in(&server, &seller).await;
    assert!(session_set_cookie(&r).is_none());
    assert_limited(r, "the right token during the back-off").await;

    let mut ann = Browser::new(&server);
    ann.from = Some("198.51.100.1");
    assert_eq!(ann.sign_in(&server, &seller).await.status(), 303);
    ann.from = Some("198.51.100.2");
    assert_eq!(ann.sign_in(&server, &seller).await.status(), 303);
    ann.from = Some("198.51.100.3");
    let r = ann.sign_in(&server, &seller).await;
    assert_limited(r, "a third sign-in to one account").await;
    server.stop().await;
}

/// Low: login CSRF. Another site's page posting its own token to /signin (no nonce cookie, or
/// the form token of a nonce that is not this browser's) signs nobody in.
#[tokio::test]
async fn a_foreign_sign_in_form_cannot_sign_a_browser_in() {
    let server = TestServer::start().await;
    let attacker = server.seller("Mallory").await;
    let mut victim = Browser::new(&server);
    let r = victim
        .send(victim.http.post(server.url("/signin")).form(&[
            ("api_token", attacker.as_str()),
            ("return_to", "/developers"),
        ]))
        .await;
    assert_eq!(r.status(), 403, "a post without the form's nonce");
    assert!(session_set_cookie(&r).is_none());
    // The attacker fetched a real form for itself and replays its fields from its own page.
    let mut mallory = Browser::new(&server);
    let mut form = mallory.signin_form(&server, "/developers").await;
    form.push(("api_token".into(), attacker.clone()));
    let mut victim = Browser::new(&server);
    let r = victim
        .send(victim.http.post(server.url("/signin")).form(&form))
        .await;
    assert_eq!(r.status(), 403, "another browser's form token");
    assert!(session_set_cookie(&r).is_none());
    // Through its own page the victim signs in as usual.
    let r = victim.sign_in(&server, &attacker).await;
    assert_eq!(r.status(), 303);
    assert!(session_set_cookie(&r).is_some());
    server.stop().await;
}

/// Signs a new browser in with `token`, saying `X-Forwarded-Proto: proto` when given; the
/// session cookie it was set.
async fn signin_cookie(server: &TestServer, token: &str, proto: Option<&str>) -> String {
    let mut b = Browser::new(server);
    let mut form = b.signin_form(server, "/developers").await;
    form.push(("api_token".into(), token.to_owned()));
    let mut req = b.http.post(server.url("/signin")).form(&form);
    if let Some(p) = proto {
        req = req.header("x-forwarded-proto", p);
    }
    session_set_cookie(&b.send(req).await).unwrap()
}

/// Low: the session cookie is `Secure` whenever the request came over HTTPS: our own TLS, or a
/// trusted proxy saying so; a header from anyone else changes nothing.
#[tokio::test]
async fn the_session_cookie_is_secure_over_https() {
    let tls = TestServer::start_with(ServerOptions {
        tls: true,
        ..Default::default()
    })
    .await;
    let token = tls.seller("Ann").await;
    let r = Browser::new(&tls).sign_in(&tls, &token).await;
    let cookie = session_set_cookie(&r).unwrap();
    assert!(cookie.contains("; Secure"), "over TLS: {cookie}");
    tls.stop().await;

    let proxied = behind_proxy(IpLimits::off()).await;
    let token = proxied.seller("Ann").await;
    let cookie = signin_cookie(&proxied, &token, Some("https")).await;
    assert!(cookie.contains("; Secure"), "behind a TLS proxy: {cookie}");
    let cookie = signin_cookie(&proxied, &token, None).await;
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    proxied.stop().await;

    let direct = TestServer::start().await;
    let token = direct.seller("Ann").await;
    let cookie = signin_cookie(&direct, &token, Some("https")).await;
    assert!(
        !cookie.contains("Secure"),
        "an untrusted peer's header: {cookie}"
    );
    direct.stop().await;
}

/// Low: `/metrics` can live on a listener of its own, behind a bearer token.
#[tokio::test]
async fn metrics_can_have_their_own_listener_and_token() {
    const TOKEN: &str = "metrics-token-0123456789";
    let server = TestServer::with_edge(EdgeConfig {
        ip_limits: IpLimits::off(),
        metrics: MetricsConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            token: Some(TOKEN.into()),
        },
        ..Default::default()
    })
    .await;
    let r = get(&server, &server.url("/metrics"), None).await;
    assert_eq!(r.status(), 404, "not on the public listener");
    let at = server.running.as_ref().unwrap().metrics_addr.unwrap();
    let url = format!("http://{at}/metrics");
    let r = get(&server, &url, None).await;
    assert_eq!(r.status(), 401, "no token");
    let r = get(&server, &url, Some("wrong")).await;
    assert_eq!(r.status(), 401, "a wrong token");
    let r = get(&server, &url, Some(TOKEN)).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("vitrine_"));
    server.stop().await;
}

/// A Redis of this test's own, so that it can be stopped.
struct OwnRedis {
    child: std::process::Child,
    url: String,
}

impl OwnRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        let addr = format!("127.0.0.1:{port}");
        eventually("redis accepts connections", || {
            std::net::TcpStream::connect(&addr).is_ok()
        })
        .await;
        Self {
            child,
            url: format!("redis://{addr}"),
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Low: when the limiter's store (Redis) is down, writes fail closed with 503 while reads go
/// through, and `/healthz` says so.
#[tokio::test]
async fn writes_fail_closed_when_the_limiter_store_is_down() {
    let mut redis = OwnRedis::start().await;
    let server = TestServer::start_with(ServerOptions {
        redis_url: Some(redis.url.clone()),
        edge: Some(EdgeConfig::default()),
        ..Default::default()
    })
    .await;
    let seller = server.seller("Ann").await;
    assert!(!server.buyer("Before").await.is_empty());
    redis.stop();

    let r = buyer_from(&server, "198.51.100.1", "X").await;
    assert_eq!(r.status(), 503, "an anonymous write");
    assert!(r.headers().contains_key("retry-after"));
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "/docs/problems/rate-limiter-unavailable", "{p}");
    let r = post_from(
        &server,
        "198.51.100.1",
        "/api/v1/streams",
        Some(&seller),
        json!({"title": "t"}),
    )
    .await;
    assert_eq!(r.status(), 503, "a seller's write");
    let r = get(&server, &server.url("/api/v1/streams"), Some(&seller)).await;
    assert_eq!(r.status(), 200, "reads go through");
    let r = get(&server, &server.url("/healthz"), None).await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("rate limiter"));
    server.stop().await;
}

fn assert_csp(r: &reqwest::Response, page: &str) {
    let csp = r
        .headers()
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{page} has no Content-Security-Policy"))
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{page}: {csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{page}: {csp}"
    );
    assert!(
        csp.contains("script-src 'self'") || csp.contains("default-src 'none'"),
        "{page}: {csp}"
    );
}

/// Low: every HTML page the binary serves carries a Content-Security-Policy.
#[tokio::test]
async fn every_page_carries_a_content_security_policy() {
    let server = TestServer::start().await;
    let seller = server.seller("Ann").await;
    let stream = server.stream(&seller, "Show").await;
    let id = stream["id"].as_str().unwrap();
    let mut browser = Browser::new(&server);
    for page in [
        "/".to_owned(),
        "/studio".into(),
        format!("/watch/{id}"),
        format!("/vod/{id}"),
        "/signin".into(),
    ] {
        let r = browser.get(&server.url(&page)).await;
        assert_eq!(r.status(), 200, "{page}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert_csp(&r, &page);
    }
    assert_eq!(browser.sign_in(&server, &seller).await.status(), 303);
    let r = browser.get(&server.url("/developers")).await;
    assert_eq!(r.status(), 200);
    assert_csp(&r, "/developers");
    let (status, app) = server
        .call(
            Method::POST,
            "/api/v1/apps",
            &seller,
            None,
            Some(json!({ "name": "Acme", "redirect_uris": ["https://acme.example/cb"] })),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let consent = format!(
        "/oauth/authorize?response_type=code&client_id={}&redirect_uri=https%3A%2F%2Facme.example%2Fcb\
         &scope=products%3Aread&state=s&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
         &code_challenge_method=S256",
        app["id"].as_str().unwrap()
    );
    let r = browser.get(&server.url(&consent)).await;
    assert_eq!(r.status(), 200, "the consent page");
    assert_csp(&r, "consent");
    server.stop().await;
}

/// Item 8: a stream key can be rotated; the old key is refused and the broadcast published
/// with it ends; the new key is shown once and publishes.
#[tokio::test]
async fn a_rotated_stream_key_refuses_the_old_one_and_ends_its_broadcast() {
    let server = TestServer::start().await;
    let seller = server.seller("Ann").await;
    let stream = server.stream(&seller, "Live").await;
    let (id, old_key) = (
        stream["id"].as_str().unwrap(),
        stream["stream_key"].as_str().unwrap(),
    );
    let whip = stream["whip_url"].as_str().unwrap();
    let publisher =
        TestPublisher::start(&server.http, &server.base, whip, old_key, "video/VP8").await;

    let other = server.seller("Bob").await;
    let path = format!("/api/v1/streams/{id}/key");
    let (status, _) = server.call(Method::POST, &path, &other, None, None).await;
    assert_eq!(status, 404, "another seller's stream");
    let (status, rotated) = server.call(Method::POST, &path, &seller, None, None).await;
    assert_eq!(status, 200, "{rotated}");
    let new_key = rotated["stream_key"].as_str().unwrap();
    assert!(new_key.starts_with("sk_") && new_key != old_key);
    assert_eq!(rotated["whip_url"], stream["whip_url"]);

    // The broadcast published with the old key is gone.
    let r = server
        .http
        .delete(&publisher.location)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the old key's session was ended");
    let (status, _, _) =
        support::post_offer(&server.http, whip, Some(old_key), "v=0\r\n".into()).await;
    assert_eq!(status, 401, "the old key is refused");
    let again = TestPublisher::start(&server.http, &server.base, whip, new_key, "video/VP8").await;
    assert!(again.location.contains(id));
    let shown = server
        .get_json(&format!("/api/v1/streams/{id}"), Some(&seller))
        .await;
    assert!(shown.get("stream_key").is_none(), "shown once");
    server.stop().await;
}

/// Item 8: the account token can be rotated; the old one is refused everywhere and the
/// browser sessions signed in with it end. Keys and apps cannot rotate it.
#[tokio::test]
async fn a_rotated_account_token_refuses_the_old_one_and_ends_its_sessions() {
    let server = TestServer::start().await;
    let old = server.seller("Ann").await;
    let mut browser = Browser::new(&server);
    assert_eq!(browser.sign_in(&server, &old).await.status(), 303);
    assert_eq!(browser.get(&server.url("/developers")).await.status(), 200);

    let (status, key) = server
        .call(
            Method::POST,
            "/api/v1/api-keys",
            &old,
            None,
            Some(json!({ "name": "ci", "mode": "live", "scopes": ["streams:write"] })),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let (status, _) = server
        .call(
            Method::POST,
            "/api/v1/account/token",
            key["secret"].as_str().unwrap(),
            None,
            None,
        )
        .await;
    assert_eq!(status, 403, "an API key cannot rotate the account token");

    let (status, rotated) = server
        .call(Method::POST, "/api/v1/account/token", &old, None, None)
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["token"].as_str().unwrap();
    assert!(new.starts_with("vt_") && new != old);
    let (status, _) = server
        .call(Method::GET, "/api/v1/streams", &old, None, None)
        .await;
    assert_eq!(status, 401, "the old token is refused");
    let (status, _) = server
        .call(Method::GET, "/api/v1/streams", new, None, None)
        .await;
    assert_eq!(status, 200);
    let r = browser.get(&server.url("/developers")).await;
    assert_eq!(r.status(), 303, "the old sign-in has ended");
    let r = Browser::new(&server).sign_in(&server, &old).await;
    assert_eq!(r.status(), 401, "nor can the old token sign in");
    server.stop().await;
}
