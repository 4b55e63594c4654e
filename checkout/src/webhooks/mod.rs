//! Signed webhooks (Standard Webhooks 1.0) for sellers' systems: the events, the transactional
//! outbox they are written to, endpoints and their secrets (sealed at rest), the retry schedule
//! and the dispatcher that delivers.
//!
//! [`Webhooks`] is the service: it owns the endpoints, the expansion of the fact stream's
//! messages and the dispatcher. The order path does not call it: it only writes
//! [`outbox::Hook`]s into its fact rows, and the service finds them there.

pub mod dispatcher;
pub mod endpoints;
pub mod events;
pub mod metrics;
pub mod outbox;
mod outcomes;
pub mod resolver;
pub mod schedule;
pub mod sealing;
pub mod signature;

pub use endpoints::{Delivery, Endpoint, EndpointPatch, EndpointStatus, NewEndpoint, TargetPolicy};
pub use events::EventType;

use crate::error::CheckoutError;
use crate::jobs::JobMetrics;
use dispatcher::{DispatchConfig, DispatchMetrics, Dispatcher};
use sealing::SecretBox;
use sqlx::AnyPool;
use std::sync::Arc;
use tokio::sync::Notify;
use vitrine_core::time::Clock;
use vitrine_core::write_gate::WriteGate;

/// The webhooks service; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    pub(crate) pool: AnyPool,
    /// SQLite's one writer: the expansion writes in its turn.
    pub(crate) gate: WriteGate,
    /// Seals signing secrets at rest.
    pub(crate) secrets: SecretBox,
    /// Which URLs endpoints may have.
    pub(crate) targets: TargetPolicy,
    /// Wakes the dispatcher when something is due now (a committed fact row with messages, a
    /// replay).
    pub(crate) wake: Arc<Notify>,
    /// Counts rows the dispatcher could not process.
    pub(crate) jobs: JobMetrics,
    /// Where the retry schedule's time comes from (tests move it).
    pub(crate) clock: Arc<dyn Clock>,
}

impl Webhooks {
    /// A service with a secret box of its own and the default target policy (see
    /// [`Webhooks::configured`]).
    pub(crate) fn new(pool: AnyPool, jobs: JobMetrics, clock: Arc<dyn Clock>) -> Self {
        Self {
            gate: WriteGate::of(&pool),
            pool,
            secrets: SecretBox::ephemeral(),
            targets: TargetPolicy::default(),
            wake: Arc::new(Notify::new()),
            jobs,
            clock,
        }
    }

    /// The key that seals signing secrets (shared by every node of a deployment) and which
    /// endpoint URLs are allowed.
    pub(crate) fn configured(mut self, secrets: SecretBox, targets: TargetPolicy) -> Self {
        self.secrets = secrets;
        self.targets = targets;
        self
    }

    /// Unix milliseconds by the service's clock.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Expands one page of up to `limit` committed fact rows (see [`outbox::expand`]).
    pub(crate) async fn expand(&self, limit: i64) -> Result<outbox::Expanded, CheckoutError> {
        outbox::expand(&self.pool, &self.gate, limit, self.now(), &self.jobs).await
    }

    /// A dispatcher delivering the outbox.
    pub fn dispatcher(
        &self,
        config: DispatchConfig,
        metrics: DispatchMetrics,
    ) -> Result<Dispatcher, CheckoutError> {
        Dispatcher::new(self.clone(), config, metrics)
    }

    /// Expands every committed fact row's messages into messages and deliveries now, as a
    /// dispatcher's round would (for a test's assertions, or an operator's tool); how many
    /// messages some endpoint took.
    pub async fn expand_pending(&self) -> Result<usize, CheckoutError> {
        let mut messages = 0;
        loop {
            let page = self.expand(outbox::EXPAND_PAGE).await?;
            messages += page.messages;
            if page.rows == 0 {
                return Ok(messages);
            }
        }
    }
}
