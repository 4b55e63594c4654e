//! Multi-node behaviour with real `vitrine serve` processes: a stream published on one node is
//! watched on the others through one relay per node and follows its publisher to a new node; a
//! drained node sends its publishers, viewers and chat members elsewhere and loses no order; a
//! killed origin fails over.

mod clients;
mod nodes;
mod origins;
mod regions;
mod roles;
#[path = "../support/mod.rs"]
mod support;

use clients::{Publisher, Viewer};
use nodes::Cluster;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::{TestPublisher, TestSubscriber, assert_continuous};

/// The longest a move may take here: several times what it takes (printed by each test), and
/// less than the WebRTC stack's own timeouts, which a client or relay that was not told of the
/// move would wait out.
const MOVE_BOUND: Duration = Duration::from_secs(4);

/// Creates a stream of a new seller through node `on`; returns (stream id, stream key).
async fn stream(cluster: &Cluster, on: &str) -> (String, String) {
    let token = cluster.seller("Ann's boutique").await;
    stream_of(cluster, on, &token).await
}

async fn stream_of(cluster: &Cluster, on: &str, token: &str) -> (String, String) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/streams", cluster.node(on).base))
        .bearer_auth(token)
        .json(&serde_json::json!({ "title": "Flash sale" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let s: serde_json::Value = r.json().await.unwrap();
    (
        s["id"].as_str().unwrap().to_owned(),
        s["stream_key"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_a_stream_through_one_relay_per_node_that_follows_its_publisher() {
    let cluster = Cluster::start(&["a", "b", "c"]).await;
    let http = reqwest::Client::new();
    let (id, key) = stream(&cluster, "a").await;
    let (a, b, c) = (cluster.node("a"), cluster.node("b"), cluster.node("c"));
    let publisher = TestPublisher::start(
        &http,
        &a.base,
        &format!("{}/whip/{id}", a.base),
        &key,
        "video/VP8",
    )
    .await;

    // Two viewers on B and one on C; each receives the publisher's video without gaps.
    let mut viewers = Vec::new();
    for node in [b, b, c] {
        let whep = format!("{}/whep/{id}", node.base);
        viewers.push(TestSubscriber::start(&http, &node.base, &whep).await);
    }
    for v in &mut viewers {
        assert_continuous(&v.video(30).await);
    }
    // One relay per edge node, however many viewers it has: the origin serves two legs.
    assert_eq!(
        b.metric("vitrine_cluster_relays").await,
        1.0,
        "{}",
        cluster.logs()
    );
    assert_eq!(c.metric("vitrine_cluster_relays").await, 1.0);
    assert_eq!(a.metric("vitrine_relay_legs").await, 2.0);
    assert_eq!(a.metric("vitrine_subscribers").await, 2.0);
    assert_eq!(b.metric("vitrine_subscribers").await, 2.0);
    assert_eq!(a.metric("vitrine_cluster_origins").await, 1.0);

    // The seller's connection drops and they publish again, on C. B's relay follows the
    // stream to C, and B's viewers keep their session: same SSRC, no sequence gap.
    let before = viewers[0].video(1).await[0];
    publisher.abandon().await;
    let moved = TestPublisher::start(
        &http,
        &c.base,
        &format!("{}/whip/{id}", c.base),
        &key,
        "video/VP8",
    )
    .await;
    cluster
        .until("B relays from C", || async {
            c.metric("vitrine_relay_legs").await == 1.0
                && a.metric("vitrine_relay_legs").await == 0.0
        })
        .await;
    let after = viewers[0].video(60).await;
    assert_eq!(after[0].ssrc, before.ssrc, "the viewer renegotiated");
    assert_continuous(&after);
    // C's own viewer is now served from C's router directly: C no longer relays.
    cluster
        .until("C stops relaying", || async {
            c.metric("vitrine_cluster_relays").await == 0.0
        })
        .await;
    assert_continuous(&viewers[2].video(30).await);

    // The operator's view of the cluster, from any node: its nodes and where the stream is.
    let operator = cluster.operator("Ops").await;
    let seller = cluster.seller("Another shop").await;
    let view = format!("{}/admin/cluster", b.base);
    for (token, status) in [
        (Some(seller.as_str()), 401),
        (None, 401),
        (Some(&operator), 200),
    ] {
        let mut req = http.get(&view);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status);
        if status == 200 {
            let v: serde_json::Value = r.json().await.unwrap();
            let ids: Vec<&str> = v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["id"].as_str().unwrap())
                .collect();
            assert_eq!(ids, ["a", "b", "c"]);
            assert_eq!(
                v["streams"],
                serde_json::json!([{ "id": id, "origin": "c" }])
            );
        }
    }
    let r = http
        .post(format!("{}/admin/drain", b.base))
        .bearer_auth(&seller)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a seller never drains a node");
    drop(moved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_without_viewers_is_closed_and_relay_tokens_are_checked() {
    let cluster = Cluster::start(&["a", "b"]).await;
    let http = reqwest::Client::new();
    let (id, key) = stream(&cluster, "a").await;
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    let _publisher = TestPublisher::start(
        &http,
        &a.base,
        &format!("{}/whip/{id}", a.base),
        &key,
        "video/VP8",
    )
    .await;
    let mut viewer = TestSubscriber::start(&http, &b.base, &format!("{}/whep/{id}", b.base)).await;
    viewer.video(10).await;
    assert_eq!(a.metric("vitrine_relay_legs").await, 1.0);

    // The viewer leaves; after the idle grace (2 s here) the relay closes on both ends.
    http.delete(&viewer.location).send().await.unwrap();
    cluster
        .until("the idle relay closes", || async {
            b.metric("vitrine_cluster_relays").await == 0.0
                && a.metric("vitrine_relay_legs").await == 0.0
        })
        .await;

    // A forged relay credential is an anonymous viewer: it is admitted as one (not as a
    // relay) and counted as a viewer.
    let pc = support::factory().build().await.unwrap();
    let (pc, mut events) = pc;
    vitrine_sfu::peer::add_receivers(&pc).await.unwrap();
    let offer = support::local_offer(&pc, &mut events).await;
    let forged = format!("vrl1.b.{}.{}", u64::MAX / 2, "00".repeat(32));
    let (status, _, _) = support::post_offer(
        &http,
        &format!("{}/whep/{id}", a.base),
        Some(&forged),
        offer,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(a.metric("vitrine_relay_legs").await, 0.0);
}

/// Video packets from `last` (the newest one before the move began) until the viewer receives
/// from another leg (a new SSRC: it reconnected, or its leg was replaced), then `more` more.
async fn packets_across_a_move(
    viewer: &mut Viewer,
    last: (tokio::time::Instant, support::Received),
    more: usize,
) -> Vec<(tokio::time::Instant, support::Received)> {
    let first = last.1.ssrc;
    let mut got = vec![last];
    let deadline = tokio::time::Instant::now() + support::WAIT;
    while got.last().unwrap().1.ssrc == first {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the viewer never moved ({} packets from its first leg)",
            got.len()
        );
        got.extend(viewer.video(1).await);
    }
    got.extend(viewer.video(more).await);
    got
}

/// The newest packet the viewer has received (everything queued is read).
async fn newest(viewer: &mut Viewer) -> (tokio::time::Instant, support::Received) {
    let mut last = viewer.video(1).await[0];
    while let Ok(p) = viewer.packets.try_recv() {
        last = p;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_sends_its_viewers_and_its_publisher_to_other_nodes() {
    let mut cluster = Cluster::start(&["a", "b", "c"]).await;
    let (id, key) = stream(&cluster, "a").await;
    let url = |n: &str, what: &str| format!("{}/{what}/{id}", cluster.node(n).base);
    let publisher = Publisher::start(vec![url("a", "whip")], &key).await;
    assert_eq!(
        publisher.node(),
        cluster.node("a").base,
        "a tie keeps the publisher"
    );
    let mut viewer = Viewer::start(vec![url("b", "whep"), url("c", "whep")]).await;
    viewer.video(20).await;
    assert_eq!(viewer.node(), cluster.node("b").base);

    // The operator drains B: its viewer is sent to another node, B exits cleanly.
    let last = newest(&mut viewer).await;
    let out = cluster.node("b").drain(&cluster.secret()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = cluster.base("b");
    let moved = packets_across_a_move(&mut viewer, last, 50).await;
    assert_ne!(viewer.node(), b);
    let gap = clients::longest_gap(&moved);
    eprintln!("drain of an edge node: video gap {gap:?}");
    // The figure (2 s or less) is the benchmark's to check; this bound catches a move that
    // waited out a timeout instead of being told (ICE's 5 s, the 10 s grace).
    assert!(gap <= MOVE_BOUND, "gap {gap:?}");
    assert_eq!(viewer.reconnects.load(Ordering::SeqCst), 1);
    assert!(cluster.node_mut("b").exited().await.success());

    // Draining the origin moves the publisher; the viewer keeps watching.
    let last = newest(&mut viewer).await;
    let out = cluster.node("a").drain(&cluster.secret()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = cluster.base("a");
    let c = cluster.base("c");
    cluster
        .until("the publisher moves to C", || async {
            publisher.node() == c
        })
        .await;
    let after = packets_across_a_move(&mut viewer, last, 50).await;
    let gap = clients::longest_gap(&after);
    eprintln!("drain of the origin: video gap {gap:?}");
    // The figure (2 s or less) is the benchmark's to check; this bound catches a move that
    // waited out a timeout instead of being told (ICE's 5 s, the 10 s grace).
    assert!(gap <= MOVE_BOUND, "gap {gap:?}");
    assert_eq!(publisher.republished.load(Ordering::SeqCst), 1);
    assert!(cluster.node_mut("a").exited().await.success());
    assert_ne!(viewer.node(), a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_origin_fails_over_to_another_node() {
    let mut cluster = Cluster::start(&["a", "b", "c"]).await;
    let (id, key) = stream(&cluster, "a").await;
    let url = |n: &str, what: &str| format!("{}/{what}/{id}", cluster.node(n).base);
    let publisher = Publisher::start(vec![url("a", "whip"), url("b", "whip")], &key).await;
    // Players that wait out a few seconds without media before they reconnect.
    let patient = Duration::from_secs(5);
    let mut on_b = Viewer::start_with(vec![url("b", "whep")], patient).await;
    let mut on_c = Viewer::start_with(vec![url("c", "whep")], patient).await;
    on_b.video(20).await;
    on_c.video(20).await;

    let (last_b, last_c) = (newest(&mut on_b).await, newest(&mut on_c).await);
    let killed = tokio::time::Instant::now();
    cluster.node_mut("a").kill();
    cluster
        .until("the publisher publishes again", || async {
            publisher.republished.load(Ordering::SeqCst) == 1
        })
        .await;
    let republished = killed.elapsed();
    let mut recovered = Vec::new();
    // Each viewer's outage: the longest silence from its last packet before the kill, and
    // when media came back.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    for (viewer, last) in [(&mut on_b, last_b), (&mut on_c, last_c)] {
        let (mut previous, mut gap, mut back) = (last.0, Duration::ZERO, killed);
        loop {
            let (at, _) = viewer.video(1).await[0];
            if at - previous > gap {
                (gap, back) = (at - previous, at);
            }
            previous = at;
            if at > until {
                break;
            }
        }
        recovered.push(back.saturating_duration_since(killed));
    }
    eprintln!(
        "kill -9 of the origin: re-published after {republished:?}, viewers recovered after {recovered:?}"
    );
    assert!(republished <= MOVE_BOUND, "{republished:?}");
    for r in &recovered {
        assert!(*r <= republished + MOVE_BOUND, "{r:?}");
    }
    assert_ne!(publisher.node(), cluster.node("a").base);
    assert_eq!(
        on_b.reconnects.load(Ordering::SeqCst),
        0,
        "B's viewer kept its session"
    );
    assert_eq!(
        on_c.reconnects.load(Ordering::SeqCst),
        0,
        "C's viewer kept its session"
    );
}

/// A JSON call to node `base`; (status, body).
async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("idempotency-key", format!("k{}", rand::random::<u64>()))
            .json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

async fn buyer(base: &str, name: &str) -> String {
    let body = serde_json::json!({ "display_name": name });
    let (s, b) = call(
        base,
        reqwest::Method::POST,
        "/api/v1/buyers",
        None,
        Some(body),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_spans_nodes_and_a_drain_loses_no_message_and_no_order() {
    use reqwest::Method;
    use serde_json::json;
    let mut cluster = Cluster::start(&["b", "c"]).await;
    let seller = cluster.seller("Ann's boutique").await;
    let (id, _) = stream_of(&cluster, "c", &seller).await;
    let (b, c) = (cluster.base("b"), cluster.base("c"));
    let new = json!({ "sku": "HAT", "title": "Hat",
                      "price": { "amount": 2500, "currency": "EUR" }, "stock": 5 });
    let (s, product) = call(
        &c,
        Method::POST,
        "/api/v1/products",
        Some(&seller),
        Some(new),
    )
    .await;
    assert_eq!(s, 201, "{product}");
    let (ann, bob) = (buyer(&b, "Ann").await, buyer(&c, "Bob").await);

    // A member on B sees what is said on C.
    let (mut ann_b, _) = support::ChatClient::join(&b, &id, Some(&ann), None).await;
    let (mut bob_c, _) = support::ChatClient::join(&c, &id, Some(&bob), None).await;
    bob_c
        .send(json!({ "type": "chat", "text": "hello from C" }))
        .await;
    let seen = ann_b.next_of("chat").await;
    assert_eq!(seen["text"], "hello from C");
    let last = seen["id"].as_str().unwrap().to_owned();

    // Ann orders through B just as B is drained: the order is answered and kept.
    let order = json!({ "product_id": product["id"], "quantity": 1,
                        "payment": { "card_number": "4242424242424242" } });
    let placing = tokio::spawn({
        let (b, ann) = (b.clone(), ann.clone());
        async move { call(&b, Method::POST, "/api/v1/orders", Some(&ann), Some(order)).await }
    });
    let out = cluster.node("b").drain(&cluster.secret()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, placed) = placing.await.unwrap();
    assert_eq!(s, 201, "{placed}");
    assert_eq!(placed["status"], "paid");

    // B closes its chat members with 4503; Bob speaks meanwhile; Ann resumes on C and misses
    // nothing.
    let closed = ann_b.closed().await;
    assert_eq!(closed.0, 4503, "{closed:?}");
    bob_c
        .send(json!({ "type": "chat", "text": "while you moved" }))
        .await;
    bob_c.next_of("chat").await;
    let (_, welcome) = support::ChatClient::join(&c, &id, Some(&ann), Some(&last)).await;
    assert_eq!(welcome["resumed"], true);
    let missed: Vec<&str> = welcome["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "chat")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(missed, ["while you moved"]);
    assert!(cluster.node_mut("b").exited().await.success());

    // The order is in the shared database, seen through C.
    let (s, orders) = call(&c, Method::GET, "/api/v1/orders", Some(&seller), None).await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = orders["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [placed["id"].as_str().unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_an_operator_token_is_limited_per_address() {
    // Limits on (the default): the operator's routes count as sign-in attempts.
    let cluster = Cluster::start_with(&[("a", &["--no-hls"][..])]).await;
    let view = format!("{}/admin/cluster", cluster.node("a").base);
    // An address of its own, so that no other test's attempts count here.
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 217]))
        .build()
        .unwrap();
    let mut statuses = Vec::new();
    for n in 0..40 {
        let r = http
            .get(&view)
            .bearer_auth(format!("vop_guess{n}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            let problem: serde_json::Value = r.json().await.unwrap();
            assert_eq!(problem["status"], 429, "{problem}");
            break;
        }
    }
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}
