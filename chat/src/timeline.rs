//! A stream's timeline: what happened in its room that a replay shows again (chat lines, pins,
//! flash sales, unpins, stock counts, final captions), each with the wall-clock time it was
//! appended, kept in SQL after the room log is gone. [`RecordingBus`] wraps the room bus: every
//! public event appended through it (on any node: each event is appended once) is queued to a
//! writer that inserts in batches. A chat line a moderator deletes leaves the timeline too. The
//! binary places the events on the recording's media time when asked (`at_ms`).
//!
//! **Must never:** slow an append (the queue is bounded; a full one drops and counts); keep a
//! chat line a moderator deleted; hold more than [`MAX_PER_STREAM`] events of a stream.

use crate::protocol::{CaptionKind, ModerationAction, RoomEvent};
use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use sqlx::{AnyPool, Row};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use vitrine_core::time::Timestamp;
use vitrine_core::{Bus, BusError, EventId, LoggedEvent};

/// Events of one stream kept at most; later ones are dropped and counted.
pub const MAX_PER_STREAM: i64 = 200_000;
/// Events waiting for the writer; beyond, new ones are dropped and counted.
const QUEUE: usize = 8192;
/// Events one insert transaction takes at most.
const BATCH: usize = 256;
/// How long the writer gathers a batch.
const GATHER: Duration = Duration::from_millis(200);

/// One timeline entry as stored: its kind, the room event's JSON, and when it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub stream: String,
    /// The room log's id of the event (a moderator's delete names it).
    pub event_id: String,
    /// Unix milliseconds when it was appended.
    pub wall_ms: i64,
    /// `chat`, `pin`, `sale`, `unpin`, `stock` or `caption`.
    pub kind: &'static str,
    /// The room event as members got it (JSON object).
    pub body: String,
}

/// What the writer does with one appended event.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Keep(Entry),
    /// A moderator deleted this chat line.
    Forget {
        stream: String,
        event_id: String,
    },
}

/// The timeline's step for a public room event, if it has one (sans-IO).
fn step(stream: &str, event_id: &str, wall_ms: i64, payload: &str) -> Option<Step> {
    let event: RoomEvent = serde_json::from_str(payload).ok()?;
    let kind = match &event {
        RoomEvent::Chat { .. } => "chat",
        RoomEvent::Pin { pin: Some(p) } if p.sale_price.is_some() => "sale",
        RoomEvent::Pin { pin: Some(_) } => "pin",
        RoomEvent::Pin { pin: None } => "unpin",
        RoomEvent::Stock { .. } | RoomEvent::Purchase { .. } => "stock",
        RoomEvent::Caption {
            kind: CaptionKind::Final,
            ..
        } => "caption",
        RoomEvent::Moderation {
            action: ModerationAction::Delete,
            message_id: Some(id),
            ..
        } => {
            return Some(Step::Forget {
                stream: stream.to_owned(),
                event_id: id.clone(),
            });
        }
        _ => return None,
    };
    Some(Step::Keep(Entry {
        stream: stream.to_owned(),
        event_id: event_id.to_owned(),
        wall_ms,
        kind,
        body: payload.to_owned(),
    }))
}

/// The timeline's store and its writer's queue; cheap to clone.
#[derive(Clone)]
pub struct Timeline {
    pool: AnyPool,
    queue: mpsc::Sender<Step>,
    /// Events not recorded: the queue was full, or the stream's timeline is full.
    pub dropped: Counter,
}

impl Timeline {
    /// The store, with its writer started.
    pub fn start(pool: AnyPool) -> Self {
        let (queue, steps) = mpsc::channel(QUEUE);
        let dropped = Counter::default();
        tokio::spawn(write(pool.clone(), steps, dropped.clone()));
        Self {
            pool,
            queue,
            dropped,
        }
    }

    fn record(&self, stream: &str, id: EventId, payload: &str) {
        if let Some(step) = step(stream, &id.to_string(), Timestamp::now().millis(), payload)
            && self.queue.try_send(step).is_err()
        {
            self.dropped.inc();
        }
    }

    /// The stream's entries appended between `from_wall_ms` and `to_wall_ms` (inclusive),
    /// oldest first, at most `limit`.
    pub async fn read(
        &self,
        stream: &str,
        from_wall_ms: i64,
        to_wall_ms: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT event_id, at_ms, kind, body FROM chat_timeline \
             WHERE stream_id = $1 AND at_ms >= $2 AND at_ms <= $3 ORDER BY at_ms, id LIMIT $4",
        )
        .bind(stream)
        .bind(from_wall_ms)
        .bind(to_wall_ms)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = r.try_get(2)?;
            // Only this module writes the table: a kind it does not know is not shown.
            let Some(kind) = KINDS.iter().find(|k| **k == kind).copied() else {
                continue;
            };
            entries.push(Entry {
                stream: stream.to_owned(),
                event_id: r.try_get(0)?,
                wall_ms: r.try_get(1)?,
                kind,
                body: r.try_get(3)?,
            });
        }
        Ok(entries)
    }

    /// Forgets a deleted stream's timeline.
    pub async fn remove(&self, stream: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM chat_timeline WHERE stream_id = $1")
            .bind(stream)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Every kind an entry may have.
pub const KINDS: [&str; 6] = ["chat", "pin", "sale", "unpin", "stock", "caption"];

/// The writer: gathers steps for up to [`GATHER`] (at most [`BATCH`]) and applies them in one
/// transaction, in order.
async fn write(pool: AnyPool, mut steps: mpsc::Receiver<Step>, dropped: Counter) {
    let mut counts: HashMap<String, i64> = HashMap::new();
    // On SQLite, queue for the one writer with the order path rather than in SQLite's busy
    // handler (see vitrine_core::write_gate).
    let gate = vitrine_core::write_gate::WriteGate::of(&pool);
    while let Some(first) = steps.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + GATHER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, steps.recv()).await {
                Ok(Some(s)) => batch.push(s),
                _ => break,
            }
        }
        let turn = gate.enter().await;
        let applied = apply(&pool, &batch, &mut counts, &dropped).await;
        drop(turn);
        if let Err(e) = applied {
            tracing::warn!(error = %e, events = batch.len(), "timeline events lost");
            dropped.inc_by(batch.len() as u64);
            counts.clear();
        }
        if counts.len() > 10_000 {
            counts.clear();
        }
    }
}

async fn apply(
    pool: &AnyPool,
    batch: &[Step],
    counts: &mut HashMap<String, i64>,
    dropped: &Counter,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for step in batch {
        match step {
            Step::Keep(e) => {
                let count = match counts.get(&e.stream) {
                    Some(c) => *c,
                    None => sqlx::query("SELECT COUNT(*) FROM chat_timeline WHERE stream_id = $1")
                        .bind(&e.stream)
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get::<i64, _>(0)?,
                };
                if count >= MAX_PER_STREAM {
                    dropped.inc();
                    counts.insert(e.stream.clone(), count);
                    continue;
                }
                sqlx::query(
                    "INSERT INTO chat_timeline (stream_id, event_id, at_ms, kind, body) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&e.stream)
                .bind(&e.event_id)
                .bind(e.wall_ms)
                .bind(e.kind)
                .bind(&e.body)
                .execute(&mut *tx)
                .await?;
                counts.insert(e.stream.clone(), count + 1);
            }
            Step::Forget { stream, event_id } => {
                sqlx::query("DELETE FROM chat_timeline WHERE stream_id = $1 AND event_id = $2")
                    .bind(stream)
                    .bind(event_id)
                    .execute(&mut *tx)
                    .await?;
                counts.remove(stream);
            }
        }
    }
    tx.commit().await
}

/// The room bus, with every public event also queued for the timeline.
pub struct RecordingBus {
    inner: Arc<dyn Bus>,
    timeline: Timeline,
}

impl RecordingBus {
    pub fn new(inner: Arc<dyn Bus>, timeline: Timeline) -> Self {
        Self { inner, timeline }
    }
}

#[async_trait]
impl Bus for RecordingBus {
    async fn append(
        &self,
        room: &str,
        audience: Option<&str>,
        payload: &str,
    ) -> Result<EventId, BusError> {
        let id = self.inner.append(room, audience, payload).await?;
        if audience.is_none() {
            self.timeline.record(room, id, payload);
        }
        Ok(id)
    }

    async fn recent(&self, room: &str, limit: usize) -> Result<Vec<LoggedEvent>, BusError> {
        self.inner.recent(room, limit).await
    }

    async fn after(
        &self,
        room: &str,
        after: EventId,
        limit: usize,
    ) -> Result<(Vec<LoggedEvent>, bool), BusError> {
        self.inner.after(room, after, limit).await
    }

    async fn subscribe(&self, room: &str) -> Result<broadcast::Receiver<LoggedEvent>, BusError> {
        self.inner.subscribe(room).await
    }

    async fn remove(&self, room: &str) -> Result<(), BusError> {
        self.inner.remove(room).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_events_become_entries_and_a_delete_forgets_its_line() {
        let chat = r#"{"type":"chat","from":{"member_id":"m1","name":"Ann","role":"buyer"},"text":"hi","ts":5}"#;
        let Some(Step::Keep(e)) = step("st_1", "7-0", 1000, chat) else {
            panic!("a chat line is kept");
        };
        assert_eq!(
            (e.kind, e.wall_ms, e.event_id.as_str()),
            ("chat", 1000, "7-0")
        );
        assert_eq!(e.body, chat);
        let unpin = r#"{"type":"pin","pin":null}"#;
        assert!(matches!(
            step("st_1", "8-0", 1, unpin),
            Some(Step::Keep(Entry { kind: "unpin", .. }))
        ));
        let stock = r#"{"type":"stock","product_id":"pr_1","available":3}"#;
        assert!(matches!(
            step("st_1", "9-0", 1, stock),
            Some(Step::Keep(Entry { kind: "stock", .. }))
        ));
        let partial = r#"{"type":"caption","utterance":1,"kind":"partial","lang":"en","start_ms":0,"end_ms":5,"text":"he"}"#;
        assert_eq!(
            step("st_1", "10-0", 1, partial),
            None,
            "partial captions are not kept"
        );
        let fin = partial.replace("partial", "final");
        assert!(matches!(
            step("st_1", "11-0", 1, &fin),
            Some(Step::Keep(Entry {
                kind: "caption",
                ..
            }))
        ));
        assert_eq!(
            step("st_1", "12-0", 1, r#"{"type":"reaction","emoji":"🔥"}"#),
            None
        );
        let delete = r#"{"type":"moderation","action":"delete","message_id":"7-0"}"#;
        assert_eq!(
            step("st_1", "13-0", 1, delete),
            Some(Step::Forget {
                stream: "st_1".into(),
                event_id: "7-0".into()
            })
        );
        assert_eq!(step("st_1", "14-0", 1, "not json"), None);
    }
}
