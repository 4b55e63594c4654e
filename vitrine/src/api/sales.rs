//! What a stream sold, minute by minute of the show: live orders at the moment of the
//! recording they were placed at, replay orders at the replay's moment the buyer was at, so a
//! seller sees which moment sold what (the studio charts it).

use super::ApiError;
use super::auth::{AuthSeller, OrdersRead};
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::OpenApi;
use vitrine_checkout::{OrderSource, StreamSale};
use vitrine_transcode::media::replay_ms;

#[derive(OpenApi)]
#[openapi(paths(sales))]
pub struct Doc;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/streams/{id}/sales", get(sales))
}

/// One minute of the show that sold something.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SalesMinute {
    /// Minutes from the show's start (the recording's, or the stream's without one).
    pub minute: u64,
    /// Units sold in the live room, and from the replay at this minute.
    pub live_units: u64,
    pub replay_units: u64,
    /// Units sold through the API for this stream (at the moment they were placed).
    pub api_units: u64,
    pub orders: u64,
}

/// A stream's sales by minute of the show.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamSales {
    /// The minutes that sold something, in order.
    pub minutes: Vec<SalesMinute>,
}

/// Which minute of the show each sale belongs to (sans-IO): a replay order at its `media_ms`,
/// any other where the recording was when it was placed (`positions`, see
/// `Manifest::replay_positions`), or its time since `started_ms` without a recording.
pub fn by_minute(
    sales: &[StreamSale],
    positions: &[(i64, u64, u64)],
    started_ms: i64,
) -> Vec<SalesMinute> {
    let mut minutes: BTreeMap<u64, SalesMinute> = BTreeMap::new();
    for s in sales {
        let at = match (s.source, s.media_ms) {
            (OrderSource::Replay, Some(ms)) => ms,
            _ => replay_ms(positions, s.created_at)
                .unwrap_or_else(|| (s.created_at - started_ms).max(0) as u64),
        };
        let minute = at / 60_000;
        let m = minutes.entry(minute).or_insert_with(|| SalesMinute {
            minute,
            ..SalesMinute::default()
        });
        let units = u64::from(s.quantity);
        match s.source {
            OrderSource::Live => m.live_units += units,
            OrderSource::Replay => m.replay_units += units,
            OrderSource::Api => m.api_units += units,
        }
        m.orders += 1;
    }
    minutes.into_values().collect()
}

/// What a stream sold, by minute of the show (live, replay and API orders apart)
#[utoipa::path(
    get,
    path = "/api/v1/streams/{id}/sales",
    params(("id" = String, Path, description = "The stream's id")),
    responses(
        (status = 200, description = "Paid orders by minute", body = StreamSales),
        (status = 404, description = "No such stream of this seller", body = vitrine_core::Problem)
    ),
    security(("oauth2" = ["orders:read"]))
)]
async fn sales(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<OrdersRead>,
    Path(id): Path<String>,
) -> Result<Json<StreamSales>, ApiError> {
    let row = super::owned_stream(&state, &seller, &id).await?;
    let sales = state
        .checkout
        .orders()
        .stream_sales(&seller.id, &row.id)
        .await?;
    let positions = super::timeline::replay_positions(&state, &row.id).await;
    Ok(Json(StreamSales {
        minutes: by_minute(&sales, &positions, row.created_at),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(
        source: OrderSource,
        created_at: i64,
        media_ms: Option<u64>,
        quantity: u32,
    ) -> StreamSale {
        StreamSale {
            source,
            created_at,
            media_ms,
            quantity,
        }
    }

    #[test]
    fn sales_fall_in_the_minute_of_the_show_they_were_made_at() {
        // The recording: 2 minutes from wall time 1 000 000.
        let positions = [(1_000_000, 0, 60_000), (1_060_000, 60_000, 60_000)];
        let sales = [
            sale(OrderSource::Live, 1_010_000, None, 2),
            sale(OrderSource::Live, 1_070_000, None, 1),
            sale(OrderSource::Replay, 9_999_999, Some(65_000), 3),
            sale(OrderSource::Api, 1_020_000, None, 1),
        ];
        assert_eq!(
            by_minute(&sales, &positions, 0),
            vec![
                SalesMinute {
                    minute: 0,
                    live_units: 2,
                    replay_units: 0,
                    api_units: 1,
                    orders: 2
                },
                SalesMinute {
                    minute: 1,
                    live_units: 1,
                    replay_units: 3,
                    api_units: 0,
                    orders: 2
                },
            ]
        );
        // Without a recording: since the stream was created.
        let alone = by_minute(&[sale(OrderSource::Live, 130_000, None, 1)], &[], 0);
        assert_eq!(alone[0].minute, 2);
    }
}
