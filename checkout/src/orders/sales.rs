//! What a stream sold, order by order, for the seller's sales-by-moment chart: the orders of
//! the stream that were paid (and perhaps shipped or delivered), with where and when each was placed.

use super::OrderSource;
use super::Orders;
use crate::error::{CheckoutError, corrupt};
use sqlx::Row;
use vitrine_core::{SellerId, StreamId};

/// Orders of one stream read at most.
const MAX_SALES: i64 = 100_000;

/// One sold order of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSale {
    pub source: OrderSource,
    /// Unix milliseconds when it was placed.
    pub created_at: i64,
    /// For a replay order: the replay's moment.
    pub media_ms: Option<u64>,
    pub quantity: u32,
}

impl Orders {
    /// `seller`'s sold orders through `stream`, oldest first.
    pub async fn stream_sales(
        &self,
        seller: &SellerId,
        stream: &StreamId,
    ) -> Result<Vec<StreamSale>, CheckoutError> {
        let rows = sqlx::query(
            "SELECT source, created_at, media_ms, quantity FROM orders \
             WHERE seller_id = $1 AND stream_id = $2 AND status IN ('paid', 'fulfilled', 'delivered') \
             ORDER BY created_at LIMIT $3",
        )
        .bind(seller.as_str())
        .bind(stream.as_str())
        .bind(MAX_SALES)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let source: String = r.try_get(0)?;
                Ok(StreamSale {
                    source: OrderSource::parse(&source).ok_or_else(|| corrupt(source))?,
                    created_at: r.try_get(1)?,
                    media_ms: r
                        .try_get::<Option<i64>, _>(2)?
                        .map(|ms| u64::try_from(ms).map_err(corrupt))
                        .transpose()?,
                    quantity: u32::try_from(r.try_get::<i64, _>(3)?).map_err(corrupt)?,
                })
            })
            .collect()
    }
}
