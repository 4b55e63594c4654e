//! One room's presence on this process: it reads the room's log from the bus, turns each event
//! into its wire frame once, and broadcasts the frame to the room's local members. The broadcast
//! channel is every member's bounded outgoing queue: a member that falls further behind than its
//! capacity is told so (`Lagged`) and disconnected, while the room goes on at full speed.
//!
//! It also keeps the room's moderation rules current from the moderation events it sees.

use crate::moderation::RoomRules;
use crate::protocol::{ModerationAction, RoomEvent, with_id};
use axum::extract::ws::Utf8Bytes;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::{CancellationToken, DropGuard};
use vitrine_core::{Bus, EventId, LoggedEvent, StreamId};

/// Whether an event for `audience` (comma-separated tags; `None`: everyone) reaches a member
/// with these tags.
pub fn admits(audience: Option<&str>, tags: &[String]) -> bool {
    match audience {
        None => true,
        Some(aud) => aud.split(',').any(|a| tags.iter().any(|t| t == a)),
    }
}

/// What a logged moderation event does: its action and target member, and the message it
/// deletes. `None` for every other event (recognised by its prefix, without parsing).
pub fn moderation_of(payload: &str) -> Option<(ModerationAction, Option<String>, Option<String>)> {
    if !payload.starts_with(r#"{"type":"moderation""#) {
        return None;
    }
    match serde_json::from_str::<RoomEvent>(payload) {
        Ok(RoomEvent::Moderation {
            action,
            member_id,
            message_id,
            ..
        }) => Some((action, member_id, message_id)),
        _ => None,
    }
}

/// An event ready to send.
#[derive(Debug)]
pub struct Frame {
    pub id: EventId,
    /// Comma-separated audience tags (`seller`, `buyer:<id>`); `None`: everyone.
    pub audience: Option<Arc<str>>,
    pub text: Utf8Bytes,
    /// For moderation events: what they do (a banned member's connections close themselves).
    pub moderation: Option<(ModerationAction, Option<String>)>,
}

impl Frame {
    /// Whether a member with these audience tags may see the frame.
    pub fn visible_to(&self, tags: &[String]) -> bool {
        admits(self.audience.as_deref(), tags)
    }

    pub fn from_logged(event: &LoggedEvent) -> Self {
        Self {
            id: event.id,
            audience: event.audience.clone(),
            text: Utf8Bytes::from(with_id(event.id, &event.payload)),
            moderation: moderation_of(&event.payload).map(|(action, member, _)| (action, member)),
        }
    }
}

pub struct Hub {
    pub stream: StreamId,
    pub frames: broadcast::Sender<Arc<Frame>>,
    pub rules: Mutex<RoomRules>,
    _pump: DropGuard,
}

impl Hub {
    /// Subscribes to the room's log and starts the pump; it stops when the hub is dropped.
    pub async fn start(
        bus: Arc<dyn Bus>,
        stream: StreamId,
        rules: RoomRules,
        member_queue: usize,
    ) -> Result<Arc<Self>, vitrine_core::BusError> {
        let mut live = bus.subscribe(stream.as_str()).await?;
        let (frames, _) = broadcast::channel(member_queue.max(16));
        let stop = CancellationToken::new();
        let hub = Arc::new(Self {
            stream: stream.clone(),
            frames: frames.clone(),
            rules: Mutex::new(rules),
            _pump: stop.clone().drop_guard(),
        });
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            let mut last: Option<EventId> = None;
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => break,
                    event = live.recv() => event,
                };
                let batch = match event {
                    Ok(e) => vec![e],
                    Err(RecvError::Lagged(_)) => {
                        // The pump fell behind the bus: re-read what it missed from the log.
                        match last {
                            Some(after) => match bus.after(stream.as_str(), after, 1000).await {
                                Ok((events, _)) => events,
                                Err(e) => {
                                    tracing::warn!(error = %e, "room log unreadable");
                                    continue;
                                }
                            },
                            None => continue,
                        }
                    }
                    Err(RecvError::Closed) => break,
                };
                let Some(hub) = weak.upgrade() else { break };
                for event in batch {
                    if last.is_some_and(|l| event.id <= l) {
                        continue;
                    }
                    last = Some(event.id);
                    let frame = Frame::from_logged(&event);
                    if let Some((action, member)) = &frame.moderation {
                        hub.apply(*action, member.as_deref(), &event.payload);
                    }
                    // No local receiver is fine (everyone left a moment ago).
                    let _ = frames.send(Arc::new(frame));
                }
            }
        });
        Ok(hub)
    }

    fn apply(&self, action: ModerationAction, member: Option<&str>, payload: &str) {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        match (action, member) {
            (ModerationAction::Ban, Some(m)) => {
                rules.banned.insert(m.to_owned());
            }
            (ModerationAction::Unban, Some(m)) => {
                rules.banned.remove(m);
            }
            (ModerationAction::SlowMode, _) => {
                if let Ok(RoomEvent::Moderation {
                    seconds: Some(s), ..
                }) = serde_json::from_str::<RoomEvent>(payload)
                {
                    rules.slow_mode_seconds = s;
                }
            }
            _ => {}
        }
    }

    pub fn slow_mode_seconds(&self) -> u32 {
        self.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .slow_mode_seconds
    }

    pub fn is_banned(&self, member: &str) -> bool {
        self.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .banned
            .contains(member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitrine_core::MemoryBus;

    #[tokio::test]
    async fn frames_follow_the_log_and_rules_follow_moderation() {
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
        let stream = StreamId::generate();
        let hub = Hub::start(bus.clone(), stream.clone(), RoomRules::default(), 64)
            .await
            .unwrap();
        let mut rx = hub.frames.subscribe();
        let ban = serde_json::to_string(&RoomEvent::Moderation {
            action: ModerationAction::Ban,
            message_id: None,
            member_id: Some("by_x".into()),
            seconds: None,
        })
        .unwrap();
        bus.append(stream.as_str(), Some("seller"), r#"{"type":"order"}"#)
            .await
            .unwrap();
        bus.append(stream.as_str(), None, &ban).await.unwrap();
        let first = rx.recv().await.unwrap();
        assert!(first.visible_to(&["seller".into()]));
        assert!(!first.visible_to(&["buyer:by_x".into()]));
        assert!(
            first
                .text
                .as_str()
                .starts_with(r#"{"id":"1-0","type":"order""#)
        );
        let second = rx.recv().await.unwrap();
        assert_eq!(
            second.moderation,
            Some((ModerationAction::Ban, Some("by_x".into())))
        );
        assert!(hub.is_banned("by_x"));
    }
}
