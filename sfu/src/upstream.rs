//! Where a stream's media comes from when this node does not hold its publisher. A single node
//! has no upstream; in a cluster, the cluster crate implements [`Upstream`]: it records which
//! node holds each publisher and relays a stream from that node to this one when a viewer asks
//! for it here.
//!
//! **Contract:** the SFU calls these hooks off the packet path (on publish, on unpublish, on a
//! WHEP offer); an implementation must never block forwarding, and a failure here never fails a
//! viewer: the viewer joins the local router and gets media once it arrives.

use crate::router::Router;
use std::sync::Arc;
use std::time::Duration;
use vitrine_core::StreamId;

/// The media of streams published on other nodes.
#[async_trait::async_trait]
pub trait Upstream: Send + Sync + 'static {
    /// A viewer asks for `stream` here: make its media reach `router` if the publisher is on
    /// another node (a relay), returning once the relay is up or it is clear there is none.
    async fn serve(&self, stream: &StreamId, router: &Arc<Router>);

    /// This node now holds the stream's publisher (it becomes the stream's origin).
    async fn publishing(&self, stream: &StreamId);

    /// The publisher this node held stopped without being replaced here.
    async fn stopped(&self, stream: &StreamId);

    /// Where a new publisher of `stream` should go instead of this node (the URL of another
    /// node's WHIP endpoint for it), or `None` to publish here.
    async fn place_publisher(&self, stream: &StreamId) -> Option<String>;

    /// Where a new viewer of `stream` should go instead of this node (it is draining), or
    /// `None` to watch here.
    async fn place_viewer(&self, stream: &StreamId) -> Option<String>;

    /// Whether `bearer`, presented on a WHEP offer for `stream`, is another node's relay
    /// credential (a relay is a node, not an anonymous viewer: no per-address limit applies).
    fn is_relay(&self, stream: &StreamId, bearer: &str) -> bool;

    /// Whether `token` (the `placement` query parameter of a WHIP offer for `stream`) was
    /// issued by a node of the cluster that sent this publisher here: clients drop the stream
    /// key on a redirect to another origin, so the redirect's URL carries this instead.
    fn is_placed(&self, stream: &StreamId, token: &str) -> bool;
}

/// How long a viewer's offer waits for a relay's first codecs before it is answered, so that
/// the viewer's leg is negotiated with the codec the origin sends.
pub const RELAY_SOURCE_WAIT: Duration = Duration::from_secs(3);

/// `307 Temporary Redirect` to `location` (RFC 9725 §4.5: the client repeats its request
/// there), with the problem JSON body every refusal carries.
pub fn redirect(location: &str) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    let mut response = vitrine_core::Problem::new(
        StatusCode::TEMPORARY_REDIRECT,
        "another-node",
        "Another node serves this request",
    )
    .with_detail("repeat the request at the Location")
    .into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}
