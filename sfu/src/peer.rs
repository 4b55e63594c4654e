//! Building WebRTC peer connections the way both media roles need them: the codecs Vitrine
//! forwards, NACK and RTCP reports, the ICE addresses an operator configured, and an event
//! handler that turns callbacks into channels the session tasks can `select!` on.
//!
//! Two kinds of connection: server sessions ([`PeerFactory::build_for`]: WHIP publishers and
//! WHEP viewers, which answer a client's offer) and connections this node opens itself
//! ([`PeerFactory::build_outbound`]: relay legs, test and load clients). With a shared ICE port
//! (`IceConfig::udp_port`), server sessions are ICE-lite on the node's [`UdpMux`]; outbound
//! connections always run full ICE on their own sockets, as two ICE-lite ends never connect.

use crate::candidates::{CandidatePolicy, SharedPorts};
use crate::codec::Codec;
pub use crate::liveness::{DISCONNECTED_GRACE, Liveness, LivenessWatch};
use crate::ports::{PortPlan, PortUse};
use crate::udpmux::{MuxCounters, Registration, UdpMux};
use rtc::interceptor::{Registry, Slot};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateType, RTCIceGatheringState, RTCPeerConnectionState,
    RTCSessionDescription, SettingEngineBuilder, configure_nack, configure_rtcp_reports,
};

/// How long an answer may wait for ICE gathering (host candidates take milliseconds; this bound
/// only matters when an interface misbehaves).
const GATHERING_TIMEOUT: Duration = Duration::from_secs(3);

/// Tracks a publisher can announce before the session task takes them (one audio, one video).
const TRACK_QUEUE: usize = 4;

/// How long a session may take from its offer to a connection before it is reaped: a browser
/// connects in well under a second; an offer that never connects only holds a port.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how peer connections bind and announce themselves, and what of them anonymous
/// viewers may take.
#[derive(Debug, Clone)]
pub struct IceConfig {
    /// Local addresses to bind; `0.0.0.0` means every non-loopback interface.
    pub bind_ips: Vec<IpAddr>,
    /// UDP ports to use (inclusive); `None` picks ephemeral ports. With `udp_port`, only the
    /// connections this node opens itself (relay legs) use it.
    pub port_range: Option<(u16, u16)>,
    /// One UDP port that every server session (WHIP and WHEP) shares, per bind address
    /// (`Some(0)`: any free port, the same on every address). `None`: a port per session.
    pub udp_port: Option<u16>,
    /// With `udp_port`: one TCP port for ICE over TCP (passive candidates, RFC 6544) that
    /// every server session shares, per bind address (`Some(0)`: any free port). `None`: UDP
    /// only.
    pub tcp_port: Option<u16>,
    /// Public addresses announced instead of the bound ones (1:1 NAT, cloud VMs).
    pub announced_ips: Vec<String>,
    /// Ports at the top of `port_range` that only publishers use, so that viewers (anonymous)
    /// can never take the last port a seller needs to go live. `None`: a tenth of the range,
    /// at least one. Publishers use the viewers' ports too when their own are taken.
    pub publisher_ports: Option<u16>,
    /// Sessions whose connection is not up this long after their offer are reaped.
    pub connect_timeout: Duration,
    /// How long without an answer to ICE consent checks before a connection counts as
    /// disconnected (`None`: the WebRTC stack's 5 s). Clients that must notice a dead server
    /// fast (the failover tests' publishers) shorten it; keepalives go at a third of it.
    pub ice_disconnected_timeout: Option<Duration>,
    /// The deployment faces the internet: candidates into private networks are filtered (see
    /// [`crate::candidates`]). Announcing a public address implies it.
    pub public: bool,
    /// Keep private, link-local and loopback candidates even when public.
    pub allow_private_candidates: bool,
    /// What anonymous viewers may hold of this node.
    pub viewers: crate::admission::ViewerLimits,
    /// STUN and TURN servers handed to clients in `Link` headers (RFC 9725 §4.6), so that a
    /// viewer behind a firewall that blocks UDP to this node reaches it through a relay. The
    /// server's own connections use none: it answers from an address clients can reach.
    pub ice_servers: crate::ice_servers::IceServers,
}

impl Default for IceConfig {
    fn default() -> Self {
        Self {
            bind_ips: vec![IpAddr::from([127, 0, 0, 1])],
            port_range: None,
            udp_port: None,
            tcp_port: None,
            announced_ips: Vec::new(),
            publisher_ports: None,
            connect_timeout: CONNECT_TIMEOUT,
            ice_disconnected_timeout: None,
            public: false,
            allow_private_candidates: false,
            viewers: Default::default(),
            ice_servers: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    #[error("no UDP port free in the configured range")]
    NoPort,
    #[error("ice gathering did not complete")]
    Gathering,
    #[error("no local description after negotiation")]
    NoLocalDescription,
    #[error("the shared ICE port is not available: {0}")]
    Mux(String),
}

/// Creates peer connections with the operator's ICE settings.
#[derive(Debug)]
pub struct PeerFactory {
    ice: IceConfig,
    /// Where the next viewer and publisher start looking for a free port.
    next_viewer_port: AtomicUsize,
    next_publisher_port: AtomicUsize,
    candidates: CandidatePolicy,
    /// The shared ICE sockets, or why they could not be bound (`None` without `udp_port`).
    mux: Option<Result<Arc<UdpMux>, String>>,
}

/// Callbacks of one peer connection, as channels.
pub struct PeerEvents {
    pub state: watch::Receiver<RTCPeerConnectionState>,
    pub gathering: watch::Receiver<RTCIceGatheringState>,
    pub tracks: mpsc::Receiver<Arc<dyn TrackRemote>>,
    /// The shared ports the connection's own candidates are moved to (see
    /// [`CandidatePolicy::local_sdp`]); `None` on a connection with its own sockets.
    pub shared_port: Option<SharedPorts>,
}

struct Handler {
    state: watch::Sender<RTCPeerConnectionState>,
    gathering: watch::Sender<RTCIceGatheringState>,
    tracks: mpsc::Sender<Arc<dyn TrackRemote>>,
    mux: Option<MuxHook>,
}

/// What a server session on the shared port tells the mux: the ICE credentials of each
/// generation, read from the local description when gathering completes (before the answer
/// leaves, and again after an ICE restart), and its end.
struct MuxHook {
    registration: Arc<Registration>,
    /// Set once the connection is built; weak, as the connection owns this handler.
    pc: OnceLock<Weak<dyn PeerConnection>>,
}

impl MuxHook {
    async fn learn_credentials(&self) {
        let Some(pc) = self.pc.get().and_then(Weak::upgrade) else {
            return;
        };
        let Some(local) = pc.local_description().await else {
            return;
        };
        match crate::sdpfrag::ice_credentials(&local.sdp) {
            Some((ufrag, pwd)) => {
                if let Err(e) = self.registration.add_credentials(&ufrag, &pwd) {
                    tracing::error!(error = %e, "session left off the shared ICE port");
                }
            }
            None => tracing::warn!("local description without ICE credentials"),
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "peer connection state");
        if let Some(mux) = &self.mux
            && matches!(
                state,
                RTCPeerConnectionState::Closed | RTCPeerConnectionState::Failed
            )
        {
            mux.registration.end();
        }
        self.state.send_replace(state);
    }

    /// Gathering complete: the mux learns the credentials before anyone waiting for the
    /// answer sees the state, so a client's first check already finds its session.
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if let Some(mux) = &self.mux
            && state == RTCIceGatheringState::Complete
        {
            mux.learn_credentials().await;
        }
        self.gathering.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if self.tracks.try_send(track).is_err() {
            tracing::warn!("peer announced more tracks than a session takes; ignoring one");
        }
    }
}

/// Adds one receive-only audio and one video transceiver (a publisher's session, a WHEP client).
pub async fn add_receivers(pc: &Arc<dyn PeerConnection>) -> Result<(), webrtc::error::Error> {
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        pc.add_transceiver_from_kind(
            kind,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            }),
        )
        .await?;
    }
    Ok(())
}

/// The codecs Vitrine negotiates, with Chromium's usual payload types.
pub fn codec_parameters() -> Vec<(RTCRtpCodecParameters, RtpCodecKind)> {
    let video_feedback = || {
        vec![
            RTCPFeedback {
                typ: "ccm".into(),
                parameter: "fir".into(),
            },
            RTCPFeedback {
                typ: "nack".into(),
                parameter: String::new(),
            },
            RTCPFeedback {
                typ: "nack".into(),
                parameter: "pli".into(),
            },
        ]
    };
    let video = |mime: &str, fmtp: &str, pt: u8| {
        (
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: mime.into(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line: fmtp.into(),
                    rtcp_feedback: video_feedback(),
                },
                payload_type: pt,
            },
            RtpCodecKind::Video,
        )
    };
    vec![
        (
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: "audio/opus".into(),
                    clock_rate: 48_000,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                    rtcp_feedback: vec![],
                },
                payload_type: 111,
            },
            RtpCodecKind::Audio,
        ),
        video("video/VP8", "", 96),
        video(
            "video/H264",
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            102,
        ),
        video(
            "video/H264",
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            108,
        ),
    ]
}

/// The payload type and codec each negotiated codec maps to, for one sender or receiver.
pub fn supported(params: &[RTCRtpCodecParameters]) -> Vec<(Codec, u8)> {
    params
        .iter()
        .filter_map(|p| {
            let codec = Codec::from_mime(&p.rtp_codec.mime_type)?;
            codec
                .accepts_fmtp(&p.rtp_codec.sdp_fmtp_line)
                .then_some((codec, p.payload_type))
        })
        .collect()
}

/// How a connection is built: its ICE port and whether it is a server session on the mux.
enum Binding {
    /// Its own sockets on `port` (0: ephemeral) of every bind address; full ICE.
    Own(u16),
    /// A server session on the shared sockets; ICE-lite.
    Shared(Arc<Registration>),
    /// A client with no UDP socket: an active TCP candidate on each bind address.
    TcpOnly,
}

impl PeerFactory {
    /// A factory for clients and tests: a shared port in `ice` is bound now (inside a tokio
    /// runtime), its drops counted nowhere.
    pub fn new(ice: IceConfig) -> Self {
        Self::with_counters(ice, MuxCounters::default())
    }

    /// The node's factory, counting the shared port's drops in `counters`. A shared port that
    /// cannot be bound is logged and kept as the error every server session then reports (see
    /// [`Self::check`]).
    pub fn with_counters(ice: IceConfig, counters: MuxCounters) -> Self {
        let mux = ice.udp_port.map(|port| {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err("the shared ICE port needs a tokio runtime".to_owned());
            }
            UdpMux::bind(&ice.bind_ips, port, ice.tcp_port, counters).map_err(|e| {
                tracing::error!(error = %e, "the shared ICE port could not be bound");
                e.to_string()
            })
        });
        let shared_port = mux
            .as_ref()
            .and_then(|m| m.as_ref().ok())
            .map(|m| SharedPorts {
                udp: m.port(),
                tcp: m.tcp_port(),
            });
        Self {
            candidates: CandidatePolicy::of(&ice).with_shared_port(shared_port),
            ice,
            next_viewer_port: AtomicUsize::new(0),
            next_publisher_port: AtomicUsize::new(0),
            mux,
        }
    }

    pub fn ice(&self) -> &IceConfig {
        &self.ice
    }

    /// Which candidates this deployment exchanges (and the shared port its answers carry).
    pub fn candidates(&self) -> CandidatePolicy {
        self.candidates
    }

    /// The shared ICE sockets, when server sessions use them.
    pub fn mux(&self) -> Option<&Arc<UdpMux>> {
        self.mux.as_ref().and_then(|m| m.as_ref().ok())
    }

    /// Whether server sessions can be built: the error of a shared port that is configured
    /// but could not be bound (a start should stop on it).
    pub fn check(&self) -> Result<(), PeerError> {
        match &self.mux {
            Some(Err(e)) => Err(PeerError::Mux(e.clone())),
            _ => Ok(()),
        }
    }

    /// A new peer connection for a client this node runs (tests, load generators): full ICE
    /// on an ephemeral port.
    pub async fn build(&self) -> Result<(Arc<dyn PeerConnection>, PeerEvents), PeerError> {
        self.build_outbound(PortUse::Viewer).await
    }

    /// A server session (it answers a client's offer) for `who`: on the shared port when
    /// there is one, else on a port of the range `who` may use ([`PeerError::NoPort`] when
    /// every such port is taken).
    pub async fn build_for(
        &self,
        who: PortUse,
    ) -> Result<(Arc<dyn PeerConnection>, PeerEvents), PeerError> {
        match &self.mux {
            Some(Ok(mux)) => {
                let configuration = RTCConfigurationBuilder::new().build();
                self.try_build(Binding::Shared(mux.register()), configuration)
                    .await
            }
            Some(Err(e)) => Err(PeerError::Mux(e.clone())),
            None => self.build_in_range(who).await,
        }
    }

    /// A connection this node opens itself (a relay leg making an offer to another node):
    /// full ICE on its own port of the range, never on the shared port, because the other
    /// end may be ICE-lite.
    pub async fn build_outbound(
        &self,
        who: PortUse,
    ) -> Result<(Arc<dyn PeerConnection>, PeerEvents), PeerError> {
        self.build_in_range(who).await
    }

    async fn build_in_range(
        &self,
        who: PortUse,
    ) -> Result<(Arc<dyn PeerConnection>, PeerEvents), PeerError> {
        let Some(range) = self.ice.port_range else {
            return self
                .try_build(Binding::Own(0), RTCConfigurationBuilder::new().build())
                .await;
        };
        let plan = PortPlan::new(range, self.ice.publisher_ports);
        let ports = plan.order(
            who,
            self.next_viewer_port.fetch_add(1, Ordering::Relaxed),
            self.next_publisher_port.fetch_add(1, Ordering::Relaxed),
        );
        let mut last_err = None;
        for port in ports {
            match self
                .try_build(Binding::Own(port), RTCConfigurationBuilder::new().build())
                .await
            {
                Ok(built) => return Ok(built),
                Err(e) => last_err = Some(e),
            }
        }
        if let Some(e) = last_err {
            tracing::warn!(error = %e, ?who, "no port of the ICE range could be bound");
        }
        Err(PeerError::NoPort)
    }

    /// A client's peer connection on an ephemeral port that gathers through `servers` and, when
    /// `relay_only`, uses relayed candidates alone (as a browser behind a firewall that lets
    /// only its TURN server through would).
    pub async fn build_client(
        &self,
        servers: Vec<webrtc::peer_connection::RTCIceServer>,
        relay_only: bool,
    ) -> Result<(Arc<dyn PeerConnection>, PeerEvents), PeerError> {
        let mut configuration = RTCConfigurationBuilder::new().with_ice_servers(servers);
        if relay_only {
            configuration = configuration
                .with_ice_transport_policy(webrtc::peer_connection::RTCIceTransportPolicy::Relay);
        }
        self.try_build(Binding::Own(0), configuration.build()).await
    }

    /// A client's peer connection that reaches servers over TCP alone (an active candidate on
    /// each bind address, no UDP socket), as a browser behind a firewall that lets no UDP
    /// through would. It dials the server's passive TCP candidates given to it through
    /// `add_ice_candidate`.
    pub async fn build_tcp_client(
        &self,
    ) -> Result<(Arc<dyn PeerConnection>, PeerEvents), PeerError> {
        self.try_build(Binding::TcpOnly, RTCConfigurationBuilder::new().build())
            .await
    }

    fn addresses(&self, port: u16) -> Vec<SocketAddr> {
        self.ice
            .bind_ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect()
    }

    /// The ICE settings of every connection, and for a server session on the shared port
    /// ICE-lite (the client is controlling and the server never sends a check, so the
    /// client only sees the shared port), the DTLS server role (a lite answerer that had to
    /// start DTLS would wait for a nomination it does not see), and no mDNS (its socket would
    /// be taken for an ICE path).
    fn settings(&self, shared: bool) -> SettingEngineBuilder {
        let loopback = self.ice.bind_ips.iter().any(|ip| ip.is_loopback());
        let mut settings = SettingEngineBuilder::new().with_include_loopback_candidate(loopback);
        if let Some(disconnected) = self.ice.ice_disconnected_timeout {
            // Failed follows five disconnected periods, as with the stack's defaults (5 s, 25 s).
            settings = settings.with_ice_timeouts(
                Some(disconnected),
                Some(disconnected * 5),
                Some(disconnected / 3),
            );
        }
        if !self.ice.announced_ips.is_empty() {
            settings = settings
                .with_nat_1to1_ips(self.ice.announced_ips.clone(), RTCIceCandidateType::Host);
        }
        if shared {
            settings = settings
                .with_lite(true)
                .with_answering_dtls_role(rtc::peer_connection::transport::RTCDtlsRole::Server)
                .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled);
        }
        settings
    }

    async fn try_build(
        &self,
        binding: Binding,
        configuration: webrtc::peer_connection::RTCConfiguration,
    ) -> Result<(Arc<dyn PeerConnection>, PeerEvents), PeerError> {
        let mut media = MediaEngine::default();
        for (codec, kind) in codec_parameters() {
            media.register_codec(codec, kind)?;
        }
        let registry = configure_rtcp_reports(configure_nack(Registry::new(), &mut media)).with(
            Slot::from(crate::feedback::SLOT),
            crate::feedback::KeyframeRequestsToApplication::default(),
        );
        let settings = self.settings(matches!(binding, Binding::Shared(_)));
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (gathering_tx, gathering) = watch::channel(RTCIceGatheringState::New);
        let (tracks_tx, tracks) = mpsc::channel(TRACK_QUEUE);
        let mux = match &binding {
            Binding::Shared(registration) => Some(MuxHook {
                registration: Arc::clone(registration),
                pc: OnceLock::new(),
            }),
            Binding::Own(_) | Binding::TcpOnly => None,
        };
        let handler = Arc::new(Handler {
            state: state_tx,
            gathering: gathering_tx,
            tracks: tracks_tx,
            mux,
        });
        let mut builder = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_media_engine(media)
            .with_setting_engine(settings.build())
            .with_interceptor_registry(registry)
            .with_handler(Arc::clone(&handler) as Arc<dyn PeerConnectionEventHandler>);
        let shared_port = match &binding {
            Binding::Own(port) => {
                builder = builder.with_udp_addrs(self.addresses(*port));
                None
            }
            Binding::TcpOnly => {
                builder = builder.with_tcp_addrs(self.addresses(0));
                None
            }
            Binding::Shared(registration) => {
                builder = builder
                    .with_runtime(registration.runtime())
                    .with_udp_addrs(self.addresses(0));
                if self.mux().and_then(|m| m.tcp_port()).is_some() {
                    builder = builder.with_tcp_addrs(self.addresses(0));
                }
                self.candidates.shared_port()
            }
        };
        let pc: Arc<dyn PeerConnection> = Arc::new(builder.build().await?);
        if let Some(hook) = &handler.mux {
            let _ = hook.pc.set(Arc::downgrade(&pc));
        }
        Ok((
            pc,
            PeerEvents {
                state,
                gathering,
                tracks,
                shared_port,
            },
        ))
    }
}

/// Answers `offer` on `pc` and returns the answer SDP with every local candidate `policy`
/// allows in it (servers answer with complete candidates; clients may still trickle theirs).
/// Candidates of the offer that `policy` refuses never reach the ICE agent.
pub async fn answer(
    pc: &Arc<dyn PeerConnection>,
    events: &mut PeerEvents,
    offer: String,
    policy: CandidatePolicy,
) -> Result<String, PeerError> {
    pc.set_remote_description(RTCSessionDescription::offer(policy.filter_sdp(&offer))?)
        .await?;
    let answer = pc.create_answer(None).await?;
    pc.set_local_description(answer).await?;
    gathered(pc, events, policy.with_shared_port(events.shared_port)).await
}

/// Makes an offer on `pc` (a client's: a relay subscribing to another node) and returns it
/// with every local candidate `policy` allows, once gathering is complete.
pub async fn offer(
    pc: &Arc<dyn PeerConnection>,
    events: &mut PeerEvents,
    policy: CandidatePolicy,
) -> Result<String, PeerError> {
    let offer = pc.create_offer(None).await?;
    pc.set_local_description(offer).await?;
    gathered(pc, events, policy).await
}

/// The local description once ICE gathering completes (bounded by [`GATHERING_TIMEOUT`]).
async fn gathered(
    pc: &Arc<dyn PeerConnection>,
    events: &mut PeerEvents,
    policy: CandidatePolicy,
) -> Result<String, PeerError> {
    let complete = tokio::time::timeout(
        GATHERING_TIMEOUT,
        events
            .gathering
            .wait_for(|s| *s == RTCIceGatheringState::Complete),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if !complete {
        return Err(PeerError::Gathering);
    }
    pc.local_description()
        .await
        .map(|d| policy.local_sdp(&d.sdp))
        .ok_or(PeerError::NoLocalDescription)
}
