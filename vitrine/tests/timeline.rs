//! A replay's timeline: a seller goes live (real WebRTC publisher, real HLS pipeline), buyers
//! chat, a moderator deletes a line, the seller pins a flash sale; once the recording is a
//! replay, `GET /api/v1/public/streams/{id}/timeline` gives those events on the recording's
//! media time, paged, without the deleted line.

mod support;

use serde_json::json;
use std::time::Duration;
use support::{ChatClient, MediaSource, ServerOptions, TestServer};
use vitrine_transcode::{EncoderChoice, HlsConfig, RenditionSpec};

fn config() -> HlsConfig {
    HlsConfig {
        renditions: vec![RenditionSpec {
            height: 240,
            bitrate_kbps: 300,
            fps: 30,
        }],
        encoder: EncoderChoice::X264,
        x264_preset: "ultrafast".into(),
        finalize_after: Duration::from_secs(2),
        ..HlsConfig::default()
    }
}

fn now_ms() -> i64 {
    vitrine_core::time::Timestamp::now().millis()
}

/// Waits (LL-HLS blocking reloads) until the playlist at `url` lists `n` segments; its text.
async fn segments(server: &TestServer, url: &str, n: usize) -> String {
    let what = format!("{n} segments");
    support::wait_playlist(server, url, &what, |t| {
        t.lines().filter(|l| l.starts_with("#EXTINF")).count() >= n
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replays_timeline_has_chat_and_pins_on_media_time() {
    let server = TestServer::start_with(ServerOptions {
        hls: Some(config()),
        ..Default::default()
    })
    .await;
    let seller = server.seller("Ann's boutique").await;
    let (stream, publisher) = support::go_live(
        &server,
        &seller,
        "Flash sale",
        MediaSource::camera("video/H264", 426, 240),
    )
    .await;
    let id = stream["id"].as_str().unwrap().to_owned();
    let playlist = server.url(&format!("/hls/{id}/240p/index.m3u8"));
    segments(&server, &playlist, 1).await;

    let fan = server.buyer("Fan").await;
    let (mut host, _) = ChatClient::join(&server.base, &id, Some(&seller), None).await;
    let (mut viewer, _) = ChatClient::join(&server.base, &id, Some(&fan), None).await;
    let said_at = now_ms();
    viewer
        .send(json!({ "type": "chat", "text": "is it waterproof?" }))
        .await;
    host.next_of("chat").await;
    viewer
        .send(json!({ "type": "chat", "text": "spam spam" }))
        .await;
    let spam = host.next_of("chat").await;
    host.send(json!({ "type": "moderate", "action": "delete", "message_id": spam["id"] }))
        .await;
    host.next_of("moderation").await;
    let product = server
        .product(
            &seller,
            json!({ "sku": "JKT", "title": "Rain jacket",
                    "price": { "amount": 4900, "currency": "USD" }, "stock": 20 }),
        )
        .await;
    let pinned_at = now_ms();
    server
        .created(
            &format!("/api/v1/streams/{id}/pins"),
            &seller,
            json!({ "product_id": product["id"], "quantity_cap": 10,
                "sale_price": { "amount": 2900, "currency": "USD" } }),
        )
        .await;
    host.next_of("pin").await;
    // The fan buys in the live room's chat: a live order.
    viewer
        .send(
            json!({ "type": "buy", "request_id": "live-1", "product_id": product["id"],
                      "card_number": "4242424242424242" }),
        )
        .await;
    let live_order = viewer.next_of("order.confirmed").await["order"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let live = segments(&server, &playlist, 3).await;
    assert!(!live.contains("#EXT-X-ENDLIST"));
    publisher.stop(&server.http).await;
    let replay = support::wait_playlist(&server, &playlist, "the replay", |t| {
        t.contains("#EXT-X-ENDLIST")
    })
    .await;
    // The replay's first segment's wall-clock time: media time zero.
    let start = replay
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
        .unwrap();
    let length: f64 = replay
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|v| v.trim_end_matches(',').parse::<f64>().unwrap())
        .sum();

    let page = server
        .get_json(&format!("/api/v1/public/streams/{id}/timeline"), None)
        .await;
    let events = page["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"chat") && kinds.contains(&"sale"), "{page}");
    let texts: Vec<&str> = events.iter().filter_map(|e| e["text"].as_str()).collect();
    assert_eq!(
        texts,
        ["is it waterproof?"],
        "the deleted line is gone: {page}"
    );
    let at = |kind: &str| {
        events.iter().find(|e| e["type"] == kind).unwrap()["at_ms"]
            .as_u64()
            .unwrap()
    };
    let ats: Vec<u64> = events
        .iter()
        .map(|e| e["at_ms"].as_u64().unwrap())
        .collect();
    assert!(
        ats.windows(2).all(|w| w[0] <= w[1]),
        "in media order: {ats:?}"
    );
    assert!((at("sale") as f64) < length * 1000.0, "{page}");
    assert_eq!(
        events.iter().find(|e| e["type"] == "sale").unwrap()["pin"]["sale_price"]["amount"],
        2900
    );
    // On media time: the chat line and the pin sit where the replay shows the moments they
    // were made (the recording has no gap), within the time their trip took.
    let first_ms = vitrine_core::time::Timestamp::parse(start)
        .unwrap()
        .millis();
    for (kind, made) in [("chat", said_at), ("sale", pinned_at)] {
        let expected = (made - first_ms) as f64;
        let got = at(kind) as f64;
        assert!(
            (got - expected).abs() < 1000.0,
            "{kind} at {got} ms, made at {expected} ms of the replay"
        );
    }

    // Pages by media time.
    let from = at("sale");
    let later = server
        .get_json(
            &format!("/api/v1/public/streams/{id}/timeline?from_ms={from}"),
            None,
        )
        .await;
    assert_eq!(later["events"][0]["type"], "sale", "{later}");
    let one = server
        .get_json(
            &format!("/api/v1/public/streams/{id}/timeline?limit=1"),
            None,
        )
        .await;
    assert_eq!(one["events"].as_array().unwrap().len(), 1);
    assert_eq!(one["next_from_ms"], json!(ats[1]));
    // Orders say where they were placed: the live room's, and one from the replay at the
    // pin's moment, at the catalog price (the show's sale is over).
    let get = reqwest::Method::GET;
    let (status, live) = server
        .call(
            get,
            &format!("/api/v1/orders/{live_order}"),
            &fan,
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{live}");
    assert_eq!(
        (live["source"].clone(), live["unit_price"]["amount"].clone()),
        (json!("live"), json!(2900))
    );
    assert!(live.get("media_ms").is_none(), "{live}");
    let order = |extra: serde_json::Value| {
        let mut body = json!({ "product_id": product["id"], "quantity": 1,
                               "payment": { "card_number": "4242424242424242" } });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let post = reqwest::Method::POST;
    let moment = at("sale");
    let (status, replayed) = server
        .call(
            post.clone(),
            "/api/v1/orders",
            &fan,
            Some("replay-1"),
            Some(order(
                json!({ "source": "replay", "stream_id": id, "media_ms": moment }),
            )),
        )
        .await;
    assert_eq!(status, 201, "{replayed}");
    assert_eq!(replayed["source"], "replay");
    assert_eq!(replayed["media_ms"], moment);
    assert_eq!(replayed["stream_id"], id.as_str());
    assert_eq!(replayed["unit_price"]["amount"], 4900);
    assert!(replayed.get("pin_id").is_none(), "{replayed}");
    let other_seller = server.seller("Bo's bazaar").await;
    let other_stream = server.stream(&other_seller, "Other show").await;
    for (i, (extra, status)) in [
        (json!({ "source": "live", "stream_id": id }), 400),
        (json!({ "media_ms": 5 }), 400),
        (json!({ "source": "replay", "stream_id": id }), 400),
        (json!({ "source": "replay", "media_ms": 5 }), 400),
        (
            json!({ "source": "replay", "stream_id": id, "media_ms": 700_000_000_000u64 }),
            400,
        ),
        (
            json!({ "source": "replay", "stream_id": other_stream["id"], "media_ms": 5 }),
            404,
        ),
        (json!({ "source": "sideways" }), 400),
    ]
    .into_iter()
    .enumerate()
    {
        let (got, body) = server
            .call(
                post.clone(),
                "/api/v1/orders",
                &fan,
                Some(&format!("bad-{i}")),
                Some(order(extra.clone())),
            )
            .await;
        assert_eq!(got, status, "{extra}: {body}");
    }

    // The product as buyers see it now: today's price and stock (20, less the two sold).
    let now = server
        .get_json(
            &format!(
                "/api/v1/public/products/{}",
                product["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(
        (now["price"]["amount"].clone(), now["available"].clone()),
        (json!(4900), json!(18)),
        "{now}"
    );
    assert!(
        now.get("seller_id").is_none() && now.get("sku").is_none(),
        "{now}"
    );
    let r = server
        .http
        .get(server.url("/api/v1/public/products/pr_000000000000000000000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The seller's sales by minute of the show: the live order and the replay's, apart.
    let (status, sales) = server
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/streams/{id}/sales"),
            &seller,
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{sales}");
    let minute = moment / 60_000;
    let row = sales["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["minute"] == minute)
        .unwrap_or_else(|| panic!("no minute {minute}: {sales}"));
    assert_eq!(
        (row["live_units"].clone(), row["replay_units"].clone()),
        (json!(1), json!(1)),
        "{sales}"
    );
    let (status, _) = server
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/streams/{id}/sales"),
            &other_seller,
            None,
            None,
        )
        .await;
    assert_eq!(status, 404, "another seller's stream");

    // Bad queries and unknown streams.
    for (query, status) in [
        ("?limit=0", 400),
        ("?limit=5000", 400),
        ("?from_ms=9&to_ms=1", 400),
        ("?from_ms=-1", 400),
        ("?colour=red", 400),
    ] {
        let r = server
            .http
            .get(server.url(&format!("/api/v1/public/streams/{id}/timeline{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{query}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{query}"
        );
    }
    let r = server
        .http
        .get(server.url("/api/v1/public/streams/st_000000000000000000000000/timeline"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
