//! The event bus: an ordered, bounded log per room that every process serving the room reads.
//! A room's events get increasing [`EventId`]s, so members can resume after a reconnect and
//! every member, on every process, sees the same order. [`MemoryBus`] serves one process;
//! the chat role provides a Redis Streams implementation for several.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Position of an event in its room's log. Displayed and parsed as `hi-lo` (the form Redis
/// Streams uses), compared numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventId {
    pub hi: u64,
    pub lo: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.hi, self.lo)
    }
}

impl FromStr for EventId {
    type Err = BusError;
    fn from_str(s: &str) -> Result<Self, BusError> {
        let (hi, lo) = s.split_once('-').ok_or(BusError::BadEventId)?;
        Ok(Self {
            hi: hi.parse().map_err(|_| BusError::BadEventId)?,
            lo: lo.parse().map_err(|_| BusError::BadEventId)?,
        })
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One event as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    pub id: EventId,
    /// Who may see it (`None`: the whole room); the role that appends decides the vocabulary.
    pub audience: Option<Arc<str>>,
    /// The event, serialised once by whoever appended it.
    pub payload: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("malformed event id")]
    BadEventId,
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

/// Events a room's log keeps: enough for any reconnect of the last minutes; older history is
/// not what a live chat shows.
pub const ROOM_LOG_CAPACITY: usize = 1000;
/// Capacity of each subscription channel; a subscriber further behind gets `Lagged` and
/// re-reads from the log.
pub const SUBSCRIPTION_CAPACITY: usize = 1024;

/// An ordered log per room with live subscription.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Appends an event and returns its id.
    async fn append(
        &self,
        room: &str,
        audience: Option<&str>,
        payload: &str,
    ) -> Result<EventId, BusError>;
    /// The newest `limit` events, oldest first.
    async fn recent(&self, room: &str, limit: usize) -> Result<Vec<LoggedEvent>, BusError>;
    /// Up to `limit` events after `after`, oldest first. Also says whether `after` is older than
    /// the log (events were missed for good).
    async fn after(
        &self,
        room: &str,
        after: EventId,
        limit: usize,
    ) -> Result<(Vec<LoggedEvent>, bool), BusError>;
    /// Live events appended from now on.
    async fn subscribe(&self, room: &str) -> Result<broadcast::Receiver<LoggedEvent>, BusError>;
    /// Forgets a room and its log, for a room whose stream is gone. Members still subscribed
    /// get nothing more; appending again starts a new log.
    async fn remove(&self, room: &str) -> Result<(), BusError>;
}

struct MemoryRoom {
    next: u64,
    log: VecDeque<LoggedEvent>,
    live: broadcast::Sender<LoggedEvent>,
}

impl MemoryRoom {
    fn new() -> Self {
        Self {
            next: 1,
            log: VecDeque::with_capacity(64),
            live: broadcast::channel(SUBSCRIPTION_CAPACITY).0,
        }
    }
}

/// The in-process bus: a ring buffer and a broadcast channel per room.
#[derive(Default, Clone)]
pub struct MemoryBus {
    rooms: Arc<Mutex<HashMap<String, MemoryRoom>>>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_room<T>(&self, room: &str, f: impl FnOnce(&mut MemoryRoom) -> T) -> T {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if !rooms.contains_key(room) {
            // A new room is rare (one per stream); it is when the empty rooms that readers
            // left behind (nothing logged, nobody listening) are swept, so that rooms only
            // ever looked into do not pile up in memory.
            rooms.retain(|_, r| !r.log.is_empty() || r.live.receiver_count() > 0);
        }
        let entry = rooms.entry(room.to_owned()).or_insert_with(MemoryRoom::new);
        f(entry)
    }

    /// How many rooms this bus holds.
    pub fn rooms(&self) -> usize {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[async_trait::async_trait]
impl Bus for MemoryBus {
    async fn append(
        &self,
        room: &str,
        audience: Option<&str>,
        payload: &str,
    ) -> Result<EventId, BusError> {
        Ok(self.with_room(room, |r| {
            let id = EventId { hi: r.next, lo: 0 };
            r.next += 1;
            let event = LoggedEvent {
                id,
                audience: audience.map(Arc::from),
                payload: Arc::from(payload),
            };
            if r.log.len() == ROOM_LOG_CAPACITY {
                r.log.pop_front();
            }
            r.log.push_back(event.clone());
            // No receiver is fine: nobody is in the room on this process.
            let _ = r.live.send(event);
            id
        }))
    }

    async fn recent(&self, room: &str, limit: usize) -> Result<Vec<LoggedEvent>, BusError> {
        Ok(self.with_room(room, |r| {
            let skip = r.log.len().saturating_sub(limit);
            r.log.iter().skip(skip).cloned().collect()
        }))
    }

    async fn after(
        &self,
        room: &str,
        after: EventId,
        limit: usize,
    ) -> Result<(Vec<LoggedEvent>, bool), BusError> {
        Ok(self.with_room(room, |r| {
            let missed = r
                .log
                .front()
                .is_some_and(|first| first.id.hi > after.hi + 1);
            let events = r
                .log
                .iter()
                .filter(|e| e.id > after)
                .take(limit)
                .cloned()
                .collect();
            (events, missed)
        }))
    }

    async fn subscribe(&self, room: &str) -> Result<broadcast::Receiver<LoggedEvent>, BusError> {
        Ok(self.with_room(room, |r| r.live.subscribe()))
    }

    async fn remove(&self, room: &str) -> Result<(), BusError> {
        self.rooms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(room);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn removed_and_empty_rooms_are_not_kept() {
        let bus = MemoryBus::new();
        bus.append("talked", None, "hi").await.unwrap();
        let listener = bus.subscribe("listened").await.unwrap();
        // Only looked into: nothing logged, nobody listening.
        assert!(bus.recent("looked", 10).await.unwrap().is_empty());
        assert_eq!(bus.rooms(), 3);
        bus.append("next", None, "hello").await.unwrap();
        assert_eq!(
            bus.rooms(),
            3,
            "the empty room is swept when a new one opens"
        );
        bus.remove("talked").await.unwrap();
        assert!(bus.recent("talked", 10).await.unwrap().is_empty());
        drop(listener);
        bus.append("another", None, "x").await.unwrap();
        assert_eq!(bus.rooms(), 2, "left: next, another");
    }

    #[test]
    fn event_ids_order_numerically_and_round_trip() {
        let a: EventId = "9-5".parse().unwrap();
        let b: EventId = "10-0".parse().unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "10-0");
        assert!("10".parse::<EventId>().is_err());
        assert!("x-1".parse::<EventId>().is_err());
    }

    #[tokio::test]
    async fn memory_bus_keeps_order_history_and_resume() {
        let bus = MemoryBus::new();
        let mut live = bus.subscribe("r").await.unwrap();
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(bus.append("r", None, &format!("{i}")).await.unwrap());
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(live.recv().await.unwrap().payload.as_ref(), "0");
        let recent = bus.recent("r", 2).await.unwrap();
        assert_eq!(
            recent.iter().map(|e| &*e.payload).collect::<Vec<_>>(),
            ["3", "4"]
        );
        let (after, missed) = bus.after("r", ids[2], 10).await.unwrap();
        assert!(!missed);
        assert_eq!(after.len(), 2);
        assert!(bus.recent("other", 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn memory_bus_is_bounded_and_reports_missed_history() {
        let bus = MemoryBus::new();
        let first = bus.append("r", None, "first").await.unwrap();
        for _ in 0..ROOM_LOG_CAPACITY + 5 {
            bus.append("r", Some("seller"), "x").await.unwrap();
        }
        assert_eq!(
            bus.recent("r", usize::MAX).await.unwrap().len(),
            ROOM_LOG_CAPACITY
        );
        let (_, missed) = bus.after("r", first, 10).await.unwrap();
        assert!(missed);
    }
}
