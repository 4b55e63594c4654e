//! Chat: websocket rooms, one per stream, with history, resume, moderation and purchases.
//!
//! Every room event is appended to the room's log on the [`Bus`] (in-process, or Redis Streams
//! so that a room spans servers) and reaches members through each process's [`hub::Hub`];
//! nothing is sent to a room except through its log, which is what keeps every member, on every
//! server, in the same order. Purchases go to checkout through the shared crate's
//! [`Purchases`] trait; checkout's announcements come back through [`CommerceEvents`].

pub mod admission;
pub mod hub;
pub mod limits;
pub mod member;
pub mod metrics;
pub mod moderate;
pub mod moderation;
pub mod policy;
pub mod protocol;
pub mod redis_bus;
pub mod routes;
pub mod timeline;

use crate::admission::Admission;
use crate::hub::Hub;
use crate::metrics::ChatMetrics;
use crate::moderation::Moderation;
use crate::protocol::RoomEvent;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vitrine_core::{
    AuctionMoment, Bus, BusError, CommerceEvent, CommerceEvents, Identities, Purchases,
    StreamDirectory, StreamId,
};

/// Tunables; the defaults suit a live shopping room.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Chat lines a welcome carries.
    pub history: usize,
    /// Frames a member may fall behind before it is disconnected as too slow.
    pub member_queue: usize,
    /// Time a new connection has to send `hello`.
    pub hello_timeout: Duration,
    /// Chat lines and reactions: burst, then per second.
    pub chat_burst: u32,
    pub chat_per_second: f64,
    /// Any frame: burst, then per second; far beyond this is flooding.
    pub frame_burst: u32,
    pub frame_per_second: f64,
    /// Frames refused by the frame limit before the connection is closed (4429).
    pub flood_strikes: u32,
    /// Malformed or unknown frames before the connection is closed (4400).
    pub max_protocol_errors: u32,
    /// Purchases one connection may have in flight.
    pub max_pending_buys: usize,
    /// A connection that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout: Duration,
    /// Websockets one client address (an IPv6 client: its /64) may hold on this node; 0: no cap.
    pub max_connections_per_ip: usize,
    /// Websockets one room may hold on this node; 0: no cap.
    pub max_members_per_room: usize,
    /// A write to a member that does not complete within this closes the member (4009).
    pub write_timeout: Duration,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            history: 50,
            member_queue: 512,
            hello_timeout: Duration::from_secs(10),
            chat_burst: 5,
            chat_per_second: 1.0,
            frame_burst: 30,
            frame_per_second: 10.0,
            flood_strikes: 30,
            max_protocol_errors: 10,
            max_pending_buys: 4,
            idle_timeout: Duration::from_secs(90),
            max_connections_per_ip: 20,
            max_members_per_room: 10_000,
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Announcements queued for the log; beyond this, new ones are dropped and counted (they only
/// keep screens live; the database is the record).
const RELAY_QUEUE: usize = 4096;

pub(crate) struct Inner {
    pub bus: Arc<dyn Bus>,
    pub purchases: Arc<dyn Purchases>,
    pub identities: Arc<dyn Identities>,
    pub streams: Arc<dyn StreamDirectory>,
    pub moderation: Moderation,
    /// Websockets per client address and per room on this node.
    pub admission: Admission,
    pub config: ChatConfig,
    pub metrics: Arc<ChatMetrics>,
    pub shutdown: CancellationToken,
    /// Purchases in flight, so that shutdown lets them finish.
    pub purchases_in_flight: TaskTracker,
    hubs: Mutex<HashMap<StreamId, Weak<Hub>>>,
    relay: mpsc::Sender<(StreamId, Option<String>, String)>,
}

/// The chat service; cheap to clone.
#[derive(Clone)]
pub struct Chat {
    pub(crate) inner: Arc<Inner>,
}

impl Chat {
    /// Builds the service and starts the task that appends checkout's announcements in order.
    pub fn new(
        bus: Arc<dyn Bus>,
        purchases: Arc<dyn Purchases>,
        identities: Arc<dyn Identities>,
        streams: Arc<dyn StreamDirectory>,
        moderation: Moderation,
        config: ChatConfig,
        metrics: Arc<ChatMetrics>,
    ) -> Self {
        let (relay, mut queue) = mpsc::channel::<(StreamId, Option<String>, String)>(RELAY_QUEUE);
        let shutdown = CancellationToken::new();
        let relay_bus = Arc::clone(&bus);
        tokio::spawn(async move {
            while let Some((room, audience, payload)) = queue.recv().await {
                if let Err(e) = relay_bus
                    .append(room.as_str(), audience.as_deref(), &payload)
                    .await
                {
                    tracing::warn!(error = %e, %room, "announcement lost");
                }
            }
        });
        Self {
            inner: Arc::new(Inner {
                bus,
                purchases,
                identities,
                streams,
                moderation,
                admission: Admission::new(
                    config.max_connections_per_ip,
                    config.max_members_per_room,
                ),
                config,
                metrics,
                shutdown,
                purchases_in_flight: TaskTracker::new(),
                hubs: Mutex::new(HashMap::new()),
                relay,
            }),
        }
    }

    /// The room's hub on this process, started on first use.
    pub(crate) async fn hub(&self, stream: &StreamId) -> Result<Arc<Hub>, ChatError> {
        if let Some(hub) = self.live_hub(stream) {
            return Ok(hub);
        }
        let rules = self.inner.moderation.rules(stream).await?;
        let started = Hub::start(
            Arc::clone(&self.inner.bus),
            stream.clone(),
            rules,
            self.inner.config.member_queue,
        )
        .await?;
        let mut hubs = self.inner.hubs.lock().unwrap_or_else(|p| p.into_inner());
        // Another member may have started one meanwhile: keep the first.
        if let Some(hub) = hubs.get(stream).and_then(Weak::upgrade) {
            return Ok(hub);
        }
        hubs.retain(|_, h| h.strong_count() > 0);
        hubs.insert(stream.clone(), Arc::downgrade(&started));
        Ok(started)
    }

    fn live_hub(&self, stream: &StreamId) -> Option<Arc<Hub>> {
        let hubs = self.inner.hubs.lock().unwrap_or_else(|p| p.into_inner());
        hubs.get(stream).and_then(Weak::upgrade)
    }

    /// Appends an event to a room's log.
    pub async fn publish(
        &self,
        stream: &StreamId,
        audience: Option<&str>,
        event: &RoomEvent,
    ) -> Result<(), ChatError> {
        let payload = serde_json::to_string(event).map_err(|e| ChatError::Encode(e.to_string()))?;
        self.inner
            .bus
            .append(stream.as_str(), audience, &payload)
            .await?;
        self.inner.metrics.events.inc();
        Ok(())
    }

    /// The room's events from now on, appended on any node, for a server-side follower (an HLS
    /// node placing captions made elsewhere); each is a serialised [`protocol::RoomEvent`].
    pub async fn follow(
        &self,
        stream: &StreamId,
    ) -> Result<tokio::sync::broadcast::Receiver<vitrine_core::LoggedEvent>, ChatError> {
        Ok(self.inner.bus.subscribe(stream.as_str()).await?)
    }

    /// Forgets the room of a stream that is gone: its log leaves the bus (a deleted stream has
    /// no replay whose chat could be wanted). Members still connected get nothing more.
    pub async fn remove_room(&self, stream: &StreamId) -> Result<(), ChatError> {
        self.inner.bus.remove(stream.as_str()).await?;
        Ok(())
    }

    /// Closes every connection with 4503 so clients reconnect (with `resume_from`) elsewhere.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Waits (up to `limit`) for purchases already under way to finish, after [`Self::shutdown`].
    /// One that does not finish stays `pending` and is settled by the reaper.
    pub async fn drain(&self, limit: Duration) {
        self.inner.purchases_in_flight.close();
        let _ = tokio::time::timeout(limit, self.inner.purchases_in_flight.wait()).await;
    }

    pub fn moderation(&self) -> &Moderation {
        &self.inner.moderation
    }

    pub fn metrics(&self) -> &Arc<ChatMetrics> {
        &self.inner.metrics
    }
}

impl CommerceEvents for Chat {
    fn emit(&self, event: CommerceEvent) {
        let (room, audience, event) = match event {
            CommerceEvent::Pin { stream, pin } => (stream, None, RoomEvent::Pin { pin }),
            CommerceEvent::Stock {
                stream,
                product,
                available,
            } => (
                stream,
                None,
                RoomEvent::Stock {
                    product_id: product,
                    available,
                },
            ),
            CommerceEvent::Purchase {
                stream,
                product,
                quantity,
                orders,
                available,
            } => (
                stream,
                None,
                RoomEvent::Purchase {
                    product_id: product,
                    quantity,
                    orders,
                    available,
                },
            ),
            CommerceEvent::Order {
                stream: Some(stream),
                buyer,
                order,
                ..
            } => (
                stream,
                Some(format!("seller,buyer:{buyer}")),
                RoomEvent::Order { order },
            ),
            CommerceEvent::Order { stream: None, .. } => return,
            CommerceEvent::Auction {
                stream,
                moment,
                auction,
            } => (
                stream,
                None,
                match moment {
                    AuctionMoment::Started => RoomEvent::AuctionStarted { auction },
                    AuctionMoment::Bid => RoomEvent::AuctionBid { auction },
                    AuctionMoment::Ended => RoomEvent::AuctionEnded { auction },
                },
            ),
        };
        let Ok(payload) = serde_json::to_string(&event) else {
            return;
        };
        if self
            .inner
            .relay
            .try_send((room, audience, payload))
            .is_err()
        {
            self.inner.metrics.announcements_dropped.inc();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Moderation(#[from] moderation::ModerationError),
    #[error("encoding: {0}")]
    Encode(String),
}
