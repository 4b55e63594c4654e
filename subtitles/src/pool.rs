//! The Transcriber pool: one Whisper model in memory, a fixed number of workers, each decode
//! on a blocking thread (never on the async runtime). Streams hold their own decoding state
//! ([`Slot`]) and ask for one decode at a time; workers are handed out first come, first
//! served, so with one request per stream outstanding every stream gets its turn (fairness
//! without a scheduler). A saturated pool shows up as waiting time, which the live policy
//! turns into longer steps.

use crate::metrics::SubtitleMetrics;
use crate::transcriber::{Request, Segment, TranscribeError, Transcriber};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use whisper_rs::WhisperState;

/// What a decode took.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Waiting for a free worker.
    pub waited: Duration,
    /// Running.
    pub ran: Duration,
}

/// A stream's decoding state, reused by its decodes.
pub struct Slot {
    state: Option<WhisperState>,
}

pub struct Pool {
    model: Arc<Transcriber>,
    workers: Arc<Semaphore>,
    threads: i32,
    metrics: Arc<SubtitleMetrics>,
}

impl Pool {
    /// `workers` decodes at once, each on `threads` CPU threads.
    pub fn new(
        model: Arc<Transcriber>,
        workers: usize,
        threads: usize,
        metrics: Arc<SubtitleMetrics>,
    ) -> Self {
        Self {
            model,
            workers: Arc::new(Semaphore::new(workers.max(1))),
            threads: threads.max(1) as i32,
            metrics,
        }
    }

    pub fn model(&self) -> &Arc<Transcriber> {
        &self.model
    }

    pub fn metrics(&self) -> &Arc<SubtitleMetrics> {
        &self.metrics
    }

    /// A decoding state for one stream.
    pub fn slot(&self) -> Result<Slot, TranscribeError> {
        Ok(Slot {
            state: Some(self.model.state()?),
        })
    }

    /// Decodes `audio` on a worker (after waiting for one); the request's thread count is the
    /// pool's.
    pub async fn decode(
        &self,
        slot: &mut Slot,
        audio: Vec<f32>,
        mut request: Request,
        prompt: String,
    ) -> Result<(Vec<Segment>, Timing), TranscribeError> {
        let asked = Instant::now();
        let permit = Arc::clone(&self.workers)
            .acquire_owned()
            .await
            .map_err(|_| TranscribeError::Failed("the pool is closed".into()))?;
        let waited = asked.elapsed();
        self.metrics.queue_wait.observe(waited.as_secs_f64());
        let mut state = slot.state.take().map_or_else(|| self.model.state(), Ok)?;
        request.threads = self.threads;
        let model = Arc::clone(&self.model);
        let metrics = Arc::clone(&self.metrics);
        metrics.busy_workers.inc();
        let started = Instant::now();
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let result = model.decode(&mut state, &audio, &request, &prompt, None);
            (state, result)
        })
        .await;
        let ran = started.elapsed();
        metrics.busy_workers.dec();
        metrics.decode_seconds.observe(ran.as_secs_f64());
        let (state, result) =
            joined.map_err(|e| TranscribeError::Failed(format!("decode worker: {e}")))?;
        slot.state = Some(state);
        if result.is_err() {
            metrics.failures.inc();
        }
        result.map(|segments| (segments, Timing { waited, ran }))
    }
}
