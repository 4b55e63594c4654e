//! Attacks on the media surface: anonymous WHEP offers that never connect (the seller locked
//! out of going live, viewers' ports and sessions held), viewer caps, and ICE candidates that
//! point into private networks.

use crate::support::*;
use std::net::IpAddr;
use std::time::Duration;
use vitrine_sfu::admission::ViewerLimits;
use vitrine_sfu::peer::IceConfig;

/// A server binding loopback with WebRTC ports `lo..=hi` (below the kernel's ephemeral range,
/// so other tests' sockets do not take them); every other setting the default.
fn ice(lo: u16, hi: u16) -> IceConfig {
    IceConfig {
        bind_ips: vec![IpAddr::from([127, 0, 0, 1])],
        port_range: Some((lo, hi)),
        ..Default::default()
    }
}

/// An HTTP client whose connections come from `ip` (any 127/8 address works on loopback), so a
/// test can play several clients behind different addresses.
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(ip))
        .build()
        .unwrap()
}

/// A valid WHEP offer from a real WebRTC stack, which an attacker can POST again and again:
/// each POST costs the server a peer connection and a UDP port, the attacker nothing.
async fn reusable_offer() -> String {
    let (pc, mut events) = factory().build().await.unwrap();
    vitrine_sfu::peer::add_receivers(&pc).await.unwrap();
    let sdp = local_offer(&pc, &mut events).await;
    let _ = pc.close().await;
    sdp
}

async fn post_sdp(http: &reqwest::Client, url: &str, sdp: &str) -> reqwest::Response {
    http.post(url)
        .header("content-type", "application/sdp")
        .body(sdp.to_owned())
        .send()
        .await
        .unwrap()
}

/// Asserts a refusal's status, its `Retry-After` (whole seconds, at least 1) and its problem
/// JSON; returns the Retry-After and the problem.
async fn refused(r: reqwest::Response, status: u16) -> (u64, serde_json::Value) {
    assert_eq!(r.status().as_u16(), status);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("{status} without Retry-After"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["status"], status, "{problem}");
    assert!(problem["detail"].is_string(), "{problem}");
    (retry, problem)
}

/// A seller's stream: (whip url, whep url, stream key, id).
async fn stream(server: &TestServer, title: &str) -> (String, String, String, String) {
    let s = server.media_stream(title).await;
    (s.whip, s.whep, s.key, s.id)
}

/// A VP8 publisher going live on `whip` with `key`.
async fn publish(server: &TestServer, whip: &str, key: &str) -> TestPublisher {
    TestPublisher::start(&server.http, &server.base, whip, key, "video/VP8").await
}

fn sfu(server: &TestServer) -> &vitrine_sfu::Sfu {
    &server.running.as_ref().unwrap().state.sfu
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_anonymous_whep_flood_never_keeps_the_seller_from_going_live() {
    let server = TestServer::with_ice(ice(23_000, 23_039)).await;
    let (whip, whep, key, _) = stream(&server, "Flash sale").await;

    // 400 anonymous offers from one address, none of which will ever connect.
    let offer = reusable_offer().await;
    let mut statuses = Vec::new();
    for _ in 0..400 {
        let r = post_sdp(&server.http, &whep, &offer).await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let (retry, problem) = refused(r, 429).await;
            assert!(
                retry <= 10,
                "a pending slot frees within the connect timeout"
            );
            assert_eq!(problem["type"], "/docs/problems/too-many-pending-sessions");
        }
    }

    // The seller goes live, and a viewer from another address watches.
    let _publisher = publish(&server, &whip, &key).await;
    let mut viewer = TestSubscriber::start(&client_from([127, 0, 0, 2]), &server.base, &whep).await;
    assert_continuous(&viewer.video(20).await);

    // The flood got a few sessions, then 429s.
    let created = statuses.iter().filter(|s| **s == 201).count();
    assert_eq!(
        created,
        ViewerLimits::default().pending_per_ip,
        "{statuses:?}"
    );
    assert!(
        statuses[created..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewers_from_many_addresses_never_take_the_publishers_ports() {
    // Ten ports: one is the publishers' (a tenth of the range).
    let server = TestServer::with_ice(ice(23_100, 23_109)).await;
    let (whip, whep, key, _) = stream(&server, "Flash sale").await;
    let offer = reusable_offer().await;
    let mut statuses = Vec::new();
    for n in 1..=20u8 {
        let r = post_sdp(&client_from([127, 0, 1, n]), &whep, &offer).await;
        statuses.push(r.status().as_u16());
        if r.status() == 503 {
            refused(r, 503).await;
        }
    }
    let _publisher = publish(&server, &whip, &key).await;
    // Viewers got the nine viewer ports, then were told to come back later.
    assert_eq!(statuses[..9], [201; 9], "{statuses:?}");
    assert_eq!(statuses[9..], [503; 11], "{statuses:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_viewers_are_limited_per_address_and_per_stream() {
    let server = TestServer::with_ice(IceConfig {
        viewers: ViewerLimits {
            pending_per_ip: 2,
            pending_per_stream: 3,
            ..Default::default()
        },
        ..ice(23_200, 23_229)
    })
    .await;
    let (_, whep, _, _) = stream(&server, "Drop").await;
    let (_, other_whep, _, _) = stream(&server, "Other drop").await;
    let offer = reusable_offer().await;
    let (a, b, c) = (
        client_from([127, 0, 0, 1]),
        client_from([127, 0, 0, 2]),
        client_from([127, 0, 0, 3]),
    );
    for _ in 0..2 {
        assert_eq!(post_sdp(&a, &whep, &offer).await.status(), 201);
    }
    let (retry, problem) = refused(post_sdp(&a, &whep, &offer).await, 429).await;
    assert!(retry <= 10, "Retry-After {retry}");
    assert!(
        problem["detail"].as_str().unwrap().contains("address"),
        "{problem}"
    );
    // Another address is not held back by the first one's pending sessions...
    assert_eq!(post_sdp(&b, &whep, &offer).await.status(), 201);
    // ...but the stream's pending sessions are limited too, whoever sends them.
    let (_, problem) = refused(post_sdp(&c, &whep, &offer).await, 429).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("stream"),
        "{problem}"
    );
    assert_eq!(post_sdp(&c, &other_whep, &offer).await.status(), 201);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connected_viewer_no_longer_counts_as_pending() {
    let server = TestServer::with_ice(IceConfig {
        viewers: ViewerLimits {
            pending_per_ip: 1,
            ..Default::default()
        },
        ..ice(23_300, 23_319)
    })
    .await;
    let (whip, whep, key, _) = stream(&server, "Drop").await;
    let _publisher = publish(&server, &whip, &key).await;
    let mut first = TestSubscriber::start(&server.http, &server.base, &whep).await;
    first.video(5).await;
    let sfu = sfu(&server);
    eventually("the first viewer is no longer pending", || {
        sfu.admissions.pending() == 0
    })
    .await;
    let mut second = TestSubscriber::start(&server.http, &server.base, &whep).await;
    assert_continuous(&second.video(20).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewer_caps_answer_503_with_retry_after() {
    let server = TestServer::with_ice(IceConfig {
        viewers: ViewerLimits {
            max_per_stream: 2,
            max_per_node: 3,
            ..Default::default()
        },
        ..ice(23_400, 23_419)
    })
    .await;
    let (_, busy, _, _) = stream(&server, "Busy").await;
    let (_, quiet, _, _) = stream(&server, "Quiet").await;
    let offer = reusable_offer().await;
    let mut locations = Vec::new();
    for n in 1..=2u8 {
        let r = post_sdp(&client_from([127, 0, 2, n]), &busy, &offer).await;
        assert_eq!(r.status(), 201);
        locations.push(r.headers()["location"].to_str().unwrap().to_owned());
    }
    let (retry, problem) = refused(
        post_sdp(&client_from([127, 0, 2, 3]), &busy, &offer).await,
        503,
    )
    .await;
    assert_eq!(problem["type"], "/docs/problems/viewer-limit");
    assert!(retry >= 5, "Retry-After {retry}");
    assert!(
        problem["detail"].as_str().unwrap().contains("HLS"),
        "{problem}"
    );

    // The node's cap counts every stream.
    assert_eq!(
        post_sdp(&client_from([127, 0, 2, 4]), &quiet, &offer)
            .await
            .status(),
        201
    );
    refused(
        post_sdp(&client_from([127, 0, 2, 5]), &quiet, &offer).await,
        503,
    )
    .await;

    // A viewer leaving makes room.
    let r = server
        .http
        .delete(server.url(&locations[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        post_sdp(&client_from([127, 0, 2, 5]), &quiet, &offer)
            .await
            .status(),
        201
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_that_never_connect_are_reaped() {
    // Three ports: two for viewers, one for publishers; sessions must connect within 300 ms.
    let server = TestServer::with_ice(IceConfig {
        connect_timeout: Duration::from_millis(300),
        ..ice(23_500, 23_502)
    })
    .await;
    let (whip, whep, key, _) = stream(&server, "Drop").await;
    let offer = reusable_offer().await;
    for n in 1..=2u8 {
        let r = post_sdp(&client_from([127, 0, 3, n]), &whep, &offer).await;
        assert_eq!(r.status(), 201);
    }
    // A publisher that never connects holds its port too.
    let (status, _, _) = post_offer(&server.http, &whip, Some(&key), offer.clone()).await;
    assert_eq!(status, 201);

    let sfu = sfu(&server);
    let ingest = &server.running.as_ref().unwrap().state.ingest;
    eventually("unconnected sessions are reaped", || {
        sfu.whep_sessions.is_empty() && sfu.admissions.is_empty() && ingest.sessions.is_empty()
    })
    .await;
    assert!(sfu.routers.metrics().sessions_reaped.get() >= 3);
    // Their ports are free again.
    for n in 3..=4u8 {
        let r = post_sdp(&client_from([127, 0, 3, n]), &whep, &offer).await;
        assert_eq!(r.status(), 201);
    }
    let _publisher = publish(&server, &whip, &key).await;
    server.stop().await;
}

/// The `a=candidate` lines of an SDP.
fn candidates(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_public_server_exchanges_no_private_candidates() {
    // A public deployment that (for the test) only has a loopback interface.
    let public = TestServer::with_ice(IceConfig {
        public: true,
        ..ice(23_600, 23_609)
    })
    .await;
    let (_, whep, _, _) = stream(&public, "Drop").await;
    let (status, location, answer) =
        post_offer(&public.http, &whep, None, reusable_offer().await).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(candidates(&answer), Vec::<&str>::new(), "{answer}");
    // Trickled candidates into private networks are dropped, not an error.
    let r = public
        .http
        .patch(public.url(&location.unwrap()))
        .header("content-type", "application/trickle-ice-sdpfrag")
        .body("m=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 udp 2122260223 169.254.169.254 80 typ host\r\na=candidate:2 1 udp 2122260223 10.0.0.1 22 typ host\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    public.stop().await;

    // The operator may keep them.
    let lan = TestServer::with_ice(IceConfig {
        public: true,
        allow_private_candidates: true,
        ..ice(23_610, 23_619)
    })
    .await;
    let (_, whep, _, _) = stream(&lan, "Drop").await;
    let (status, _, answer) = post_offer(&lan.http, &whep, None, reusable_offer().await).await;
    assert_eq!(status, 201, "{answer}");
    assert!(
        candidates(&answer)
            .iter()
            .any(|c| c.contains(" 127.0.0.1 ")),
        "{answer}"
    );
    lan.stop().await;
}

/// `OPTIONS` on a WHEP endpoint hands anyone the ICE servers, TURN credentials included (RFC
/// 9725 §4.6): it is counted per client address like the public reads, so one address cannot
/// mint credentials without end. Offers are not counted there (the SFU admits viewers itself),
/// and another address is not held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_options_are_limited_per_address() {
    let server = TestServer::with_edge(vitrine::edge::EdgeConfig {
        ip_limits: vitrine::edge::IpLimits {
            public: vitrine_platform::ratelimit::Limit::parse("1/h burst 3").unwrap(),
            ..vitrine::edge::IpLimits::off()
        },
        ..Default::default()
    })
    .await;
    let (_, whep, _, _) = stream(&server, "Drop").await;
    let options = |from: [u8; 4]| {
        let whep = whep.clone();
        async move {
            client_from(from)
                .request(reqwest::Method::OPTIONS, &whep)
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..3 {
        assert_eq!(options([127, 0, 0, 1]).await.status(), 204);
    }
    let (retry, problem) = refused(options([127, 0, 0, 1]).await, 429).await;
    assert!(retry > 60, "an hourly limit: Retry-After {retry}");
    assert!(
        problem["detail"].as_str().unwrap().contains("public"),
        "{problem}"
    );
    assert_eq!(
        options([127, 0, 0, 2]).await.status(),
        204,
        "another address"
    );
    // The limited address may still watch: offers go through the viewer admission.
    let offer = reusable_offer().await;
    let r = post_sdp(&client_from([127, 0, 0, 1]), &whep, &offer).await;
    assert_eq!(r.status(), 201);
    server.stop().await;
}
