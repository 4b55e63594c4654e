//! WHIP endpoint (`/whip/{stream}`): `POST` an offer with `Authorization: Bearer <stream key>`,
//! then `PATCH` trickle candidates to and `DELETE` the returned `Location`.

use crate::Ingest;
use crate::publisher::publish;
use axum::Router as HttpRouter;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{patch, post};
use std::sync::Arc;
use vitrine_core::Secret;
use vitrine_sfu::signaling::{self, SDP, SignalingError};

/// Routes of the WHIP endpoint.
pub fn routes(ingest: Arc<Ingest>) -> HttpRouter {
    HttpRouter::new()
        .route(
            "/whip/{stream}",
            post(offer).options(|| async { signaling::options() }),
        )
        .route("/whip/{stream}/{session}", patch(trickle).delete(end))
        .with_state(ingest)
}

#[tracing::instrument(skip(ingest, headers, body))]
async fn offer(
    State(ingest): State<Arc<Ingest>>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SignalingError> {
    let stream = signaling::stream_id(&stream)?;
    let record = ingest
        .sfu
        .directory
        .find(&stream)
        .await
        .map_err(|_| SignalingError::Directory)?
        .ok_or(SignalingError::UnknownStream)?;
    let key = signaling::bearer(&headers).ok_or(SignalingError::Unauthorized)?;
    if !record.stream_key_hash.matches(&Secret::from_presented(key)) {
        return Err(SignalingError::Unauthorized);
    }
    signaling::require_content_type(&headers, SDP)?;
    let offer = signaling::offer_text(&body)?;
    let (session, answer) = publish(&ingest, stream.clone(), offer).await?;
    Ok(signaling::created(
        format!("/whip/{stream}/{session}"),
        answer,
    ))
}

async fn trickle(
    State(ingest): State<Arc<Ingest>>,
    Path((stream, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SignalingError> {
    let (stream, session) = (
        signaling::stream_id(&stream)?,
        signaling::session_id(&session)?,
    );
    signaling::patch(
        &ingest.sessions,
        ingest.sfu.factory.candidates(),
        &stream,
        &session,
        &headers,
        &body,
    )
    .await
}

async fn end(
    State(ingest): State<Arc<Ingest>>,
    Path((stream, session)): Path<(String, String)>,
) -> Result<Response, SignalingError> {
    let (stream, session) = (
        signaling::stream_id(&stream)?,
        signaling::session_id(&session)?,
    );
    signaling::delete(&ingest.sessions, &stream, &session).await
}
