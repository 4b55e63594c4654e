//! The card processor as checkout sees it. A real processor (and the built-in sandbox) confirms
//! a charge asynchronously: `create` answers `processing`, and the final state is learnt later.
//! Every call is keyed by the order id (`reference`), so a retried call never charges twice and
//! a process that died mid-payment can ask what happened.

use crate::card::CardNumber;
use std::time::Duration;
use vitrine_core::Money;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentStatus {
    /// Being confirmed, within the payment timeout (a card's usual answer).
    Processing,
    /// The buyer has a step to take at `url` (3-D Secure); the answer comes after it.
    RequiresAction {
        url: String,
    },
    /// Confirmed later by the method itself (a bank debit): hours or days, not seconds.
    AwaitingConfirmation,
    Succeeded,
    Declined {
        code: String,
    },
    /// Cancelled before it settled: nothing was charged.
    Cancelled,
    Refunded,
}

impl PaymentStatus {
    /// Whether the answer comes after the request (the order waits in `payment_pending`).
    pub fn is_deferred(&self) -> bool {
        matches!(
            self,
            Self::RequiresAction { .. } | Self::AwaitingConfirmation
        )
    }

    /// Whether the payment has its final answer (charged, or not charged).
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Processing) && !self.is_deferred()
    }
}

/// One payment at the processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: String,
    pub reference: String,
    pub amount: Money,
    pub status: PaymentStatus,
}

/// A charge to create.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    /// The order id: the processor's idempotency key.
    pub reference: String,
    pub amount: Money,
    pub card: CardNumber,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    #[error("no such payment")]
    NotFound,
    #[error("payment cannot be refunded in its state")]
    NotRefundable,
}

#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Creates (or, for a known reference, returns) a payment.
    async fn create(&self, request: &ChargeRequest) -> Result<Payment, PaymentError>;
    /// The payment for a reference, if one was created.
    async fn retrieve(&self, reference: &str) -> Result<Option<Payment>, PaymentError>;
    /// Waits up to `timeout` for the payment to leave `processing`; returns its state then.
    async fn wait(&self, reference: &str, timeout: Duration) -> Result<Payment, PaymentError>;
    /// Cancels a payment that has not settled (a deferred one too: its hold ran out). A settled payment is returned as it is, so the
    /// caller learns that it was charged after all.
    async fn cancel(&self, reference: &str) -> Result<Payment, PaymentError>;
    /// Refunds a succeeded payment in full. `idempotency_key` names the refund: a repeat with
    /// the same key (a retry after a lost answer) returns the refunded payment and refunds
    /// nothing more.
    async fn refund(&self, reference: &str, idempotency_key: &str)
    -> Result<Payment, PaymentError>;
}
