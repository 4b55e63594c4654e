//! Multi-node behaviour with real `vitrine serve` processes: a stream published on one node is
//! watched on the others through one relay per node, and follows its publisher to a new node.

mod nodes;
#[path = "../support/mod.rs"]
mod support;

use nodes::{Cluster, until};
use support::{TestPublisher, TestSubscriber, assert_continuous};

/// Creates a stream of a new seller through node `on`; returns (stream id, stream key).
async fn stream(cluster: &Cluster, on: &str) -> (String, String) {
    let token = cluster.seller("Ann's boutique").await;
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/streams", cluster.node(on).base))
        .bearer_auth(&token)
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
    until("B relays from C", || async {
        c.metric("vitrine_relay_legs").await == 1.0 && a.metric("vitrine_relay_legs").await == 0.0
    })
    .await;
    let after = viewers[0].video(60).await;
    assert_eq!(after[0].ssrc, before.ssrc, "the viewer renegotiated");
    assert_continuous(&after);
    // C's own viewer is now served from C's router directly: C no longer relays.
    until("C stops relaying", || async {
        c.metric("vitrine_cluster_relays").await == 0.0
    })
    .await;
    assert_continuous(&viewers[2].video(30).await);
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
    until("the idle relay closes", || async {
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
