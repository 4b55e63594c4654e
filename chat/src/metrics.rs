//! Prometheus metrics of the chat role: members, events, deliveries, disconnects by reason.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    pub code: u16,
}

#[derive(Debug, Default, Clone)]
pub struct ChatMetrics {
    pub members: Gauge,
    /// Events appended to room logs by this process.
    pub events: Counter,
    /// Frames written to members.
    pub deliveries: Counter,
    /// Connections closed by the server, by close code.
    pub closes: Family<CloseLabels, Counter>,
    /// Checkout announcements dropped because the relay queue was full.
    pub announcements_dropped: Counter,
    pub purchases: Counter,
    /// Auction bids received.
    pub bids: Counter,
    /// Websocket connections refused before the upgrade (per-address or per-room cap).
    pub refusals: Counter,
}

impl ChatMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("vitrine_chat");
        r.register("members", "Connected chat members", self.members.clone());
        r.register(
            "events",
            "Events appended to room logs",
            self.events.clone(),
        );
        r.register(
            "deliveries",
            "Frames delivered to members",
            self.deliveries.clone(),
        );
        r.register(
            "closes",
            "Connections closed by the server",
            self.closes.clone(),
        );
        r.register(
            "announcements_dropped",
            "Checkout announcements dropped (relay queue full)",
            self.announcements_dropped.clone(),
        );
        r.register("purchases", "Buy commands received", self.purchases.clone());
        r.register("bids", "Auction bids received", self.bids.clone());
        r.register(
            "refusals",
            "Connections refused at the per-address or per-room cap",
            self.refusals.clone(),
        );
    }
}
