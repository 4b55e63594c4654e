//! The sandbox processor's 3-D Secure check (`/sandbox/payments/{id}`): the page a buyer is
//! sent to by a `payment_pending` order's `next_action`, standing in for the card's bank. The
//! buyer approves or fails the check; the payment gets its answer, and checkout settles the
//! order from the processor's record at once (the processor's notification). The payment's id
//! is random and known only to its buyer, who got it with their order's `next_action` (the
//! seller's view of the order carries neither it nor the payment id); the route is anonymous,
//! so it is rate-limited per address, as guessing a secret is (`ip_limits`'s auth class).

use super::ApiError;
use crate::pages::{esc, page};
use crate::state::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use vitrine_checkout::PaymentStatus;
use vitrine_checkout::payment::{Payment, PaymentError};
use vitrine_core::{OrderId, Problem};

pub fn routes() -> Router<AppState> {
    Router::new().route("/sandbox/payments/{id}", get(show).post(answer))
}

/// The buyer's answer to the check, as the page's form posts it.
#[derive(Deserialize)]
struct CheckForm {
    /// `approve` or `fail`.
    result: String,
}

/// A sandbox payment id: `py_` and 24 hex digits; anything else is no payment.
fn payment_id(raw: &str) -> Result<&str, ApiError> {
    let hex = raw.strip_prefix("py_").unwrap_or("");
    if hex.len() == 24 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(raw)
    } else {
        Err(Problem::not_found("no such payment").into())
    }
}

fn unavailable(e: PaymentError) -> ApiError {
    match e {
        PaymentError::NotFound => Problem::not_found("no such payment").into(),
        e => {
            tracing::warn!(error = %e, "sandbox processor unavailable");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "payment-provider-unavailable",
                "service unavailable",
            )
            .with_detail("the card processor could not be reached; retry")
            .into()
        }
    }
}

async fn load(state: &AppState, raw: &str) -> Result<Payment, ApiError> {
    state
        .sandbox
        .payment(payment_id(raw)?)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| Problem::not_found("no such payment").into())
}

/// The check: the amount and two buttons while it waits; what became of it after.
async fn show(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let payment = load(&state, &raw).await?;
    let amount = esc(&payment.amount.to_string());
    let body = match payment.status {
        PaymentStatus::RequiresAction { .. } => format!(
            "<h1>Confirm your payment</h1><p>Your bank asks you to confirm a payment of \
             <strong>{amount}</strong> (sandbox: no bank is asked).</p>\
             <form method=\"post\"><button name=\"result\" value=\"approve\">Approve</button> \
             <button name=\"result\" value=\"fail\">Fail the check</button></form>"
        ),
        status => outcome_body(&status, &amount),
    };
    Ok(page(StatusCode::OK, "Payment check", &body))
}

/// The buyer's answer: the payment gets it, then its order is settled from it.
async fn answer(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: Bytes,
) -> Result<Response, ApiError> {
    let id = payment_id(&raw)?;
    let approve = match serde_urlencoded::from_bytes::<CheckForm>(&form) {
        Ok(f) if f.result == "approve" => true,
        Ok(f) if f.result == "fail" => false,
        _ => {
            return Err(Problem::bad_request(
                "invalid-request",
                "the form's result is approve or fail",
            )
            .into());
        }
    };
    let payment = state
        .sandbox
        .authenticate(id, approve)
        .await
        .map_err(unavailable)?;
    // The processor's notification: the order is settled now rather than at the next poll.
    // Should that fail, the reaper's poll settles it.
    if let Ok(order) = OrderId::parse(&payment.reference)
        && let Err(e) = state.checkout.payments().payment_updated(&order).await
    {
        tracing::warn!(error = %e, order = %order, "a confirmed payment's order waits for the poll");
    }
    let amount = esc(&payment.amount.to_string());
    Ok(page(
        StatusCode::OK,
        "Payment check",
        &outcome_body(&payment.status, &amount),
    ))
}

/// What the page says once the check has its answer.
fn outcome_body(status: &PaymentStatus, amount: &str) -> String {
    let said = match status {
        PaymentStatus::Succeeded | PaymentStatus::Refunded => "was approved",
        PaymentStatus::Declined { .. } => "was not approved",
        PaymentStatus::Cancelled => "was cancelled: the order's hold ran out",
        _ => "is being processed",
    };
    format!(
        "<h1>Payment {said}</h1><p>The payment of <strong>{amount}</strong> {said}. You can \
         close this page and go back to the show.</p>"
    )
}
