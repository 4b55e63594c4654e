//! One websocket member: the `hello` handshake, the welcome (history or what was missed, the
//! pin), then one loop that reads the client's frames, writes the room's frames and the
//! member's own replies, and closes with a code and reason when something is wrong.

mod bid;
mod join;
mod wire;

use crate::admission::Seat;
use crate::hub::Hub;
use crate::limits::{SlowMode, TokenBucket};
use crate::moderate::{Actor, Request};
use crate::protocol::{
    ClientMessage, DecodeError, MAX_CHAT_CHARS, MAX_FRAME_BYTES, MAX_REQUEST_ID_CHARS,
    PROTOCOL_VERSION, REACTIONS, Reply, Role, RoomEvent, close, decode,
};
use crate::{Chat, ChatError};
use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use join::{Member, identify, welcome};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{Semaphore, mpsc};
use vitrine_core::{BuyOutcome, BuyRequest, ClientIp, StreamRecord};
use wire::{CLOSE_GRACE, Close, Sink, Source, bounded, read_failed, send_close, send_text};

/// Replies waiting to be written to one member (purchase answers); senders wait when full.
const REPLY_QUEUE: usize = 64;
const PING_EVERY: Duration = Duration::from_secs(30);
/// Most frames written before one flush.
const WRITE_BATCH: u64 = 64;

/// Serves one connection to the end; `_seat` is its place under the connection caps, given
/// back when it ends.
pub async fn serve(chat: Chat, stream: StreamRecord, socket: WebSocket, seat: Seat) {
    let (mut sink, mut source) = socket.split();
    chat.inner.metrics.members.inc();
    let outcome = run(&chat, &stream, seat.client(), &mut sink, &mut source).await;
    chat.inner.metrics.members.dec();
    if let Err(close) = outcome
        && send_close(&chat, &mut sink, close).await
    {
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

/// A client request id: 1 to [`MAX_REQUEST_ID_CHARS`] visible ASCII characters.
fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= MAX_REQUEST_ID_CHARS
        && id.bytes().all(|b| b.is_ascii_graphic())
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
    client: ClientIp,
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
                return Err(Close::new(
                    close::TOO_BIG,
                    format!("frames are limited to {MAX_FRAME_BYTES} bytes"),
                ));
            }
            _ => {
                return Err(Close::new(
                    close::HELLO_REQUIRED,
                    "the first message must be hello",
                ));
            }
        },
        Some(Ok(Message::Close(_))) | None => return Ok(()),
        Some(Err(e)) => return Err(read_failed(&e)),
        Some(Ok(_)) => return Err(Close::new(close::HELLO_REQUIRED, "send hello first")),
    };
    if protocol.is_some_and(|p| p != PROTOCOL_VERSION) {
        return Err(Close::new(
            close::PROTOCOL_ERRORS,
            format!("unsupported protocol version; this server speaks {PROTOCOL_VERSION}"),
        ));
    }
    let mut member = identify(chat, stream, token, client).await?;
    member.client = Some(client);
    let unavailable = |e: ChatError| {
        tracing::warn!(error = %e, "chat unavailable");
        Close::unavailable()
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
    send_text(chat, sink, welcome_text).await?;

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
                return Err(Close::new(close::SHUTTING_DOWN, "server shutting down; reconnect with resume_from"));
            }
            incoming = source.next() => {
                let text = match incoming {
                    None | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Err(e)) => return Err(read_failed(&e)),
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        protocol_errors += 1;
                        if protocol_errors >= config.max_protocol_errors {
                            return Err(Close::new(close::PROTOCOL_ERRORS, "too many protocol errors"));
                        }
                        send_text(chat, sink, error_text("binary_unsupported", "send JSON text frames", None)).await?;
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
                    send_text(chat, sink, error_text("rate_limited", "slow down", Some(wait))).await?;
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
                        send_text(chat, sink, error_text(e.code(), &e.to_string(), None)).await?;
                        continue;
                    }
                };
                let reply = handle(chat, &hub, &member, message, &mut chat_bucket, &mut slow, &reply_tx, &pending_buys).await?;
                if let Some(text) = reply {
                    send_text(chat, sink, text).await?;
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
                        Err(RecvError::Closed) => return Err(Close::unavailable()),
                    };
                    if last_seen.is_none_or(|l| frame.id > l) && frame.visible_to(&member.tags) {
                        last_seen = Some(frame.id);
                        if let Some((action, Some(target))) = &frame.moderation
                            && *target == member.you.member_id
                        {
                            member.acted_on(*action)?;
                        }
                        bounded(config.write_timeout, sink.feed(Message::Text(frame.text.clone()))).await?;
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
                    bounded(config.write_timeout, sink.flush()).await?;
                    chat.inner.metrics.deliveries.inc_by(fed);
                }
            }
            Some(text) = replies.recv() => {
                send_text(chat, sink, text).await?;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > config.idle_timeout {
                    return Err(Close::new(close::IDLE, "idle: nothing received, not even a pong"));
                }
                bounded(config.write_timeout, sink.send(Message::Ping(Default::default()))).await?;
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
            if !valid_request_id(&request_id) {
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
                card_number: card_number.0,
                currency,
                client: member.client,
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
        ClientMessage::Bid {
            request_id,
            auction_id,
            amount,
        } => {
            let frame = bid::BidFrame {
                request_id,
                auction_id,
                amount,
            };
            Ok(bid::bid(chat, hub, member, frame, replies, pending_buys))
        }
        ClientMessage::Moderate {
            action,
            message_id,
            member_id,
            seconds,
        } => {
            let actor = Actor {
                id: &member.you.member_id,
                role: member.you.role,
            };
            let request = Request {
                action,
                message_id,
                member_id,
                seconds,
            };
            match chat
                .moderate(&hub.stream, &member.seller, actor, request)
                .await
            {
                Ok(()) => Ok(None),
                Err(e) => {
                    if e.code() == "unavailable" {
                        tracing::warn!(error = %e, "moderation failed");
                    }
                    Ok(Some(error_text(e.code(), &e.to_string(), None)))
                }
            }
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
