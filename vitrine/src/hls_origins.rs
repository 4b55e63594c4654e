//! The cluster's side of HLS (`vitrine_transcode::origins::Origins`): the node producing a
//! stream is the holder of its `hls` work lease in the cluster's directory; requests for
//! playlists (and parts not stored yet) are passed to it, and the lease is the right to write
//! the stream's recording.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vitrine_core::{Problem, StreamId};
use vitrine_transcode::origins::{FORWARDED, Origins, Producer};

/// The role whose work lease names a stream's producer.
const ROLE: &str = "hls";
/// How long an answer about a stream's producer is reused: a player asks several times a
/// second, and a producer changes only when a node stops or dies.
const PRODUCER_TTL: Duration = Duration::from_millis(500);
/// Streams whose producer is remembered; beyond it the memory starts over.
const MAX_REMEMBERED: usize = 10_000;
/// Longest a passed-on request may take: a blocking reload waits up to three target
/// durations at the producer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);
/// Headers of the producer's answer that reach the player.
const PASSED_HEADERS: [header::HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::CONTENT_LENGTH,
];

pub struct ClusterOrigins {
    cluster: vitrine_cluster::Cluster,
    lease: Duration,
    http: reqwest::Client,
    producers: Mutex<HashMap<StreamId, (Instant, Producer)>>,
}

impl ClusterOrigins {
    pub fn new(cluster: vitrine_cluster::Cluster) -> Self {
        let http = reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            lease: cluster.origin_lease(),
            cluster,
            http,
            producers: Mutex::default(),
        }
    }

    /// The producer as the directory says now: another node's URL, or here (this node, or
    /// nobody, or a node whose entry is gone: it died).
    async fn look_up(&self, stream: &StreamId) -> Producer {
        let registry = self.cluster.registry();
        let holder = match registry.work_holder(ROLE, stream).await {
            Ok(Some(id)) if id != self.cluster.node_id() => id,
            Ok(_) => return Producer::Here,
            Err(e) => {
                tracing::warn!(%stream, error = %e, "HLS producer unknown: answering from here");
                return Producer::Here;
            }
        };
        match registry.node(&holder).await {
            Ok(Some(node)) => Producer::Node(node.url.trim_end_matches('/').to_owned()),
            _ => Producer::Here,
        }
    }
}

#[async_trait::async_trait]
impl Origins for ClusterOrigins {
    async fn producer(&self, stream: &StreamId) -> Producer {
        if let Some((at, known)) = self.producers.lock().expect("producers lock").get(stream)
            && at.elapsed() < PRODUCER_TTL
        {
            return known.clone();
        }
        let now = self.look_up(stream).await;
        let mut producers = self.producers.lock().expect("producers lock");
        if producers.len() >= MAX_REMEMBERED {
            producers.clear();
        }
        producers.insert(stream.clone(), (Instant::now(), now.clone()));
        now
    }

    async fn live(&self, stream: &StreamId) -> bool {
        // A directory that does not answer: say live, so nothing is ended on its word.
        self.cluster
            .registry()
            .origin(stream)
            .await
            .map_or(true, |o| o.is_some())
    }

    async fn hold(&self, stream: &StreamId) -> bool {
        let node = self.cluster.node_id();
        let held = self
            .cluster
            .registry()
            .take_work(ROLE, stream, node, self.lease)
            .await;
        held.unwrap_or_else(|e| {
            tracing::warn!(%stream, error = %e, "the recording's lease is unknown");
            false
        })
    }

    async fn release(&self, stream: &StreamId) {
        let node = self.cluster.node_id();
        let _ = self.cluster.registry().drop_work(ROLE, stream, node).await;
    }

    async fn forward(&self, node: &str, path_and_query: &str) -> Response {
        let answer = self
            .http
            .get(format!("{node}{path_and_query}"))
            .header(FORWARDED, "1")
            .send()
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(%node, error = %e, "the stream's HLS producer did not answer");
                return unreachable();
            }
        };
        let status =
            StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut headers = Vec::new();
        for name in PASSED_HEADERS {
            if let Some(v) = answer.headers().get(name.as_str())
                && let Ok(v) = HeaderValue::from_bytes(v.as_bytes())
            {
                headers.push((name, v));
            }
        }
        match answer.bytes().await {
            Ok(body) => {
                let mut response = (status, Body::from(body)).into_response();
                response.headers_mut().extend(headers);
                response
            }
            Err(_) => unreachable(),
        }
    }
}

fn unreachable() -> Response {
    Problem::new(
        StatusCode::BAD_GATEWAY,
        "hls-producer-unreachable",
        "The node producing this stream's HLS did not answer; try again",
    )
    .into_response()
}
