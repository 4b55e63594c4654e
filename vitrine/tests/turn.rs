//! A viewer that may use only relayed candidates (a firewall lets nothing but its TURN server
//! through) watches through the TURN server the WHEP answer's `Link` headers name: the real
//! coturn on loopback that the test command starts, checking credentials made from its shared
//! secret (`VITRINE_TEST_TURN_URL`, `VITRINE_TEST_TURN_SECRET_FILE`).

mod support;

use rtc::statistics::StatsSelector;
use rtc::statistics::report::RTCStatsReportEntry;
use support::*;
use vitrine_sfu::ice_servers::IceServers;
use vitrine_sfu::peer::IceConfig;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateType};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with scripts/test.sh, or \
             eval \"$(scripts/services.sh start)\" first"
        )
    })
}

/// The candidate type of the local side of the pair `pc` nominated, once it has carried data.
async fn selected_local_candidate(
    pc: &std::sync::Arc<dyn PeerConnection>,
) -> Option<RTCIceCandidateType> {
    let report = pc
        .get_stats(std::time::Instant::now(), StatsSelector::None)
        .await;
    let pair = report
        .candidate_pairs()
        .find(|p| p.nominated && p.bytes_received > 0)?;
    report.iter().find_map(|e| match e {
        // The pair names the candidate by its own id; the candidate's stats id prefixes it.
        RTCStatsReportEntry::LocalCandidate(c)
            if c.stats.id.ends_with(&pair.local_candidate_id) =>
        {
            Some(c.candidate_type)
        }
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_only_viewer_watches_through_the_turn_server_of_the_link_header() {
    let secret = std::fs::read_to_string(env("VITRINE_TEST_TURN_SECRET_FILE")).unwrap();
    let server = TestServer::with_ice(IceConfig {
        bind_ips: vec![std::net::IpAddr::from([127, 0, 0, 1])],
        ice_servers: IceServers::new(
            vec![],
            vec![env("VITRINE_TEST_TURN_URL")],
            Some(&secret),
            None,
        )
        .unwrap(),
        ..Default::default()
    })
    .await;
    let stream = server.media_stream("Relayed").await;
    let (whip, whep, key) = stream.endpoints();
    let http = &server.http;
    let _publisher = TestPublisher::start(http, &server.base, whip, key, "video/VP8").await;

    // The viewer learns the TURN server as a browser would, from OPTIONS on the endpoint.
    let r = http
        .request(reqwest::Method::OPTIONS, whep)
        .send()
        .await
        .unwrap();
    let servers = link_ice_servers(r.headers());
    assert_eq!(servers.len(), 1, "{:?}", r.headers());
    assert!(servers[0].urls[0].starts_with("turn:127.0.0.1:"));
    let mut viewer = TestSubscriber::start_through(http, &server.base, whep, servers, true).await;
    let local = viewer.pc.current_local_description().await.unwrap().sdp;
    let candidates: Vec<&str> = local
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    assert!(
        !candidates.is_empty() && candidates.iter().all(|c| c.contains(" typ relay")),
        "a relay-only viewer offers relayed candidates alone: {candidates:?}"
    );

    let packets = viewer.video(20).await;
    assert_continuous(&packets);
    assert!(viewer.audio_arrives().await);
    assert_eq!(
        selected_local_candidate(&viewer.pc).await,
        Some(RTCIceCandidateType::Relay),
        "media flows over the relayed candidate"
    );
    server.stop().await;
}
