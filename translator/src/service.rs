//! The worker pool: each worker is an OS thread with its own llama.cpp context (inference
//! never runs on the async runtime), all taking jobs from one bounded queue in arrival order.
//! Overflow policy: a job that finds the queue full is refused at once ([`ServiceError::Busy`]),
//! so callers (live captions) fall back to the untranslated text instead of piling up.

use crate::engine::{Engine, EngineError, Translation};
use crate::languages::Language;
use crate::metrics::TranslatorMetrics;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Jobs waiting for a worker before new ones are refused.
pub const QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("all translation workers are busy")]
    Busy,
    #[error("the translation workers stopped")]
    Stopped,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

struct Job {
    text: String,
    from: &'static Language,
    to: &'static Language,
    queued: Instant,
    reply: oneshot::Sender<Result<Translation, EngineError>>,
}

/// A handle on the pool; cheap to clone. The workers stop once every handle is gone.
#[derive(Clone)]
pub struct Translator {
    jobs: mpsc::Sender<Job>,
    metrics: TranslatorMetrics,
}

impl Translator {
    /// Starts `workers` threads, each with its own context on `engine`. Fails if a context
    /// cannot be made (out of memory).
    pub fn start(
        engine: Arc<Engine>,
        workers: usize,
        metrics: TranslatorMetrics,
    ) -> Result<Self, EngineError> {
        let (jobs, queue) = mpsc::channel::<Job>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for n in 0..workers.max(1) {
            let (engine, queue, metrics, ready) = (
                engine.clone(),
                queue.clone(),
                metrics.clone(),
                ready_tx.clone(),
            );
            std::thread::Builder::new()
                .name(format!("translator-{n}"))
                .spawn(move || work(&engine, &queue, &metrics, ready))
                .map_err(|e| EngineError::Backend(e.to_string()))?;
        }
        drop(ready_tx);
        for started in ready_rx {
            started?;
        }
        Ok(Self { jobs, metrics })
    }

    pub async fn translate(
        &self,
        text: &str,
        from: &'static Language,
        to: &'static Language,
    ) -> Result<Translation, ServiceError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            text: text.to_owned(),
            from,
            to,
            queued: Instant::now(),
            reply,
        };
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                self.metrics.refused.inc();
                ServiceError::Busy
            }
            mpsc::error::TrySendError::Closed(_) => ServiceError::Stopped,
        })?;
        Ok(answer.await.map_err(|_| ServiceError::Stopped)??)
    }
}

/// One worker: makes its context, says whether that worked, then takes jobs until the queue
/// closes.
fn work(
    engine: &Engine,
    queue: &Mutex<mpsc::Receiver<Job>>,
    metrics: &TranslatorMetrics,
    ready: std::sync::mpsc::Sender<Result<(), EngineError>>,
) {
    let mut session = match engine.session() {
        Ok(session) => {
            let _ = ready.send(Ok(()));
            session
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    drop(ready);
    loop {
        // Idle workers wait on the lock; the one holding it waits for the next job.
        let job = match queue.lock() {
            Ok(mut queue) => queue.blocking_recv(),
            Err(_) => None,
        };
        let Some(job) = job else { return };
        if job.reply.is_closed() {
            continue; // the caller gave up while the job queued
        }
        metrics
            .queue_wait
            .observe(job.queued.elapsed().as_secs_f64());
        let started = Instant::now();
        let span = tracing::debug_span!("translate", from = job.from.code, to = job.to.code);
        let result = span.in_scope(|| session.translate(&job.text, job.from, job.to));
        metrics
            .translate_seconds
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(t) => {
                metrics.translations.inc();
                metrics.evaluated_tokens.inc_by(t.evaluated_tokens as u64);
                metrics
                    .reused_tokens
                    .inc_by((t.prompt_tokens - t.evaluated_tokens) as u64);
                metrics.generated_tokens.inc_by(t.generated_tokens as u64);
            }
            Err(e) => {
                metrics.failures.inc();
                tracing::warn!(error = %e, "translation failed");
            }
        }
        let _ = job.reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::languages::language;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_counts_it() {
        // No worker takes jobs: the queue fills, the next caller is refused, not parked.
        let (jobs, queue) = mpsc::channel::<Job>(QUEUE);
        let metrics = TranslatorMetrics::default();
        let translator = Translator {
            jobs,
            metrics: metrics.clone(),
        };
        let (en, es) = (language("en").unwrap(), language("es").unwrap());
        let mut waiting = Vec::new();
        for _ in 0..QUEUE {
            let t = translator.clone();
            waiting.push(tokio::spawn(
                async move { t.translate("Hi.", en, es).await },
            ));
        }
        // Each spawned call queues its job before it awaits the answer.
        while translator.jobs.capacity() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = translator.translate("One more.", en, es).await;
        assert!(matches!(refused, Err(ServiceError::Busy)), "{refused:?}");
        assert_eq!(metrics.refused.get(), 1);
        drop(queue);
        for w in waiting {
            assert!(matches!(w.await.unwrap(), Err(ServiceError::Stopped)));
        }
    }
}
