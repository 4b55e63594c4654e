//! Prometheus metrics of the HLS role: encoder runs, their failures, what was packaged, and how
//! long a frame takes from the SFU to a listed LL-HLS part.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Which kind of track a latency sample is from.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrackLabels {
    pub track: &'static str,
}

/// What an HLS request asked for: `master`, `playlist`, `blocking` (a playlist with
/// `_HLS_msn`), `part`, `segment`, `init` or `other` (posters, subtitles).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub kind: &'static str,
}

/// A stage of a live run, and the kind of track (see `stages`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
    pub track: &'static str,
}

#[derive(Debug, Clone)]
pub struct HlsMetrics {
    /// Encoder pipelines running now.
    pub pipelines: Gauge,
    /// Pipelines that failed and were restarted after a back-off.
    pub pipeline_restarts: Counter,
    pub parts: Counter,
    pub segments: Counter,
    /// Seconds from an RTP packet reaching the pipeline to the part holding its frame being
    /// listed, per encoded access unit, by track (`video` or `audio`).
    pub part_latency: Family<TrackLabels, Histogram>,
    /// Seconds from an RTP packet reaching the pipeline to the end of each stage of its frame
    /// (`depayloaded`, `decoded`, `encoded`, `packaged`, `listed`), by track.
    pub stage_latency: Family<StageLabels, Histogram>,
    /// HLS requests answered by this node, by what they asked for (behind a CDN: what
    /// reached the origin).
    pub requests: Family<RequestLabels, Counter>,
    /// Blocking playlist reloads answered with 503 because nothing came in time.
    pub reload_timeouts: Counter,
    /// Requests this node passed to the stream's producer on another node.
    pub forwarded: Counter,
    /// Recordings finalised as replays.
    pub replays: Counter,
}

impl Default for HlsMetrics {
    fn default() -> Self {
        Self {
            pipelines: Gauge::default(),
            pipeline_restarts: Counter::default(),
            parts: Counter::default(),
            segments: Counter::default(),
            part_latency: Family::new_with_constructor(|| {
                Histogram::new([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0])
            }),
            stage_latency: Family::new_with_constructor(|| {
                Histogram::new([
                    0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0,
                ])
            }),
            requests: Family::default(),
            reload_timeouts: Counter::default(),
            forwarded: Counter::default(),
            replays: Counter::default(),
        }
    }
}

impl HlsMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("vitrine_hls");
        r.register(
            "pipelines",
            "Encoder pipelines running",
            self.pipelines.clone(),
        );
        r.register(
            "pipeline_restarts",
            "Encoder pipelines restarted after a failure",
            self.pipeline_restarts.clone(),
        );
        r.register("parts", "LL-HLS parts written", self.parts.clone());
        r.register("segments", "HLS segments written", self.segments.clone());
        r.register(
            "part_latency_seconds",
            "Seconds from a frame reaching the transcoder to its part being listed",
            self.part_latency.clone(),
        );
        r.register(
            "stage_latency_seconds",
            "Seconds from a frame reaching the transcoder to the end of each stage",
            self.stage_latency.clone(),
        );
        r.register(
            "requests",
            "HLS requests answered, by what they asked for",
            self.requests.clone(),
        );
        r.register(
            "forwarded",
            "HLS requests passed to the node producing the stream",
            self.forwarded.clone(),
        );
        r.register(
            "reload_timeouts",
            "Blocking playlist reloads that timed out",
            self.reload_timeouts.clone(),
        );
        r.register(
            "replays",
            "Recordings finalised as replays",
            self.replays.clone(),
        );
    }
}
