//! A stream's timeline for its replay: the room events kept by `vitrine_chat::timeline`,
//! placed on the recording's media time (`at_ms` from the replay's start), paged by media time.

use super::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;
use vitrine_core::{Problem, StreamId};
use vitrine_transcode::media::replay_ms;

#[derive(OpenApi)]
#[openapi(paths(timeline))]
pub struct Doc;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/public/streams/{id}/timeline", get(timeline))
}

/// Events one page holds at most.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 500;
/// Entries read from the store per page at most (some fall outside the asked range).
const READ_AHEAD: usize = 4 * MAX_LIMIT;

/// Where the stream's recording's segments are (see `Manifest::replay_positions`); empty
/// without a recording.
pub(super) async fn replay_positions(state: &AppState, id: &StreamId) -> Vec<(i64, u64, u64)> {
    match &state.hls {
        Some(hls) => match hls.media(id).await {
            Some(media) => media.read(|m| m.replay_positions()),
            None => Vec::new(),
        },
        None => Vec::new(),
    }
}

/// Which part of the replay.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TimelineQuery {
    /// From this media time (ms from the replay's start), inclusive; default 0.
    #[param(minimum = 0)]
    pub from_ms: Option<u64>,
    /// Up to this media time, inclusive; default the end.
    #[param(minimum = 0)]
    pub to_ms: Option<u64>,
    /// Events per page, 1 to 1000 (default 500).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// A page of a stream's timeline.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TimelinePage {
    /// In media order. Each: `type` (`chat`, `pin`, `sale`, `unpin`, `stock`, `caption`),
    /// `at_ms` (from the replay's start), and the room event's fields as the chat sent them
    /// (docs/chat-protocol.md).
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
    /// Where the next page starts, when this one was full (an event at the same millisecond
    /// as this page's last may come again there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_from_ms: Option<u64>,
}

/// What happened in a stream's room, on its recording's media time (a replay plays chat and pins back with it)
#[utoipa::path(
    get,
    path = "/api/v1/public/streams/{id}/timeline",
    params(("id" = String, Path, description = "The stream's id"), TimelineQuery),
    responses(
        (status = 200, description = "A page of events", body = TimelinePage),
        (status = 400, description = "A malformed query, or from_ms after to_ms", body = Problem),
        (status = 404, description = "No such stream, or it has no recording", body = Problem)
    )
)]
async fn timeline(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<TimelineQuery>, QueryRejection>,
) -> Result<Json<TimelinePage>, ApiError> {
    let Query(q) = q.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let id = super::path_id(&id, StreamId::parse, "no such stream")?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Problem::bad_request("invalid-query", "limit must be 1 to 1000").into());
    }
    let (from, to) = (q.from_ms.unwrap_or(0), q.to_ms.unwrap_or(u64::MAX));
    if from > to {
        return Err(Problem::bad_request("invalid-query", "from_ms is after to_ms").into());
    }
    state
        .store
        .stream(&id)
        .await?
        .ok_or_else(|| Problem::not_found("no such stream"))?;
    let positions = replay_positions(&state, &id).await;
    if positions.is_empty() {
        return Err(Problem::not_found("this stream has no recording").into());
    }
    // Media time grows with wall time: read from the end of the segment before the one `from`
    // falls in (an event between the two maps to the latter's start).
    let within = positions.partition_point(|&(_, at, _)| at <= from);
    let wall_from = match within.checked_sub(2).map(|i| positions[i]) {
        Some((wall, _, length)) => wall + length as i64,
        None => i64::MIN,
    };
    // ...and ends before the first segment starting after `to` (events before it, in a gap,
    // map to its start).
    let after = positions.partition_point(|&(_, at, _)| at <= to);
    let wall_to = positions
        .get(after)
        .map_or(i64::MAX, |&(wall, _, _)| wall - 1);
    let entries = state
        .timeline
        .read(id.as_str(), wall_from, wall_to, READ_AHEAD)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading a timeline");
            Problem::internal()
        })?;
    let mut events = Vec::new();
    let mut next_from_ms = None;
    for e in entries {
        let Some(at) = replay_ms(&positions, e.wall_ms) else {
            continue;
        };
        if at < from {
            continue;
        }
        if at > to {
            break;
        }
        if events.len() == limit {
            next_from_ms = Some(at);
            break;
        }
        let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(&e.body) else {
            continue;
        };
        fields.insert("type".into(), e.kind.into());
        fields.insert("at_ms".into(), at.into());
        events.push(serde_json::Value::Object(fields));
    }
    Ok(Json(TimelinePage {
        events,
        next_from_ms,
    }))
}
