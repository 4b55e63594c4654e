//! The chat route: `GET /ws/streams/{stream}/chat` upgrades to a websocket member of the
//! stream's room. An unknown stream is refused before the upgrade with a 404 problem.

use crate::Chat;
use crate::member;
use crate::protocol::MAX_FRAME_BYTES;
use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use vitrine_core::{Problem, StreamId};

/// Frames above our own limit are read (so that the close says why) up to this size; beyond
/// it the websocket layer drops the connection.
const TRANSPORT_LIMIT: usize = 64 * MAX_FRAME_BYTES;
const READ_BUFFER: usize = 4 * 1024;
const WRITE_BUFFER: usize = 32 * 1024;
/// A member whose socket stops taking bytes is disconnected long before this (its queue
/// overflows first); the cap only bounds the worst case.
const MAX_WRITE_BUFFER: usize = 1024 * 1024;

pub fn routes(chat: Chat) -> Router {
    Router::new()
        .route("/ws/streams/{stream}/chat", get(join))
        .with_state(chat)
}

async fn join(
    State(chat): State<Chat>,
    Path(stream): Path<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(id) = StreamId::parse(&stream) else {
        return Problem::not_found("no such stream").into_response();
    };
    let record = match chat.inner.streams.find(&id).await {
        Ok(Some(record)) => record,
        Ok(None) => return Problem::not_found("no such stream").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "stream lookup failed");
            return Problem::internal().into_response();
        }
    };
    let Ok(upgrade) = upgrade else {
        return Problem::bad_request(
            "websocket-required",
            "this is a websocket endpoint: send a websocket upgrade request",
        )
        .into_response();
    };
    upgrade
        .max_message_size(TRANSPORT_LIMIT)
        .max_frame_size(TRANSPORT_LIMIT)
        // The transport's defaults (128 KiB each way) cost 256 KiB per member; members send
        // little, and the write side is flushed per burst, so small buffers do the same work.
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| member::serve(chat, record, socket))
}
