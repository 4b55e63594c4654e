//! The member's socket at its lowest level: every write bounded by the write timeout, read
//! errors turned into the close they deserve, and the close frame itself. It knows nothing of
//! the room or the protocol's messages.

use crate::Chat;
use crate::metrics::CloseLabels;
use crate::protocol::{MAX_FRAME_BYTES, close};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::SinkExt;
use std::time::Duration;

/// How long a closing connection waits for the client's close answer.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Why the server ends a connection: a close code (see [`close`]) and reason to send, or
/// [`Close::gone`] when the connection already broke and there is nobody to tell.
pub(super) struct Close {
    pub(super) code: u16,
    pub(super) reason: String,
}

/// The code of [`Close::gone`]: never sent.
pub(super) const GONE: u16 = 0;

impl Close {
    pub(super) fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    pub(super) fn gone() -> Self {
        Self::new(GONE, "")
    }

    pub(super) fn unavailable() -> Self {
        Self::new(close::UNAVAILABLE, "chat unavailable; retry")
    }
}

/// Why reading a frame failed: a frame over the transport's size limit gets 1009 and a reason
/// (the websocket layer refuses it before reading it, so it never reaches the frame check);
/// a frame the websocket protocol forbids gets 4400; a broken connection, nothing.
pub(super) fn read_failed(error: &axum::Error) -> Close {
    use std::error::Error as _;
    match error
        .source()
        .and_then(|e| e.downcast_ref::<tungstenite::Error>())
    {
        Some(tungstenite::Error::Capacity(_)) => Close::new(
            close::TOO_BIG,
            format!("frames are limited to {MAX_FRAME_BYTES} bytes"),
        ),
        Some(tungstenite::Error::Protocol(_) | tungstenite::Error::Utf8(_)) => {
            Close::new(close::PROTOCOL_ERRORS, "invalid websocket frame")
        }
        _ => Close::gone(),
    }
}

pub(super) type Sink = futures::stream::SplitSink<WebSocket, Message>;
pub(super) type Source = futures::stream::SplitStream<WebSocket>;

/// Bounds one write to the member by the write timeout: a client that stops reading fills its
/// socket's buffers, and without a bound the write would wait (holding the buffered frames and
/// the member's task) until it read again, if ever.
pub(super) async fn bounded(
    limit: Duration,
    write: impl Future<Output = Result<(), axum::Error>>,
) -> Result<(), Close> {
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Close::gone()),
        Err(_) => Err(Close::new(
            close::WRITE_TIMEOUT,
            format!(
                "stopped reading for {} s; reconnect with resume_from",
                limit.as_secs_f32()
            ),
        )),
    }
}

pub(super) async fn send_text(
    chat: &Chat,
    sink: &mut Sink,
    text: impl Into<Utf8Bytes>,
) -> Result<(), Close> {
    let limit = chat.inner.config.write_timeout;
    bounded(limit, sink.send(Message::Text(text.into()))).await
}

/// Sends the close frame; false when the connection is gone (nothing to wait for).
pub(super) async fn send_close(chat: &Chat, sink: &mut Sink, close: Close) -> bool {
    if close.code == GONE {
        return false;
    }
    // A client that stopped reading will not answer.
    let answered = close.code != close::WRITE_TIMEOUT;
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
    // The peer may already be gone, or not reading; a close is best effort.
    let sent = tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Close(Some(frame)))).await;
    answered && matches!(sent, Ok(Ok(())))
}
