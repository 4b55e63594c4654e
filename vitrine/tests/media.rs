//! WHIP publish -> SFU -> WHEP playback through the real server and real WebRTC stacks on
//! loopback.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_viewers_receive_and_survive_a_publisher_replacement() {
    let server = TestServer::start().await;
    let token = server.seller("shop").await;
    let stream = server.stream(&token, "Spring drop").await;
    let whip = stream["whip_url"].as_str().unwrap();
    let whep = stream["whep_url"].as_str().unwrap();
    let key = stream["stream_key"].as_str().unwrap();

    // One viewer arrives before the publisher, one after.
    let mut early = TestSubscriber::start(&server.http, &server.base, whep).await;
    let first = TestPublisher::start(&server.http, &server.base, whip, key, "video/VP8").await;
    let mut late = TestSubscriber::start(&server.http, &server.base, whep).await;

    let a = early.video(40).await;
    let b = late.video(40).await;
    assert_continuous(&a);
    assert_continuous(&b);
    assert!(early.audio_arrives().await && late.audio_arrives().await);

    let id = stream["id"].as_str().unwrap();
    let status = server
        .get_json(&format!("/api/v1/streams/{id}"), Some(&token))
        .await;
    assert_eq!(status["state"], "live");
    assert_eq!(status["viewers"], 2);

    // The seller reloads the tab: a second publish with the same key, new SSRCs and bases.
    let second = TestPublisher::start(&server.http, &server.base, whip, key, "video/VP8").await;
    first.abandon().await;
    let before = early.video(1).await[0];
    let after = early.video(80).await;
    let mut joined = vec![before];
    joined.extend(after);
    assert_continuous(&joined);
    assert_continuous(&late.video(60).await);

    // DELETE ends the broadcast.
    let r = server.http.delete(&second.location).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let public = server
        .get_json(&format!("/api/v1/public/streams/{id}"), None)
        .await;
    assert_eq!(
        public["viewers"], 2,
        "viewers stay attached when the broadcast ends"
    );
    assert_eq!(public["state"], "ended");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_publisher_reaches_a_viewer() {
    let server = TestServer::start().await;
    let token = server.seller("shop").await;
    let stream = server.stream(&token, "H264").await;
    let key = stream["stream_key"].as_str().unwrap();
    let _publisher = TestPublisher::start(
        &server.http,
        &server.base,
        stream["whip_url"].as_str().unwrap(),
        key,
        "video/H264",
    )
    .await;
    let mut viewer = TestSubscriber::start(
        &server.http,
        &server.base,
        stream["whep_url"].as_str().unwrap(),
    )
    .await;
    let got = viewer.video(30).await;
    assert_continuous(&got);
    server.stop().await;
}
