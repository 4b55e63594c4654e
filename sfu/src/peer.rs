//! Building WebRTC peer connections the way both media roles need them: the codecs Vitrine
//! forwards, NACK and RTCP reports, the ICE addresses an operator configured, and an event
//! handler that turns callbacks into channels the session tasks can `select!` on.

use crate::codec::Codec;
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

/// Where and how peer connections bind and announce themselves.
#[derive(Debug, Clone)]
pub struct IceConfig {
    /// Local addresses to bind; `0.0.0.0` means every non-loopback interface.
    pub bind_ips: Vec<IpAddr>,
    /// UDP ports to use (inclusive); `None` picks ephemeral ports.
    pub port_range: Option<(u16, u16)>,
    /// Public addresses announced instead of the bound ones (1:1 NAT, cloud VMs).
    pub announced_ips: Vec<String>,
}

impl Default for IceConfig {
    fn default() -> Self {
        Self {
            bind_ips: vec![IpAddr::from([127, 0, 0, 1])],
            port_range: None,
            announced_ips: Vec::new(),
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
    next_port: AtomicUsize,
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
}

/// Follows a connection's state and reports [`Liveness`] changes; cancel-safe, so it can sit in
/// a session task's `select!`.
pub struct LivenessWatch {
    state: watch::Receiver<RTCPeerConnectionState>,
    disconnected_since: Option<tokio::time::Instant>,
}

impl LivenessWatch {
    pub fn new(state: watch::Receiver<RTCPeerConnectionState>) -> Self {
        Self {
            state,
            disconnected_since: None,
        }
    }

    pub async fn next(&mut self) -> Liveness {
        loop {
            let grace = async {
                match self.disconnected_since {
                    Some(at) => tokio::time::sleep_until(at + DISCONNECTED_GRACE).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = grace => return Liveness::Gone,
                changed = self.state.changed() => {
                    if changed.is_err() {
                        return Liveness::Gone;
                    }
                    match *self.state.borrow_and_update() {
                        RTCPeerConnectionState::Connected => {
                            self.disconnected_since = None;
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
            ice,
            next_port: AtomicUsize::new(0),
        }
    }

    pub fn ice(&self) -> &IceConfig {
        &self.ice
    }

    /// A new peer connection and the channels its events arrive on.
    pub async fn build(&self) -> Result<(Arc<dyn PeerConnection>, PeerEvents), PeerError> {
        let attempts = match self.ice.port_range {
            Some((lo, hi)) => usize::from(hi.saturating_sub(lo)) + 1,
            None => 1,
        };
        let mut last_err = None;
        for _ in 0..attempts {
            match self.try_build().await {
                Ok(built) => return Ok(built),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or(PeerError::NoPort))
    }

    fn addresses(&self) -> Vec<SocketAddr> {
        let port = match self.ice.port_range {
            None => 0,
            Some((lo, hi)) => {
                let span = usize::from(hi.saturating_sub(lo)) + 1;
                lo + (self.next_port.fetch_add(1, Ordering::Relaxed) % span) as u16
            }
        };
        self.ice
            .bind_ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect()
    }

    async fn try_build(&self) -> Result<(Arc<dyn PeerConnection>, PeerEvents), PeerError> {
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
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .with_setting_engine(settings.build())
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(self.addresses())
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

/// Answers `offer` on `pc` and returns the answer SDP with every local candidate in it
/// (servers answer with complete candidates; clients may still trickle theirs).
pub async fn answer(
    pc: &Arc<dyn PeerConnection>,
    events: &mut PeerEvents,
    offer: String,
) -> Result<String, PeerError> {
    pc.set_remote_description(RTCSessionDescription::offer(offer)?)
        .await?;
    let answer = pc.create_answer(None).await?;
    pc.set_local_description(answer).await?;
    let gathered = tokio::time::timeout(
        GATHERING_TIMEOUT,
        events
            .gathering
            .wait_for(|s| *s == RTCIceGatheringState::Complete),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if !gathered {
        return Err(PeerError::Gathering);
    }
    pc.local_description()
        .await
        .map(|d| d.sdp)
        .ok_or(PeerError::NoLocalDescription)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_disconnected_too_long_is_gone() {
        let (tx, rx) = watch::channel(RTCPeerConnectionState::New);
        let mut live = LivenessWatch::new(rx);
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
        let mut live = LivenessWatch::new(rx);
        tx.send_replace(RTCPeerConnectionState::Failed);
        assert_eq!(live.next().await, Liveness::Gone);
        let (tx, rx) = watch::channel(RTCPeerConnectionState::Connected);
        let mut live = LivenessWatch::new(rx);
        drop(tx);
        assert_eq!(live.next().await, Liveness::Gone);
    }
}
