//! Commerce: checkout (payments, cards, webhooks' sealing key) and its background jobs, the
//! reservation reaper, the webhook dispatcher, the exchange-rate follower and payouts, started
//! with the node and joined on shutdown. Every node runs them: the jobs lease their rows, so
//! several nodes share the work.

use crate::config::{Config, PayoutsConfig};
use crate::store::Store;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitrine_checkout::auctions::spawn_auction_closer;
use vitrine_checkout::reaper::spawn_reaper;
use vitrine_checkout::webhooks::TargetPolicy;
use vitrine_checkout::webhooks::dispatcher::{DispatchConfig, DispatchMetrics};
use vitrine_checkout::webhooks::schedule::RetrySchedule;
use vitrine_checkout::webhooks::sealing::SecretBox;
use vitrine_checkout::{Checkout, SandboxProvider};

/// How often expired stock reservations are looked for.
const REAPER_INTERVAL: Duration = Duration::from_secs(1);
/// How often due auctions are looked for: the hammer falls at most this late.
const HAMMER_INTERVAL: Duration = Duration::from_millis(200);

/// Checkout and its running jobs.
pub struct Commerce {
    pub checkout: Checkout,
    /// The built-in card processor `checkout` charges through.
    pub sandbox: Arc<SandboxProvider>,
    pub jobs: Jobs,
}

/// The background jobs, stopped by the node's background token.
pub struct Jobs {
    reaper: JoinHandle<()>,
    /// Brings the hammer down on auctions whose clock ran out.
    auctions: JoinHandle<()>,
    /// Delivers the webhook outbox.
    dispatcher: JoinHandle<()>,
    /// Reconciles payouts in transit and runs the scheduled payouts.
    payouts: JoinHandle<()>,
    /// Hands what this node commits to the rooms.
    facts: Option<JoinHandle<()>>,
}

impl Jobs {
    /// Adds the pump of the commerce facts (started once the rooms exist).
    pub fn with_fact_pump(mut self, pump: JoinHandle<()>) -> Self {
        self.facts = Some(pump);
        self
    }

    /// Waits for every job to have stopped (after the background token is cancelled).
    pub async fn join(self) {
        if let Some(facts) = self.facts {
            let _ = facts.await;
        }
        let _ = self.reaper.await;
        let _ = self.auctions.await;
        let _ = self.dispatcher.await;
        let _ = self.payouts.await;
    }
}

/// Builds checkout with its keys and starts its jobs until `background` is cancelled.
pub async fn start(
    config: &Config,
    store: &Store,
    registry: &mut Registry,
    background: &CancellationToken,
) -> anyhow::Result<Commerce> {
    let (checkout, sandbox) = checkout(config, store).await?;
    checkout.job_metrics().register(registry);
    checkout.facts().metrics().register(registry);
    let reaper = spawn_reaper(checkout.clone(), REAPER_INTERVAL, background.clone());
    let auctions =
        spawn_auction_closer(checkout.sale().clone(), HAMMER_INTERVAL, background.clone());
    let dispatch_metrics = DispatchMetrics::default();
    dispatch_metrics.register(registry);
    let dispatcher = checkout.webhooks().dispatcher(
        DispatchConfig {
            schedule: RetrySchedule::new(config.webhooks.retry_schedule.clone()),
            timeout: config.webhooks.timeout,
            ..Default::default()
        },
        dispatch_metrics,
    )?;
    let dispatcher = tokio::spawn(dispatcher.run(background.clone()));
    if let Some((source, every)) = &config.rates {
        tokio::spawn(
            checkout
                .rates()
                .clone()
                .follow(source.clone(), *every, background.clone()),
        );
    }
    let payouts = tokio::spawn(run_payouts(
        checkout.clone(),
        config.payouts.clone(),
        background.clone(),
    ));
    Ok(Commerce {
        checkout,
        sandbox,
        jobs: Jobs {
            reaper,
            auctions,
            dispatcher,
            payouts,
            facts: None,
        },
    })
}

/// The sandbox card processor. On SQLite it keeps its books in a file of its own beside the
/// database (`<name>-sandbox-processor.db`, shared by every node on that database), as a real
/// processor keeps them in its own systems: its writes do not take turns with the order path's
/// at the one database's write lock. On PostgreSQL, or SQLite in memory, it keeps them in the
/// shared database.
async fn sandbox(config: &Config, store: &Store) -> anyhow::Result<SandboxProvider> {
    let beside = config
        .database_url
        .starts_with("sqlite:")
        .then(|| SandboxProvider::books_beside(&config.database_url))
        .flatten();
    let sandbox = if let Some(path) = beside {
        SandboxProvider::on_own_file(&path, store.pool(), config.sandbox_latency)
            .await
            .map_err(|e| anyhow::anyhow!("opening the sandbox processor's books: {e}"))?
    } else {
        SandboxProvider::new(store.pool().clone(), config.sandbox_latency)
    };
    Ok(sandbox.with_debit_latency(config.sandbox_debit_latency))
}

/// Checkout with the sandbox payment provider, the webhook secrets' sealing key and the card
/// fingerprint key (files under the data dir unless configured; every node must share them).
async fn checkout(
    config: &Config,
    store: &Store,
) -> anyhow::Result<(Checkout, Arc<SandboxProvider>)> {
    let payments = Arc::new(sandbox(config, store).await?);
    let sandbox = Arc::clone(&payments);
    let key_file = config
        .webhooks
        .secrets_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("webhook-secrets.key"));
    let sealing = SecretBox::load_or_create(&key_file)?;
    let card_key_file = config
        .checkout
        .card_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("card-fingerprint.key"));
    let card_key = vitrine_checkout::card::CardKey::load_or_create(&card_key_file)?;
    let checkout = Checkout::new(store.pool().clone(), payments, config.checkout.clone())
        .with_webhooks(
            sealing,
            TargetPolicy {
                allow_private: config.webhooks.allow_private_targets,
            },
        )
        .with_card_key(card_key);
    Ok((checkout, sandbox))
}

/// Payouts in the background: payouts in transit are checked with the rail, and on schedule
/// each seller's available balance is paid out.
async fn run_payouts(checkout: Checkout, config: PayoutsConfig, stop: CancellationToken) {
    let mut reconcile = tokio::time::interval(config.reconcile_every);
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let schedule = config
        .scheduled_every
        .unwrap_or(Duration::from_secs(365 * 86_400));
    let mut scheduled = tokio::time::interval_at(tokio::time::Instant::now() + schedule, schedule);
    scheduled.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = reconcile.tick() => {
                if let Err(e) = checkout.payouts().reconcile_payouts().await {
                    tracing::warn!(error = %e, "payout reconciliation failed");
                }
            }
            _ = scheduled.tick(), if config.scheduled_every.is_some() => {
                match checkout.payouts().run_scheduled_payouts(config.minimum).await {
                    Ok(made) => tracing::info!(payouts = made.len(), "scheduled payouts"),
                    Err(e) => tracing::warn!(error = %e, "scheduled payouts failed"),
                }
            }
        }
    }
}
