//! Which node produces a stream's HLS when several share its storage, and the right to write
//! its recording. In a cluster one node produces each live stream (the holder of the stream's
//! `hls` work lease in the cluster's directory); every other node answers `/hls/...` for it,
//! media objects from the shared store and playlists (and parts not stored yet) by asking the
//! producer. Only the holder of the lease writes the recording's manifest, so a node that
//! reads an unfinished recording it did not write cannot end it under a live stream.
//!
//! **Must never:** write a recording's manifest without holding the stream's lease; forward a
//! request that was itself forwarded.

use async_trait::async_trait;
use axum::response::Response;
use vitrine_core::StreamId;

/// Set on a request one node forwards to a stream's producer: the producer answers it itself.
pub const FORWARDED: &str = "vitrine-hls-forwarded";

/// Who produces a stream's HLS now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Producer {
    /// This node, or nobody: answer from here (memory, else storage).
    Here,
    /// Another node, reachable at this base URL.
    Node(String),
}

/// The cluster's side of HLS; [`Alone`] on a node of its own.
#[async_trait]
pub trait Origins: Send + Sync + 'static {
    /// Which node produces `stream`'s HLS now (an implementation may cache the answer for
    /// about a heartbeat).
    async fn producer(&self, stream: &StreamId) -> Producer;
    /// Whether `stream` is published on some node now (another node may be taking over its
    /// production).
    async fn live(&self, stream: &StreamId) -> bool;
    /// Takes, or keeps, this node's right to write `stream`'s recording; `false` when another
    /// node holds it or the directory cannot tell.
    async fn hold(&self, stream: &StreamId) -> bool;
    /// Gives that right up (after a recording was finalised).
    async fn release(&self, stream: &StreamId);
    /// `GET {node}{path_and_query}` on behalf of a player, marked [`FORWARDED`]; the
    /// producer's answer, or a problem when it cannot be reached.
    async fn forward(&self, node: &str, path_and_query: &str) -> Response;
}

/// One node with storage of its own: it produces every stream it has and may write every
/// recording.
pub struct Alone;

#[async_trait]
impl Origins for Alone {
    async fn producer(&self, _: &StreamId) -> Producer {
        Producer::Here
    }

    async fn live(&self, _: &StreamId) -> bool {
        false
    }

    async fn hold(&self, _: &StreamId) -> bool {
        true
    }

    async fn release(&self, _: &StreamId) {}

    async fn forward(&self, _: &str, _: &str) -> Response {
        use axum::response::IntoResponse;
        vitrine_core::Problem::not_found("this stream has no HLS output").into_response()
    }
}
