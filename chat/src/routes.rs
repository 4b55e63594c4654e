//! The chat route: `GET /ws/streams/{stream}/chat` upgrades to a websocket member of the
//! stream's room. An unknown stream is refused before the upgrade with a 404 problem; a client
//! address or a room at its connection cap with a 429 or 503 problem and `Retry-After` (before
//! the upgrade, so that a refused connection costs no task and no buffers).

use crate::Chat;
use crate::admission::{RETRY_AFTER, Refusal};
use crate::member;
use crate::protocol::MAX_FRAME_BYTES;
use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use vitrine_core::{ClientIp, Problem, StreamId};

/// Frames above our own limit are read up to this size, then refused by the member's frame
/// check; beyond it the websocket layer refuses them unread. Either way the close is 1009
/// with a reason.
const TRANSPORT_LIMIT: usize = 64 * MAX_FRAME_BYTES;
const READ_BUFFER: usize = 4 * 1024;
const WRITE_BUFFER: usize = 32 * 1024;
/// A member whose socket stops taking bytes is disconnected long before this (a write waits
/// at most the write timeout); the cap only bounds the worst case.
const MAX_WRITE_BUFFER: usize = 1024 * 1024;

pub fn routes(chat: Chat) -> Router {
    Router::new()
        .route("/ws/streams/{stream}/chat", get(join))
        .with_state(chat)
}

/// The refusal of a connection over a cap, as a problem with `Retry-After`.
fn refused(refusal: Refusal) -> Response {
    let problem = match refusal {
        Refusal::TooManyFromAddress => Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-connections",
            "too many requests",
        ),
        Refusal::RoomFull => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "room-full",
            "service unavailable",
        ),
    };
    let mut response = problem.with_detail(refusal.to_string()).into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(RETRY_AFTER.as_secs()),
    );
    response
}

async fn join(
    State(chat): State<Chat>,
    Path(stream): Path<String>,
    // The client's address as the server resolved it (behind a trusted proxy, the one it
    // forwarded); the per-address cap counts by it.
    ClientIp(client): ClientIp,
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
    let seat = match chat.inner.admission.admit(client, &record.id) {
        Ok(seat) => seat,
        Err(refusal) => {
            chat.inner.metrics.refusals.inc();
            // Debug, not info: a flood must not flood the log too (the metric counts them).
            tracing::debug!(%client, stream = %record.id, %refusal, "chat connection refused");
            return refused(refusal);
        }
    };
    upgrade
        .max_message_size(TRANSPORT_LIMIT)
        .max_frame_size(TRANSPORT_LIMIT)
        // The transport's defaults (128 KiB each way) cost 256 KiB per member; members send
        // little, and the write side is flushed per burst, so small buffers do the same work.
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        // The seat is given back when the connection ends, or when the upgrade fails.
        .on_upgrade(move |socket| member::serve(chat, record, socket, seat))
}
