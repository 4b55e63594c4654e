//! Test support: start the real server on an ephemeral port with a fresh data dir, create
//! sellers, and drive WHIP/WHEP with the `webrtc` crate as a real client would.
#![allow(dead_code)]

use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use vitrine::app::{self, Running};
use vitrine::config::Config;
use vitrine_chat::ChatConfig;
use vitrine_checkout::CheckoutConfig;
use vitrine_checkout::db::Backend;
use vitrine_checkout::testing::TestDatabase;
use vitrine_sfu::peer::{IceConfig, PeerEvents, PeerFactory, codec_parameters};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, RTCIceGatheringState, RTCIceServer, RTCSessionDescription,
};

pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub running: Option<Running>,
    pub base: String,
    pub http: reqwest::Client,
    /// The self-signed certificate (PEM) when the server speaks HTTPS.
    pub tls_cert_pem: Option<String>,
    _dir: tempfile::TempDir,
    _db: Option<Arc<TestDatabase>>,
}

/// Options of a test server beyond the defaults.
#[derive(Default, Clone)]
pub struct ServerOptions {
    /// A database to use instead of a fresh SQLite file (shared by several servers).
    pub database: Option<Arc<TestDatabase>>,
    pub redis_url: Option<String>,
    pub checkout: Option<CheckoutConfig>,
    pub chat: Option<ChatConfig>,
    /// HLS settings; HLS is off unless given (most tests publish synthetic, undecodable media).
    pub hls: Option<vitrine_transcode::HlsConfig>,
    /// Live captions; off unless given (loading Whisper costs every test a second).
    pub subtitles: Option<vitrine::config::SubtitlesConfig>,
    /// Rate-limit tiers; the defaults unless given.
    pub rate_limits: Option<vitrine_platform::ratelimit::Tiers>,
    /// Exchange rates and how often to read them again; none unless given.
    pub rates: Option<(vitrine_checkout::rates::RatesSource, Duration)>,
    /// Serve HTTPS with a self-signed certificate for localhost and 127.0.0.1.
    pub tls: bool,
    /// Webhook delivery settings; private (loopback) targets allowed unless given.
    pub webhooks: Option<vitrine::config::WebhooksConfig>,
    /// Trusted proxies, per-address limits, /metrics. Unless given, per-address limits are
    /// off (every test client is 127.0.0.1) and the rest is the default.
    pub edge: Option<vitrine::edge::EdgeConfig>,
    /// WebRTC settings (port range, admission limits); loopback and ephemeral ports unless given.
    pub ice: Option<IceConfig>,
}

/// A stream's id, WHIP and WHEP URLs and key (see [`TestServer::media_stream`]).
pub struct MediaStream {
    pub id: String,
    pub whip: String,
    pub whep: String,
    pub key: String,
}

impl MediaStream {
    /// (WHIP URL, WHEP URL, stream key).
    pub fn endpoints(&self) -> (&str, &str, &str) {
        (&self.whip, &self.whep, &self.key)
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(ServerOptions::default()).await
    }

    /// A server on a fresh database of `backend`.
    pub async fn on(backend: Backend) -> Self {
        let db = Arc::new(TestDatabase::create(backend).await.unwrap());
        Self::start_with(ServerOptions {
            database: Some(db),
            ..Default::default()
        })
        .await
    }

    /// A server with these chat settings; the rest the default.
    pub async fn with_chat(chat: ChatConfig) -> Self {
        Self::start_with(ServerOptions {
            chat: Some(chat),
            ..Default::default()
        })
        .await
    }

    /// A server with these checkout settings; the rest the default.
    pub async fn with_checkout(checkout: CheckoutConfig) -> Self {
        Self::start_with(ServerOptions {
            checkout: Some(checkout),
            ..Default::default()
        })
        .await
    }

    /// A server with these WebRTC settings; the rest the default.
    pub async fn with_ice(ice: IceConfig) -> Self {
        Self::start_with(ServerOptions {
            ice: Some(ice),
            ..Default::default()
        })
        .await
    }

    /// A server with these edge settings (proxies, per-address limits, metrics); the rest the
    /// default.
    pub async fn with_edge(edge: vitrine::edge::EdgeConfig) -> Self {
        Self::start_with(ServerOptions {
            edge: Some(edge),
            ..Default::default()
        })
        .await
    }

    pub async fn start_with(options: ServerOptions) -> Self {
        // With RUST_LOG set, logs (and the WebRTC stack's `log` records) help debug a failure.
        if std::env::var_os("RUST_LOG").is_some() {
            vitrine::telemetry::init();
        }
        let dir = tempfile::tempdir().unwrap();
        let tls_cert_pem = options.tls.then(|| {
            let cert = rcgen::generate_simple_self_signed(vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
            ])
            .unwrap();
            std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
            std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
            cert.cert.pem()
        });
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            database_url: options.database.as_ref().map_or_else(
                || format!("sqlite://{}?mode=rwc", dir.path().join("v.db").display()),
                |db| db.url.clone(),
            ),
            database_max_connections: None,
            public_url: None,
            tls: options
                .tls
                .then(|| (dir.path().join("cert.pem"), dir.path().join("key.pem"))),
            // One shared ICE port for UDP and one for TCP, as `vitrine serve` has by default (any
            // free ones).
            ice: options.ice.clone().unwrap_or(IceConfig {
                bind_ips: vec![IpAddr::from([127, 0, 0, 1])],
                port_range: None,
                udp_port: Some(0),
                tcp_port: Some(0),
                announced_ips: vec![],
                ..Default::default()
            }),
            redis_url: options.redis_url.clone(),
            checkout: options.checkout.clone().unwrap_or_default(),
            // Every test client is 127.0.0.1: the per-address cap is off unless a test sets it.
            chat: options.chat.clone().unwrap_or(ChatConfig {
                max_connections_per_ip: 0,
                ..Default::default()
            }),
            hls: options.hls.clone().unwrap_or(vitrine_transcode::HlsConfig {
                enabled: false,
                ..Default::default()
            }),
            subtitles: options
                .subtitles
                .clone()
                .unwrap_or(vitrine::config::SubtitlesConfig {
                    enabled: false,
                    ..Default::default()
                }),
            roles: Default::default(),
            rate_limits: options.rate_limits.clone().unwrap_or_default(),
            payouts: Default::default(),
            rates: options.rates.clone(),
            // Test receivers listen on loopback.
            webhooks: options
                .webhooks
                .clone()
                .unwrap_or(vitrine::config::WebhooksConfig {
                    allow_private_targets: true,
                    ..Default::default()
                }),
            sandbox_latency: Duration::from_millis(20),
            sandbox_debit_latency: Duration::from_secs(3600),
            demo: false,
            edge: options
                .edge
                .clone()
                .unwrap_or_else(|| vitrine::edge::EdgeConfig {
                    ip_limits: vitrine::edge::IpLimits::off(),
                    ..Default::default()
                }),
            cluster: None,
            regions: None,
        };
        let running = app::start(&config).await.unwrap();
        let scheme = if options.tls { "https" } else { "http" };
        let base = format!("{scheme}://{}", running.addr);
        Self {
            running: Some(running),
            base,
            http: client_builder(tls_cert_pem.as_deref()).build().unwrap(),
            tls_cert_pem,
            _dir: dir,
            _db: options.database,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A seller's API token.
    pub async fn seller(&self, name: &str) -> String {
        let store = &self.running.as_ref().unwrap().state.store;
        store
            .create_seller(name)
            .await
            .unwrap()
            .1
            .expose()
            .to_owned()
    }

    /// POSTs `body` to `path` with `token`, which must answer 201; the answer.
    pub async fn created(
        &self,
        path: &str,
        token: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let (status, answer) = self
            .call(reqwest::Method::POST, path, token, None, Some(body))
            .await;
        assert_eq!(status, 201, "POST {path}: {answer}");
        answer
    }

    /// Creates a stream; returns its JSON.
    pub async fn stream(&self, token: &str, title: &str) -> serde_json::Value {
        let r = self
            .http
            .post(self.url("/api/v1/streams"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "title": title }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }

    /// A stream of a new seller, as its publisher and viewers address it.
    pub async fn media_stream(&self, title: &str) -> MediaStream {
        let token = self.seller("shop").await;
        let s = self.stream(&token, title).await;
        let field = |k: &str| s[k].as_str().unwrap().to_owned();
        MediaStream {
            id: field("id"),
            whip: field("whip_url"),
            whep: field("whep_url"),
            key: field("stream_key"),
        }
    }

    /// Creates a product of `seller` from its JSON; returns the product.
    pub async fn product(&self, seller: &str, new: serde_json::Value) -> serde_json::Value {
        let (status, product) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/products",
                seller,
                None,
                Some(new),
            )
            .await;
        assert_eq!(status, 201, "{product}");
        product
    }

    /// A guest buyer's token.
    pub async fn buyer(&self, name: &str) -> String {
        self.buyer_with_id(name).await.0
    }

    /// A guest buyer: (token, buyer id).
    pub async fn buyer_with_id(&self, name: &str) -> (String, String) {
        let (status, buyer) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/buyers",
                "",
                None,
                Some(serde_json::json!({ "display_name": name })),
            )
            .await;
        assert_eq!(status, 201, "{buyer}");
        let field = |k: &str| buyer[k].as_str().unwrap().to_owned();
        (field("token"), field("buyer_id"))
    }

    /// GETs a text resource that must answer 200.
    pub async fn get_text(&self, path: &str) -> String {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.text().await.unwrap()
    }

    /// GETs a JSON document, with the seller's token when given.
    pub async fn get_json(&self, path: &str, token: Option<&str>) -> serde_json::Value {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// Whether the server has no exchange rates in force yet.
    pub fn checkout_rates_missing(&self) -> bool {
        let state = &self.running.as_ref().unwrap().state;
        state.checkout.rates().current().is_none()
    }

    /// One API call with a bearer token, an optional `Idempotency-Key` and an optional JSON
    /// body: the status and the JSON answer (`Null` when there is none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut r = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn stop(mut self) {
        self.running.take().unwrap().shutdown().await.unwrap();
    }
}

/// The hidden inputs of a page's form, unescaped.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let attr = |tag: &str, name: &str| -> String {
        let start = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        let end = start + tag[start..].find('"').unwrap();
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    html.split("<input type=\"hidden\"")
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find('>').unwrap()];
            (attr(tag, "name"), attr(tag, "value"))
        })
        .collect()
}

/// A reqwest client builder that trusts the test server's certificate, if it has one.
pub fn client_builder(cert_pem: Option<&str>) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    match cert_pem {
        Some(pem) => {
            builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        }
        None => builder,
    }
}

pub fn factory() -> PeerFactory {
    PeerFactory::new(IceConfig::default())
}

pub async fn local_offer(pc: &Arc<dyn PeerConnection>, events: &mut PeerEvents) -> String {
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    events
        .gathering
        .wait_for(|s| *s == RTCIceGatheringState::Complete)
        .await
        .unwrap();
    pc.local_description().await.unwrap().sdp
}

/// POSTs an offer; returns (status, location, body).
pub async fn post_offer(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    sdp: String,
) -> (u16, Option<String>, String) {
    let mut req = http
        .post(url)
        .header("content-type", "application/sdp")
        .body(sdp);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, location, r.text().await.unwrap())
}

pub fn track(kind: RtpCodecKind, mime: &str, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    let codec = codec_parameters()
        .into_iter()
        .map(|(p, _)| p.rtp_codec)
        .find(|c| c.mime_type == mime)
        .unwrap();
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("s{ssrc}"),
        format!("t{ssrc}"),
        format!("t{ssrc}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )))
}

/// Negotiates a WHIP session that sends `tracks`; returns the peer connection and the
/// session's `Location` path.
async fn publish_tracks(
    http: &reqwest::Client,
    whip_url: &str,
    key: &str,
    tracks: &[Arc<TrackLocalStaticRTP>],
) -> (Arc<dyn PeerConnection>, Option<String>) {
    let (pc, mut events) = factory().build().await.unwrap();
    for t in tracks {
        pc.add_track(Arc::clone(t) as Arc<dyn TrackLocal>)
            .await
            .unwrap();
    }
    let offer = local_offer(&pc, &mut events).await;
    let (status, location, answer) = post_offer(http, whip_url, Some(key), offer).await;
    assert_eq!(status, 201, "whip answer: {answer}");
    pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap())
        .await
        .unwrap();
    (pc, location)
}

/// A WHIP publisher sending synthetic VP8/H264 + Opus RTP.
pub struct TestPublisher {
    pub pc: Arc<dyn PeerConnection>,
    pub location: String,
    stop: tokio_util::sync::CancellationToken,
    /// PLIs received from the server so far.
    pub plis: Arc<std::sync::atomic::AtomicUsize>,
}

/// When the synthetic publisher sends keyframes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyframes {
    /// Every tenth video packet.
    Periodic,
    /// The first packet, then only in answer to a PLI (as an encoder does between its GOPs).
    OnRequest,
}

impl TestPublisher {
    /// Publishes to `whip_url`; `video_mime` is `video/VP8` or `video/H264`.
    pub async fn start(
        http: &reqwest::Client,
        base: &str,
        whip_url: &str,
        key: &str,
        video_mime: &str,
    ) -> Self {
        Self::start_with(http, base, whip_url, key, video_mime, Keyframes::Periodic).await
    }

    pub async fn start_with(
        http: &reqwest::Client,
        base: &str,
        whip_url: &str,
        key: &str,
        video_mime: &str,
        keyframes: Keyframes,
    ) -> Self {
        let video_ssrc = rand::random::<u32>();
        let audio_ssrc = rand::random::<u32>();
        let video = track(RtpCodecKind::Video, video_mime, video_ssrc);
        let audio = track(RtpCodecKind::Audio, "audio/opus", audio_ssrc);
        let (pc, location) = publish_tracks(
            http,
            whip_url,
            key,
            &[Arc::clone(&video), Arc::clone(&audio)],
        )
        .await;
        let stop = tokio_util::sync::CancellationToken::new();
        let h264 = video_mime.eq_ignore_ascii_case("video/H264");
        let video_pt = if h264 { 102 } else { 96 };
        let cancel = stop.clone();
        // PLIs the server sends about the video track.
        let plis = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (rtcp_track, rtcp_plis) = (Arc::clone(&video), Arc::clone(&plis));
        tokio::spawn(async move {
            while let Some(event) = rtcp_track.poll().await {
                if let TrackLocalEvent::OnRtcpPacket(packets) = event {
                    let n = packets
                        .iter()
                        .filter(|p| p.as_any().is::<PictureLossIndication>())
                        .count();
                    rtcp_plis.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        let answered = Arc::clone(&plis);
        tokio::spawn(async move {
            let mut plis_answered = 0;
            // A media source, paced like a camera: 50 video + 50 audio packets per second.
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut seq_v: u16 = rand::random();
            let mut seq_a: u16 = rand::random();
            let mut ts_v: u32 = rand::random();
            let mut ts_a: u32 = rand::random();
            for n in 0u32.. {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let key_frame = match keyframes {
                    Keyframes::Periodic => n % 10 == 0,
                    Keyframes::OnRequest => {
                        let asked = answered.load(std::sync::atomic::Ordering::SeqCst);
                        let answer = n == 0 || asked > plis_answered;
                        plis_answered = asked;
                        answer
                    }
                };
                let payload: &'static [u8] = match (h264, key_frame) {
                    (false, true) => &[0x10, 0x00, 0x9d, 0x01, 0x2a, 0, 0, 0, 0],
                    (false, false) => &[0x10, 0x01, 0x00, 0x00, 0x00, 0, 0, 0, 0],
                    (true, true) => &[0x65, 0x88, 0x84, 0x00, 0x00, 0, 0, 0, 0],
                    (true, false) => &[0x41, 0x9a, 0x00, 0x00, 0x00, 0, 0, 0, 0],
                };
                let v = rtp::Packet {
                    header: rtp::header::Header {
                        version: 2,
                        marker: true,
                        payload_type: video_pt,
                        sequence_number: seq_v,
                        timestamp: ts_v,
                        ssrc: video_ssrc,
                        ..Default::default()
                    },
                    payload: Bytes::from_static(payload),
                };
                let a = rtp::Packet {
                    header: rtp::header::Header {
                        version: 2,
                        payload_type: 111,
                        sequence_number: seq_a,
                        timestamp: ts_a,
                        ssrc: audio_ssrc,
                        ..Default::default()
                    },
                    payload: Bytes::from_static(&[0xfc, 0xff, 0xfe]),
                };
                let _ = video.write_rtp(v).await;
                let _ = audio.write_rtp(a).await;
                seq_v = seq_v.wrapping_add(1);
                seq_a = seq_a.wrapping_add(1);
                ts_v = ts_v.wrapping_add(1800);
                ts_a = ts_a.wrapping_add(960);
            }
        });
        Self {
            pc,
            location: format!("{base}{}", location.unwrap()),
            stop,
            plis,
        }
    }

    /// Stops sending without telling the server (a closed tab).
    pub async fn abandon(self) {
        self.stop.cancel();
        let _ = self.pc.close().await;
    }
}

/// One received RTP packet, as a subscriber saw it.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub video: bool,
    pub ssrc: u32,
    pub seq: u16,
    pub payload_type: u8,
}

/// A WHEP subscriber collecting what it receives.
pub struct TestSubscriber {
    pub pc: Arc<dyn PeerConnection>,
    pub location: String,
    pub packets: mpsc::UnboundedReceiver<Received>,
    /// The remote tracks, as they are announced.
    tracks: Arc<std::sync::Mutex<Vec<Arc<dyn TrackRemote>>>>,
}

impl TestSubscriber {
    pub async fn start(http: &reqwest::Client, base: &str, whep_url: &str) -> Self {
        let (pc, events) = factory().build().await.unwrap();
        Self::negotiate(http, base, whep_url, pc, events, false).await
    }

    /// A viewer whose network lets no UDP through: it has no UDP socket and dials the
    /// answer's passive TCP candidates (trickled to it, as a browser learns them).
    pub async fn start_over_tcp(http: &reqwest::Client, base: &str, whep_url: &str) -> Self {
        let (pc, events) = factory().build_tcp_client().await.unwrap();
        Self::negotiate(http, base, whep_url, pc, events, true).await
    }

    /// A viewer that gathers through `servers` (as a browser configured from the `Link`
    /// headers) and, when `relay_only`, uses relayed candidates alone.
    pub async fn start_through(
        http: &reqwest::Client,
        base: &str,
        whep_url: &str,
        servers: Vec<RTCIceServer>,
        relay_only: bool,
    ) -> Self {
        let (pc, events) = factory().build_client(servers, relay_only).await.unwrap();
        Self::negotiate(http, base, whep_url, pc, events, false).await
    }

    async fn negotiate(
        http: &reqwest::Client,
        base: &str,
        whep_url: &str,
        pc: Arc<dyn PeerConnection>,
        mut events: PeerEvents,
        tcp: bool,
    ) -> Self {
        vitrine_sfu::peer::add_receivers(&pc).await.unwrap();
        let offer = local_offer(&pc, &mut events).await;
        let (status, location, answer) = post_offer(http, whep_url, None, offer).await;
        assert_eq!(status, 201, "whep answer: {answer}");
        let (answer, passive): (Vec<&str>, Vec<&str>) = answer
            .split_inclusive('\n')
            .partition(|l| !(tcp && l.starts_with("a=candidate:") && l.contains(" tcp ")));
        pc.set_remote_description(RTCSessionDescription::answer(answer.concat()).unwrap())
            .await
            .unwrap();
        assert!(
            !tcp || !passive.is_empty(),
            "the answer has no TCP candidate"
        );
        for line in passive {
            let candidate = line.trim_end().trim_start_matches("a=").to_owned();
            pc.add_ice_candidate(webrtc::peer_connection::RTCIceCandidateInit {
                candidate,
                sdp_mid: Some(String::new()),
                sdp_mline_index: Some(0),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let (tx, packets) = mpsc::unbounded_channel();
        let tracks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&tracks);
        tokio::spawn(async move {
            while let Some(track) = events.tracks.recv().await {
                seen.lock().unwrap().push(Arc::clone(&track));
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(event) = track.poll().await {
                        if let TrackRemoteEvent::OnRtpPacket(p) = event {
                            let r = Received {
                                video: p.header.payload_type != 111,
                                ssrc: p.header.ssrc,
                                seq: p.header.sequence_number,
                                payload_type: p.header.payload_type,
                            };
                            if tx.send(r).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self {
            pc,
            location: format!("{base}{}", location.unwrap()),
            packets,
            tracks,
        }
    }

    /// The next `n` video packets (bounded by [`WAIT`]).
    pub async fn video(&mut self, n: usize) -> Vec<Received> {
        let mut out = Vec::with_capacity(n);
        tokio::time::timeout(WAIT, async {
            while out.len() < n {
                let p = self.packets.recv().await.expect("subscriber channel open");
                if p.video {
                    out.push(p);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("only {} of {n} video packets arrived", out.len()));
        out
    }

    /// Sends a PLI about every received track, as a decoder that lost its picture does.
    pub async fn send_pli(&self) {
        let tracks: Vec<_> = self.tracks.lock().unwrap().clone();
        assert!(!tracks.is_empty(), "no track announced yet");
        for track in tracks {
            for ssrc in track.ssrcs().await {
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc: ssrc,
                };
                track.write_rtcp(vec![Box::new(pli)]).await.unwrap();
            }
        }
    }

    /// Whether at least one audio packet arrives (bounded by [`WAIT`]).
    pub async fn audio_arrives(&mut self) -> bool {
        tokio::time::timeout(WAIT, async {
            loop {
                if !self.packets.recv().await.expect("open").video {
                    return;
                }
            }
        })
        .await
        .is_ok()
    }
}

/// The ICE servers of a response's `Link: <url>; rel="ice-server"; username="..";
/// credential=".."` headers (RFC 9725 §4.6), as a WHIP/WHEP client configures its connection.
pub fn link_ice_servers(headers: &reqwest::header::HeaderMap) -> Vec<RTCIceServer> {
    let param = |link: &str, name: &str| {
        link.split(';').find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"').to_owned())
        })
    };
    headers
        .get_all("link")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(", <").map(str::to_owned))
        .filter(|link| param(link, "rel").as_deref() == Some("ice-server"))
        .map(|link| RTCIceServer {
            urls: vec![
                link.trim_start_matches('<')
                    .split_once('>')
                    .unwrap()
                    .0
                    .to_owned(),
            ],
            username: param(&link, "username").unwrap_or_default(),
            credential: param(&link, "credential").unwrap_or_default(),
        })
        .collect()
}

/// Waits (bounded by [`WAIT`]) until `condition` holds, checking every 20 ms.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that packets carry one SSRC and sequence numbers without gaps (sorted: NACK repairs
/// may arrive late).
pub fn assert_continuous(packets: &[Received]) {
    let ssrc = packets[0].ssrc;
    assert!(packets.iter().all(|p| p.ssrc == ssrc), "ssrc changed");
    let first = packets[0].seq;
    let mut offsets: Vec<u16> = packets.iter().map(|p| p.seq.wrapping_sub(first)).collect();
    offsets.sort_unstable();
    offsets.dedup();
    for w in offsets.windows(2) {
        assert_eq!(w[1], w[0] + 1, "gap in sequence numbers: {offsets:?}");
    }
}

/// A chat member driven by a real websocket client.
pub struct ChatClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

pub type CloseInfo = (u16, String);

impl ChatClient {
    /// Connects without saying hello.
    pub async fn connect(base: &str, stream: &str) -> Self {
        let url = format!(
            "{}/ws/streams/{stream}/chat",
            base.replacen("http", "ws", 1)
        );
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self { ws }
    }

    /// Connects from `ip` (any 127/8 address works on loopback) without saying hello; a
    /// refused upgrade gives its HTTP status, `Retry-After` and body.
    pub async fn connect_from(
        base: &str,
        stream: &str,
        ip: [u8; 4],
    ) -> Result<Self, (u16, Option<String>, String)> {
        let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::from((ip, 0))).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        let url = format!("ws://{addr}/ws/streams/{stream}/chat");
        match tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
        {
            Ok((ws, _)) => Ok(Self { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err((
                r.status().as_u16(),
                r.headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned()),
                String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned(),
            )),
            Err(e) => panic!("websocket connect failed: {e}"),
        }
    }

    /// Connects with a tiny receive buffer (a viewer on a bad network), says hello as a
    /// read-only viewer and returns after the welcome.
    pub async fn join_with_small_buffer(base: &str, stream: &str) -> Self {
        let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        let url = format!("ws://{addr}/ws/streams/{stream}/chat");
        let (ws, _) =
            tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
                .await
                .unwrap();
        let mut c = Self { ws };
        c.send(serde_json::json!({ "type": "hello" })).await;
        assert_eq!(c.next().await["type"], "welcome");
        c
    }

    /// Connects, says hello, and returns the welcome.
    pub async fn join(
        base: &str,
        stream: &str,
        token: Option<&str>,
        resume_from: Option<&str>,
    ) -> (Self, serde_json::Value) {
        let mut c = Self::connect(base, stream).await;
        c.send(serde_json::json!({ "type": "hello", "token": token, "resume_from": resume_from }))
            .await;
        let welcome = c.next().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (c, welcome)
    }

    pub async fn send(&mut self, v: serde_json::Value) {
        self.send_text(v.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.try_send_text(text).await.unwrap();
    }

    /// Sends, reporting a connection the server dropped instead of panicking.
    pub async fn try_send_text(
        &mut self,
        text: String,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        use futures::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
    }

    /// Connects and says hello; `None` when the server is gone.
    pub async fn try_join(base: &str, stream: &str, token: &str) -> Option<Self> {
        let url = format!(
            "{}/ws/streams/{stream}/chat",
            base.replacen("http", "ws", 1)
        );
        let (ws, _) = tokio_tungstenite::connect_async(url).await.ok()?;
        let mut c = Self { ws };
        let hello = serde_json::json!({ "type": "hello", "token": token });
        c.try_send_text(hello.to_string()).await.ok()?;
        match c.next_or_close().await {
            Ok(v) if v["type"] == "welcome" => Some(c),
            _ => None,
        }
    }

    /// The next message, or a panic naming the close when the server closed instead.
    pub async fn next(&mut self) -> serde_json::Value {
        match self.next_or_close().await {
            Ok(v) => v,
            Err(close) => panic!("closed while waiting for a message: {close:?}"),
        }
    }

    /// The next message, or the close frame's code and reason.
    pub async fn next_or_close(&mut self) -> Result<serde_json::Value, CloseInfo> {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a chat message");
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    }));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err((1006, e.to_string())),
                None => return Err((1006, "ended".into())),
            }
        }
    }

    /// Skips messages until one of type `kind`.
    pub async fn next_of(&mut self, kind: &str) -> serde_json::Value {
        loop {
            let v = self.next().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn closed(&mut self) -> CloseInfo {
        loop {
            if let Err(close) = self.next_or_close().await {
                return close;
            }
        }
    }

    pub async fn leave(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// A WHIP publisher sending real encoded media made by GStreamer in real time: a moving test
/// picture (H.264 or VP8) and a sine tone (Opus), as a browser or OBS would send them.
pub struct MediaPublisher {
    pub pc: Arc<dyn PeerConnection>,
    pub location: String,
    pipeline: gstreamer::Pipeline,
}

/// What a [`MediaPublisher`] sends.
#[derive(Debug, Clone)]
pub struct MediaSource {
    /// `video/H264`, `video/VP8`, or `None` for audio only.
    pub video: Option<&'static str>,
    pub width: u32,
    pub height: u32,
    pub audio: bool,
    /// A WAV file sent as the microphone, in real time, instead of a tone.
    pub speech: Option<std::path::PathBuf>,
}

impl MediaSource {
    /// A camera and a microphone.
    pub fn camera(video: &'static str, width: u32, height: u32) -> Self {
        Self {
            video: Some(video),
            width,
            height,
            audio: true,
            speech: None,
        }
    }

    /// A microphone alone.
    pub fn microphone() -> Self {
        Self {
            video: None,
            width: 0,
            height: 0,
            audio: true,
            speech: None,
        }
    }

    /// The same picture, with `wav` as the microphone.
    pub fn speaking(self, wav: &std::path::Path) -> Self {
        Self {
            audio: true,
            speech: Some(wav.to_owned()),
            ..self
        }
    }

    /// The same picture, muted.
    pub fn muted(self) -> Self {
        Self {
            audio: false,
            ..self
        }
    }
}

/// Creates a stream and publishes `source` to it: the stream's JSON and its publisher.
pub async fn go_live(
    server: &TestServer,
    token: &str,
    title: &str,
    source: MediaSource,
) -> (serde_json::Value, MediaPublisher) {
    let stream = server.stream(token, title).await;
    let publisher = MediaPublisher::start(
        &server.http,
        &server.base,
        stream["whip_url"].as_str().unwrap(),
        stream["stream_key"].as_str().unwrap(),
        source,
    )
    .await;
    (stream, publisher)
}

impl MediaPublisher {
    pub async fn start(
        http: &reqwest::Client,
        base: &str,
        whip_url: &str,
        key: &str,
        source: MediaSource,
    ) -> Self {
        use gstreamer::prelude::*;
        gstreamer::init().unwrap();
        let video_ssrc = rand::random::<u32>();
        let audio_ssrc = rand::random::<u32>();
        let mut description = String::new();
        let video = source.video.map(|mime| {
            let (encode, pt) = if mime == "video/H264" {
                (
                    "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bitrate=1200 \
                     ! video/x-h264,profile=constrained-baseline \
                     ! rtph264pay pt=102 mtu=1200 config-interval=-1 aggregate-mode=zero-latency",
                    102,
                )
            } else {
                ("vp8enc deadline=1 keyframe-max-dist=60 target-bitrate=1200000 ! rtpvp8pay pt=96 mtu=1200", 96)
            };
            description += &format!(
                "videotestsrc is-live=true pattern=ball ! video/x-raw,width={},height={},framerate=30/1 \
                 ! {encode} ! appsink name=v sync=false ",
                source.width, source.height
            );
            (track(RtpCodecKind::Video, mime, video_ssrc), pt)
        });
        let audio = source.audio.then(|| {
            match &source.speech {
                // Paced by the clock (sync=true): a file is read as fast as it decodes.
                Some(wav) => {
                    description += &format!(
                        "filesrc location=\"{}\" ! wavparse ! audioconvert ! audioresample \
                         ! audio/x-raw,rate=48000,channels=2 ! opusenc ! rtpopuspay pt=111 \
                         ! appsink name=a sync=true ",
                        wav.display()
                    )
                }
                None => {
                    description += "audiotestsrc is-live=true wave=sine freq=440 volume=0.3 \
                         ! audio/x-raw,rate=48000,channels=2 ! opusenc ! rtpopuspay pt=111 \
                         ! appsink name=a sync=false ";
                }
            }
            track(RtpCodecKind::Audio, "audio/opus", audio_ssrc)
        });
        let tracks: Vec<_> = video
            .iter()
            .map(|(t, _)| Arc::clone(t))
            .chain(audio.clone())
            .collect();
        let (pc, location) = publish_tracks(http, whip_url, key, &tracks).await;
        let pipeline = gstreamer::parse::launch(&description)
            .unwrap()
            .downcast::<gstreamer::Pipeline>()
            .unwrap();
        let mut sinks = Vec::new();
        if let Some((t, pt)) = video {
            sinks.push(("v", t, pt, video_ssrc));
        }
        if let Some(t) = audio {
            sinks.push(("a", t, 111, audio_ssrc));
        }
        for (name, track, pt, ssrc) in sinks {
            let (tx, mut rx) = mpsc::channel::<Bytes>(512);
            let sink = pipeline
                .by_name(name)
                .unwrap()
                .downcast::<gstreamer_app::AppSink>()
                .unwrap();
            sink.set_callbacks(
                gstreamer_app::AppSinkCallbacks::builder()
                    .new_sample(move |s| {
                        let sample = s.pull_sample().map_err(|_| gstreamer::FlowError::Eos)?;
                        let buffer = sample.buffer().ok_or(gstreamer::FlowError::Error)?;
                        let map = buffer
                            .map_readable()
                            .map_err(|_| gstreamer::FlowError::Error)?;
                        tx.blocking_send(Bytes::copy_from_slice(&map))
                            .map_err(|_| gstreamer::FlowError::Flushing)?;
                        Ok(gstreamer::FlowSuccess::Ok)
                    })
                    .build(),
            );
            tokio::spawn(async move {
                use rtc::shared::marshal::Unmarshal;
                while let Some(wire) = rx.recv().await {
                    let mut buf = wire;
                    let Ok(mut packet) = rtp::Packet::unmarshal(&mut buf) else {
                        continue;
                    };
                    packet.header.ssrc = ssrc;
                    packet.header.payload_type = pt;
                    if track.write_rtp(packet).await.is_err() {
                        return;
                    }
                }
            });
        }
        pipeline.set_state(gstreamer::State::Playing).unwrap();
        Self {
            pc,
            location: format!("{base}{}", location.unwrap()),
            pipeline,
        }
    }

    /// Stops sending without telling the server (a dropped connection).
    pub async fn abandon(self) {
        use gstreamer::prelude::*;
        let _ = self.pipeline.set_state(gstreamer::State::Null);
        let _ = self.pc.close().await;
    }

    /// Stops the broadcast the way the studio's stop button does (WHIP DELETE).
    pub async fn stop(self, http: &reqwest::Client) {
        use gstreamer::prelude::*;
        let r = http.delete(&self.location).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let _ = self.pipeline.set_state(gstreamer::State::Null);
        let _ = self.pc.close().await;
    }
}

impl Drop for MediaPublisher {
    fn drop(&mut self) {
        use gstreamer::prelude::*;
        let _ = self.pipeline.set_state(gstreamer::State::Null);
    }
}

/// How long a test waits for the HLS pipeline's output (a ladder on a loaded 2-core machine).
pub const MEDIA_WAIT: Duration = Duration::from_secs(90);

/// `#EXT-X-MEDIA-SEQUENCE` plus the complete segments listed: the next segment's number.
pub fn next_msn(playlist: &str) -> u64 {
    let first: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    first
        + playlist
            .lines()
            .filter(|l| l.starts_with("#EXTINF"))
            .count() as u64
}

/// Polls a media playlist with LL-HLS blocking reloads (each asks for the next segment, so the
/// server answers when it exists) until `ready` holds.
pub async fn wait_playlist(
    server: &TestServer,
    url: &str,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + MEDIA_WAIT;
    let mut next = None;
    loop {
        let r = match next {
            Some(msn) => server.http.get(format!("{url}?_HLS_msn={msn}")),
            None => server.http.get(url),
        };
        let r = r.send().await.unwrap();
        // 503: nothing new within three target durations (the publisher is away): ask again
        // without blocking.
        if r.status() != 200 {
            next = None;
            continue;
        }
        let text = r.text().await.unwrap();
        if ready(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}:\n{text}"
        );
        next = Some(next_msn(&text));
    }
}
