//! The payments service: the processor's side of the order path over [`Orders`]. It charges a
//! reserved order and settles it from the processor's answer (in batches per seller,
//! [`settle_batch`]; one at a time, [`settle`]), waits for payments confirmed later
//! ([`confirmations`]), refunds and cancels at the seller's word ([`refunds`]), and settles what
//! a dead request or an ended hold left behind ([`expiry`]). It knows nothing of how orders are
//! placed ([`crate::sale`] calls it).

pub mod confirmations;
mod expiry;
pub mod refunds;
mod settle;
mod settle_batch;

pub(crate) use settle_batch::SettleJob;

use crate::card::CardNumber;
use crate::error::CheckoutError;
use crate::group::Batcher;
use crate::orders::{Order, OrderResult, Orders};
use crate::payment::{ChargeRequest, PaymentProvider, PaymentStatus};
use settle_batch::SettleWriter;
use std::sync::Arc;
use vitrine_core::SellerId;

/// Charges, settlements, confirmations and refunds; cheap to clone.
#[derive(Clone)]
pub struct Payments {
    pub(crate) orders: Orders,
    /// The card processor.
    pub(crate) provider: Arc<dyn PaymentProvider>,
    /// The settle step's group commit, per seller (whose balance row every sale moves).
    pub(crate) settlements: Batcher<SellerId, SettleJob, Result<OrderResult, CheckoutError>>,
    /// Where the reaper's poll of deferred payments goes on (see [`confirmations`]).
    pub(crate) deferred_cursor: Arc<std::sync::Mutex<String>>,
}

impl Payments {
    pub(crate) fn new(orders: Orders, provider: Arc<dyn PaymentProvider>) -> Self {
        Self {
            orders,
            provider,
            settlements: Batcher::new(crate::MAX_BATCH),
            deferred_cursor: Arc::default(),
        }
    }

    /// Step 2: charge the card and wait for the confirmation, then settle.
    pub(crate) async fn charge(
        &self,
        key: &str,
        order: Order,
        card: &CardNumber,
    ) -> Result<OrderResult, CheckoutError> {
        // The buyer pays in their currency when the order was priced in it; the processor
        // settles the seller in the product's, at the rate locked on the order.
        let request = ChargeRequest {
            reference: order.id.to_string(),
            amount: order.charge_amount(),
            card: card.clone(),
        };
        // A processor that cannot be reached leaves the order pending: a retry with the key
        // resumes it, or the reaper asks again when the reservation expires, so a charge that
        // did go through is never lost.
        // A processor that confirms at once (the answer to `create` is final) is not asked
        // again.
        let mut payment = self.provider.create(&request).await?;
        if payment.status == PaymentStatus::Processing {
            payment = self
                .provider
                .wait(&request.reference, self.orders.config.payment_timeout)
                .await?;
        }
        if payment.status == PaymentStatus::Processing {
            payment = self.provider.cancel(&request.reference).await?;
        }
        let seller = order.seller_id.clone();
        self.settlements
            .submit(
                seller,
                SettleJob {
                    key: key.to_owned(),
                    order,
                    payment,
                },
                SettleWriter(self.clone()),
            )
            .await
            .map_err(|_| CheckoutError::Unavailable("the settlement was lost; retry".into()))?
    }
}
