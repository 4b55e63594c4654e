//! Prometheus metrics of the media plane (publishers, subscribers, RTP in/out, keyframe requests).
//! One instance per process, registered once into the binary's registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Default, Clone)]
pub struct SfuMetrics {
    pub publishers: Gauge,
    pub subscribers: Gauge,
    pub rtp_packets_in: Counter,
    pub rtp_bytes_in: Counter,
    pub rtp_packets_out: Counter,
    pub rtp_bytes_out: Counter,
    /// Packets a subscriber's queue had no room for (the slow-viewer drop policy at work).
    pub rtp_packets_dropped: Counter,
    /// PLI/FIR received from subscribers (before coalescing).
    pub keyframe_requests: Counter,
    /// PLI sent to publishers (after coalescing).
    pub keyframe_requests_sent: Counter,
    /// Viewers who joined with the stream's current pictures replayed (no keyframe asked).
    pub gop_replays: Counter,
    /// WHEP offers turned away by the viewer limits (429 and 503).
    pub whep_refusals: Counter,
    /// Sessions (WHIP or WHEP) ended because they did not connect within the connect timeout.
    pub sessions_reaped: Counter,
    /// Subscriber legs serving other nodes' relays (this node is their origin).
    pub relay_legs: Gauge,
    /// Drops of the shared ICE socket (`--ice-udp-port`): unroutable datagrams, checks with
    /// a bad integrity, full session queues.
    pub ice_mux: crate::udpmux::MuxCounters,
}

impl SfuMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("vitrine");
        r.register(
            "publishers",
            "Connected publishers",
            self.publishers.clone(),
        );
        r.register(
            "subscribers",
            "Connected subscribers",
            self.subscribers.clone(),
        );
        r.register(
            "rtp_packets_in",
            "RTP packets received from publishers",
            self.rtp_packets_in.clone(),
        );
        r.register(
            "rtp_bytes_in",
            "RTP payload bytes received from publishers",
            self.rtp_bytes_in.clone(),
        );
        r.register(
            "rtp_packets_out",
            "RTP packets sent to subscribers",
            self.rtp_packets_out.clone(),
        );
        r.register(
            "rtp_bytes_out",
            "RTP payload bytes sent to subscribers",
            self.rtp_bytes_out.clone(),
        );
        r.register(
            "rtp_packets_dropped",
            "RTP packets dropped because a subscriber queue was full",
            self.rtp_packets_dropped.clone(),
        );
        r.register(
            "keyframe_requests",
            "Keyframe requests (PLI/FIR) received from subscribers",
            self.keyframe_requests.clone(),
        );
        r.register(
            "gop_replays",
            "Viewers who started from the cached keyframe and frames since, without a keyframe request",
            self.gop_replays.clone(),
        );
        r.register(
            "keyframe_requests_sent",
            "Keyframe requests sent to publishers after coalescing",
            self.keyframe_requests_sent.clone(),
        );
        r.register(
            "whep_refusals",
            "WHEP offers turned away by the viewer limits",
            self.whep_refusals.clone(),
        );
        r.register(
            "sessions_reaped",
            "Media sessions ended because they did not connect in time",
            self.sessions_reaped.clone(),
        );
        r.register(
            "relay_legs",
            "Subscriber legs serving another node's relay",
            self.relay_legs.clone(),
        );
        r.register(
            "ice_mux_unroutable",
            "Datagrams on the shared ICE port that belonged to no session, and TCP connections \
             whose first frame named none",
            self.ice_mux.unroutable.clone(),
        );
        r.register(
            "ice_mux_refused",
            "ICE checks on the shared port whose integrity did not verify",
            self.ice_mux.refused.clone(),
        );
        r.register(
            "ice_mux_queue_full",
            "Datagrams dropped because their session's queue on the shared ICE port was full, \
             and TCP connections closed because too many waited or their session held its maximum",
            self.ice_mux.queue_full.clone(),
        );
        r.register(
            "ice_tcp_connections",
            "ICE over TCP connections handed to the session their first check authenticated for",
            self.ice_mux.tcp_accepted.clone(),
        );
    }
}
