//! A relay: this node subscribes once to a stream's origin node, over WHEP with a relay token,
//! and feeds what it receives into the local router as if it were the publisher, so every
//! local viewer is served with this node's CPU and bandwidth. The origin sees one subscriber
//! however many viewers this node has.
//!
//! Keyframe requests travel hop by hop (a viewer's PLI reaches the local router, whose coalesced
//! request becomes a PLI on the relay's track, which the origin's leg turns into a request to
//! the publisher); NACKs are answered on each hop by its own connection. When the origin moves
//! (the seller re-publishes on another node) the relay connects to the new origin before it
//! lets go of the old one: the local router sees a new source generation, and its viewers'
//! legs continue their sequence numbers without renegotiating.
//!
//! **Must never:** run while the stream's publisher is on this node, or outlive its consumers
//! (viewers, and the taps of the HLS role) by more than the idle grace.

use crate::token::Grant;
use crate::{Inner, now_unix};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vitrine_core::StreamId;
use vitrine_sfu::candidates::CandidatePolicy;
use vitrine_sfu::peer::{self, Liveness, LivenessWatch, PeerEvents};
use vitrine_sfu::ports::PortUse;
use vitrine_sfu::router::{PublisherLink, Router};
use vitrine_sfu::source::forward_track;
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

use crate::registry::NodeInfo;

/// Why a hop to the origin could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum HopError {
    #[error("peer connection: {0}")]
    Peer(#[from] peer::PeerError),
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    #[error("origin {node} unreachable: {error}")]
    Http { node: String, error: String },
    #[error("origin {node} answered {status}: {body}")]
    Refused {
        node: String,
        status: u16,
        body: String,
    },
}

/// One WHEP session on the origin, feeding the local router.
struct Hop {
    origin: String,
    pc: Arc<dyn PeerConnection>,
    /// The session resource on the origin, deleted when the hop ends.
    resource: String,
    liveness: LivenessWatch,
    /// The connection's state, looked at on every check: a relay does not wait out the grace
    /// a viewer's session gets (another hop is cheap, a frozen picture on every viewer is not).
    state: tokio::sync::watch::Receiver<webrtc::peer_connection::RTCPeerConnectionState>,
    /// Keeps this hop's packets flowing into the router; dropped last.
    link: Arc<PublisherLink>,
    cancel: CancellationToken,
}

impl Hop {
    async fn open(
        inner: &Arc<Inner>,
        origin: &NodeInfo,
        stream: &StreamId,
        router: &Arc<Router>,
    ) -> Result<Self, HopError> {
        let (pc, mut events) = inner.factory.build_outbound(PortUse::Publisher).await?;
        match Self::negotiate(inner, origin, stream, &pc, &mut events).await {
            Ok((resource, capture)) => {
                let link = Arc::new(router.attach_publisher());
                if let Some((width, height)) = capture {
                    link.declare_capture(width, height);
                }
                let cancel = CancellationToken::new();
                let connect_timeout = inner.factory.ice().connect_timeout;
                tokio::spawn(forward_tracks(
                    events.tracks,
                    Arc::clone(&link),
                    cancel.clone(),
                ));
                Ok(Self {
                    origin: origin.id.clone(),
                    pc,
                    resource,
                    state: events.state.clone(),
                    liveness: LivenessWatch::new(events.state, connect_timeout),
                    link,
                    cancel,
                })
            }
            Err(e) => {
                let _ = pc.close().await;
                Err(e)
            }
        }
    }

    /// Offers to the origin's WHEP endpoint; returns the session resource's URL and the
    /// capture size the publisher declared there, if it did.
    async fn negotiate(
        inner: &Arc<Inner>,
        origin: &NodeInfo,
        stream: &StreamId,
        pc: &Arc<dyn PeerConnection>,
        events: &mut PeerEvents,
    ) -> Result<(String, Option<(u32, u32)>), HopError> {
        peer::add_receivers(pc).await?;
        // Nodes talk over the operator's network: private candidates are the right ones here.
        let offer = peer::offer(pc, events, CandidatePolicy::new(false)).await?;
        let token = inner
            .key
            .issue(Grant::Relay, &inner.node.id, stream, now_unix());
        let base = origin.url.trim_end_matches('/');
        let http_error = |e: reqwest::Error| HopError::Http {
            node: origin.id.clone(),
            error: e.to_string(),
        };
        let response = inner
            .http
            .post(format!("{base}/whep/{stream}"))
            .header("content-type", "application/sdp")
            .bearer_auth(token)
            .body(offer)
            .send()
            .await
            .map_err(http_error)?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // A malformed size from the origin is ignored: the ladder then follows the picture.
        let capture = vitrine_sfu::signaling::capture_size(response.headers())
            .ok()
            .flatten();
        let body = response.text().await.map_err(http_error)?;
        let (201, Some(location)) = (status, location) else {
            return Err(HopError::Refused {
                node: origin.id.clone(),
                status,
                body: body.chars().take(300).collect(),
            });
        };
        pc.set_remote_description(RTCSessionDescription::answer(body)?)
            .await?;
        let resource = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        Ok((resource, capture))
    }

    /// Whether the connection to the origin is down now (disconnected, failed or closed).
    fn is_broken(&self) -> bool {
        use webrtc::peer_connection::RTCPeerConnectionState as S;
        matches!(
            *self.state.borrow(),
            S::Disconnected | S::Failed | S::Closed
        )
    }

    /// Ends the hop: the origin's session is deleted (best effort: it is reaped anyway when
    /// the connection goes) and the link to the router dropped.
    async fn close(self, inner: &Inner) {
        self.cancel.cancel();
        let _ = inner.http.delete(&self.resource).send().await;
        let _ = self.pc.close().await;
        drop(self.link);
    }
}

/// Hands every track the origin sends to the router.
async fn forward_tracks(
    mut tracks: tokio::sync::mpsc::Receiver<
        Arc<dyn webrtc::media_stream::track_remote::TrackRemote>,
    >,
    link: Arc<PublisherLink>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            track = tracks.recv() => match track {
                Some(track) => {
                    tokio::spawn(forward_track(track, Arc::clone(&link), cancel.clone()));
                }
                None => return,
            },
        }
    }
}

/// What the relay should do after a look at the directory and the router.
enum Next {
    Stay,
    /// Not published anywhere now: an existing hop stays (the origin's leg waits for a
    /// publisher that comes back there).
    Unpublished,
    MoveTo(NodeInfo),
    Stop(&'static str),
}

/// Runs the relay of `stream` into `router` until `stop`, until the stream's publisher is on
/// this node, or until nobody has watched here for the idle grace.
pub(crate) async fn run(
    inner: Arc<Inner>,
    stream: StreamId,
    router: Arc<Router>,
    stop: CancellationToken,
) {
    inner.metrics.relays.inc();
    let mut hop: Option<Hop> = None;
    let mut idle_since: Option<tokio::time::Instant> = None;
    let mut check = tokio::time::interval(inner.config.relay_check);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        let gone = async {
            match hop.as_mut() {
                Some(h) => Some(h.liveness.next().await),
                None => std::future::pending().await,
            }
        };
        let lost = tokio::select! {
            _ = stop.cancelled() => break "stopped",
            alive = gone => matches!(alive, Some(Liveness::Gone | Liveness::NeverConnected)),
            _ = check.tick() => false,
        };
        let broken = hop.as_ref().is_some_and(Hop::is_broken);
        if lost || broken {
            if let Some(h) = hop.take() {
                tracing::warn!(%stream, origin = %h.origin, "relay hop lost; looking for the origin again");
                h.close(&inner).await;
            }
            continue;
        }
        let step = next_step(&inner, &stream, hop.as_ref()).await;
        // While the stream is published, a role's tap (HLS, captions) keeps the relay; once it
        // is not, only viewers do: the roles end their work when the source ends, so a relay
        // kept for them would keep them (and itself) going for ever.
        let busy = match step {
            Next::Unpublished => router.viewers() > 0,
            _ => router.consumers() > 0,
        };
        let now = tokio::time::Instant::now();
        if busy {
            idle_since = None;
        } else if now - *idle_since.get_or_insert(now) >= inner.config.relay_idle {
            break "no viewers";
        }
        match step {
            Next::Stay | Next::Unpublished => {}
            Next::Stop(why) => break why,
            Next::MoveTo(origin) => match Hop::open(&inner, &origin, &stream, &router).await {
                Ok(new) => {
                    inner.metrics.relay_hops.inc();
                    tracing::info!(%stream, origin = %origin.id, "relaying from the origin");
                    // The new hop is attached before the old one lets go: no gap in the source.
                    if let Some(old) = hop.replace(new) {
                        old.close(&inner).await;
                    }
                }
                Err(e) => {
                    inner.metrics.relay_failures.inc();
                    tracing::warn!(%stream, error = %e, "relay could not reach the origin");
                }
            },
        }
    };
    if let Some(h) = hop.take() {
        h.close(&inner).await;
    }
    inner.metrics.relays.dec();
    inner.relay_ended(&stream, &stop);
    tracing::info!(%stream, reason, "relay closed");
}

/// Compares where the stream is published with where this relay receives it from.
async fn next_step(inner: &Arc<Inner>, stream: &StreamId, hop: Option<&Hop>) -> Next {
    let origin = match inner.registry.origin(stream).await {
        Ok(o) => o,
        // Redis unreachable: keep whatever flows.
        Err(_) => return Next::Stay,
    };
    match origin {
        Some(id) if id == inner.node.id => Next::Stop("the publisher is on this node"),
        Some(id) if hop.is_some_and(|h| h.origin == id) => Next::Stay,
        Some(id) => match inner.registry.node(&id).await {
            Ok(Some(node)) => Next::MoveTo(node),
            // The origin's entry is gone (it died): wait for its lease to pass to a live node.
            _ => Next::Stay,
        },
        None => Next::Unpublished,
    }
}

/// How long a relay waits between looks at the directory when nothing else wakes it.
pub const DEFAULT_RELAY_CHECK: Duration = Duration::from_millis(500);
