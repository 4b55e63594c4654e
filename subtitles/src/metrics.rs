//! Prometheus metrics of the subtitles role: how busy the Transcriber pool is, whether live
//! captions are degrading, how late final captions come, and the replay jobs.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
pub struct SubtitleMetrics {
    /// Streams being captioned now.
    pub live_streams: Gauge,
    /// Decodes running on the pool's workers now.
    pub busy_workers: Gauge,
    /// Seconds a decode waited for a free worker.
    pub queue_wait: Histogram,
    /// Seconds a decode ran.
    pub decode_seconds: Histogram,
    /// Live decode steps taken with a step longer than configured, because the pool is
    /// saturated: captions come in bigger pieces.
    pub degraded_steps: Counter,
    /// Live audio seconds dropped uncaptioned because decoding fell too far behind.
    pub dropped_audio_seconds: Counter,
    /// Seconds from the end of an utterance (what the voice detector heard) to its final
    /// caption being handed out.
    pub final_latency: Histogram,
    pub partial_cues: Counter,
    pub final_cues: Counter,
    /// Decodes that failed.
    pub failures: Counter,
    /// Finals left untranslated because the stream's translations were too far behind.
    pub translations_dropped: Counter,
    /// Replay subtitle jobs done and failed.
    pub jobs_done: Counter,
    pub jobs_failed: Counter,
}

impl Default for SubtitleMetrics {
    fn default() -> Self {
        let seconds = || {
            Histogram::new([
                0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0,
            ])
        };
        Self {
            live_streams: Gauge::default(),
            busy_workers: Gauge::default(),
            queue_wait: seconds(),
            decode_seconds: seconds(),
            degraded_steps: Counter::default(),
            dropped_audio_seconds: Counter::default(),
            final_latency: seconds(),
            partial_cues: Counter::default(),
            final_cues: Counter::default(),
            failures: Counter::default(),
            translations_dropped: Counter::default(),
            jobs_done: Counter::default(),
            jobs_failed: Counter::default(),
        }
    }
}

impl SubtitleMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("vitrine_subtitles");
        r.register(
            "live_streams",
            "Streams being captioned",
            self.live_streams.clone(),
        );
        r.register(
            "busy_workers",
            "Transcriber pool decodes running",
            self.busy_workers.clone(),
        );
        r.register(
            "queue_wait_seconds",
            "Seconds a decode waited for a worker",
            self.queue_wait.clone(),
        );
        r.register(
            "decode_seconds",
            "Seconds a decode ran",
            self.decode_seconds.clone(),
        );
        r.register(
            "degraded_steps",
            "Live decode steps lengthened because the pool is saturated",
            self.degraded_steps.clone(),
        );
        r.register(
            "dropped_audio_seconds",
            "Live audio seconds dropped uncaptioned because decoding fell behind",
            self.dropped_audio_seconds.clone(),
        );
        r.register(
            "final_latency_seconds",
            "Seconds from the end of an utterance to its final caption",
            self.final_latency.clone(),
        );
        r.register(
            "partial_cues",
            "Partial live captions handed out",
            self.partial_cues.clone(),
        );
        r.register(
            "final_cues",
            "Final live captions handed out",
            self.final_cues.clone(),
        );
        r.register(
            "decode_failures",
            "Decodes that failed",
            self.failures.clone(),
        );
        r.register(
            "translations_dropped",
            "Finals left untranslated, their stream's translations too far behind",
            self.translations_dropped.clone(),
        );
        r.register(
            "jobs_done",
            "Replay subtitle jobs done",
            self.jobs_done.clone(),
        );
        r.register(
            "jobs_failed",
            "Replay subtitle jobs failed",
            self.jobs_failed.clone(),
        );
    }
}
