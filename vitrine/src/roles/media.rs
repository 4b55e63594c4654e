//! The `media` role: WHIP ingest, the SFU and WHEP, and their routes with the CORS every
//! media route and session resource carries. It is started with the node and closed on
//! shutdown (publishers first, then viewers); in a cluster a node without it still mounts the
//! routes, which send clients to a media node.

use crate::config::Config;
use crate::store::Store;
use axum::Router;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use vitrine_ingest::Ingest;
use vitrine_sfu::Sfu;
use vitrine_sfu::metrics::SfuMetrics;

/// The SFU and the publishers' ingest of this node.
pub struct Media {
    pub sfu: Arc<Sfu>,
    pub ingest: Arc<Ingest>,
}

/// Builds the SFU (streams looked up in `store`) and ingest; registers their metrics. Fails
/// when the shared ICE port is configured and cannot be bound (every session would fail).
pub fn build(config: &Config, store: &Store, registry: &mut Registry) -> anyhow::Result<Media> {
    let metrics = Arc::new(SfuMetrics::default());
    metrics.register(registry);
    let sfu = Sfu::new(Arc::new(store.clone()), config.ice.clone(), metrics);
    sfu.factory.check().map_err(|e| {
        anyhow::anyhow!(
            "the shared ICE port: {e} (choose another with --ice-udp-port; 0 takes any free one)"
        )
    })?;
    let ingest = Ingest::new(Arc::clone(&sfu));
    Ok(Media { sfu, ingest })
}

/// WHIP and WHEP routes, with their CORS.
pub fn routes(sfu: &Arc<Sfu>, ingest: &Arc<Ingest>) -> Router {
    vitrine_ingest::whip::routes(Arc::clone(ingest))
        .merge(vitrine_sfu::whep::routes(Arc::clone(sfu)))
        .layer(axum::middleware::from_fn(media_cors))
}

/// CORS for the media endpoints and session resources, so that a page on another origin (a
/// seller's own site embedding the player) can publish, play, trickle, restart ICE with
/// `If-Match` and end a session, and read `Location`, `ETag`, the ICE servers' `Link`s and a
/// 429's or 503's `Retry-After` (none is CORS-safelisted). Any origin: the endpoints take no
/// cookies, only a bearer stream key.
///
/// Written out rather than tower-http's `CorsLayer`, which answers every `OPTIONS` as a
/// preflight: RFC 9725 clients send a plain `OPTIONS` (no `Access-Control-Request-Method`) for
/// the ICE servers, and it must reach the endpoint.
async fn media_cors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let cross_origin = request.headers().contains_key(header::ORIGIN);
    if request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return (
            StatusCode::NO_CONTENT,
            [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                (
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    "POST, PATCH, DELETE, OPTIONS",
                ),
                (
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "authorization, content-type, if-match, vitrine-capture-size",
                ),
                (header::ACCESS_CONTROL_MAX_AGE, "600"),
            ],
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    if cross_origin {
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("location, etag, link, retry-after, accept-post"),
        );
    }
    response
}
