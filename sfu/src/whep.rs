//! WHEP endpoint (`/whep/{stream}`): viewers post an offer and get a subscriber leg. Streams are
//! public to watch, so no key is needed; the stream must exist.

use crate::Sfu;
use crate::signaling::{self, SDP, SignalingError};
use crate::subscriber::subscribe;
use axum::Router as HttpRouter;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{patch, post};
use std::sync::Arc;
use vitrine_core::{SessionId, StreamId};

/// Routes of the WHEP endpoint.
pub fn routes(sfu: Arc<Sfu>) -> HttpRouter {
    HttpRouter::new()
        .route(
            "/whep/{stream}",
            post(offer).options(|| async { signaling::options() }),
        )
        .route("/whep/{stream}/{session}", patch(trickle).delete(end))
        .with_state(sfu)
}

fn ids(
    stream: &str,
    session: Option<&str>,
) -> Result<(StreamId, Option<SessionId>), SignalingError> {
    let stream = StreamId::parse(stream).map_err(|_| SignalingError::UnknownStream)?;
    let session = session
        .map(SessionId::parse)
        .transpose()
        .map_err(|_| SignalingError::UnknownSession)?;
    Ok((stream, session))
}

#[tracing::instrument(skip(sfu, headers, body))]
async fn offer(
    State(sfu): State<Arc<Sfu>>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SignalingError> {
    let (stream, _) = ids(&stream, None)?;
    sfu.directory
        .find(&stream)
        .await
        .map_err(|_| SignalingError::Directory)?
        .ok_or(SignalingError::UnknownStream)?;
    signaling::require_content_type(&headers, SDP)?;
    let offer = signaling::offer_text(&body)?;
    let (session, answer) = subscribe(&sfu, stream.clone(), offer).await?;
    Ok(signaling::created(
        format!("/whep/{stream}/{session}"),
        answer,
    ))
}

async fn trickle(
    State(sfu): State<Arc<Sfu>>,
    Path((stream, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SignalingError> {
    let (stream, session) = ids(&stream, Some(&session))?;
    let session = session.expect("parsed above");
    signaling::patch(&sfu.whep_sessions, &stream, &session, &headers, &body).await
}

async fn end(
    State(sfu): State<Arc<Sfu>>,
    Path((stream, session)): Path<(String, String)>,
) -> Result<Response, SignalingError> {
    let (stream, session) = ids(&stream, Some(&session))?;
    let session = session.expect("parsed above");
    signaling::delete(&sfu.whep_sessions, &stream, &session).await
}
