//! What the background jobs share: their counters, the rule that one bad row never stops a pass
//! (the row is logged and counted, the pass goes on with the next), and the pruning of rows
//! whose purpose is spent. Jobs here never decide business outcomes; they only keep the passes
//! of the reaper, the payout reconciler and the webhook dispatcher alive and the tables small.

use crate::error::CheckoutError;
use crate::orders::Orders;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Which background job.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct JobLabel {
    pub job: &'static str,
}

/// Counters of the background jobs; cheap to clone (clones count into the same family).
#[derive(Debug, Default, Clone)]
pub struct JobMetrics {
    /// Rows a pass could not process (logged, skipped, retried on the next pass).
    pub row_errors: Family<JobLabel, Counter>,
    /// Rows deleted by the pruning job, by table.
    pub pruned: Family<JobLabel, Counter>,
    /// Transactions of the order path's group commit, by step (`reserve`, `settle`).
    pub batches: Family<JobLabel, Counter>,
    /// Requests those transactions wrote (divided by `batches`: the mean batch size).
    pub batched: Family<JobLabel, Counter>,
    /// Seconds those transactions took, from the first statement to the commit.
    pub batch_seconds: Family<JobLabel, Counter<f64, std::sync::atomic::AtomicU64>>,
}

impl JobMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "vitrine_job_row_errors",
            "Rows a background job (reaper, payouts, refunds, webhooks) failed on and skipped",
            self.row_errors.clone(),
        );
        registry.register(
            "vitrine_job_pruned_rows",
            "Rows deleted by the pruning job, by what they were",
            self.pruned.clone(),
        );
        registry.register(
            "vitrine_checkout_batches",
            "Transactions of the order path's group commit, by step (reserve, settle)",
            self.batches.clone(),
        );
        registry.register(
            "vitrine_checkout_batched_requests",
            "Requests written by those transactions (over batches: the mean batch size)",
            self.batched.clone(),
        );
        registry.register(
            "vitrine_checkout_batch_seconds",
            "Time those transactions took, from their first statement to the commit",
            self.batch_seconds.clone(),
        );
    }

    /// Counts a group-commit batch of `n` requests of `step`.
    pub(crate) fn note_batch(&self, step: &'static str, n: usize) {
        let label = JobLabel { job: step };
        self.batches.get_or_create(&label).inc();
        self.batched.get_or_create(&label).inc_by(n as u64);
    }

    /// Adds the time a batch transaction of `step` took.
    pub(crate) fn note_batch_time(&self, step: &'static str, took: std::time::Duration) {
        let label = JobLabel { job: step };
        self.batch_seconds
            .get_or_create(&label)
            .inc_by(took.as_secs_f64());
    }

    /// Batches and requests of `step` so far (for tests and the benchmark's report).
    pub fn batches_of(&self, step: &'static str) -> (u64, u64) {
        let label = JobLabel { job: step };
        (
            self.batches.get_or_create(&label).get(),
            self.batched.get_or_create(&label).get(),
        )
    }

    /// Logs and counts a row that failed; the caller goes on with the next row.
    pub(crate) fn row_failed(&self, job: &'static str, row: &str, error: &CheckoutError) {
        tracing::warn!(job, row, error = %error, "background job skipped a row");
        self.row_errors.get_or_create(&JobLabel { job }).inc();
    }

    /// How many rows of `job` failed so far (for tests and the operator's eye).
    pub fn row_errors_of(&self, job: &'static str) -> u64 {
        self.row_errors.get_or_create(&JobLabel { job }).get()
    }

    fn count_pruned(&self, what: &'static str, n: u64) {
        self.pruned.get_or_create(&JobLabel { job: what }).inc_by(n);
    }
}

/// What one pruning pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub idempotency_keys: u64,
    /// Auction bids' keys, on the same time to live.
    pub bid_keys: u64,
    pub webhook_deliveries: u64,
    pub webhook_attempts: u64,
    pub webhook_events: u64,
    /// Commerce facts older than [`crate::facts::FACT_RETENTION_MS`] (long delivered).
    pub commerce_facts: u64,
}

impl Orders {
    /// Deletes what has served its purpose as of `now` (Unix milliseconds): idempotency keys
    /// with a result past their time to live, commerce facts older than an hour, and webhook
    /// messages delivered longer ago than
    /// the retention (with their attempt logs, and their events once no delivery is left).
    /// Pending and failed deliveries are kept: a seller may still replay them.
    pub async fn prune_at(&self, now: i64) -> Result<Pruned, CheckoutError> {
        let idempotency_keys = self.expire_keys_at(now).await?;
        let bid_keys = self.expire_bid_keys_at(now).await?;
        let cutoff = now - self.config.webhook_retention.as_millis() as i64;
        let mut tx = self.pool.begin().await?;
        let webhook_attempts = sqlx::query(
            "DELETE FROM webhook_attempts WHERE (event_id, endpoint_id) IN \
             (SELECT event_id, endpoint_id FROM webhook_deliveries \
              WHERE status = 'succeeded' AND updated_at < $1)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let webhook_deliveries = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE status = 'succeeded' AND updated_at < $1",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let webhook_events = sqlx::query(
            "DELETE FROM webhook_events WHERE created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        let commerce_facts =
            sqlx::query("DELETE FROM commerce_facts WHERE created_at < $1 AND hooks_pending = 0")
                .bind(now - crate::facts::FACT_RETENTION_MS)
                .execute(&self.pool)
                .await?
                .rows_affected();
        let pruned = Pruned {
            idempotency_keys,
            bid_keys,
            webhook_deliveries,
            webhook_attempts,
            webhook_events,
            commerce_facts,
        };
        for (what, n) in [
            ("idempotency_keys", idempotency_keys),
            ("bid_keys", bid_keys),
            ("webhook_deliveries", webhook_deliveries),
            ("webhook_attempts", webhook_attempts),
            ("webhook_events", webhook_events),
            ("commerce_facts", commerce_facts),
        ] {
            self.jobs.count_pruned(what, n);
        }
        Ok(pruned)
    }
}

/// Runs `pass` every `every` (a late tick is not caught up) until `shutdown`: the loop of the
/// background jobs.
pub fn spawn_every<F, Fut>(
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
    mut pass: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            pass().await;
        }
    })
}
