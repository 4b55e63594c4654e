//! A dispatcher's bookkeeping: the outcome of each attempt written down (done, retried per the
//! schedule, failed; the endpoint disabled on 410 or when it has failed for too long), several
//! outcomes to a transaction, each only while the delivery's lease is still the dispatcher's.

use super::dispatcher::{DispatchConfig, Outcome, Result_};
use super::endpoints::disable;
use crate::error::CheckoutError;
use sqlx::{AnyPool, Row};

/// Writes down `batch` in one transaction; the metric label of each outcome written.
pub(super) async fn record_together(
    pool: &AnyPool,
    batch: &[Outcome],
    config: &DispatchConfig,
    now: i64,
) -> Result<Vec<&'static str>, CheckoutError> {
    let mut tx = pool.begin().await?;
    let mut labels = Vec::with_capacity(batch.len());
    for outcome in batch {
        labels.extend(record_in(&mut tx, outcome, config, now).await?);
    }
    tx.commit().await?;
    Ok(labels)
}

/// Records one outcome; returns the metric label to count, or `None` when the delivery
/// is no longer this dispatcher's (its lease ran out and another took it, or its endpoint
/// was disabled meanwhile) and nothing was written.
async fn record_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    outcome: &Outcome,
    config: &DispatchConfig,
    now: i64,
) -> Result<Option<&'static str>, CheckoutError> {
    let Outcome {
        due,
        result,
        took_ms,
    } = outcome;
    // Takes the row (PostgreSQL locks it until the end) only while the lease is ours. A
    // success is written by that same statement, the common case in one round trip.
    let guard = match result {
        Some(Result_::Delivered(code)) => sqlx::query(
            "UPDATE webhook_deliveries SET status = 'succeeded', attempts = $1, \
             next_attempt_at = $2, leased_until = 0, last_status = $3, last_error = NULL, \
             updated_at = $2 WHERE event_id = $4 AND endpoint_id = $5 \
             AND status = 'pending' AND leased_until = $6",
        )
        .bind(due.attempts + 1)
        .bind(now)
        .bind(i64::from(*code)),
        _ => sqlx::query(
            "UPDATE webhook_deliveries SET leased_until = leased_until \
             WHERE event_id = $1 AND endpoint_id = $2 AND status = 'pending' \
             AND leased_until = $3",
        ),
    };
    let mine = guard
        .bind(&due.event_id)
        .bind(&due.endpoint_id)
        .bind(due.lease_until)
        .execute(&mut **tx)
        .await?
        .rows_affected()
        == 1;
    if !mine {
        tracing::warn!(event = %due.event_id, "a webhook delivery's lease ended before its outcome was recorded");
        return Ok(None);
    }
    let Some(result) = result else {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = 'endpoint disabled', \
             leased_until = 0, updated_at = $1 WHERE event_id = $2 AND endpoint_id = $3",
        )
        .bind(now)
        .bind(&due.event_id)
        .bind(&due.endpoint_id)
        .execute(&mut **tx)
        .await?;
        return Ok(None);
    };
    let attempt = due.attempts + 1;
    let (status_code, error) = match &result {
        Result_::Delivered(s) => (Some(i64::from(*s)), None),
        Result_::Gone => (Some(410), Some("410 Gone: endpoint disabled".to_owned())),
        Result_::Failed { status, error, .. } => (status.map(i64::from), Some(error.clone())),
    };
    sqlx::query(
        "INSERT INTO webhook_attempts (event_id, endpoint_id, attempt, at, status_code, \
         duration_ms, error) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&due.event_id)
    .bind(&due.endpoint_id)
    .bind(attempt)
    .bind(now)
    .bind(status_code)
    .bind(took_ms)
    .bind(error.clone())
    .execute(&mut **tx)
    .await?;
    let (status, next, label) = match &result {
        Result_::Delivered(_) => {
            sqlx::query(
                "UPDATE webhook_endpoints SET failing_since = NULL \
                 WHERE id = $1 AND failing_since IS NOT NULL",
            )
            .bind(&due.endpoint_id)
            .execute(&mut **tx)
            .await?;
            // The delivery itself was written by the guard above.
            return Ok(Some("delivered"));
        }
        Result_::Gone => {
            disable(tx, &due.endpoint_id, "the endpoint answered 410 Gone", now).await?;
            ("failed", now, "gone")
        }
        Result_::Failed { retry_after, .. } => {
            sqlx::query(
                "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $1) \
                 WHERE id = $2",
            )
            .bind(now)
            .bind(&due.endpoint_id)
            .execute(&mut **tx)
            .await?;
            let since: Option<i64> =
                sqlx::query("SELECT failing_since FROM webhook_endpoints WHERE id = $1")
                    .bind(&due.endpoint_id)
                    .fetch_one(&mut **tx)
                    .await?
                    .try_get(0)?;
            if since.is_some_and(|s| now - s > config.disable_after.as_millis() as i64) {
                disable(tx, &due.endpoint_id, "failing for too long", now).await?;
                ("failed", now, "failed")
            } else {
                match config.schedule.next_delay(attempt as u32, *retry_after) {
                    Some(d) => ("pending", now + d.as_millis() as i64, "failed"),
                    None => ("failed", now, "failed"),
                }
            }
        }
    };
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $1, attempts = $2, next_attempt_at = $3, \
         leased_until = 0, last_status = $4, last_error = $5, updated_at = $6 \
         WHERE event_id = $7 AND endpoint_id = $8",
    )
    .bind(status)
    .bind(attempt)
    .bind(next)
    .bind(status_code)
    .bind(error)
    .bind(now)
    .bind(&due.event_id)
    .bind(&due.endpoint_id)
    .execute(&mut **tx)
    .await?;
    Ok(Some(label))
}
