//! WHIP/WHEP error cases: each gets its status and a problem body saying why.

mod support;

use support::*;

const VALID_OFFER_HEAD: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

#[tokio::test]
async fn whip_refuses_bad_requests_with_problem_details() {
    let server = TestServer::start().await;
    let token = server.seller("shop").await;
    let stream = server.stream(&token, "Errors").await;
    let whip = stream["whip_url"].as_str().unwrap();
    let key = stream["stream_key"].as_str().unwrap();
    let http = &server.http;

    let (status, _, body) = post_offer(http, whip, Some("sk_wrong"), "x".into()).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = post_offer(http, whip, None, "x".into()).await;
    assert_eq!(status, 401);

    let (status, _, body) = post_offer(http, whip, Some(key), "not sdp".into()).await;
    assert_eq!(status, 400);
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["type"], "/docs/problems/malformed-sdp");
    assert_eq!(problem["status"], 400);

    let high_only = format!(
        "{VALID_OFFER_HEAD}m=video 9 UDP/TLS/RTP/SAVPF 100\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:100 H264/90000\r\na=fmtp:100 packetization-mode=1;profile-level-id=640c1f\r\n"
    );
    let (status, _, body) = post_offer(http, whip, Some(key), high_only).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("no-usable-codec") && body.contains("H264"),
        "{body}"
    );

    let unknown = server.url("/whip/st_doesnotexist");
    let (status, _, _) = post_offer(http, &unknown, Some(key), "x".into()).await;
    assert_eq!(status, 404);

    let r = http
        .post(whip)
        .bearer_auth(key)
        .header("content-type", "text/plain")
        .body("v=0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // CORS preflight from another origin.
    let r = http
        .request(reqwest::Method::OPTIONS, whip)
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");

    let (status, _, _) = post_offer(http, &server.url("/whep/st_nope"), None, "x".into()).await;
    assert_eq!(status, 404);
    let r = http
        .delete(server.url(&format!("/whep/{}/ss_nope", stream["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn trickle_patch_reaches_the_session_and_checks_its_body() {
    let server = TestServer::start().await;
    let token = server.seller("shop").await;
    let stream = server.stream(&token, "Trickle").await;
    let viewer = TestSubscriber::start(
        &server.http,
        &server.base,
        stream["whep_url"].as_str().unwrap(),
    )
    .await;
    let patch = |ct: &'static str, body: &'static str| {
        server
            .http
            .patch(&viewer.location)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let ok = patch(
        "application/trickle-ice-sdpfrag",
        "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=end-of-candidates\r\n",
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 204);
    let bad = patch("application/trickle-ice-sdpfrag", "garbage")
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let wrong_type = patch("application/sdp", "a=end-of-candidates")
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    server.stop().await;
}
