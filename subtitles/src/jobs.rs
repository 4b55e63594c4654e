//! The queue of replay subtitle jobs, and the workers that take them. In one process, an
//! in-memory queue; across processes (`--redis`), a Redis Stream with a consumer group, so
//! any number of `--roles subtitles` workers share the jobs, each job goes to one of them, a
//! job is acknowledged only once its subtitles are written, and a job whose worker died is
//! claimed again by another after [`CLAIM_IDLE`].

use crate::replay::ReplaySubtitles;
use redis::AsyncCommands;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use vitrine_core::StreamId;

/// Jobs waiting in the in-memory queue; when full, new jobs are refused (and logged).
pub const MEMORY_QUEUE: usize = 1024;
/// The Redis Stream of jobs and its consumer group.
const STREAM_KEY: &str = "vitrine:jobs:subtitles";
const GROUP: &str = "subtitles";
/// Entries kept in the stream (approximately); acknowledged ones are history.
const STREAM_CAPACITY: usize = 10_000;
/// How long a worker blocks waiting for a job before it looks for abandoned ones.
const BLOCK: Duration = Duration::from_secs(5);
/// A job unacknowledged this long belongs to a worker that died: another claims it.
pub const CLAIM_IDLE: Duration = Duration::from_secs(15 * 60);
/// Tries before a job that keeps failing is dropped.
const MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the job queue is full")]
    Full,
    #[error("job queue: {0}")]
    Unavailable(String),
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

/// A job taken from the queue: acknowledge it once done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub stream: StreamId,
    /// The queue's id of the entry (Redis) or empty (memory).
    pub id: String,
    /// How many times it was handed out (1 the first time).
    pub attempt: u32,
}

#[async_trait::async_trait]
pub trait JobQueue: Send + Sync + 'static {
    async fn push(&self, stream: &StreamId) -> Result<(), QueueError>;
    /// The next job; `None` when there was none for a while (ask again).
    async fn next(&self, consumer: &str) -> Result<Option<Delivery>, QueueError>;
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;
}

/// Jobs of one process.
pub struct MemoryQueue {
    tx: mpsc::Sender<StreamId>,
    rx: Mutex<mpsc::Receiver<StreamId>>,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(MEMORY_QUEUE);
        Self {
            tx,
            rx: Mutex::new(rx),
        }
    }
}

#[async_trait::async_trait]
impl JobQueue for MemoryQueue {
    async fn push(&self, stream: &StreamId) -> Result<(), QueueError> {
        self.tx
            .try_send(stream.clone())
            .map_err(|_| QueueError::Full)
    }

    async fn next(&self, _consumer: &str) -> Result<Option<Delivery>, QueueError> {
        let mut rx = self.rx.lock().await;
        match tokio::time::timeout(BLOCK, rx.recv()).await {
            Ok(Some(stream)) => Ok(Some(Delivery {
                stream,
                id: String::new(),
                attempt: 1,
            })),
            Ok(None) | Err(_) => Ok(None),
        }
    }

    async fn ack(&self, _delivery: &Delivery) -> Result<(), QueueError> {
        Ok(())
    }
}

/// Jobs shared through a Redis Stream consumer group.
pub struct RedisQueue {
    client: redis::Client,
    commands: redis::aio::MultiplexedConnection,
    key: String,
    claim_idle: Duration,
    block: Duration,
}

impl RedisQueue {
    /// The production queue.
    pub async fn connect(url: &str) -> Result<Self, QueueError> {
        Self::connect_to(url, STREAM_KEY, CLAIM_IDLE, BLOCK).await
    }

    /// A queue on stream `key`, claiming jobs idle for `claim_idle`, blocking `block` per read.
    pub async fn connect_to(
        url: &str,
        key: &str,
        claim_idle: Duration,
        block: Duration,
    ) -> Result<Self, QueueError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let mut commands = client
            .get_multiplexed_async_connection()
            .await
            .map_err(unavailable)?;
        // The group exists once; creating it again answers BUSYGROUP.
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut commands)
            .await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            return Err(unavailable(e));
        }
        Ok(Self {
            client,
            commands,
            key: key.to_owned(),
            claim_idle,
            block,
        })
    }

    fn delivery(entry: &redis::streams::StreamId, attempt: u32) -> Option<Delivery> {
        let stream: String = entry.get("stream")?;
        Some(Delivery {
            stream: StreamId::parse(&stream).ok()?,
            id: entry.id.clone(),
            attempt,
        })
    }

    /// A job another worker took and never acknowledged, if one waited long enough.
    async fn claim(&self, consumer: &str) -> Result<Option<Delivery>, QueueError> {
        let reply: redis::streams::StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.key)
            .arg(GROUP)
            .arg(consumer)
            .arg(self.claim_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        let Some(entry) = reply.claimed.first() else {
            return Ok(None);
        };
        let pending: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.key)
            .arg(GROUP)
            .arg(&entry.id)
            .arg(&entry.id)
            .arg(1)
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        let attempt = pending.ids.first().map_or(2, |p| p.times_delivered as u32);
        Ok(Self::delivery(entry, attempt))
    }
}

#[async_trait::async_trait]
impl JobQueue for RedisQueue {
    async fn push(&self, stream: &StreamId) -> Result<(), QueueError> {
        let _: String = self
            .commands
            .clone()
            .xadd_maxlen(
                &self.key,
                redis::streams::StreamMaxlen::Approx(STREAM_CAPACITY),
                "*",
                &[("stream", stream.as_str())],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn next(&self, consumer: &str) -> Result<Option<Delivery>, QueueError> {
        if let Some(d) = self.claim(consumer).await? {
            return Ok(Some(d));
        }
        // A connection of its own: a blocking read would hold up the shared one.
        let mut conn = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(unavailable)?;
        let options = redis::streams::StreamReadOptions::default()
            .group(GROUP, consumer)
            .count(1)
            .block(self.block.as_millis() as usize);
        let reply: Option<redis::streams::StreamReadReply> = conn
            .xread_options(&[&self.key], &[">"], &options)
            .await
            .map_err(unavailable)?;
        Ok(reply
            .and_then(|r| r.keys.into_iter().next())
            .and_then(|k| k.ids.into_iter().next())
            .and_then(|entry| Self::delivery(&entry, 1)))
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let _: u64 = self
            .commands
            .clone()
            .xack(&self.key, GROUP, &[&delivery.id])
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Takes jobs from `queue` and runs them, one at a time per worker, until `shutdown`. A job
/// that fails is left unacknowledged to be tried again (by claim, on Redis) up to
/// [`MAX_ATTEMPTS`].
pub async fn work(
    queue: Arc<dyn JobQueue>,
    replays: Arc<ReplaySubtitles>,
    consumer: String,
    shutdown: CancellationToken,
    metrics: Arc<crate::metrics::SubtitleMetrics>,
) {
    loop {
        let next = tokio::select! {
            next = queue.next(&consumer) => next,
            _ = shutdown.cancelled() => return,
        };
        let delivery = match next {
            Ok(Some(d)) => d,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "subtitle job queue");
                tokio::select! {
                    _ = tokio::time::sleep(BLOCK) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        let stream = delivery.stream.clone();
        let span = tracing::info_span!("replay_subtitles", %stream, attempt = delivery.attempt);
        let result = tracing::Instrument::instrument(replays.run(&stream), span).await;
        let done = match result {
            Ok(written) => {
                metrics.jobs_done.inc();
                tracing::info!(%stream, languages = ?written.languages, cues = written.cues, "replay subtitles written");
                true
            }
            Err(e) => {
                metrics.jobs_failed.inc();
                tracing::warn!(%stream, attempt = delivery.attempt, error = %e, "replay subtitles failed");
                delivery.attempt >= MAX_ATTEMPTS
            }
        };
        if done && let Err(e) = queue.ack(&delivery).await {
            tracing::warn!(error = %e, "acknowledging a subtitle job");
        }
    }
}
