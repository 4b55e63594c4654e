//! The [`Bus`] over Redis Streams, for rooms that span servers: each room is a stream
//! (`vitrine:room:{id}`, capped near [`ROOM_LOG_CAPACITY`] entries), so Redis gives every event
//! an increasing id, one order that every server reads, history and resume for free.
//!
//! Live delivery: one reader task per room per process blocks on `XREAD` with its own
//! connection and fans out through a local broadcast channel; it stops when the last local
//! subscriber is gone.

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId as Entry, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Client, FromRedisValue};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use vitrine_core::bus::{ROOM_LOG_CAPACITY, SUBSCRIPTION_CAPACITY};
use vitrine_core::{Bus, BusError, EventId, LoggedEvent};

/// How long one `XREAD` blocks before the reader checks whether anyone still listens.
const BLOCK: Duration = Duration::from_secs(2);

fn key(room: &str) -> String {
    format!("vitrine:room:{room}")
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

fn parse_entry(entry: &Entry) -> Result<LoggedEvent, BusError> {
    let field = |name: &str| -> Result<Option<String>, BusError> {
        entry
            .map
            .get(name)
            .map(|v| String::from_redis_value_ref(v).map_err(unavailable))
            .transpose()
    };
    let payload = field("p")?.ok_or_else(|| unavailable("entry without payload"))?;
    let audience = field("a")?.filter(|a| !a.is_empty());
    Ok(LoggedEvent {
        id: entry.id.parse()?,
        audience: audience.map(Arc::from),
        payload: Arc::from(payload),
    })
}

#[derive(Clone)]
pub struct RedisBus {
    client: Client,
    commands: MultiplexedConnection,
    readers: Arc<Mutex<HashMap<String, broadcast::Sender<LoggedEvent>>>>,
}

impl RedisBus {
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        let client = Client::open(url).map_err(unavailable)?;
        let commands = client
            .get_multiplexed_async_connection()
            .await
            .map_err(unavailable)?;
        Ok(Self {
            client,
            commands,
            readers: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The id of the room's newest entry ("0-0" when empty): where a new reader starts.
    async fn last_id(&self, room: &str) -> Result<String, BusError> {
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(key(room))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        Ok(reply
            .ids
            .first()
            .map_or_else(|| "0-0".to_owned(), |e| e.id.clone()))
    }

    fn spawn_reader(&self, room: String, start: String, live: broadcast::Sender<LoggedEvent>) {
        let (client, readers) = (self.client.clone(), Arc::clone(&self.readers));
        tokio::spawn(async move {
            let config = AsyncConnectionConfig::new().set_response_timeout(None);
            let mut conn = None;
            let mut last = start;
            loop {
                if live.receiver_count() == 0 {
                    let mut readers = readers.lock().unwrap_or_else(|p| p.into_inner());
                    // Re-check under the lock: a subscriber may have just arrived.
                    if live.receiver_count() == 0 {
                        readers.remove(&room);
                        break;
                    }
                }
                if conn.is_none() {
                    match client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                    {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            tracing::warn!(error = %e, "redis reader cannot connect; retrying");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let reply: Result<Option<StreamReadReply>, _> = redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(500)
                    .arg("BLOCK")
                    .arg(BLOCK.as_millis() as u64)
                    .arg("STREAMS")
                    .arg(key(&room))
                    .arg(&last)
                    .query_async(c)
                    .await;
                match reply {
                    Ok(Some(reply)) => {
                        for entry in reply.keys.iter().flat_map(|k| k.ids.iter()) {
                            last.clone_from(&entry.id);
                            match parse_entry(entry) {
                                Ok(event) => {
                                    let _ = live.send(event);
                                }
                                Err(e) => tracing::warn!(error = %e, "bad room log entry"),
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "redis reader failed; reconnecting");
                        conn = None;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
    }
}

#[async_trait::async_trait]
impl Bus for RedisBus {
    async fn append(
        &self,
        room: &str,
        audience: Option<&str>,
        payload: &str,
    ) -> Result<EventId, BusError> {
        let id: String = redis::cmd("XADD")
            .arg(key(room))
            .arg("MAXLEN")
            .arg("~")
            .arg(ROOM_LOG_CAPACITY)
            .arg("*")
            .arg("a")
            .arg(audience.unwrap_or(""))
            .arg("p")
            .arg(payload)
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        id.parse()
    }

    async fn recent(&self, room: &str, limit: usize) -> Result<Vec<LoggedEvent>, BusError> {
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(key(room))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        let mut events = reply
            .ids
            .iter()
            .map(parse_entry)
            .collect::<Result<Vec<_>, _>>()?;
        events.reverse();
        Ok(events)
    }

    async fn after(
        &self,
        room: &str,
        after: EventId,
        limit: usize,
    ) -> Result<(Vec<LoggedEvent>, bool), BusError> {
        let mut conn = self.commands.clone();
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(key(room))
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let first: StreamRangeReply = redis::cmd("XRANGE")
            .arg(key(room))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        // An `after` older than the oldest kept entry means trimmed entries were missed.
        let missed = match first.ids.first() {
            Some(oldest) => oldest.id.parse::<EventId>()? > after && after != EventId::default(),
            None => false,
        };
        let events = reply
            .ids
            .iter()
            .map(parse_entry)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((events, missed))
    }

    async fn subscribe(&self, room: &str) -> Result<broadcast::Receiver<LoggedEvent>, BusError> {
        if let Some(live) = self
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(room)
        {
            return Ok(live.subscribe());
        }
        let start = self.last_id(room).await?;
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = readers.get(room) {
            return Ok(live.subscribe());
        }
        let (live, receiver) = broadcast::channel(SUBSCRIPTION_CAPACITY);
        readers.insert(room.to_owned(), live.clone());
        drop(readers);
        self.spawn_reader(room.to_owned(), start, live);
        Ok(receiver)
    }

    async fn remove(&self, room: &str) -> Result<(), BusError> {
        let _: i64 = redis::cmd("DEL")
            .arg(key(room))
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
