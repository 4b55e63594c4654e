//! The streams API: authentication, validation and tenant isolation.

mod support;

use support::*;

#[tokio::test]
async fn sellers_see_only_their_own_streams() {
    let server = TestServer::start().await;
    let alice = server.seller("alice").await;
    let bob = server.seller("bob").await;
    let created = server.stream(&alice, "Alice live").await;
    for field in [
        "id",
        "stream_key",
        "whip_url",
        "whep_url",
        "studio_url",
        "watch_url",
    ] {
        assert!(created[field].is_string(), "missing {field}: {created}");
    }
    assert_eq!(created["state"], "idle");
    let id = created["id"].as_str().unwrap();
    let url = server.url(&format!("/api/v1/streams/{id}"));

    let own = server
        .http
        .get(&url)
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    let own: serde_json::Value = own.json().await.unwrap();
    assert_eq!(own["viewers"], 0);
    assert!(
        own.get("stream_key").is_none(),
        "the key is shown only once"
    );

    let other = server
        .http
        .get(&url)
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    let list: serde_json::Value = server
        .http
        .get(server.url("/api/v1/streams"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["streams"].as_array().unwrap().len(), 0);

    let anonymous = server.http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );
    let forged = server
        .http
        .get(&url)
        .bearer_auth("vt_forged")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn bad_stream_bodies_are_refused() {
    let server = TestServer::start().await;
    let token = server.seller("shop").await;
    for body in [
        serde_json::json!({}),
        serde_json::json!({ "title": "" }),
        serde_json::json!({ "title": "x".repeat(201) }),
        serde_json::json!({ "title": "ok", "extra": 1 }),
    ] {
        let r = server
            .http
            .post(server.url("/api/v1/streams"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let p: serde_json::Value = r.json().await.unwrap();
        assert_eq!(p["status"], 400);
    }
    let health = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("vitrine_subscribers") && text.contains("vitrine_rtp_packets_in"));
    server.stop().await;
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let server = TestServer::start().await;
    let doc = server.get_json("/api/openapi.json", None).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let routes = [
        ("/api/v1/streams", "post"),
        ("/api/v1/streams", "get"),
        ("/api/v1/streams/{id}", "get"),
        ("/api/v1/public/streams/{id}", "get"),
        ("/api/v1/public/streams/{id}/timeline", "get"),
        ("/api/v1/streams/{id}/sales", "get"),
        ("/api/v1/public/products/{id}", "get"),
        ("/whip/{stream}", "post"),
        ("/whip/{stream}", "options"),
        ("/whip/{stream}/{session}", "patch"),
        ("/whip/{stream}/{session}", "delete"),
        ("/whep/{stream}", "post"),
        ("/whep/{stream}", "options"),
        ("/whep/{stream}/{session}", "patch"),
        ("/whep/{stream}/{session}", "delete"),
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/api/v1/products", "get"),
        ("/api/v1/products", "post"),
        ("/api/v1/products/{id}", "get"),
        ("/api/v1/products/{id}", "patch"),
        ("/api/v1/products/{id}", "delete"),
        ("/api/v1/streams/{id}/pins", "get"),
        ("/api/v1/streams/{id}/pins", "post"),
        ("/api/v1/streams/{id}/pins/{pin}", "delete"),
        ("/api/v1/buyers", "post"),
        ("/api/v1/buyers/me", "get"),
        ("/api/v1/orders", "get"),
        ("/api/v1/orders", "post"),
        ("/api/v1/orders/{id}", "get"),
        ("/api/v1/orders/{id}/fulfil", "post"),
        ("/api/v1/orders/{id}/deliver", "post"),
        ("/api/v1/orders/{id}/refund", "post"),
        ("/api/v1/orders/{id}/cancel", "post"),
        ("/api/v1/orders/{id}/pay", "post"),
        ("/api/v1/streams/{id}/auctions", "post"),
        ("/api/v1/auctions/{id}", "get"),
        ("/api/v1/auctions/{id}/bids", "post"),
        ("/ws/streams/{stream}/chat", "get"),
        ("/api/v1/streams/{id}/moderators", "post"),
        ("/api/v1/streams/{id}/moderators/{buyer}", "delete"),
        ("/api/v1/streams/{id}/moderation-log", "get"),
        ("/api/v1/streams/{id}", "delete"),
        ("/hls/{stream}/master.m3u8", "get"),
        ("/hls/{stream}/{rendition}/index.m3u8", "get"),
        ("/hls/{stream}/{rendition}/{file}", "get"),
        ("/hls/{stream}/poster.jpg", "get"),
        ("/hls/{stream}/steering.json", "get"),
        ("/api/v1/apps", "get"),
        ("/api/v1/apps", "post"),
        ("/api/v1/apps/{id}", "get"),
        ("/api/v1/apps/{id}", "patch"),
        ("/api/v1/apps/{id}", "delete"),
        ("/api/v1/apps/{id}/secret", "post"),
        ("/api/v1/api-keys", "get"),
        ("/api/v1/api-keys", "post"),
        ("/api/v1/api-keys/{id}", "delete"),
        ("/api/v1/api-keys/{id}/roll", "post"),
        ("/api/v1/grants", "get"),
        ("/api/v1/grants/{id}", "delete"),
        ("/api/v1/account/token", "post"),
        ("/api/v1/streams/{id}/key", "post"),
        ("/.well-known/oauth-authorization-server", "get"),
        ("/oauth/authorize", "get"),
        ("/oauth/token", "post"),
        ("/oauth/revoke", "post"),
        ("/api/v1/webhooks/event-types", "get"),
        ("/api/v1/balance", "get"),
        ("/api/v1/payouts", "get"),
        ("/api/v1/payouts", "post"),
        ("/api/v1/payouts/{id}", "get"),
        ("/api/v1/ledger", "get"),
        ("/api/v1/public/fx/rates", "get"),
        ("/api/v1/public/fx/convert", "get"),
        ("/api/v1/public/currencies", "get"),
        ("/api/v1/webhooks/endpoints", "get"),
        ("/api/v1/webhooks/endpoints", "post"),
        ("/api/v1/webhooks/endpoints/{id}", "get"),
        ("/api/v1/webhooks/endpoints/{id}", "patch"),
        ("/api/v1/webhooks/endpoints/{id}", "delete"),
        ("/api/v1/webhooks/endpoints/{id}/rotate-secret", "post"),
        ("/api/v1/webhooks/endpoints/{id}/deliveries", "get"),
        (
            "/api/v1/webhooks/endpoints/{id}/deliveries/{event}/replay",
            "post",
        ),
    ];
    for (path, method) in routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} undocumented"
        );
    }
    // And the documented paths are exactly those (no stale entries).
    let documented = doc["paths"].as_object().unwrap().len();
    assert_eq!(documented, 65, "the routes above plus this document");

    // Every reference in the generated document resolves.
    fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r);
                }
                o.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 100, "the document uses components");
    for r in found {
        let pointer = r.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "dangling {r}");
    }

    // Every documented API operation is routed: with placeholder ids and no credential it is
    // answered by its handler (a problem document), never by the router's bare 404 or 405.
    let http = reqwest::Client::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        for method in ["get", "post", "patch", "delete"] {
            if !item[method].is_object() {
                continue;
            }
            let concrete = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "zz_1" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let r = http
                .request(
                    method.to_uppercase().parse().unwrap(),
                    server.url(&concrete),
                )
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let kind = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            assert_ne!(status, 405, "{method} {path} is not routed");
            assert!(
                kind.starts_with("application/problem+json") || status < 400,
                "{method} {path}: {status} {kind} is not the handler's answer"
            );
        }
    }
    server.stop().await;
}
