//! Checkout's errors: [`CheckoutError`] for what went wrong in the system or the request, and
//! [`Rejection`] for the business answers to an order (sold out, declined...), which are stored
//! with the idempotency key and replayed exactly.

use crate::payment::PaymentError;
use serde::{Deserialize, Serialize};
use vitrine_core::BuyFailure;

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Payment(#[from] PaymentError),
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// Something the request needs is missing for now (exchange rates too old to use);
    /// the same request may succeed later.
    #[error("{0}")]
    Unavailable(String),
    #[error("the available balance is less than the payout")]
    InsufficientBalance,
    /// A part could not be set up (at start-up, never per request).
    #[error("setting up: {0}")]
    Setup(String),
}

pub(crate) fn corrupt(e: impl std::fmt::Display) -> CheckoutError {
    CheckoutError::Corrupt(e.to_string())
}

/// Why an order was refused; the `kind` names are the problem types' slugs with `_` for `-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectKind {
    SoldOut,
    PaymentDeclined,
    LimitExceeded,
    SaleEnded,
    PaymentTimeout,
    ProductNotFound,
    NotPinned,
    /// The idempotency key was used before with another request body.
    IdempotencyKeyReused,
    /// The first request with this key is still running.
    RequestInProgress,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {detail}")]
pub struct Rejection {
    pub kind: RejectKind,
    pub detail: String,
}

impl Rejection {
    pub fn new(kind: RejectKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// HTTP status and problem slug.
    pub fn http(&self) -> (u16, &'static str) {
        match self.kind {
            RejectKind::SoldOut => (409, "sold-out"),
            RejectKind::PaymentDeclined => (402, "payment-declined"),
            RejectKind::LimitExceeded => (409, "limit-exceeded"),
            RejectKind::SaleEnded => (409, "sale-ended"),
            RejectKind::PaymentTimeout => (504, "payment-timeout"),
            RejectKind::ProductNotFound => (404, "not-found"),
            RejectKind::NotPinned => (409, "not-pinned"),
            RejectKind::IdempotencyKeyReused => (422, "idempotency-key-reused"),
            RejectKind::RequestInProgress => (409, "request-in-progress"),
        }
    }

    /// The chat protocol's reason.
    pub fn buy_failure(&self) -> BuyFailure {
        match self.kind {
            RejectKind::SoldOut => BuyFailure::SoldOut,
            RejectKind::PaymentDeclined => BuyFailure::PaymentDeclined,
            RejectKind::LimitExceeded => BuyFailure::LimitExceeded,
            RejectKind::SaleEnded => BuyFailure::SaleEnded,
            RejectKind::PaymentTimeout => BuyFailure::PaymentTimeout,
            RejectKind::ProductNotFound | RejectKind::NotPinned => BuyFailure::NotPinned,
            RejectKind::IdempotencyKeyReused => BuyFailure::Invalid,
            RejectKind::RequestInProgress => BuyFailure::Unavailable,
        }
    }
}
