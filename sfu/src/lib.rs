//! The selective forwarding unit: one [`router::Router`] per stream forwards the publisher's RTP
//! to every WHEP subscriber, and the WebRTC and signaling plumbing that ingest shares.
//!
//! **Contract:** per packet and per subscriber, nothing allocates and no lock is held across
//! subscribers; every subscriber has a bounded queue whose overflow drops that subscriber's
//! packets only. The sans-IO parts (rewrite, keyframe, codec, offer, sdpfrag) are pure and
//! tested without sockets.

pub mod admission;
pub mod candidates;
pub mod codec;
pub mod feedback;
pub mod gop;
pub mod ice_servers;
pub mod keyframe;
pub mod liveness;
pub mod metrics;
pub mod offer;
pub mod peer;
pub mod ports;
pub mod rewrite;
pub mod router;
pub mod sdpfrag;
pub mod session;
pub mod signaling;
pub mod source;
pub mod subscriber;
pub mod udpmux;
pub mod upstream;
pub mod whep;

use std::sync::{Arc, OnceLock};
use vitrine_core::StreamDirectory;

/// The media plane shared by ingest (publishers) and WHEP (subscribers).
pub struct Sfu {
    pub directory: Arc<dyn StreamDirectory>,
    pub routers: Arc<router::Routers>,
    pub factory: Arc<peer::PeerFactory>,
    pub whep_sessions: Arc<session::Sessions>,
    /// Who may open a viewer session (pending and total caps, per address, stream and node).
    pub admissions: admission::Admissions,
    /// Announces every publisher attached to a router, for the roles that consume live media
    /// (the HLS transcoder). Overflow policy of the broadcast: a lagging receiver misses the
    /// oldest announcements and is told how many.
    pub went_live: tokio::sync::broadcast::Sender<Arc<router::Router>>,
    /// Streams published on other nodes (set once, by a clustered node).
    upstream: OnceLock<Arc<dyn upstream::Upstream>>,
}

/// Publisher announcements buffered for a slow receiver.
pub const WENT_LIVE_CAPACITY: usize = 1024;

/// Hands every publisher announced on `went_live` to `on`, in order, until `stop` or until the
/// SFU is gone: the loop every role consuming live media runs (`role` names it in the log when
/// it lagged and missed announcements).
pub async fn each_publisher<F, Fut>(
    mut went_live: tokio::sync::broadcast::Receiver<Arc<router::Router>>,
    stop: tokio_util::sync::CancellationToken,
    role: &'static str,
    mut on: F,
) where
    F: FnMut(Arc<router::Router>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            router = went_live.recv() => match router {
                Ok(router) => on(router).await,
                Err(RecvError::Lagged(n)) => {
                    tracing::error!(missed = n, role, "publisher announcements missed");
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

impl Sfu {
    pub fn new(
        directory: Arc<dyn StreamDirectory>,
        ice: peer::IceConfig,
        metrics: Arc<metrics::SfuMetrics>,
    ) -> Arc<Self> {
        let admissions = admission::Admissions::new(ice.viewers.clone(), ice.connect_timeout);
        let factory = peer::PeerFactory::with_counters(ice, metrics.ice_mux.clone());
        Arc::new(Self {
            admissions,
            directory,
            routers: Arc::new(router::Routers::new(metrics)),
            factory: Arc::new(factory),
            whep_sessions: Arc::default(),
            went_live: tokio::sync::broadcast::Sender::new(WENT_LIVE_CAPACITY),
            upstream: OnceLock::new(),
        })
    }

    /// Makes this node a cluster member: streams published elsewhere reach it through
    /// `upstream`. Set once; a second call is ignored.
    pub fn set_upstream(&self, upstream: Arc<dyn upstream::Upstream>) {
        if self.upstream.set(upstream).is_err() {
            tracing::warn!("the SFU's upstream was already set");
        }
    }

    /// The cluster this node belongs to, if any.
    pub fn upstream(&self) -> Option<&Arc<dyn upstream::Upstream>> {
        self.upstream.get()
    }

    /// Closes every subscriber (graceful shutdown).
    pub async fn close_all(&self) {
        for s in self.whep_sessions.drain() {
            s.close().await;
        }
    }
}
