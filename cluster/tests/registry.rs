//! The registry on a real Redis (the test script starts one on loopback): one heartbeat of a
//! node renews every origin lease it still holds, with its own work leases, and leaves alone
//! the streams another node took over.

use std::time::Duration;
use vitrine_cluster::registry::{Load, NodeInfo, Registry};
use vitrine_core::StreamId;

fn redis_url() -> String {
    std::env::var("VITRINE_TEST_REDIS_URL").expect(
        "VITRINE_TEST_REDIS_URL is not set: run the tests with scripts/test.sh, or \
         eval \"$(scripts/services.sh start)\" first",
    )
}

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        id: id.to_owned(),
        region: "default".into(),
        url: format!("http://{id}.invalid"),
        public_url: String::new(),
        roles: vec!["media".into()],
        draining: false,
        load: Load::default(),
    }
}

#[tokio::test]
async fn one_heartbeat_renews_the_leases_a_node_still_holds_and_no_others() {
    let cluster = format!("test-{}", StreamId::generate());
    let registry = Registry::connect(&redis_url(), &cluster).await.unwrap();
    let (a, b) = (node("a"), node("b"));
    let streams: Vec<StreamId> = (0..3).map(|_| StreamId::generate()).collect();
    let long = Duration::from_secs(30);
    for stream in &streams {
        registry.claim_origin(stream, &a.id, long).await.unwrap();
    }
    // The seller of the middle stream reconnected to node B, which took it and works on it.
    registry
        .claim_origin(&streams[1], &b.id, long)
        .await
        .unwrap();
    registry
        .claim_work("hls", &streams[1], &b.id, long)
        .await
        .unwrap();
    // A's work lease on the last stream went to B while A was busy (B packaged it meanwhile).
    registry
        .claim_work("hls", &streams[2], &b.id, long)
        .await
        .unwrap();

    let renewed = registry
        .heartbeat(&a, long, &streams, &["hls"], long)
        .await
        .unwrap();

    assert_eq!(renewed, vec![true, false, true]);
    assert_eq!(registry.node("a").await.unwrap(), Some(a.clone()));
    assert_eq!(
        registry.origin(&streams[1]).await.unwrap().as_deref(),
        Some("b")
    );
    let holders = [
        registry.work_holder("hls", &streams[0]).await.unwrap(),
        registry.work_holder("hls", &streams[1]).await.unwrap(),
        registry.work_holder("hls", &streams[2]).await.unwrap(),
    ];
    assert_eq!(
        holders.map(|h| h.unwrap_or_default()),
        ["a".to_string(), "b".into(), "a".into()],
        "the origin takes its own work back; a stream it lost keeps its new holder's"
    );
    let mut live = registry.live_streams().await.unwrap();
    live.sort();
    let mut expected = streams.clone();
    expected.sort();
    assert_eq!(live, expected);

    // A heartbeat with nothing held still publishes the entry, in one round trip.
    registry.withdraw("a").await.unwrap();
    assert_eq!(
        registry
            .heartbeat(&a, long, &[], &["hls"], long)
            .await
            .unwrap(),
        Vec::<bool>::new()
    );
    assert!(registry.nodes().await.unwrap().contains(&a));
}
