//! WHIP/WHEP over HTTP (RFC 9725): error cases, each with its status and a problem body saying
//! why; the session's `ETag` and ICE restart through `PATCH`; ICE servers in `Link` headers;
//! CORS on every route and resource.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::*;
use vitrine_sfu::ice_servers::{IceServers, turn_password};
use vitrine_sfu::peer::IceConfig;
use vitrine_sfu::sdpfrag::{
    ice_credentials, parse_sdpfrag, restart_fragment, with_ice_credentials,
};
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};

const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

const VALID_OFFER_HEAD: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

#[tokio::test]
async fn whip_refuses_bad_requests_with_problem_details() {
    let server = TestServer::start().await;
    let stream = server.media_stream("Errors").await;
    let (whip, _, key) = stream.endpoints();
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
        .delete(server.url(&format!("/whep/{}/ss_nope", stream.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn trickle_patch_reaches_the_session_and_checks_its_body() {
    let server = TestServer::start().await;
    let stream = server.media_stream("Trickle").await;
    let viewer = TestSubscriber::start(&server.http, &server.base, &stream.whep).await;
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
        "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=end-of-candidates\r\n",
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 204);
    assert!(
        ok.headers().contains_key("etag"),
        "a trickle answers the current ETag"
    );
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

/// A loopback server handing out one TURN server (not contacted by these tests).
async fn server_with_turn() -> TestServer {
    TestServer::with_ice(IceConfig {
        bind_ips: vec![std::net::IpAddr::from([127, 0, 0, 1])],
        ice_servers: IceServers::new(
            vec!["stun:stun.example.com:3478".into()],
            vec!["turn:turn.example.com:3478?transport=udp".into()],
            Some("north"),
            Some(600),
        )
        .unwrap(),
        ..Default::default()
    })
    .await
}

/// The credentials of every `rel="ice-server"` TURN link: made by the secret, expiring later.
fn assert_turn_links(headers: &reqwest::header::HeaderMap) {
    let servers = link_ice_servers(headers);
    assert_eq!(servers.len(), 2, "{headers:?}");
    assert_eq!(servers[0].urls, ["stun:stun.example.com:3478"]);
    let turn = &servers[1];
    assert_eq!(turn.urls, ["turn:turn.example.com:3478?transport=udp"]);
    let secret = vitrine_sfu::ice_servers::TurnSecret::new("north").unwrap();
    assert_eq!(turn.credential, turn_password(&secret, &turn.username));
    let expiry: u64 = turn.username.split(':').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 590..=now + 610).contains(&expiry), "ttl_secs is 600");
}

#[tokio::test]
async fn answers_and_options_hand_out_ice_servers_and_an_etag() {
    let server = server_with_turn().await;
    let stream = server.media_stream("Links").await;
    let (whip, whep, key) = stream.endpoints();
    let http = &server.http;
    let options = |url: &str, key: Option<&str>| {
        let mut r = http.request(reqwest::Method::OPTIONS, url);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    // Anyone may watch, so anyone gets the (expiring) credentials.
    let r = options(whep, None).await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["accept-post"], "application/sdp");
    assert_turn_links(r.headers());
    // Publishing needs the stream key, and so do the publisher's credentials.
    let r = options(whip, None).await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        link_ice_servers(r.headers()).is_empty(),
        "{:?}",
        r.headers()
    );
    let r = options(whip, Some("sk_wrong")).await.unwrap();
    assert!(link_ice_servers(r.headers()).is_empty());
    assert_turn_links(options(whip, Some(key)).await.unwrap().headers());
    let r = options(&server.url("/whep/st_nope"), None).await.unwrap();
    assert_eq!(r.status(), 404);

    let publisher = TestPublisher::start(http, &server.base, whip, key, "video/VP8").await;
    let (pc, mut events) = factory().build().await.unwrap();
    vitrine_sfu::peer::add_receivers(&pc).await.unwrap();
    let offer = local_offer(&pc, &mut events).await;
    let r = http
        .post(whep)
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_turn_links(r.headers());
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );
    let _ = pc.close().await;
    drop(publisher);
    server.stop().await;
}

/// A PATCH of `frag` to `location` with `If-Match: if_match`.
async fn patch(
    http: &reqwest::Client,
    location: &str,
    if_match: Option<&str>,
    frag: String,
) -> reqwest::Response {
    let mut r = http
        .patch(location)
        .header("content-type", SDPFRAG)
        .body(frag);
    if let Some(tag) = if_match {
        r = r.header("if-match", tag);
    }
    r.send().await.unwrap()
}

/// What a WHIP/WHEP client does for an ICE restart: new local credentials, a PATCH of them with
/// its candidates, and the server's answer fragment applied as the remote side's new ICE
/// generation. Returns the PATCH's response headers and the server's fragment.
async fn client_restart(
    http: &reqwest::Client,
    pc: &Arc<dyn PeerConnection>,
    location: &str,
    if_match: &str,
) -> (reqwest::header::HeaderMap, String) {
    let old = ice_credentials(&pc.current_local_description().await.unwrap().sdp).unwrap();
    pc.restart_ice().await.unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let local = loop {
        let sdp = pc.local_description().await.unwrap().sdp;
        if sdp.contains("a=candidate:") && ice_credentials(&sdp).unwrap() != old {
            break sdp;
        }
        assert!(tokio::time::Instant::now() < deadline, "no restart offer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let r = patch(
        http,
        location,
        Some(if_match),
        restart_fragment(&local).unwrap(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], SDPFRAG);
    let headers = r.headers().clone();
    let body = r.text().await.unwrap();
    let answer = parse_sdpfrag(&body).unwrap();
    let remote = pc.current_remote_description().await.unwrap().sdp;
    let (ufrag, pwd) = (answer.ufrag.clone().unwrap(), answer.pwd.clone().unwrap());
    pc.set_remote_description(
        RTCSessionDescription::answer(with_ice_credentials(&remote, &ufrag, &pwd)).unwrap(),
    )
    .await
    .unwrap();
    for c in answer.candidates {
        pc.add_ice_candidate(RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.mid,
            sdp_mline_index: Some(c.mline_index),
            username_fragment: Some(ufrag.clone()),
            url: None,
        })
        .await
        .unwrap();
    }
    (headers, body)
}

/// The next video packet after every one already received.
async fn fresh_video(viewer: &mut TestSubscriber) -> Received {
    while viewer.packets.try_recv().is_ok() {}
    viewer.video(1).await[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ice_restarts_through_patch_with_if_match_and_media_goes_on() {
    let server = TestServer::start().await;
    let stream = server.media_stream("Restart").await;
    let (whip, whep, key) = stream.endpoints();
    let http = &server.http;
    let publisher = TestPublisher::start(http, &server.base, whip, key, "video/VP8").await;
    let mut viewer = TestSubscriber::start(http, &server.base, whep).await;
    viewer.video(5).await;
    let location = viewer.location.clone();
    let server_ice = |sdp: &str| ice_credentials(sdp).unwrap();
    let before = server_ice(&viewer.pc.current_remote_description().await.unwrap().sdp);
    // The current ETag, as a trickle of the current generation answers it.
    let etag = patch(http, &location, None, String::new()).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();

    let fake = |u: &str| {
        format!(
            "a=ice-ufrag:{u}\r\na=ice-pwd:{u}{u}{u}{u}{u}{u}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
        )
    };
    // New credentials without If-Match: 428; with a stale ETag: 412 (problem JSON both).
    let r = patch(http, &location, None, fake("abcd")).await;
    assert_eq!(r.status(), 428);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = patch(http, &location, Some("\"stale\""), fake("abcd")).await;
    assert_eq!(r.status(), 412);
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["status"], 412);
    // A trickle naming another ufrag belongs to no ICE generation of this session.
    let r = patch(http, &location, None, "a=ice-ufrag:zzzz\r\n".into()).await;
    assert_eq!(r.status(), 422);

    // A restart with the current ETag: the server answers its new credentials and ETag.
    let (headers, body) = client_restart(http, &viewer.pc, &location, &etag).await;
    let restarted = headers["etag"].to_str().unwrap().to_owned();
    assert_ne!(restarted, etag, "a new ICE generation, a new ETag");
    let after = ice_credentials(&body).unwrap();
    assert_ne!(after, before, "the server's ufrag and pwd changed: {body}");
    assert!(body.contains("a=candidate:"), "{body}");
    fresh_video(&mut viewer).await;
    let now = server_ice(&viewer.pc.current_remote_description().await.unwrap().sdp);
    assert_eq!(now, after);

    // The old ETag no longer matches; `*` restarts again.
    let r = patch(http, &location, Some(&etag), fake("efgh")).await;
    assert_eq!(r.status(), 412);
    let (headers, _) = client_restart(http, &viewer.pc, &location, "*").await;
    assert_ne!(headers["etag"].to_str().unwrap(), restarted);
    let last = fresh_video(&mut viewer).await;
    let more = viewer.video(20).await;
    assert!(more.iter().all(|p| p.ssrc == last.ssrc));

    // The publisher's WHIP session restarts the same way; its viewers keep receiving.
    let (headers, body) = client_restart(http, &publisher.pc, &publisher.location, "*").await;
    assert!(headers.contains_key("etag") && body.contains("a=ice-ufrag:"));
    fresh_video(&mut viewer).await;
    assert_continuous(&viewer.video(20).await);
    server.stop().await;
}

#[tokio::test]
async fn cross_origin_pages_may_patch_and_delete_sessions_and_read_their_headers() {
    let server = TestServer::start().await;
    let stream = server.media_stream("Cors").await;
    let http = &server.http;
    let viewer = TestSubscriber::start(http, &server.base, &stream.whep).await;
    let origin = "https://shop.example";
    let r = http
        .request(reqwest::Method::OPTIONS, &viewer.location)
        .header("origin", origin)
        .header("access-control-request-method", "PATCH")
        .header("access-control-request-headers", "content-type, if-match")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let methods = h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        methods.contains("patch") && methods.contains("delete"),
        "{methods}"
    );
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("if-match"), "{allowed}");

    let r = http
        .patch(&viewer.location)
        .header("origin", origin)
        .header("content-type", SDPFRAG)
        .body("a=end-of-candidates\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for name in ["etag", "link", "location", "retry-after"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
    let r = http
        .delete(&viewer.location)
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    // A refused offer is readable cross-origin too.
    let r = http
        .post(server.url("/whep/st_nope"))
        .header("origin", origin)
        .header("content-type", "application/sdp")
        .body("v=0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    server.stop().await;
}
