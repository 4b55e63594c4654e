//! WHIP endpoint (`/whip/{stream}`): `POST` an offer with `Authorization: Bearer <stream key>`,
//! then `PATCH` trickle candidates or an ICE restart to and `DELETE` the returned `Location`.
//! `OPTIONS` with the stream key hands out the ICE servers before the offer.

use crate::Ingest;
use crate::publisher::publish;
use axum::Router as HttpRouter;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{patch, post};
use std::sync::Arc;
use vitrine_core::{Secret, StreamId};
use vitrine_sfu::signaling::{self, SDP, SignalingError};

/// Routes of the WHIP endpoint.
pub fn routes(ingest: Arc<Ingest>) -> HttpRouter {
    HttpRouter::new()
        .route("/whip/{stream}", post(offer).options(discover))
        .route("/whip/{stream}/{session}", patch(trickle).delete(end))
        .with_state(ingest)
}

/// The stream named by the path, once the request's bearer stream key is checked against it.
async fn authorized(
    ingest: &Ingest,
    stream: &str,
    headers: &HeaderMap,
) -> Result<StreamId, SignalingError> {
    let stream = signaling::stream_id(stream)?;
    let record = ingest
        .sfu
        .directory
        .find(&stream)
        .await
        .map_err(|_| SignalingError::Directory)?
        .ok_or(SignalingError::UnknownStream)?;
    let key = signaling::bearer(headers).ok_or(SignalingError::Unauthorized)?;
    if !record.stream_key_hash.matches(&Secret::from_presented(key)) {
        return Err(SignalingError::Unauthorized);
    }
    Ok(stream)
}

/// A cluster node's placement token in the query (`?placement=...`), if this node was chosen
/// for the stream by a redirect (see `vitrine_sfu::upstream::Upstream::is_placed`).
fn placed(ingest: &Ingest, stream: &str, query: Option<&str>) -> Option<StreamId> {
    let cluster = ingest.sfu.upstream()?;
    let token = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("placement="))?;
    let stream = signaling::stream_id(stream).ok()?;
    cluster.is_placed(&stream, token).then_some(stream)
}

#[tracing::instrument(skip(ingest, headers, query, body))]
async fn offer(
    State(ingest): State<Arc<Ingest>>,
    Path(stream): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SignalingError> {
    let placement = placed(&ingest, &stream, query.as_deref());
    let is_placed = placement.is_some();
    let stream = match placement {
        Some(stream) => stream,
        None => authorized(&ingest, &stream, &headers).await?,
    };
    signaling::require_content_type(&headers, SDP)?;
    let capture = signaling::capture_size(&headers)?;
    let offer = signaling::offer_text(&body)?;
    // In a cluster, the least-loaded serving node takes new publishers (this one when tied);
    // a publisher another node sent here stays.
    if !is_placed
        && let Some(cluster) = ingest.sfu.upstream()
        && let Some(elsewhere) = cluster.place_publisher(&stream).await
    {
        return Ok(vitrine_sfu::upstream::redirect(&elsewhere));
    }
    let (session, answer) = publish(&ingest, stream.clone(), offer, capture).await?;
    Ok(signaling::created(
        &ingest.sessions,
        &ingest.sfu.factory.ice().ice_servers,
        &stream,
        &session,
        format!("/whip/{stream}/{session}"),
        answer,
    )
    .await)
}

/// `OPTIONS` on a stream's endpoint: what it accepts to anyone, and the ICE servers (with TURN
/// credentials) only to the holder of the stream key.
async fn discover(
    State(ingest): State<Arc<Ingest>>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Response {
    let allowed = authorized(&ingest, &stream, &headers).await.is_ok();
    signaling::options(allowed.then_some(&ingest.sfu.factory.ice().ice_servers))
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
