//! One websocket member: the `hello` handshake, the welcome (history or what was missed, the
//! pin), then one loop that reads the client's frames, writes the room's frames and the
//! member's own replies, and closes with a code and reason when something is wrong.

use crate::hub::{Hub, admits, moderation_of};
use crate::limits::{SlowMode, TokenBucket};
use crate::metrics::CloseLabels;
use crate::protocol::{
    Author, ClientMessage, DecodeError, MAX_CHAT_CHARS, MAX_FRAME_BYTES, MAX_REQUEST_ID_CHARS,
    ModerationAction, PROTOCOL_VERSION, REACTIONS, Reply, Role, RoomEvent, You, close, decode,
    with_id,
};
use crate::{Chat, ChatError};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt};
use rand::RngCore;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{Semaphore, mpsc};
use vitrine_core::{BuyOutcome, BuyRequest, BuyerId, EventId, Identity, StreamRecord};

/// Replies waiting to be written to one member (purchase answers); senders wait when full.
const REPLY_QUEUE: usize = 64;
/// Log events read to build a welcome's history (chat lines are a part of them).
const HISTORY_SCAN: usize = 400;
/// Most missed events a resume replays.
const MAX_RESUME: usize = 1000;
const PING_EVERY: Duration = Duration::from_secs(30);
/// How long a closing connection waits for the client's close answer.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Most frames written before one flush.
const WRITE_BATCH: u64 = 64;

/// Why the server ends a connection.
struct Close {
    code: u16,
    reason: String,
}

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// A member once identified.
struct Member {
    you: You,
    buyer: Option<BuyerId>,
    /// Audience tags whose frames this member sees.
    tags: Vec<String>,
}

impl Member {
    fn author(&self) -> Author {
        Author {
            member_id: self.you.member_id.clone(),
            name: self.you.name.clone(),
            role: self.you.role,
        }
    }

    fn moderates(&self) -> bool {
        matches!(self.you.role, Role::Seller | Role::Moderator)
    }
}

type Sink = futures::stream::SplitSink<WebSocket, Message>;
type Source = futures::stream::SplitStream<WebSocket>;

async fn send_text(sink: &mut Sink, text: impl Into<Utf8Bytes>) -> Result<(), ()> {
    sink.send(Message::Text(text.into())).await.map_err(|_| ())
}

async fn send_close(chat: &Chat, sink: &mut Sink, close: Close) {
    chat.inner
        .metrics
        .closes
        .get_or_create(&CloseLabels { code: close.code })
        .inc();
    tracing::debug!(code = close.code, reason = %close.reason, "closing chat member");
    let frame = CloseFrame {
        code: close.code,
        reason: Utf8Bytes::from(close.reason),
    };
    // The peer may already be gone; a close is best effort.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        sink.send(Message::Close(Some(frame))),
    )
    .await;
}

/// Serves one connection to the end.
pub async fn serve(chat: Chat, stream: StreamRecord, socket: WebSocket) {
    let (mut sink, mut source) = socket.split();
    chat.inner.metrics.members.inc();
    let outcome = run(&chat, &stream, &mut sink, &mut source).await;
    chat.inner.metrics.members.dec();
    if let Err(close) = outcome {
        send_close(&chat, &mut sink, close).await;
        // The closing handshake: read (and drop) what the client still sends until its close
        // answer, so that closing the socket does not reset it with unread data (the client
        // would then see 1006 instead of our code and reason).
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(msg)) = source.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

async fn identify(
    chat: &Chat,
    stream: &StreamRecord,
    token: Option<String>,
) -> Result<Member, Close> {
    let unavailable = |e: String| {
        tracing::warn!(error = %e, "identity lookup failed");
        Close::new(1011, "service unavailable; retry")
    };
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        let mut id = [0u8; 8];
        rand::rng().fill_bytes(&mut id);
        return Ok(Member {
            you: You {
                member_id: format!("vw_{}", hex::encode(id)),
                name: "viewer".into(),
                role: Role::Viewer,
            },
            buyer: None,
            tags: vec![],
        });
    };
    if token.len() > 200 {
        return Err(Close::new(close::FORBIDDEN, "invalid token"));
    }
    match chat
        .inner
        .identities
        .identify(&token)
        .await
        .map_err(|e| unavailable(e.to_string()))?
    {
        Some(Identity::Seller { id, name }) if id == stream.seller_id => Ok(Member {
            you: You {
                member_id: id.to_string(),
                name,
                role: Role::Seller,
            },
            buyer: None,
            tags: vec!["seller".into()],
        }),
        Some(Identity::Seller { .. }) => Err(Close::new(
            close::FORBIDDEN,
            "a seller token only joins its own streams",
        )),
        Some(Identity::Buyer { id, display_name }) => {
            let moderator = chat
                .inner
                .moderation
                .is_moderator(&stream.id, id.as_str())
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            Ok(Member {
                you: You {
                    member_id: id.to_string(),
                    name: display_name,
                    role: if moderator {
                        Role::Moderator
                    } else {
                        Role::Buyer
                    },
                },
                tags: vec![format!("buyer:{id}")],
                buyer: Some(id),
            })
        }
        None => Err(Close::new(close::FORBIDDEN, "invalid token")),
    }
}

/// The welcome: history (or what was missed since `resume_from`), and the id of the last log
/// event it covers, so that live frames at or before it are skipped.
async fn welcome(
    chat: &Chat,
    hub: &Hub,
    member: &Member,
    resume_from: Option<&str>,
) -> Result<(String, Option<EventId>), ChatError> {
    let room = hub.stream.as_str();
    let bus = &chat.inner.bus;
    let resume = resume_from.and_then(|r| r.parse::<EventId>().ok());
    let (events, gap, resumed) = match resume {
        Some(after) => {
            let (events, missed) = bus.after(room, after, MAX_RESUME).await?;
            (events, missed, true)
        }
        None => (bus.recent(room, HISTORY_SCAN).await?, false, false),
    };
    let last_event_id = events.last().map(|e| e.id);
    let deleted: HashSet<String> = events
        .iter()
        .filter_map(|e| match moderation_of(&e.payload) {
            Some((ModerationAction::Delete, _, message)) => message,
            _ => None,
        })
        .collect();
    let visible = events.iter().filter(|e| {
        admits(e.audience.as_deref(), &member.tags)
            && (resumed || RoomEvent::in_history(&e.payload))
            && !deleted.contains(&e.id.to_string())
    });
    let mut history: Vec<Box<serde_json::value::RawValue>> = visible
        .filter_map(|e| serde_json::value::RawValue::from_string(with_id(e.id, &e.payload)).ok())
        .collect();
    if !resumed && history.len() > chat.inner.config.history {
        history.drain(..history.len() - chat.inner.config.history);
    }
    let pin = chat
        .inner
        .purchases
        .pinned(&hub.stream)
        .await
        .unwrap_or(None);
    let text = Reply::Welcome {
        protocol: PROTOCOL_VERSION,
        you: &member.you,
        history,
        gap,
        resumed,
        pin,
        slow_mode_seconds: hub.slow_mode_seconds(),
        last_event_id,
    }
    .to_text();
    Ok((text, last_event_id))
}

fn error_text(code: &str, message: &str, retry_after: Option<Duration>) -> String {
    Reply::Error {
        code,
        message,
        retry_after_ms: retry_after.map(|d| d.as_millis() as u64 + 1),
    }
    .to_text()
}

async fn run(
    chat: &Chat,
    stream: &StreamRecord,
    sink: &mut Sink,
    source: &mut Source,
) -> Result<(), Close> {
    let config = &chat.inner.config;
    // 1. hello
    let first = tokio::time::timeout(config.hello_timeout, source.next())
        .await
        .map_err(|_| Close::new(close::HELLO_REQUIRED, "send hello first"))?;
    let (token, resume_from, protocol) = match first {
        Some(Ok(Message::Text(text))) => match decode(&text) {
            Ok(ClientMessage::Hello {
                token,
                resume_from,
                protocol,
            }) => (token, resume_from, protocol),
            Err(DecodeError::TooBig) => {
                return Err(Close::new(close::TOO_BIG, "frame too big"));
            }
            _ => {
                return Err(Close::new(
                    close::HELLO_REQUIRED,
                    "the first message must be hello",
                ));
            }
        },
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
        Some(Ok(_)) => return Err(Close::new(close::HELLO_REQUIRED, "send hello first")),
    };
    if protocol.is_some_and(|p| p != PROTOCOL_VERSION) {
        return Err(Close::new(
            close::PROTOCOL_ERRORS,
            format!("unsupported protocol version; this server speaks {PROTOCOL_VERSION}"),
        ));
    }
    let member = identify(chat, stream, token).await?;
    let unavailable = |e: ChatError| {
        tracing::warn!(error = %e, "chat unavailable");
        Close::new(1011, "chat unavailable; retry")
    };
    if member.buyer.is_some()
        && chat
            .inner
            .moderation
            .is_banned(&stream.id, &member.you.member_id)
            .await
            .map_err(|e| unavailable(e.into()))?
    {
        return Err(Close::new(close::FORBIDDEN, "banned from this room"));
    }
    let hub = chat.hub(&stream.id).await.map_err(unavailable)?;
    // Subscribe before reading the log so that nothing falls between the two.
    let mut frames = hub.frames.subscribe();
    let (welcome_text, mut last_seen) = welcome(chat, &hub, &member, resume_from.as_deref())
        .await
        .map_err(unavailable)?;
    send_text(sink, welcome_text)
        .await
        .map_err(|_| Close::new(1006, ""))?;

    // 2. the loop
    let (reply_tx, mut replies) = mpsc::channel::<String>(REPLY_QUEUE);
    let pending_buys = Arc::new(Semaphore::new(config.max_pending_buys));
    let now = Instant::now();
    let mut chat_bucket = TokenBucket::new(config.chat_burst, config.chat_per_second, now);
    let mut frame_bucket = TokenBucket::new(config.frame_burst, config.frame_per_second, now);
    let mut slow = SlowMode::default();
    let mut strikes = 0u32;
    let mut protocol_errors = 0u32;
    let mut last_heard = Instant::now();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let shutdown = chat.inner.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                return Err(Close::new(close::GOING_AWAY, "server shutting down; reconnect with resume_from"));
            }
            incoming = source.next() => {
                let text = match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        protocol_errors += 1;
                        if protocol_errors >= config.max_protocol_errors {
                            return Err(Close::new(close::PROTOCOL_ERRORS, "too many protocol errors"));
                        }
                        send_text(sink, error_text("binary_unsupported", "send JSON text frames", None)).await.map_err(|_| Close::new(1006, ""))?;
                        continue;
                    }
                    Some(Ok(_)) => { last_heard = Instant::now(); continue; }
                };
                last_heard = Instant::now();
                if text.len() > MAX_FRAME_BYTES {
                    return Err(Close::new(close::TOO_BIG, format!("frames are limited to {MAX_FRAME_BYTES} bytes")));
                }
                if let Err(wait) = frame_bucket.take(last_heard) {
                    strikes += 1;
                    if strikes >= config.flood_strikes {
                        return Err(Close::new(close::FLOODING, "too many messages"));
                    }
                    send_text(sink, error_text("rate_limited", "slow down", Some(wait))).await.map_err(|_| Close::new(1006, ""))?;
                    continue;
                }
                strikes = strikes.saturating_sub(1);
                let message = match decode(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        protocol_errors += 1;
                        if protocol_errors >= config.max_protocol_errors {
                            return Err(Close::new(close::PROTOCOL_ERRORS, "too many protocol errors"));
                        }
                        send_text(sink, error_text(e.code(), &e.to_string(), None)).await.map_err(|_| Close::new(1006, ""))?;
                        continue;
                    }
                };
                let reply = handle(chat, &hub, &member, message, &mut chat_bucket, &mut slow, &reply_tx, &pending_buys).await?;
                if let Some(text) = reply {
                    send_text(sink, text).await.map_err(|_| Close::new(1006, ""))?;
                }
            }
            frame = frames.recv() => {
                // Writes every frame already queued for this member, then flushes once: one
                // system call for a burst instead of one per frame.
                let mut next = Some(frame);
                let mut fed = 0;
                while let Some(frame) = next.take() {
                    let frame = match frame {
                        Ok(f) => f,
                        Err(RecvError::Lagged(n)) => {
                            return Err(Close::new(close::TOO_SLOW, format!("fell {n} events behind; reconnect with resume_from")));
                        }
                        Err(RecvError::Closed) => return Err(Close::new(1011, "room closed")),
                    };
                    if last_seen.is_none_or(|l| frame.id > l) && frame.visible_to(&member.tags) {
                        last_seen = Some(frame.id);
                        if let Some((ModerationAction::Ban, Some(target))) = &frame.moderation
                            && *target == member.you.member_id
                        {
                            return Err(Close::new(close::FORBIDDEN, "banned from this room"));
                        }
                        sink.feed(Message::Text(frame.text.clone())).await.map_err(|_| Close::new(1006, ""))?;
                        fed += 1;
                    }
                    if fed < WRITE_BATCH {
                        next = match frames.try_recv() {
                            Ok(f) => Some(Ok(f)),
                            Err(TryRecvError::Empty) => None,
                            Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                            Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                        };
                    }
                }
                if fed > 0 {
                    sink.flush().await.map_err(|_| Close::new(1006, ""))?;
                    chat.inner.metrics.deliveries.inc_by(fed);
                }
            }
            Some(text) = replies.recv() => {
                send_text(sink, text).await.map_err(|_| Close::new(1006, ""))?;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > config.idle_timeout {
                    return Err(Close::new(close::GOING_AWAY, "idle"));
                }
                sink.send(Message::Ping(Default::default())).await.map_err(|_| Close::new(1006, ""))?;
            }
        }
    }
}

/// Handles one decoded message; returns a reply to write, or a reason to close.
#[allow(clippy::too_many_arguments)]
async fn handle(
    chat: &Chat,
    hub: &Hub,
    member: &Member,
    message: ClientMessage,
    chat_bucket: &mut TokenBucket,
    slow: &mut SlowMode,
    replies: &mpsc::Sender<String>,
    pending_buys: &Arc<Semaphore>,
) -> Result<Option<String>, Close> {
    let now = Instant::now();
    match message {
        ClientMessage::Hello { .. } => Ok(Some(error_text(
            "already_joined",
            "hello is sent once",
            None,
        ))),
        ClientMessage::Ping => Ok(Some(Reply::Pong.to_text())),
        ClientMessage::Chat { text } => {
            if member.you.role == Role::Viewer {
                return Ok(Some(error_text(
                    "login_required",
                    "join with a buyer token to chat",
                    None,
                )));
            }
            if hub.is_banned(&member.you.member_id) {
                return Err(Close::new(close::FORBIDDEN, "banned from this room"));
            }
            let text: String = text
                .trim()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            if text.is_empty() {
                return Ok(Some(error_text("invalid_message", "empty message", None)));
            }
            if text.chars().count() > MAX_CHAT_CHARS {
                return Ok(Some(error_text(
                    "too_long",
                    &format!("messages are limited to {MAX_CHAT_CHARS} characters"),
                    None,
                )));
            }
            if let Err(wait) = chat_bucket.take(now) {
                return Ok(Some(error_text("rate_limited", "slow down", Some(wait))));
            }
            let interval = Duration::from_secs(u64::from(hub.slow_mode_seconds()));
            if !member.moderates()
                && let Err(wait) = slow.admit(interval, now)
            {
                return Ok(Some(error_text("slow_mode", "slow mode is on", Some(wait))));
            }
            let event = RoomEvent::Chat {
                from: member.author(),
                text,
                ts: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
            };
            publish_or_error(chat, hub, None, &event).await
        }
        ClientMessage::React { emoji } => {
            if member.you.role == Role::Viewer {
                return Ok(Some(error_text(
                    "login_required",
                    "join with a buyer token to react",
                    None,
                )));
            }
            if !REACTIONS.contains(&emoji.as_str()) {
                return Ok(Some(error_text(
                    "invalid_message",
                    "unknown reaction",
                    None,
                )));
            }
            if let Err(wait) = chat_bucket.take(now) {
                return Ok(Some(error_text("rate_limited", "slow down", Some(wait))));
            }
            publish_or_error(chat, hub, None, &RoomEvent::Reaction { emoji }).await
        }
        ClientMessage::Buy {
            request_id,
            product_id,
            quantity,
            card_number,
            currency,
        } => {
            let Some(buyer) = member.buyer.clone() else {
                return Ok(Some(error_text(
                    "buyer_required",
                    "join with a buyer token to buy",
                    None,
                )));
            };
            if request_id.is_empty()
                || request_id.chars().count() > MAX_REQUEST_ID_CHARS
                || !request_id.bytes().all(|b| b.is_ascii_graphic())
            {
                return Ok(Some(error_text(
                    "invalid_message",
                    &format!(
                        "request_id must be 1 to {MAX_REQUEST_ID_CHARS} visible ASCII characters"
                    ),
                    None,
                )));
            }
            let Ok(permit) = Arc::clone(pending_buys).try_acquire_owned() else {
                return Ok(Some(error_text(
                    "too_many_pending",
                    "wait for your purchases to finish",
                    None,
                )));
            };
            chat.inner.metrics.purchases.inc();
            let request = BuyRequest {
                buyer,
                stream: hub.stream.clone(),
                product: product_id,
                quantity,
                request_id,
                card_number,
                currency,
            };
            let (purchases, replies) = (Arc::clone(&chat.inner.purchases), replies.clone());
            chat.inner.purchases_in_flight.spawn(async move {
                let request_id = request.request_id.clone();
                let outcome = purchases.buy(request).await;
                drop(permit);
                let text = match &outcome {
                    BuyOutcome::Confirmed(order) => Reply::OrderConfirmed {
                        request_id: &request_id,
                        order: order.clone(),
                    }
                    .to_text(),
                    BuyOutcome::Failed { reason, detail, .. } => Reply::OrderFailed {
                        request_id: &request_id,
                        reason: reason.as_str(),
                        detail,
                    }
                    .to_text(),
                };
                // The member may have left; the order stands either way.
                let _ = replies.send(text).await;
            });
            Ok(None)
        }
        ClientMessage::Moderate {
            action,
            message_id,
            member_id,
            seconds,
        } => {
            if !member.moderates() {
                return Ok(Some(error_text(
                    "forbidden",
                    "only the seller and moderators moderate",
                    None,
                )));
            }
            let moderation = &chat.inner.moderation;
            let failed = |e: crate::moderation::ModerationError| {
                tracing::warn!(error = %e, "moderation failed");
                error_text("unavailable", "try again", None)
            };
            match action {
                ModerationAction::Delete if message_id.is_none() => {
                    return Ok(Some(error_text(
                        "invalid_message",
                        "delete needs message_id",
                        None,
                    )));
                }
                ModerationAction::Ban | ModerationAction::Unban => {
                    let Some(target) = member_id.as_deref().filter(|t| t.len() <= 64) else {
                        return Ok(Some(error_text(
                            "invalid_message",
                            "ban needs member_id",
                            None,
                        )));
                    };
                    if target == member.you.member_id {
                        return Ok(Some(error_text(
                            "invalid_message",
                            "you cannot ban yourself",
                            None,
                        )));
                    }
                    let done = if action == ModerationAction::Ban {
                        moderation
                            .ban(&hub.stream, target, &member.you.member_id)
                            .await
                    } else {
                        moderation.unban(&hub.stream, target).await
                    };
                    if let Err(e) = done {
                        return Ok(Some(failed(e)));
                    }
                }
                ModerationAction::SlowMode => {
                    let s = seconds
                        .unwrap_or(0)
                        .min(crate::moderation::MAX_SLOW_MODE_SECONDS);
                    if let Err(e) = moderation.set_slow_mode(&hub.stream, s).await {
                        return Ok(Some(failed(e)));
                    }
                }
                ModerationAction::Delete => {}
            }
            let event = RoomEvent::Moderation {
                action,
                message_id,
                member_id,
                seconds: (action == ModerationAction::SlowMode).then(|| {
                    seconds
                        .unwrap_or(0)
                        .min(crate::moderation::MAX_SLOW_MODE_SECONDS)
                }),
            };
            publish_or_error(chat, hub, None, &event).await
        }
    }
}

async fn publish_or_error(
    chat: &Chat,
    hub: &Hub,
    audience: Option<&str>,
    event: &RoomEvent,
) -> Result<Option<String>, Close> {
    match chat.publish(&hub.stream, audience, event).await {
        Ok(()) => Ok(None),
        Err(e) => {
            tracing::warn!(error = %e, "chat publish failed");
            Ok(Some(error_text(
                "unavailable",
                "the message was not sent; retry",
                None,
            )))
        }
    }
}
