//! Delivers the outbox. Each round first expands the fact stream's committed webhook messages
//! into messages and deliveries (see [`outbox::expand`]), then claims due deliveries (a lease,
//! so several nodes can run dispatchers over one database without sending a message twice at
//! once), posts each signed message with a timeout, and records the outcome: done on 2xx; the
//! endpoint disabled on 410; otherwise the next attempt per the retry schedule (later if the
//! receiver sent `Retry-After`), and the endpoint disabled once it has failed without a success
//! for longer than the schedule lasts.

use super::Webhooks;
pub use super::metrics::{DispatchMetrics, OutcomeLabel};
use super::resolver::PublicOnlyResolver;
use super::schedule::RetrySchedule;
use super::signature::{SigningSecret, signature_header};
use super::{outbox, outcomes};
use crate::error::CheckoutError;
use futures::StreamExt;
use sqlx::Row;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub schedule: RetrySchedule,
    /// How long one POST may take.
    pub timeout: Duration,
    /// Deliveries in flight at once per node.
    pub concurrency: usize,
    /// How often the outbox is looked at when nothing wakes the dispatcher.
    pub poll: Duration,
    /// An endpoint failing for longer than this without one success is disabled.
    pub disable_after: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        let schedule = RetrySchedule::default();
        Self {
            disable_after: schedule.span() + Duration::from_secs(2 * 86_400),
            schedule,
            timeout: Duration::from_secs(15),
            concurrency: 16,
            poll: Duration::from_secs(1),
        }
    }
}

pub(super) struct Due {
    pub(super) event_id: String,
    pub(super) endpoint_id: String,
    pub(super) attempts: i64,
    /// The lease this dispatcher wrote: its outcome is recorded only while the lease holds.
    pub(super) lease_until: i64,
}

struct Target {
    url: String,
    body: String,
    secrets: Vec<SigningSecret>,
}

/// One attempt's result, on its way to the bookkeeping.
pub(super) struct Outcome {
    pub(super) due: Due,
    /// `None`: the endpoint was disabled or deleted meanwhile; nothing was sent.
    pub(super) result: Option<Result_>,
    pub(super) took_ms: i64,
}

/// Most outcomes written in one transaction.
const RECORD_BATCH: usize = 64;

/// Most pages of fact rows ([`outbox::EXPAND_PAGE`]) expanded per round: a backlog after an
/// outage is worked through over rounds, between deliveries.
const EXPAND_PAGES: usize = 16;

/// Least time between two rounds that a wake-up starts. Each round is two transactions (the
/// expansion, the claim of due deliveries) whether or not a seller has endpoints: at 20 ms a
/// sale's steady wake-ups cost PostgreSQL 0.08 commits per order; a message waits at most
/// this much longer.
const WAKE_PACE: Duration = Duration::from_millis(100);

pub(super) enum Result_ {
    Delivered(u16),
    Gone,
    Failed {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
}

pub struct Dispatcher {
    /// The service's pool, secrets, target policy, wake-up, counters and clock.
    service: Webhooks,
    http: reqwest::Client,
    config: DispatchConfig,
    metrics: DispatchMetrics,
}

/// What to send for one delivery, or why it cannot be sent (its endpoint's secret does not
/// open, say): that delivery alone fails its attempt, the others go out.
type Prepared = Result<Target, String>;

/// A batch is this many rounds of `concurrency` deliveries.
const BATCH_WAVES: usize = 4;

/// Longest a lease lasts: long enough for the last wave of a batch whose every POST takes the
/// whole timeout, plus slack; after it another node may retry.
fn lease(config: &DispatchConfig) -> i64 {
    (config.timeout.as_millis() as i64) * (BATCH_WAVES as i64 + 1) + 5_000
}

/// The resolver's refusal of a non-public target, when that is why a POST failed.
fn refused_target(e: &reqwest::Error) -> Option<String> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if text.contains("no public address") {
            return Some(text);
        }
        source = s.source();
    }
    None
}

impl Dispatcher {
    pub(crate) fn new(
        service: Webhooks,
        config: DispatchConfig,
        metrics: DispatchMetrics,
    ) -> Result<Self, CheckoutError> {
        // No proxy from the environment: a proxy would resolve the host itself, past the
        // resolver below.
        let mut http = reqwest::Client::builder()
            .timeout(config.timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Vitrine-Webhooks/", env!("CARGO_PKG_VERSION")));
        if !service.targets.allow_private {
            // Checked again at each connection: a name may point elsewhere since registration.
            http = http.dns_resolver(PublicOnlyResolver::shared());
        }
        let http = http
            .build()
            .map_err(|e| CheckoutError::Setup(format!("the webhook HTTP client: {e}")))?;
        Ok(Self {
            service,
            http,
            config,
            metrics,
        })
    }

    fn now(&self) -> i64 {
        self.service.now()
    }

    /// Runs until `stop`: each round delivers what is due, then waits for a wake-up or the poll.
    /// A wake-up is taken at most once per [`WAKE_PACE`]: under a sale's load one round takes
    /// what many transactions committed meanwhile.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let started = tokio::time::Instant::now();
            match self.turn().await {
                Ok((n, backlog)) if n > 0 || backlog => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "webhook dispatcher round failed"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.service.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll) => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(started + WAKE_PACE) => {}
            }
        }
    }

    /// Expands the committed facts' webhook messages (see [`outbox::expand`]), then delivers
    /// one batch of due messages; returns how many were attempted.
    pub async fn round(&self) -> Result<usize, CheckoutError> {
        Ok(self.turn().await?.0)
    }

    /// A round: how many deliveries were attempted, and whether fact rows are left to expand.
    async fn turn(&self) -> Result<(usize, bool), CheckoutError> {
        let backlog = self.expand_some().await;
        Ok((self.deliver_due().await?, backlog))
    }

    /// Expands up to [`EXPAND_PAGES`] pages; true when the last one was full. A failure is
    /// logged and counted, and the round goes on to deliver what is due.
    async fn expand_some(&self) -> bool {
        for _ in 0..EXPAND_PAGES {
            match self.service.expand(outbox::EXPAND_PAGE).await {
                Ok(page) if page.rows < outbox::EXPAND_PAGE as usize => return false,
                Ok(_) => {}
                Err(e) => {
                    self.service.jobs.row_failed("webhooks", "expansion", &e);
                    return false;
                }
            }
        }
        true
    }

    /// Delivers one batch of due messages; returns how many were attempted. Outcomes are
    /// written down as they arrive, several to a transaction, so a fast receiver is not held
    /// to one commit per message and a slow one does not hold up the others' bookkeeping.
    async fn deliver_due(&self) -> Result<usize, CheckoutError> {
        let claimed = self.claim(self.now()).await?;
        let n = claimed.len();
        if n == 0 {
            return Ok(0);
        }
        let mut targets = self.targets(&claimed).await?;
        let work: Vec<(Due, Option<Prepared>)> = claimed
            .into_iter()
            .map(|due| {
                let target = targets.remove(&(due.event_id.clone(), due.endpoint_id.clone()));
                (due, target)
            })
            .collect();
        // Bounded by the batch: every attempt has its slot, so a send never waits.
        let (done, mut outcomes) = tokio::sync::mpsc::channel::<Outcome>(n);
        let attempts = async move {
            futures::stream::iter(work)
                .for_each_concurrent(self.config.concurrency, |(due, target)| {
                    let done = done.clone();
                    async move {
                        let _ = done.send(self.attempt(due, target).await).await;
                    }
                })
                .await;
        };
        let recorder = async {
            while let Some(first) = outcomes.recv().await {
                let mut batch = vec![first];
                while batch.len() < RECORD_BATCH {
                    match outcomes.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
                // Unrecorded attempts keep their lease and are tried again when it ends:
                // receivers de-duplicate by webhook-id.
                if let Err(e) = self.record_all(batch).await {
                    tracing::warn!(error = %e, "webhook delivery bookkeeping failed");
                }
            }
        };
        tokio::join!(attempts, recorder);
        Ok(n)
    }

    /// Leases up to a batch of due deliveries in one statement. Under concurrent dispatchers
    /// a row another one leased first fails the re-checked condition and is skipped.
    async fn claim(&self, now: i64) -> Result<Vec<Due>, CheckoutError> {
        let batch = (self.config.concurrency * BATCH_WAVES) as i64;
        let lease_until = now + lease(&self.config);
        let rows = sqlx::query(
            "UPDATE webhook_deliveries SET leased_until = $1 \
             WHERE status = 'pending' AND next_attempt_at <= $2 AND leased_until < $2 \
             AND (event_id, endpoint_id) IN (SELECT event_id, endpoint_id FROM webhook_deliveries \
             WHERE status = 'pending' AND next_attempt_at <= $2 AND leased_until < $2 \
             ORDER BY next_attempt_at LIMIT $3) \
             RETURNING event_id, endpoint_id, attempts",
        )
        .bind(lease_until)
        .bind(now)
        .bind(batch)
        .fetch_all(&self.service.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Due {
                    event_id: r.try_get(0)?,
                    endpoint_id: r.try_get(1)?,
                    attempts: r.try_get(2)?,
                    lease_until,
                })
            })
            .collect()
    }

    /// What to send for each claimed delivery whose endpoint is still enabled, in one query;
    /// each endpoint's secrets are opened once.
    async fn targets(
        &self,
        dues: &[Due],
    ) -> Result<HashMap<(String, String), Prepared>, CheckoutError> {
        if dues.is_empty() {
            return Ok(HashMap::new());
        }
        let pairs = (0..dues.len())
            .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT d.event_id, d.endpoint_id, p.url, e.payload, p.secret, p.previous_secret, \
             p.previous_until FROM webhook_deliveries d \
             JOIN webhook_events e ON e.id = d.event_id \
             JOIN webhook_endpoints p ON p.id = d.endpoint_id \
             WHERE p.status = 'enabled' AND (d.event_id, d.endpoint_id) IN ({pairs})"
        );
        // Only placeholders are formatted in; the ids are bound.
        let mut query = sqlx::query(crate::db::sql(sql));
        for due in dues {
            query = query.bind(&due.event_id).bind(&due.endpoint_id);
        }
        let rows = query.fetch_all(&self.service.pool).await?;
        let open = |sealed: &str| -> Result<SigningSecret, CheckoutError> {
            let plain = self
                .service
                .secrets
                .open(sealed)
                .map_err(|e| CheckoutError::Corrupt(e.to_string()))?;
            SigningSecret::parse(&plain).map_err(|e| CheckoutError::Corrupt(e.to_string()))
        };
        let now = self.now();
        let mut opened: HashMap<String, Result<Vec<SigningSecret>, String>> = HashMap::new();
        let mut targets = HashMap::with_capacity(rows.len());
        for r in rows {
            let (Ok(event), Ok(endpoint)) = (r.try_get::<String, _>(0), r.try_get::<String, _>(1))
            else {
                continue;
            };
            let secrets = match opened.get(&endpoint) {
                Some(s) => s.clone(),
                None => {
                    let secrets = self.row_secrets(&r, now, &open).map_err(|e| {
                        self.service.jobs.row_failed("webhooks", &endpoint, &e);
                        "the endpoint's signing secret cannot be opened".to_owned()
                    });
                    opened.insert(endpoint.clone(), secrets.clone());
                    secrets
                }
            };
            let target = secrets.and_then(|secrets| {
                Ok(Target {
                    url: r.try_get(2).map_err(|e| e.to_string())?,
                    body: r.try_get(3).map_err(|e| e.to_string())?,
                    secrets,
                })
            });
            targets.insert((event, endpoint), target);
        }
        Ok(targets)
    }

    /// The signing secrets of a target row: the current one, and the previous one while its
    /// rotation overlap lasts.
    fn row_secrets(
        &self,
        r: &sqlx::any::AnyRow,
        now: i64,
        open: &dyn Fn(&str) -> Result<SigningSecret, CheckoutError>,
    ) -> Result<Vec<SigningSecret>, CheckoutError> {
        let mut secrets = vec![open(&r.try_get::<String, _>(4)?)?];
        let previous: Option<String> = r.try_get(5)?;
        let until: Option<i64> = r.try_get(6)?;
        if let (Some(p), Some(u)) = (previous, until)
            && u > now
        {
            secrets.push(open(&p)?);
        }
        Ok(secrets)
    }

    /// Posts one delivery; `result` is `None` when its endpoint is disabled (no target).
    async fn attempt(&self, due: Due, target: Option<Prepared>) -> Outcome {
        let target = match target {
            None => {
                return Outcome {
                    due,
                    result: None,
                    took_ms: 0,
                };
            }
            Some(Err(error)) => {
                return Outcome {
                    due,
                    result: Some(Result_::Failed {
                        status: None,
                        error,
                        retry_after: None,
                    }),
                    took_ms: 0,
                };
            }
            Some(Ok(target)) => target,
        };
        let started = Instant::now();
        let result = self.post(&due.event_id, &target).await;
        Outcome {
            took_ms: started.elapsed().as_millis() as i64,
            due,
            result: Some(result),
        }
    }

    async fn post(&self, id: &str, target: &Target) -> Result_ {
        // An address written into the URL skips the resolver; the registration rules still hold.
        if let Err(e) = self.service.targets.check(&target.url) {
            return Result_::Failed {
                status: None,
                error: e.to_string(),
                retry_after: None,
            };
        }
        let timestamp = self.now() / 1000;
        let secrets: Vec<&SigningSecret> = target.secrets.iter().collect();
        let signature = signature_header(&secrets, id, timestamp, target.body.as_bytes());
        let sent = self
            .http
            .post(&target.url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(target.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Result_::Delivered(r.status().as_u16()),
            Ok(r) if r.status().as_u16() == 410 => Result_::Gone,
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Result_::Failed {
                    status: Some(status),
                    error: format!("HTTP {status}"),
                    retry_after,
                }
            }
            Err(e) => Result_::Failed {
                status: None,
                error: if e.is_timeout() {
                    "timed out".into()
                } else if let Some(refused) = refused_target(&e) {
                    refused
                } else {
                    "connection failed".into()
                },
                retry_after: None,
            },
        }
    }

    /// Writes down a batch of outcomes in one transaction; should one of them fail, each is
    /// written in a transaction of its own, so that it alone is lost (and retried when its
    /// lease ends). Counts them once they are written.
    async fn record_all(&self, batch: Vec<Outcome>) -> Result<(), CheckoutError> {
        match outcomes::record_together(&self.service.pool, &batch, &self.config, self.now()).await
        {
            Ok(labels) => labels.into_iter().for_each(|l| self.metrics.count(l)),
            Err(e) => {
                tracing::warn!(error = %e, "a batch of webhook outcomes failed; writing them one by one");
                for outcome in &batch {
                    match outcomes::record_together(
                        &self.service.pool,
                        std::slice::from_ref(outcome),
                        &self.config,
                        self.now(),
                    )
                    .await
                    {
                        Ok(labels) => labels.into_iter().for_each(|l| self.metrics.count(l)),
                        Err(e) => {
                            tracing::warn!(error = %e, event = %outcome.due.event_id, "a webhook outcome could not be recorded")
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
