//! WHEP endpoint (`/whep/{stream}`): viewers post an offer and get a subscriber leg. Streams are
//! public to watch, so no key is needed; the stream must exist, and the viewer must be admitted
//! (see [`crate::admission`]): anonymous offers never take what a publisher needs.

use crate::Sfu;
use crate::admission::Slot;
use crate::candidates::CandidatePolicy;
use crate::signaling::{self, SDP, SignalingError};
use crate::subscriber::subscribe;
use crate::upstream::redirect;
use axum::Router as HttpRouter;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{patch, post};
use std::sync::Arc;
use vitrine_core::{ClientIp, StreamId};

/// Routes of the WHEP endpoint.
pub fn routes(sfu: Arc<Sfu>) -> HttpRouter {
    HttpRouter::new()
        .route("/whep/{stream}", post(offer).options(discover))
        .route("/whep/{stream}/{session}", patch(trickle).delete(end))
        .with_state(sfu)
}

#[tracing::instrument(skip(sfu, headers, body))]
async fn offer(
    State(sfu): State<Arc<Sfu>>,
    Path(stream): Path<String>,
    // The client's address (behind a trusted proxy, the one it forwarded), which the
    // per-address limits key on.
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SignalingError> {
    let stream = known_stream(&sfu, &stream).await?;
    signaling::require_content_type(&headers, SDP)?;
    let offer = signaling::offer_text(&body)?;
    let relay = match (sfu.upstream(), signaling::bearer(&headers)) {
        (Some(cluster), Some(bearer)) => cluster.is_relay(&stream, bearer),
        _ => false,
    };
    if !relay
        && let Some(cluster) = sfu.upstream()
        && let Some(elsewhere) = cluster.place_viewer(&stream).await
    {
        return Ok(redirect(&elsewhere));
    }
    let slot = if relay {
        Slot::relay(sfu.routers.metrics().relay_legs.clone())
    } else {
        sfu.admissions
            .admit(client, &stream)
            .inspect_err(|refusal| {
                sfu.routers.metrics().whep_refusals.inc();
                // Debug, not info: a flood must not flood the log too (the metric counts them).
                tracing::debug!(%client, %stream, %refusal, "viewer turned away");
            })?
    };
    let router = sfu.routers.get_or_create(&stream);
    // A relay asks the origin, which never relays it further; a viewer's node may have to.
    if let (false, Some(cluster)) = (relay, sfu.upstream()) {
        cluster.serve(&stream, &router).await;
    }
    // A publisher that has just attached has not sent its first packets: its codecs are not
    // known yet, and the leg must be negotiated with its video codec.
    router
        .video_known(crate::upstream::RELAY_SOURCE_WAIT, true)
        .await;
    // Nodes reach each other over the operator's internal network: a relay's candidates are
    // private addresses even where viewers' are filtered.
    let policy = if relay {
        CandidatePolicy::new(false)
    } else {
        sfu.factory.candidates()
    };
    let (session, answer) = subscribe(&sfu, stream.clone(), offer, slot, policy).await?;
    let mut created = signaling::created(
        &sfu.whep_sessions,
        &sfu.factory.ice().ice_servers,
        &stream,
        &session,
        format!("/whep/{stream}/{session}"),
        answer,
    )
    .await;
    // A relay carries the size the publisher said it captures, as the publisher's WHIP offer
    // did: the HLS ladder on the relay's node is planned from it.
    let capture = router.source().borrow().capture;
    if let (true, Some((width, height))) = (relay, capture)
        && let Ok(v) = axum::http::HeaderValue::from_str(&format!("{width}x{height}"))
    {
        created.headers_mut().insert(signaling::CAPTURE_SIZE, v);
    }
    Ok(created)
}

/// The stream named in a WHEP path, when it exists.
async fn known_stream(sfu: &Sfu, raw: &str) -> Result<StreamId, SignalingError> {
    let stream = signaling::stream_id(raw)?;
    sfu.directory
        .find(&stream)
        .await
        .map_err(|_| SignalingError::Directory)?
        .ok_or(SignalingError::UnknownStream)?;
    Ok(stream)
}

/// `OPTIONS` on a stream's endpoint: the ICE servers (TURN credentials included) to anyone,
/// as streams are public to watch; the credentials expire.
async fn discover(
    State(sfu): State<Arc<Sfu>>,
    Path(stream): Path<String>,
) -> Result<Response, SignalingError> {
    known_stream(&sfu, &stream).await?;
    Ok(signaling::options(Some(&sfu.factory.ice().ice_servers)))
}

async fn trickle(
    State(sfu): State<Arc<Sfu>>,
    Path((stream, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SignalingError> {
    let (stream, session) = (
        signaling::stream_id(&stream)?,
        signaling::session_id(&session)?,
    );
    signaling::patch(
        &sfu.whep_sessions,
        sfu.factory.candidates(),
        &stream,
        &session,
        &headers,
        &body,
    )
    .await
}

async fn end(
    State(sfu): State<Arc<Sfu>>,
    Path((stream, session)): Path<(String, String)>,
) -> Result<Response, SignalingError> {
    let (stream, session) = (
        signaling::stream_id(&stream)?,
        signaling::session_id(&session)?,
    );
    signaling::delete(&sfu.whep_sessions, &stream, &session).await
}
