//! One UDP port per node (`--ice-udp-port`): every WHIP and WHEP session of a server answers
//! on one shared socket, demultiplexed by STUN username and then by remote address, and a check
//! that does not verify with a session's password takes nothing from it.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use support::*;
use vitrine_sfu::peer::IceConfig;
use vitrine_sfu::sdpfrag::ice_credentials;
use vitrine_sfu::udpmux::{UdpMux, stun};

const VIEWERS: usize = 50;

fn shared_port_server() -> IceConfig {
    IceConfig {
        bind_ips: vec![IpAddr::from([127, 0, 0, 1])],
        udp_port: Some(0),
        tcp_port: Some(0),
        viewers: vitrine_sfu::admission::ViewerLimits {
            // Every test viewer is 127.0.0.1, and they all negotiate at once.
            pending_per_ip: VIEWERS + 1,
            ..Default::default()
        },
        ..IceConfig::default()
    }
}

/// What the server's shared ports count.
fn counters(server: &TestServer) -> vitrine_sfu::udpmux::MuxCounters {
    let running = server.running.as_ref().unwrap();
    running.state.sfu.routers.metrics().ice_mux.clone()
}

fn mux(server: &TestServer) -> Arc<UdpMux> {
    let running = server.running.as_ref().unwrap();
    Arc::clone(running.state.sfu.factory.mux().expect("a shared ICE port"))
}

/// A shared-port server whose stream has a publisher and one viewer receiving video (over
/// ICE-TCP when `tcp`); the publisher must be kept for the stream to stay live. With the
/// server ufrag of the viewer's session, which any observer of its answer knows.
async fn one_viewer(title: &str, tcp: bool) -> (TestServer, TestPublisher, TestSubscriber, String) {
    let server = TestServer::with_ice(shared_port_server()).await;
    let stream = server.media_stream(title).await;
    let (whip, whep, key) = stream.endpoints();
    let publisher = TestPublisher::start(&server.http, &server.base, whip, key, "video/VP8").await;
    let mut viewer = if tcp {
        TestSubscriber::start_over_tcp(&server.http, &server.base, whep).await
    } else {
        TestSubscriber::start(&server.http, &server.base, whep).await
    };
    viewer.video(5).await;
    let answer = viewer.pc.current_remote_description().await.unwrap().sdp;
    let (ufrag, _) = ice_credentials(&answer).unwrap();
    (server, publisher, viewer, ufrag)
}

/// The ports of an SDP's UDP candidates.
fn candidate_ports(sdp: &str) -> Vec<u16> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=candidate:"))
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f[2].eq_ignore_ascii_case("udp"))
        .map(|f| f[5].parse().unwrap())
        .collect()
}

/// UDP sockets of this process bound to local port `port` (from /proc/self/net/udp and udp6).
fn sockets_on(port: u16) -> usize {
    let wanted = format!(":{port:04X}");
    ["/proc/self/net/udp", "/proc/self/net/udp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .filter(|local| local.ends_with(&wanted))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_viewers_and_a_publisher_share_one_udp_port() {
    let server = TestServer::with_ice(shared_port_server()).await;
    let mux = mux(&server);
    let port = mux.port();
    assert_eq!(
        mux.local_addrs(),
        vec![SocketAddr::from(([127, 0, 0, 1], port))]
    );
    let stream = server.media_stream("One port").await;
    let (whip, whep, key) = stream.endpoints();
    let publisher = TestPublisher::start(&server.http, &server.base, whip, key, "video/VP8").await;
    let viewers = futures::future::join_all(
        (0..VIEWERS).map(|_| TestSubscriber::start(&server.http, &server.base, whep)),
    )
    .await;
    let mut viewers = viewers;
    for viewer in &mut viewers {
        assert_continuous(&viewer.video(10).await);
    }

    // Every answer, the publisher's included, names the one port, and only it.
    let mut answers = vec![publisher.pc.current_remote_description().await.unwrap().sdp];
    for viewer in &viewers {
        answers.push(viewer.pc.current_remote_description().await.unwrap().sdp);
    }
    let mut ufrags = std::collections::HashSet::new();
    for answer in &answers {
        let ports = candidate_ports(answer);
        assert!(!ports.is_empty(), "{answer}");
        assert!(ports.iter().all(|p| *p == port), "{answer}");
        assert!(answer.contains("a=ice-lite"), "{answer}");
        ufrags.insert(ice_credentials(answer).unwrap().0);
    }
    assert_eq!(ufrags.len(), VIEWERS + 1, "a ufrag per session");
    assert_eq!(mux.sessions(), VIEWERS + 1);
    // The server bound exactly one socket on that port (one bind address).
    assert_eq!(sockets_on(port), 1);

    // Sessions that end leave the table.
    let gone = viewers.pop().unwrap();
    let r = server.http.delete(&gone.location).send().await.unwrap();
    assert!(r.status().is_success());
    eventually("the deleted viewer left the mux", || {
        mux.sessions() == VIEWERS
    })
    .await;
    assert_continuous(&viewers[0].video(10).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_with_a_wrong_integrity_does_not_take_a_session() {
    let (server, _publisher, mut viewer, ufrag) = one_viewer("Spoof", false).await;
    let mux = mux(&server);
    let counters = counters(&server);

    // A stranger who read the viewer's ufrag sends a check signed with a guessed password,
    // then media, from its own address.
    let spoofer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let shared = SocketAddr::from(([127, 0, 0, 1], mux.port()));
    let (refused, unroutable) = (counters.refused.get(), counters.unroutable.get());
    let check =
        stun::signed_binding_request(&format!("{ufrag}:evil"), "guessedguessedguessed", [3; 12]);
    spoofer.send_to(&check, shared).await.unwrap();
    eventually("the spoofed check was refused", || {
        counters.refused.get() == refused + 1
    })
    .await;
    spoofer
        .send_to(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], shared)
        .await
        .unwrap();
    eventually("the spoofer's media routed nowhere", || {
        counters.unroutable.get() == unroutable + 1
    })
    .await;
    let mut buf = [0u8; 1500];
    // Dropped, not answered: nothing comes back while a session would have replied.
    let answer = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        spoofer.recv_from(&mut buf),
    );
    assert!(answer.await.is_err(), "no session answered the spoofer");
    // The viewer's session keeps its address: fresh media still reaches it.
    while viewer.packets.try_recv().is_ok() {}
    assert_continuous(&viewer.video(20).await);
    assert_eq!(mux.sessions(), 2);
    server.stop().await;
}

/// TCP listening sockets of this process on local port `port` (state 0A in /proc/self/net/tcp
/// and tcp6).
fn tcp_listeners_on(port: u16) -> usize {
    let wanted = format!(":{port:04X}");
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        .filter(|f| f.len() > 3 && f[1].ends_with(&wanted) && f[3] == "0A")
        .count()
}

/// The (transport, port, tcptype) of an SDP's candidates.
fn candidates(sdp: &str) -> Vec<(String, u16, Option<String>)> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=candidate:"))
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .map(|f| {
            let tcptype = f
                .iter()
                .position(|x| *x == "tcptype")
                .map(|i| f[i + 1].to_owned());
            (f[2].to_lowercase(), f[5].parse().unwrap(), tcptype)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_whose_network_blocks_udp_watch_over_the_shared_tcp_port() {
    let server = TestServer::with_ice(shared_port_server()).await;
    let mux = mux(&server);
    let tcp_port = mux.tcp_port().expect("ICE over TCP is on");
    let counters = counters(&server);
    let stream = server.media_stream("Over TCP").await;
    let (whip, whep, key) = stream.endpoints();
    let _publisher = TestPublisher::start(&server.http, &server.base, whip, key, "video/VP8").await;
    let mut tcp_viewers = vec![
        TestSubscriber::start_over_tcp(&server.http, &server.base, whep).await,
        TestSubscriber::start_over_tcp(&server.http, &server.base, whep).await,
    ];
    let mut udp_viewer = TestSubscriber::start(&server.http, &server.base, whep).await;
    for viewer in &mut tcp_viewers {
        assert_continuous(&viewer.video(20).await);
    }
    assert_continuous(&udp_viewer.video(20).await);
    // Each TCP viewer's connection was handed to its own session; the UDP viewer needed none.
    assert_eq!(counters.tcp_accepted.get(), 2);

    // Every answer offers UDP on the shared port and a passive TCP twin on the shared TCP
    // port, nothing else; one listening socket serves them all. (The TCP viewers took the
    // TCP candidates out of their description to dial them: read a UDP viewer's.)
    let answer = udp_viewer
        .pc
        .current_remote_description()
        .await
        .unwrap()
        .sdp;
    let offered = candidates(&answer);
    assert!(
        offered.contains(&("udp".into(), mux.port(), None)),
        "{answer}"
    );
    assert!(
        offered.contains(&("tcp".into(), tcp_port, Some("passive".into()))),
        "{answer}"
    );
    assert!(
        offered
            .iter()
            .all(|(t, p, kind)| (t == "udp" && *p == mux.port())
                || (t == "tcp" && *p == tcp_port && kind.as_deref() == Some("passive"))),
        "{answer}"
    );
    assert_eq!(tcp_listeners_on(tcp_port), 1);

    // A TCP viewer that leaves frees its session; the others keep watching.
    let gone = tcp_viewers.pop().unwrap();
    let r = server.http.delete(&gone.location).send().await.unwrap();
    assert!(r.status().is_success());
    eventually("the deleted viewer left the mux", || mux.sessions() == 3).await;
    while tcp_viewers[0].packets.try_recv().is_ok() {}
    assert_continuous(&tcp_viewers[0].video(20).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_connection_whose_first_frame_does_not_authenticate_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, _publisher, mut viewer, ufrag) = one_viewer("TCP spoof", true).await;
    let mux = mux(&server);
    let counters = counters(&server);
    let shared = SocketAddr::from(([127, 0, 0, 1], mux.tcp_port().unwrap()));
    let framed = |m: &[u8]| {
        let mut f = (m.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(m);
        f
    };
    let closed = |mut conn: tokio::net::TcpStream| async move {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(WAIT, conn.read(&mut buf)).await;
        matches!(read, Ok(Ok(0)) | Ok(Err(_)))
    };

    // A stranger who read the ufrag, with a guessed password.
    let (refused, unroutable) = (counters.refused.get(), counters.unroutable.get());
    let mut conn = tokio::net::TcpStream::connect(shared).await.unwrap();
    let check =
        stun::signed_binding_request(&format!("{ufrag}:evil"), "guessedguessedguessed", [4; 12]);
    conn.write_all(&framed(&check)).await.unwrap();
    assert!(closed(conn).await, "a bad integrity gets no session");
    eventually("the spoofed check was refused", || {
        counters.refused.get() == refused + 1
    })
    .await;

    // Media or DTLS first, a frame over the limit, and an unknown ufrag: closed, counted.
    for first in [
        framed(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]),
        framed(&vec![0u8; 4000]),
        framed(&stun::signed_binding_request("nobody:x", "pwd", [5; 12])),
    ] {
        let mut conn = tokio::net::TcpStream::connect(shared).await.unwrap();
        // The server may close before it has read everything.
        let _ = conn.write_all(&first).await;
        assert!(closed(conn).await);
    }
    eventually("three connections routed nowhere", || {
        counters.unroutable.get() == unroutable + 3
    })
    .await;
    assert_eq!(counters.tcp_accepted.get(), 1, "only the viewer's own");
    // The viewer's session is untouched.
    while viewer.packets.try_recv().is_ok() {}
    assert_continuous(&viewer.video(20).await);
    server.stop().await;
}
