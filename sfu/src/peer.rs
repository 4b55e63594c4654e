//! Building WebRTC peer connections the way both media roles need them: the codecs Vitrine
//! forwards, NACK and RTCP reports, the ICE addresses an operator configured, and an event
//! handler that turns callbacks into channels the session tasks can `select!` on.

use crate::candidates::CandidatePolicy;
use crate::codec::Codec;
use crate::ports::{PortPlan, PortUse};
use rtc::interceptor::{Registry, Slot};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// How long a connection may stay ICE-disconnected before its session is ended.
pub const DISCONNECTED_GRACE: Duration = Duration::from_secs(10);

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
    /// UDP ports to use (inclusive); `None` picks ephemeral ports.
    pub port_range: Option<(u16, u16)>,
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
}

/// Creates peer connections with the operator's ICE settings.
#[derive(Debug)]
pub struct PeerFactory {
    ice: IceConfig,
    /// Where the next viewer and publisher start looking for a free port.
    next_viewer_port: AtomicUsize,
    next_publisher_port: AtomicUsize,
    candidates: CandidatePolicy,
}

/// Callbacks of one peer connection, as channels.
pub struct PeerEvents {
    pub state: watch::Receiver<RTCPeerConnectionState>,
    pub gathering: watch::Receiver<RTCIceGatheringState>,
    pub tracks: mpsc::Receiver<Arc<dyn TrackRemote>>,
}

struct Handler {
    state: watch::Sender<RTCPeerConnectionState>,
    gathering: watch::Sender<RTCIceGatheringState>,
    tracks: mpsc::Sender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "peer connection state");
        self.state.send_replace(state);
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if self.tracks.try_send(track).is_err() {
            tracing::warn!("peer announced more tracks than a session takes; ignoring one");
        }
    }
}

/// What a session task needs to know about its connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The connection is (again) up.
    Connected,
    /// Failed, closed, or disconnected for longer than [`DISCONNECTED_GRACE`]: end the session.
    Gone,
    /// Not connected within the connect timeout: reap the session.
    NeverConnected,
}

/// Follows a connection's state and reports [`Liveness`] changes; cancel-safe, so it can sit in
/// a session task's `select!`.
pub struct LivenessWatch {
    state: watch::Receiver<RTCPeerConnectionState>,
    disconnected_since: Option<tokio::time::Instant>,
    /// Until the first connection: when the session is reaped if it has not connected.
    connect_by: Option<tokio::time::Instant>,
}

impl LivenessWatch {
    /// Watches a new session that must connect within `connect_timeout`.
    pub fn new(state: watch::Receiver<RTCPeerConnectionState>, connect_timeout: Duration) -> Self {
        Self {
            state,
            disconnected_since: None,
            connect_by: Some(tokio::time::Instant::now() + connect_timeout),
        }
    }

    pub async fn next(&mut self) -> Liveness {
        loop {
            let grace = self.disconnected_since.map(|at| at + DISCONNECTED_GRACE);
            let connect_by = self.connect_by;
            let deadline = async {
                match (grace, connect_by) {
                    (_, Some(by)) => {
                        tokio::time::sleep_until(by).await;
                        Liveness::NeverConnected
                    }
                    (Some(at), None) => {
                        tokio::time::sleep_until(at).await;
                        Liveness::Gone
                    }
                    (None, None) => std::future::pending().await,
                }
            };
            tokio::select! {
                verdict = deadline => return verdict,
                changed = self.state.changed() => {
                    if changed.is_err() {
                        return Liveness::Gone;
                    }
                    match *self.state.borrow_and_update() {
                        RTCPeerConnectionState::Connected => {
                            self.disconnected_since = None;
                            self.connect_by = None;
                            return Liveness::Connected;
                        }
                        RTCPeerConnectionState::Disconnected => {
                            self.disconnected_since.get_or_insert_with(tokio::time::Instant::now);
                        }
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                            return Liveness::Gone;
                        }
                        _ => self.disconnected_since = None,
                    }
                }
            }
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

impl PeerFactory {
    pub fn new(ice: IceConfig) -> Self {
        Self {
            candidates: CandidatePolicy::of(&ice),
            ice,
            next_viewer_port: AtomicUsize::new(0),
            next_publisher_port: AtomicUsize::new(0),
        }
    }

    pub fn ice(&self) -> &IceConfig {
        &self.ice
    }

    /// Which candidates this deployment exchanges.
    pub fn candidates(&self) -> CandidatePolicy {
        self.candidates
    }

    /// A new peer connection for a viewer (or a client) and the channels its events arrive on.
    pub async fn build(&self) -> Result<(Arc<dyn PeerConnection>, PeerEvents), PeerError> {
        self.build_for(PortUse::Viewer).await
    }

    /// A new peer connection on a port `who` may use. [`PeerError::NoPort`] when every such
    /// port is taken.
    pub async fn build_for(
        &self,
        who: PortUse,
    ) -> Result<(Arc<dyn PeerConnection>, PeerEvents), PeerError> {
        let Some(range) = self.ice.port_range else {
            return self
                .try_build(0, RTCConfigurationBuilder::new().build())
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
                .try_build(port, RTCConfigurationBuilder::new().build())
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
        self.try_build(0, configuration.build()).await
    }

    fn addresses(&self, port: u16) -> Vec<SocketAddr> {
        self.ice
            .bind_ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect()
    }

    async fn try_build(
        &self,
        port: u16,
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
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (gathering_tx, gathering) = watch::channel(RTCIceGatheringState::New);
        let (tracks_tx, tracks) = mpsc::channel(TRACK_QUEUE);
        let handler = Arc::new(Handler {
            state: state_tx,
            gathering: gathering_tx,
            tracks: tracks_tx,
        });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_media_engine(media)
            .with_setting_engine(settings.build())
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(self.addresses(port))
            .build()
            .await?;
        Ok((
            Arc::new(pc),
            PeerEvents {
                state,
                gathering,
                tracks,
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
    gathered(pc, events, policy).await
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
        .map(|d| policy.filter_sdp(&d.sdp))
        .ok_or(PeerError::NoLocalDescription)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_disconnected_too_long_is_gone() {
        let (tx, rx) = watch::channel(RTCPeerConnectionState::New);
        let mut live = LivenessWatch::new(rx, CONNECT_TIMEOUT);
        tx.send_replace(RTCPeerConnectionState::Connected);
        assert_eq!(live.next().await, Liveness::Connected);

        // A short outage that recovers keeps the session.
        tx.send_replace(RTCPeerConnectionState::Disconnected);
        let recovered = tokio::time::timeout(DISCONNECTED_GRACE / 2, live.next()).await;
        assert!(recovered.is_err(), "still waiting inside the grace period");
        tx.send_replace(RTCPeerConnectionState::Connected);
        assert_eq!(live.next().await, Liveness::Connected);

        // An outage longer than the grace period ends it, on the virtual clock.
        tx.send_replace(RTCPeerConnectionState::Disconnected);
        let started = tokio::time::Instant::now();
        assert_eq!(live.next().await, Liveness::Gone);
        assert!(tokio::time::Instant::now() - started >= DISCONNECTED_GRACE);
    }

    #[tokio::test]
    async fn failure_and_a_dropped_connection_are_gone_at_once() {
        let (tx, rx) = watch::channel(RTCPeerConnectionState::Connected);
        let mut live = LivenessWatch::new(rx, CONNECT_TIMEOUT);
        tx.send_replace(RTCPeerConnectionState::Failed);
        assert_eq!(live.next().await, Liveness::Gone);
        let (tx, rx) = watch::channel(RTCPeerConnectionState::Connected);
        let mut live = LivenessWatch::new(rx, CONNECT_TIMEOUT);
        drop(tx);
        assert_eq!(live.next().await, Liveness::Gone);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_that_never_connects_is_reaped_at_its_deadline() {
        let timeout = Duration::from_secs(10);
        let (tx, rx) = watch::channel(RTCPeerConnectionState::New);
        let mut live = LivenessWatch::new(rx, timeout);
        let started = tokio::time::Instant::now();
        // Checking (ICE in progress) does not extend the deadline.
        tx.send_replace(RTCPeerConnectionState::Connecting);
        assert_eq!(live.next().await, Liveness::NeverConnected);
        assert_eq!(tokio::time::Instant::now() - started, timeout);

        // A session that connects in time is no longer subject to the deadline.
        let (tx, rx) = watch::channel(RTCPeerConnectionState::New);
        let mut live = LivenessWatch::new(rx, timeout);
        tx.send_replace(RTCPeerConnectionState::Connected);
        assert_eq!(live.next().await, Liveness::Connected);
        let later = tokio::time::timeout(timeout * 3, live.next()).await;
        assert!(
            later.is_err(),
            "a connected session outlives the connect timeout"
        );
    }
}
