//! Admission of WHEP viewers: who may open a subscriber session, so that anonymous offers that
//! never connect cannot take every session and UDP port of a node.
//!
//! A viewer session is *pending* from its offer until its connection is up, then *connected*
//! until it ends. Pending sessions are limited per client address and per stream (answered 429:
//! wait for the older ones to connect or time out); all viewer sessions, pending or connected,
//! are capped per stream and per node (answered 503: the watch page plays HLS instead).
//!
//! [`Admission`] is plain data: time is passed in, nothing here touches a socket or the clock.
//! It must never admit a publisher: publishers have their own session table and ports
//! (see [`crate::ports::PortUse`]).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vitrine_core::StreamId;

/// How long a viewer turned away because a stream or the node is full is asked to wait before
/// trying WebRTC again (viewers leave at their own pace; the watch page plays HLS meanwhile).
pub const FULL_RETRY_AFTER: Duration = Duration::from_secs(15);

/// What anonymous viewers may hold of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerLimits {
    /// Pending (not yet connected) sessions per client address: a household or an office
    /// opens a few at once; an attacker gets no more.
    pub pending_per_ip: usize,
    /// Pending sessions per stream: many addresses flooding one stream.
    pub pending_per_stream: usize,
    /// Viewer sessions (pending or connected) per stream.
    pub max_per_stream: usize,
    /// Viewer sessions (pending or connected) on this node, all streams together.
    pub max_per_node: usize,
}

impl Default for ViewerLimits {
    fn default() -> Self {
        Self {
            pending_per_ip: 8,
            pending_per_stream: 200,
            max_per_stream: 10_000,
            max_per_node: 10_000,
        }
    }
}

/// Why a viewer was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many unconnected viewer sessions from this address")]
    PendingPerIp { retry_after: Duration },
    #[error("too many unconnected viewer sessions for this stream")]
    PendingPerStream { retry_after: Duration },
    #[error("this stream has as many WebRTC viewers as it takes; watch over HLS")]
    StreamFull,
    #[error("this server has as many WebRTC viewers as it takes; watch over HLS")]
    NodeFull,
}

impl Refusal {
    /// How long the client should wait before offering again.
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::PendingPerIp { retry_after } | Self::PendingPerStream { retry_after } => {
                *retry_after
            }
            Self::StreamFull | Self::NodeFull => FULL_RETRY_AFTER,
        }
    }

    /// Too many pending sessions (429), rather than no room (503).
    pub fn is_rate_limit(&self) -> bool {
        matches!(
            self,
            Self::PendingPerIp { .. } | Self::PendingPerStream { .. }
        )
    }
}

/// One admitted viewer session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

#[derive(Debug)]
struct Pending {
    client: IpAddr,
    stream: StreamId,
    since: Instant,
}

#[derive(Debug)]
struct Admitted {
    stream: StreamId,
    /// Present while the session has not connected.
    pending: Option<Pending>,
}

/// The viewer sessions of one node, by stream and client address.
#[derive(Debug)]
pub struct Admission {
    limits: ViewerLimits,
    /// How long a session may stay pending before it is reaped (sets the 429's Retry-After).
    connect_timeout: Duration,
    next: u64,
    sessions: HashMap<Ticket, Admitted>,
    pending_by_client: HashMap<IpAddr, usize>,
    pending_by_stream: HashMap<StreamId, usize>,
    by_stream: HashMap<StreamId, usize>,
}

/// The address limits are kept per: an IPv4 address, or the /64 network of an IPv6 address
/// (one subscriber line gets a whole /64, so a per-address limit would not hold it back).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

fn count<K: std::hash::Hash + Eq>(map: &HashMap<K, usize>, key: &K) -> usize {
    map.get(key).copied().unwrap_or(0)
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K) {
    if let Entry::Occupied(mut e) = map.entry(key) {
        *e.get_mut() -= 1;
        if *e.get() == 0 {
            e.remove();
        }
    }
}

impl Admission {
    pub fn new(limits: ViewerLimits, connect_timeout: Duration) -> Self {
        Self {
            limits,
            connect_timeout,
            next: 0,
            sessions: HashMap::new(),
            pending_by_client: HashMap::new(),
            pending_by_stream: HashMap::new(),
            by_stream: HashMap::new(),
        }
    }

    /// Admits a viewer of `stream` from `ip` at `now`, as a pending session.
    pub fn admit(
        &mut self,
        ip: IpAddr,
        stream: &StreamId,
        now: Instant,
    ) -> Result<Ticket, Refusal> {
        let client = client_key(ip);
        if self.sessions.len() >= self.limits.max_per_node {
            return Err(Refusal::NodeFull);
        }
        if count(&self.by_stream, stream) >= self.limits.max_per_stream {
            return Err(Refusal::StreamFull);
        }
        if count(&self.pending_by_client, &client) >= self.limits.pending_per_ip {
            let retry_after = self.oldest_expiry(now, |p| p.client == client);
            return Err(Refusal::PendingPerIp { retry_after });
        }
        if count(&self.pending_by_stream, stream) >= self.limits.pending_per_stream {
            let retry_after = self.oldest_expiry(now, |p| &p.stream == stream);
            return Err(Refusal::PendingPerStream { retry_after });
        }
        self.next += 1;
        let ticket = Ticket(self.next);
        *self.pending_by_client.entry(client).or_default() += 1;
        *self.pending_by_stream.entry(stream.clone()).or_default() += 1;
        *self.by_stream.entry(stream.clone()).or_default() += 1;
        let pending = Pending {
            client,
            stream: stream.clone(),
            since: now,
        };
        self.sessions.insert(
            ticket,
            Admitted {
                stream: stream.clone(),
                pending: Some(pending),
            },
        );
        Ok(ticket)
    }

    /// Whole seconds (at least one) until the oldest matching pending session times out: by
    /// then it has connected or been reaped, and a slot is free.
    fn oldest_expiry(&self, now: Instant, matches: impl Fn(&Pending) -> bool) -> Duration {
        let oldest = self
            .sessions
            .values()
            .filter_map(|s| s.pending.as_ref())
            .filter(|p| matches(p))
            .map(|p| p.since)
            .min()
            .unwrap_or(now);
        let left = (oldest + self.connect_timeout).saturating_duration_since(now);
        Duration::from_secs(left.as_secs() + u64::from(left.subsec_nanos() > 0))
            .max(Duration::from_secs(1))
    }

    /// The session's connection is up: it no longer counts as pending.
    pub fn connected(&mut self, ticket: Ticket) {
        if let Some(p) = self
            .sessions
            .get_mut(&ticket)
            .and_then(|s| s.pending.take())
        {
            decrement(&mut self.pending_by_client, p.client);
            decrement(&mut self.pending_by_stream, p.stream);
        }
    }

    /// The session ended (or never got going): its place is free.
    pub fn release(&mut self, ticket: Ticket) {
        self.connected(ticket);
        if let Some(s) = self.sessions.remove(&ticket) {
            decrement(&mut self.by_stream, s.stream);
        }
    }

    /// Viewer sessions not yet connected.
    pub fn pending(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| s.pending.is_some())
            .count()
    }

    /// Viewer sessions, pending or connected.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// The node's [`Admission`] behind a lock (taken once per offer and per state change, never per
/// packet), handing out slots that release themselves.
#[derive(Debug, Clone)]
pub struct Admissions(Arc<Mutex<Admission>>);

impl Admissions {
    pub fn new(limits: ViewerLimits, connect_timeout: Duration) -> Self {
        Self(Arc::new(Mutex::new(Admission::new(
            limits,
            connect_timeout,
        ))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Admission> {
        self.0.lock().expect("admission lock")
    }

    pub fn admit(&self, ip: IpAddr, stream: &StreamId) -> Result<Slot, Refusal> {
        let ticket = self.lock().admit(ip, stream, Instant::now())?;
        Ok(Slot {
            held: Held::Viewer(self.clone(), ticket),
        })
    }

    /// Pending viewer sessions (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.lock().pending()
    }

    /// Viewer sessions, pending or connected.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// An admitted viewer's place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    held: Held,
}

#[derive(Debug)]
enum Held {
    Viewer(Admissions, Ticket),
    /// Another node's relay: authenticated by the cluster, counted in this gauge, never by
    /// the viewer limits (the viewers it serves are counted on their own node).
    Relay(prometheus_client::metrics::gauge::Gauge),
}

impl Slot {
    /// The place of another node's relay, counted in `relays` while it lives.
    pub fn relay(relays: prometheus_client::metrics::gauge::Gauge) -> Self {
        relays.inc();
        Self {
            held: Held::Relay(relays),
        }
    }

    /// The session's connection is up.
    pub fn connected(&self) {
        if let Held::Viewer(admissions, ticket) = &self.held {
            admissions.lock().connected(*ticket);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        match &self.held {
            Held::Viewer(admissions, ticket) => admissions.lock().release(*ticket),
            Held::Relay(relays) => {
                relays.dec();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(n: u8) -> StreamId {
        StreamId::parse(&format!("s{n}")).unwrap()
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([198, 51, 100, last])
    }

    fn limits(
        pending_per_ip: usize,
        pending_per_stream: usize,
        per_stream: usize,
        node: usize,
    ) -> ViewerLimits {
        ViewerLimits {
            pending_per_ip,
            pending_per_stream,
            max_per_stream: per_stream,
            max_per_node: node,
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(10);

    #[test]
    fn pending_sessions_are_limited_per_address_until_they_connect() {
        let mut a = Admission::new(limits(2, 100, 100, 100), TIMEOUT);
        let t0 = Instant::now();
        let first = a.admit(ip(1), &stream(1), t0).unwrap();
        a.admit(ip(1), &stream(1), t0 + Duration::from_millis(2500))
            .unwrap();
        let third = a.admit(ip(1), &stream(1), t0 + Duration::from_secs(3));
        // The oldest pending session times out 7 s later.
        assert_eq!(
            third,
            Err(Refusal::PendingPerIp {
                retry_after: Duration::from_secs(7)
            })
        );
        // Another address is not held back, and a connected session is no longer pending.
        a.admit(ip(2), &stream(1), t0).unwrap();
        a.connected(first);
        a.admit(ip(1), &stream(1), t0 + Duration::from_secs(3))
            .unwrap();
        assert_eq!(a.pending(), 3);
        assert_eq!(a.len(), 4);
    }

    #[test]
    fn pending_sessions_are_limited_per_stream() {
        let mut a = Admission::new(limits(10, 2, 100, 100), TIMEOUT);
        let t0 = Instant::now();
        a.admit(ip(1), &stream(1), t0).unwrap();
        a.admit(ip(2), &stream(1), t0).unwrap();
        let refused = a
            .admit(ip(3), &stream(1), t0 + Duration::from_millis(9_999))
            .unwrap_err();
        assert!(refused.is_rate_limit());
        assert_eq!(
            refused.retry_after(),
            Duration::from_secs(1),
            "rounded up, at least 1 s"
        );
        a.admit(ip(3), &stream(2), t0).unwrap();
    }

    #[test]
    fn viewers_are_capped_per_stream_and_per_node() {
        let mut a = Admission::new(limits(10, 10, 2, 3), TIMEOUT);
        let t0 = Instant::now();
        let one = a.admit(ip(1), &stream(1), t0).unwrap();
        a.connected(one);
        a.admit(ip(2), &stream(1), t0).unwrap();
        let full = a.admit(ip(3), &stream(1), t0).unwrap_err();
        assert_eq!(full, Refusal::StreamFull);
        assert!(!full.is_rate_limit());
        a.admit(ip(3), &stream(2), t0).unwrap();
        assert_eq!(a.admit(ip(4), &stream(3), t0), Err(Refusal::NodeFull));
        // A viewer leaving frees its place.
        a.release(one);
        a.admit(ip(4), &stream(1), t0).unwrap();
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn releasing_frees_every_count() {
        let mut a = Admission::new(limits(1, 1, 1, 1), TIMEOUT);
        let t0 = Instant::now();
        for _ in 0..3 {
            let t = a.admit(ip(1), &stream(1), t0).unwrap();
            a.release(t);
            a.release(t);
        }
        assert!(a.is_empty());
        assert!(a.pending_by_client.is_empty() && a.pending_by_stream.is_empty());
        assert!(a.by_stream.is_empty());
    }

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
        let mapped: IpAddr = "::ffff:198.51.100.1".parse().unwrap();
        assert_eq!(client_key(mapped), ip(1));
    }
}
