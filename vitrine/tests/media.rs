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
    let stream = server.media_stream("H264").await;
    let (whip, whep, key) = stream.endpoints();
    let _publisher =
        TestPublisher::start(&server.http, &server.base, whip, key, "video/H264").await;
    let mut viewer = TestSubscriber::start(&server.http, &server.base, whep).await;
    let got = viewer.video(30).await;
    assert_continuous(&got);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_viewer_gets_a_keyframe_through_a_coalesced_pli() {
    let server = TestServer::start().await;
    let token = server.seller("shop").await;
    let stream = server.stream(&token, "Keyframes").await;
    let whep = stream["whep_url"].as_str().unwrap();
    // The publisher sends one keyframe at start, then only when asked (PLI).
    let publisher = TestPublisher::start_with(
        &server.http,
        &server.base,
        stream["whip_url"].as_str().unwrap(),
        stream["stream_key"].as_str().unwrap(),
        "video/VP8",
        Keyframes::OnRequest,
    )
    .await;
    let mut first = TestSubscriber::start(&server.http, &server.base, whep).await;
    assert_continuous(&first.video(20).await);
    // Three viewers join at once: each leg waits for a keyframe, which only a PLI can bring.
    let mut late = Vec::new();
    for _ in 0..3 {
        late.push(TestSubscriber::start(&server.http, &server.base, whep).await);
    }
    for viewer in &mut late {
        assert_continuous(&viewer.video(20).await);
    }
    let plis = || publisher.plis.load(std::sync::atomic::Ordering::SeqCst);
    assert!(plis() >= 1, "the publisher was asked for a keyframe");

    // A viewer's own PLI reaches the publisher too (coalesced, so wait past the window).
    let before = plis();
    late[0].send_pli().await;
    eventually("the viewer's PLI reaches the publisher", || plis() > before).await;

    // DELETE removes a viewer at once; the others keep receiving.
    let id = stream["id"].as_str().unwrap();
    let before = server
        .get_json(&format!("/api/v1/streams/{id}"), Some(&token))
        .await;
    assert_eq!(before["viewers"], 4);
    let gone = late.pop().unwrap();
    let r = server.http.delete(&gone.location).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let after = server
        .get_json(&format!("/api/v1/streams/{id}"), Some(&token))
        .await;
    assert_eq!(after["viewers"], 3);
    assert_continuous(&first.video(20).await);
    server.stop().await;
}
