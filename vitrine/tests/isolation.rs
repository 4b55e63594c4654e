//! Tenant isolation, generated from the OpenAPI document rather than hand-listed: for every
//! documented seller operation that names an object in its path, an app authorized by seller A
//! (all scopes), and A's own account token for the account routes, get 404 for seller B's
//! object, while the same call on A's own object does not. A route added to the document is
//! covered without touching this test; an undocumented path parameter fails it.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use support::{ServerOptions, TestServer};
use vitrine_core::SellerId;
use vitrine_platform::Scopes;
use vitrine_platform::oauth::{AuthorizationParams, ClientCredentials, TokenParams};
use vitrine_platform::ratelimit::{Tiers, TiersFile};

/// Everything one seller owns, by the path parameter that names it.
struct Tenant {
    token: String,
    objects: BTreeMap<&'static str, String>,
}

async fn json(r: reqwest::Response) -> Value {
    let status = r.status();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {v}");
    v
}

async fn tenant(server: &TestServer, name: &str) -> Tenant {
    let token = server.seller(name).await;
    let http = &server.http;
    let post = |path: &str, body: Value| {
        http.post(server.url(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let product = json(post("/api/v1/products", json!({
        "sku": "SKU", "title": "Hat", "price": { "amount": 1000, "currency": "EUR" }, "stock": 5
    })).await.unwrap())
    .await;
    let stream = json(
        post("/api/v1/streams", json!({ "title": "Live" }))
            .await
            .unwrap(),
    )
    .await;
    let stream_id = stream["id"].as_str().unwrap().to_owned();
    let pin = json(
        post(
            &format!("/api/v1/streams/{stream_id}/pins"),
            json!({ "product_id": product["id"] }),
        )
        .await
        .unwrap(),
    )
    .await;
    // The endpoint first, so that the order below makes events for it.
    let endpoint = json(
        post(
            "/api/v1/webhooks/endpoints",
            json!({ "url": "http://127.0.0.1:9/hooks" }),
        )
        .await
        .unwrap(),
    )
    .await;
    let buyer = json(
        http.post(server.url("/api/v1/buyers"))
            .json(&json!({ "display_name": "Buyer" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let order = json(
        http.post(server.url("/api/v1/orders"))
            .bearer_auth(buyer["token"].as_str().unwrap())
            .header("Idempotency-Key", format!("{}-1", name.replace(' ', "-")))
            .json(&json!({
                "product_id": product["id"], "quantity": 1,
                "payment": { "card_number": "4242424242424242" }
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // The buyer moderates the seller's stream, so that removing a moderator names a real one.
    let moderator = post(
        &format!("/api/v1/streams/{stream_id}/moderators"),
        json!({ "buyer_id": buyer["buyer_id"] }),
    )
    .await
    .unwrap();
    let status = moderator.status();
    assert!(
        status.is_success(),
        "{status}: {}",
        moderator.text().await.unwrap()
    );
    let app = json(
        post(
            "/api/v1/apps",
            json!({ "name": "App", "redirect_uris": ["https://a.example/cb"] }),
        )
        .await
        .unwrap(),
    )
    .await;
    let payout = json(
        http.post(server.url("/api/v1/payouts"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "p1")
            .json(&json!({ "amount": { "amount": 500, "currency": "EUR" } }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let key = json(
        post("/api/v1/api-keys", json!({ "name": "k", "mode": "live" }))
            .await
            .unwrap(),
    )
    .await;
    let state = &server.running.as_ref().unwrap().state;
    let seller = state
        .store
        .seller_by_token(&vitrine_core::Secret::from_presented(&token))
        .await
        .unwrap()
        .unwrap();
    // The seller authorizes its own app (so it has a grant to show) and gets its token.
    let access = authorize(server, &app, &seller.id).await;
    let grant = state.platform.grants_of(&seller.id).await.unwrap()[0]
        .id
        .to_string();
    // The order's messages are in its fact rows; expanded now rather than by the dispatcher's
    // next round, so that the query below does not race it.
    state.checkout.webhooks().expand_pending().await.unwrap();
    let (event,): (String,) =
        sqlx::query_as("SELECT id FROM webhook_events WHERE seller_id = $1 LIMIT 1")
            .bind(seller.id.as_str())
            .fetch_one(state.store.pool())
            .await
            .unwrap();
    let mut objects = BTreeMap::new();
    for (param, value) in [
        ("products", product["id"].as_str().unwrap().to_owned()),
        ("streams", stream_id),
        ("pin", pin["id"].as_str().unwrap().to_owned()),
        ("orders", order["id"].as_str().unwrap().to_owned()),
        ("endpoints", endpoint["id"].as_str().unwrap().to_owned()),
        ("event", event),
        ("apps", app["id"].as_str().unwrap().to_owned()),
        ("api-keys", key["id"].as_str().unwrap().to_owned()),
        ("grants", grant),
        ("payouts", payout["id"].as_str().unwrap().to_owned()),
        ("app-token", access),
        ("buyer", buyer["buyer_id"].as_str().unwrap().to_owned()),
    ] {
        objects.insert(param, value);
    }
    Tenant { token, objects }
}

/// An access token with every scope for `app`, granted by `seller` (through the same platform
/// calls the HTTP endpoints make).
async fn authorize(server: &TestServer, app: &Value, seller: &SellerId) -> String {
    let platform = &server.running.as_ref().unwrap().state.platform;
    let verifier = "v".repeat(50);
    let challenge = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    let client_id = app["id"].as_str().unwrap().to_owned();
    let redirect = "https://a.example/cb".to_owned();
    let request = platform
        .authorization_request(&AuthorizationParams {
            response_type: Some("code".into()),
            client_id: Some(client_id.clone()),
            redirect_uri: Some(redirect.clone()),
            scope: Some(Scopes::all().to_string()),
            state: Some("s".into()),
            code_challenge: Some(challenge),
            code_challenge_method: Some("S256".into()),
        })
        .await
        .unwrap();
    let back = platform
        .approve(seller, &request, "http://x")
        .await
        .unwrap();
    let code = url::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let tokens = platform
        .token(
            &ClientCredentials {
                id: Some(client_id),
                secret: app["client_secret"].as_str().map(str::to_owned),
                basic: false,
            },
            &TokenParams {
                grant_type: Some("authorization_code".into()),
                code: Some(code),
                redirect_uri: Some(redirect),
                code_verifier: Some(verifier),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    tokens.access_token
}

/// Which object a path parameter names: `{id}` takes the collection before it.
fn object_of<'a>(path: &'a str, param: &'a str) -> &'a str {
    if param != "id" {
        return param;
    }
    let before = path.split("/{id}").next().unwrap();
    before.rsplit('/').next().unwrap()
}

fn fill(path: &str, tenant: &Tenant) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest.find('}').unwrap();
        let param = &rest[start + 1..end];
        let object = object_of(path, param);
        let value = tenant
            .objects
            .get(object)
            .unwrap_or_else(|| panic!("{path}: no test object for {{{param}}} ({object})"));
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn every_documented_object_route_hides_other_sellers_objects() {
    // Limits high enough that the sweep below is never throttled.
    let tiers: TiersFile = toml::from_str(
        "[tiers.free]\nrequests_per_second = 1000\nburst = 1000\n\
         [tiers.standard]\nrequests_per_second = 1000\nburst = 1000",
    )
    .unwrap();
    let server = TestServer::start_with(ServerOptions {
        rate_limits: Some(Tiers::from_file(tiers).unwrap()),
        ..Default::default()
    })
    .await;
    let a = tenant(&server, "Seller A").await;
    let b = tenant(&server, "Seller B").await;
    let doc = server.get_json("/api/openapi.json", None).await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/")
            || !path.contains('{')
            || path.starts_with("/api/v1/public/")
        {
            continue;
        }
        for method in ["get", "post", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let security = op["security"].as_array().cloned().unwrap_or_default();
            let app_may_call = security.iter().any(|s| s.get("oauth2").is_some());
            let account_only =
                !app_may_call && security.iter().any(|s| s.get("apiToken").is_some());
            if !app_may_call && !account_only {
                continue;
            }
            let caller = if app_may_call {
                &a.objects["app-token"]
            } else {
                &a.token
            };
            let call = |target: String| {
                let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let mut req = server
                    .http
                    .request(m, server.url(&target))
                    .bearer_auth(caller);
                if method == "post" || method == "patch" {
                    req = req.json(&json!({}));
                }
                req.send()
            };
            let theirs = call(fill(path, &b)).await.unwrap();
            let status = theirs.status().as_u16();
            let body = theirs.text().await.unwrap();
            assert_eq!(
                status, 404,
                "{method} {path} on another seller's object: {body}"
            );
            if method == "get" {
                let mine = call(fill(path, &a)).await.unwrap().status().as_u16();
                assert_eq!(mine, 200, "{method} {path} on the caller's own object");
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} operations checked");
    server.stop().await;
}
