//! The media cluster: several `vitrine` nodes sharing one Redis serve any stream from any node.
//! Each node announces itself in the [`registry`] (id, region, URL, roles, load) under a TTL;
//! the node holding a stream's publisher holds the stream's origin lease; a viewer who asks
//! another node for the stream makes that node open one [`relay`] from the origin, which then
//! serves every viewer of that node. Nodes authenticate each other with relay [`token`]s MACed
//! with the cluster's shared secret.
//!
//! **Must never:** relay a stream to a node that does not ask for it, chain relays (a relay's
//! WHEP offer is served from the origin's own router only), or fail a viewer because Redis
//! is down (it then sees what this node has).

mod consume;
pub mod registry;
pub mod relay;
pub mod select;
pub mod token;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use registry::{Load, NodeInfo, Registry};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use token::ClusterKey;
use tokio_util::sync::CancellationToken;
use vitrine_core::StreamId;
use vitrine_sfu::metrics::SfuMetrics;
use vitrine_sfu::peer::PeerFactory;
use vitrine_sfu::router::Router;
use vitrine_sfu::upstream::{RELAY_SOURCE_WAIT, Upstream};

/// How a node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Names the cluster in Redis, so several clusters (or test runs) share one Redis.
    pub name: String,
    /// This node's id: letters, digits and `-`, unique in the cluster.
    pub node_id: String,
    pub region: String,
    /// Where the other nodes reach this one (set once the listener is bound if not given).
    pub url: String,
    /// Where clients reach this one (redirects to it carry this base).
    pub public_url: String,
    /// Nodes with this many media sessions or more take no new publisher.
    pub max_load: u64,
    pub roles: Vec<String>,
    /// The work this node does itself on the streams it is the origin of (`hls`,
    /// `captions`): each one's work lease is taken with the origin lease, so that no other
    /// node takes it (see [`Cluster::consume_live`]).
    pub own_work: Vec<&'static str>,
    pub key: ClusterKey,
    /// How often the node refreshes its entry and its origin leases.
    pub heartbeat: Duration,
    /// How long an origin lease lasts without renewal: how soon a dead node's streams can be
    /// claimed again.
    pub origin_lease: Duration,
    /// How long a relay with no viewer stays open.
    pub relay_idle: Duration,
    /// How often a relay looks at the directory (origin moved, idle).
    pub relay_check: Duration,
}

/// A node id the registry keys and relay tokens can carry.
pub fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The cluster's metrics on this node.
#[derive(Debug, Default, Clone)]
pub struct ClusterMetrics {
    /// Relays this node runs now (streams received from another origin).
    pub relays: Gauge,
    /// Hops opened to an origin (a relay's first, and each move to a new origin).
    pub relay_hops: Counter,
    /// Hops that could not be opened.
    pub relay_failures: Counter,
    /// Streams whose origin this node holds.
    pub origins: Gauge,
}

impl ClusterMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let r = registry.sub_registry_with_prefix("vitrine_cluster");
        r.register("relays", "Relays this node runs", self.relays.clone());
        r.register(
            "relay_hops",
            "Relay hops opened to an origin node",
            self.relay_hops.clone(),
        );
        r.register(
            "relay_failures",
            "Relay hops that could not be opened",
            self.relay_failures.clone(),
        );
        r.register(
            "origins",
            "Streams whose publisher this node holds",
            self.origins.clone(),
        );
    }
}

pub(crate) struct Inner {
    node: NodeInfo,
    config: ClusterConfig,
    key: ClusterKey,
    registry: Registry,
    http: reqwest::Client,
    factory: Arc<PeerFactory>,
    sfu_metrics: Arc<SfuMetrics>,
    metrics: ClusterMetrics,
    /// Streams this node is the origin of.
    held: Mutex<HashSet<StreamId>>,
    /// Running relays, by stream: what stops each.
    relays: Mutex<HashMap<StreamId, CancellationToken>>,
    /// The origins of the cluster's live media nodes, as last listed: where a page may be sent
    /// for WHIP/WHEP (its `connect-src`).
    media_origins: Mutex<Vec<String>>,
    draining: std::sync::atomic::AtomicBool,
    stop: CancellationToken,
}

impl Inner {
    /// Claims (or renews) the work leases of the work this node does on its own `stream`:
    /// the origin's claim wins over a node that worked on the stream while it was elsewhere.
    async fn take_own_work(&self, stream: &StreamId) {
        for work in &self.config.own_work {
            let taken = self
                .registry
                .claim_work(work, stream, &self.node.id, self.config.origin_lease)
                .await;
            if let Err(e) = taken {
                tracing::warn!(%stream, work, error = %e, "could not take this node's own work lease");
            }
        }
    }

    /// Lists the cluster's media nodes again for [`Cluster::media_origins`]; on a Redis error
    /// the last list stays.
    async fn refresh_media_origins(&self) {
        match self.registry.nodes().await {
            Ok(nodes) => {
                let mut origins: Vec<String> = nodes
                    .iter()
                    .filter(|n| n.roles.iter().any(|r| r == "media"))
                    .filter_map(NodeInfo::client_origin)
                    .collect();
                origins.sort();
                origins.dedup();
                *self.media_origins.lock().expect("origins lock") = origins;
            }
            Err(e) => tracing::warn!(error = %e, "could not list the cluster's nodes"),
        }
    }

    /// Gives up the work leases of this node's own `stream` (its publisher left).
    async fn drop_own_work(&self, stream: &StreamId) {
        for work in &self.config.own_work {
            let _ = self.registry.drop_work(work, stream, &self.node.id).await;
        }
    }

    /// Starts the relay of `stream` into `router` unless one runs; true when started.
    fn start_relay(self: &Arc<Self>, stream: &StreamId, router: &Arc<Router>) -> bool {
        let mut relays = self.relays.lock().expect("relays lock");
        if relays.contains_key(stream) || self.stop.is_cancelled() {
            return false;
        }
        let stop = self.stop.child_token();
        relays.insert(stream.clone(), stop.clone());
        tokio::spawn(relay::run(
            Arc::clone(self),
            stream.clone(),
            Arc::clone(router),
            stop,
        ));
        true
    }

    /// Forgets the relay of `stream` that `stop` stopped, unless it was cancelled: then whoever
    /// cancelled it took it out already, and the entry may be a newer relay's.
    fn relay_ended(&self, stream: &StreamId, stop: &CancellationToken) {
        if !stop.is_cancelled() {
            self.relays.lock().expect("relays lock").remove(stream);
        }
    }

    fn info(&self) -> NodeInfo {
        let mut node = self.node.clone();
        node.draining = self.draining.load(std::sync::atomic::Ordering::Relaxed);
        node.load = Load {
            publishers: self.sfu_metrics.publishers.get().max(0) as u64,
            subscribers: self.sfu_metrics.subscribers.get().max(0) as u64,
            relays: self.metrics.relays.get().max(0) as u64,
        };
        node
    }
}

pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This node's membership of the cluster.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl Cluster {
    /// Joins the cluster through `redis_url`: announces the node and keeps announcing it (and
    /// renewing its origin leases) every heartbeat until [`Cluster::leave`].
    pub async fn join(
        config: ClusterConfig,
        redis_url: &str,
        factory: Arc<PeerFactory>,
        sfu_metrics: Arc<SfuMetrics>,
        metrics: ClusterMetrics,
    ) -> Result<Self, registry::RegistryError> {
        let registry = Registry::connect(redis_url, &config.name).await?;
        let node = NodeInfo {
            id: config.node_id.clone(),
            region: config.region.clone(),
            url: config.url.clone(),
            public_url: config.public_url.clone(),
            roles: config.roles.clone(),
            draining: false,
            load: Load::default(),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| registry::RegistryError::from_display(&e))?;
        let inner = Arc::new(Inner {
            key: config.key.clone(),
            node,
            config,
            registry,
            http,
            factory,
            sfu_metrics,
            metrics,
            held: Mutex::default(),
            relays: Mutex::default(),
            media_origins: Mutex::default(),
            draining: Default::default(),
            stop: CancellationToken::new(),
        });
        inner
            .registry
            .announce(&inner.info(), inner.config.heartbeat * 3)
            .await?;
        inner.refresh_media_origins().await;
        tokio::spawn(heartbeat(Arc::clone(&inner)));
        Ok(Self { inner })
    }

    /// The origins (`scheme://host[:port]`) of the cluster's live media nodes, this one's
    /// included, as listed at the last heartbeat: the pages' `connect-src` names them, since a
    /// WHIP or WHEP request may be redirected to any of them.
    pub fn media_origins(&self) -> Vec<String> {
        self.inner
            .media_origins
            .lock()
            .expect("origins lock")
            .clone()
    }

    /// How long a lease of this node's lasts without renewal (origin and work leases).
    pub fn origin_lease(&self) -> std::time::Duration {
        self.inner.config.origin_lease
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node.id
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Every stream published in the cluster now, with its origin node.
    pub async fn streams(&self) -> Result<Vec<(StreamId, String)>, registry::RegistryError> {
        let mut out = Vec::new();
        for stream in self.inner.registry.live_streams().await? {
            if let Some(origin) = self.inner.registry.origin(&stream).await? {
                out.push((stream, origin));
            }
        }
        Ok(out)
    }

    /// Every live node of the cluster.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, registry::RegistryError> {
        self.inner.registry.nodes().await
    }

    /// Takes this node out of selection at once: new publishers and viewers asking it are sent
    /// to other nodes from now on (what it serves, it keeps serving until it is closed).
    pub async fn drain(&self) {
        let inner = &self.inner;
        inner
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = inner
            .registry
            .announce(&inner.info(), inner.config.heartbeat * 3)
            .await
        {
            tracing::warn!(error = %e, "could not announce the drain");
        }
        tracing::info!(node = %inner.node.id, "draining");
    }

    pub fn is_draining(&self) -> bool {
        self.inner
            .draining
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether this node runs the media role (a node without it sends media clients away).
    pub fn serves_media(&self) -> bool {
        self.inner.node.roles.iter().any(|r| r == "media")
    }

    /// Whether `token` is a valid operator token of this cluster (the admin routes).
    pub fn is_admin(&self, token: &str) -> bool {
        self.inner.key.verify_admin(token, now_unix()).is_ok()
    }

    /// Another node to send a new session to, as the selection rules say.
    async fn elsewhere(&self, include_me: bool) -> Option<NodeInfo> {
        let inner = &self.inner;
        let nodes = match inner.registry.nodes().await {
            Ok(nodes) => nodes,
            Err(e) => {
                tracing::warn!(error = %e, "node registry unavailable; serving here");
                return None;
            }
        };
        let chosen = select::choose(
            &nodes,
            select::Selection {
                me: &inner.node.id,
                region: &inner.node.region,
                max_load: inner.config.max_load,
                include_me,
            },
        )?;
        (chosen.id != inner.node.id).then(|| chosen.clone())
    }

    /// Makes this node do `role`'s work (`hls`, `captions`) for streams published on other
    /// nodes that no other node works on: their relays' routers are announced on `went_live`
    /// (a channel of the role's own, so that another role of this node does not take them).
    pub fn consume_live(
        &self,
        role: &'static str,
        routers: Arc<vitrine_sfu::router::Routers>,
        went_live: tokio::sync::broadcast::Sender<Arc<Router>>,
    ) {
        tokio::spawn(consume::run(
            Arc::clone(&self.inner),
            role,
            routers,
            went_live,
        ));
    }

    /// Stops relays and heartbeats, releases this node's origin leases and withdraws its entry.
    pub async fn leave(&self) {
        self.inner.stop.cancel();
        let relays: Vec<_> = self
            .inner
            .relays
            .lock()
            .expect("relays lock")
            .drain()
            .collect();
        for (_, stop) in relays {
            stop.cancel();
        }
        let held: Vec<_> = self.inner.held.lock().expect("held lock").drain().collect();
        for stream in held {
            let _ = self
                .inner
                .registry
                .release_origin(&stream, &self.inner.node.id)
                .await;
            self.inner.drop_own_work(&stream).await;
        }
        let _ = self.inner.registry.withdraw(&self.inner.node.id).await;
    }
}

/// Refreshes the node's entry and its origin leases until the cluster is left.
async fn heartbeat(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let held: Vec<_> = inner
            .held
            .lock()
            .expect("held lock")
            .iter()
            .cloned()
            .collect();
        let renewed = inner
            .registry
            .heartbeat(
                &inner.info(),
                inner.config.heartbeat * 3,
                &held,
                &inner.config.own_work,
                inner.config.origin_lease,
            )
            .await;
        let renewed = match renewed {
            Ok(renewed) => renewed,
            Err(e) => {
                tracing::warn!(error = %e, "could not refresh this node's cluster entry and origin leases");
                continue;
            }
        };
        for (stream, renewed) in held.iter().zip(renewed) {
            if !renewed {
                tracing::info!(%stream, "origin taken over by another node");
                if inner.held.lock().expect("held lock").remove(stream) {
                    inner.metrics.origins.dec();
                }
            }
        }
        inner.refresh_media_origins().await;
    }
}

#[async_trait::async_trait]
impl Upstream for Cluster {
    async fn serve(&self, stream: &StreamId, router: &Arc<Router>) {
        let inner = &self.inner;
        if inner.held.lock().expect("held lock").contains(stream) {
            return;
        }
        // A running relay already follows the origin: a viewer costs no directory lookup.
        if inner
            .relays
            .lock()
            .expect("relays lock")
            .contains_key(stream)
        {
            router.video_known(RELAY_SOURCE_WAIT, false).await;
            return;
        }
        let origin = match inner.registry.origin(stream).await {
            Ok(Some(origin)) if origin != inner.node.id => origin,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(%stream, error = %e, "stream directory unavailable; serving what this node has");
                return;
            }
        };
        let started = inner.start_relay(stream, router);
        if started {
            tracing::info!(%stream, %origin, "relay started for a viewer");
        }
        // Answer once the origin's codecs are known, so the viewer's leg negotiates them.
        router.video_known(RELAY_SOURCE_WAIT, false).await;
    }

    async fn publishing(&self, stream: &StreamId) {
        let inner = &self.inner;
        if let Some(relay) = inner.relays.lock().expect("relays lock").remove(stream) {
            relay.cancel();
        }
        // This node works on its own streams: its leases are taken before the stream shows
        // as live, so no other node takes them.
        inner.take_own_work(stream).await;
        if let Err(e) = inner
            .registry
            .claim_origin(stream, &inner.node.id, inner.config.origin_lease)
            .await
        {
            tracing::error!(%stream, error = %e, "could not record this node as the stream's origin");
            return;
        }
        if inner.held.lock().expect("held lock").insert(stream.clone()) {
            inner.metrics.origins.inc();
        }
    }

    async fn stopped(&self, stream: &StreamId) {
        let inner = &self.inner;
        if inner.held.lock().expect("held lock").remove(stream) {
            inner.metrics.origins.dec();
        }
        if let Err(e) = inner.registry.release_origin(stream, &inner.node.id).await {
            tracing::warn!(%stream, error = %e, "could not release the stream's origin lease");
        }
        inner.drop_own_work(stream).await;
    }

    async fn place_publisher(&self, stream: &StreamId) -> Option<String> {
        let here = !self.is_draining() && self.serves_media();
        let node = self.elsewhere(here).await?;
        // The stream key does not survive a redirect to another origin; this does, for a minute.
        let placement = self
            .inner
            .key
            .issue(token::Grant::Placement, &node.id, stream, now_unix());
        Some(format!(
            "{}/whip/{stream}?placement={placement}",
            node.client_base()
        ))
    }

    async fn place_viewer(&self, stream: &StreamId) -> Option<String> {
        if !self.is_draining() && self.serves_media() {
            return None;
        }
        let node = self.elsewhere(false).await?;
        Some(format!("{}/whep/{stream}", node.client_base()))
    }

    fn is_relay(&self, stream: &StreamId, bearer: &str) -> bool {
        let key = &self.inner.key;
        key.verify(token::Grant::Relay, bearer, stream, now_unix())
            .is_ok()
    }

    fn is_placed(&self, stream: &StreamId, token: &str) -> bool {
        let key = &self.inner.key;
        key.verify(token::Grant::Placement, token, stream, now_unix())
            .is_ok_and(|node| node == self.inner.node.id)
    }
}
