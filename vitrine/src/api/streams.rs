//! Streams of the authenticated seller, and the public view of a stream that the watch page
//! reads. Every seller route is scoped to the caller's own streams; a stream of another seller
//! answers 404, exactly as a stream that does not exist.

use super::{ApiError, AuthSeller, body, owned_stream, path_id};
use crate::app::AppState;
use crate::store::{MAX_TITLE_CHARS, StreamRow};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use vitrine_core::{PinnedProduct, Problem, Secret, StreamId, StreamState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/streams", get(list_streams).post(create_stream))
        .route("/api/v1/streams/{id}", get(get_stream))
        .route("/api/v1/public/streams/{id}", get(public_stream))
        .route(
            "/api/v1/streams/{id}/moderators",
            axum::routing::post(add_moderator),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewModerator {
    pub buyer_id: vitrine_core::BuyerId,
}

/// Lets a buyer delete lines and ban members in the stream's chat (from their next join).
async fn add_moderator(
    State(state): State<AppState>,
    AuthSeller(seller): AuthSeller,
    Path(id): Path<String>,
    new: Result<Json<NewModerator>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let stream = owned_stream(&state, &seller, &id).await?;
    let new = body(new)?;
    state
        .chat
        .moderation()
        .add_moderator(&stream.id, new.buyer_id.as_str())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "adding a moderator");
            Problem::internal()
        })?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    pub title: String,
}

/// A stream as its owner sees it.
#[derive(Debug, Serialize)]
pub struct StreamView {
    pub id: StreamId,
    pub title: String,
    pub state: StreamState,
    pub viewers: usize,
    pub whip_url: String,
    pub whep_url: String,
    pub studio_url: String,
    pub watch_url: String,
    pub created_at: i64,
    /// Only in the response that creates the stream: it is stored hashed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_key: Option<String>,
}

/// What anyone may know about a stream (the watch page).
#[derive(Debug, Serialize)]
pub struct PublicStreamView {
    pub id: StreamId,
    pub title: String,
    pub state: StreamState,
    pub viewers: usize,
    pub whep_url: String,
    /// The chat websocket (`ws://` or `wss://`).
    pub chat_url: String,
    /// The product pinned to the stream, with live availability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<PinnedProduct>,
}

impl AppState {
    fn view(&self, row: StreamRow, key: Option<&Secret>) -> StreamView {
        let base = self.public_url();
        let id = row.id;
        let studio_url = match key {
            Some(k) => format!("{base}/studio?stream={id}#key={}", k.expose()),
            None => format!("{base}/studio?stream={id}"),
        };
        StreamView {
            viewers: self.sfu.routers.viewers(&id),
            whip_url: format!("{base}/whip/{id}"),
            whep_url: format!("{base}/whep/{id}"),
            watch_url: format!("{base}/watch/{id}"),
            studio_url,
            title: row.title,
            state: row.state,
            created_at: row.created_at,
            stream_key: key.map(|k| k.expose().to_owned()),
            id,
        }
    }
}

fn parse_id(raw: &str) -> Result<StreamId, ApiError> {
    path_id(raw, StreamId::parse, "no such stream")
}

#[tracing::instrument(skip_all, fields(seller = %seller.id))]
async fn create_stream(
    State(state): State<AppState>,
    AuthSeller(seller): AuthSeller,
    new: Result<Json<CreateStream>, JsonRejection>,
) -> Result<(StatusCode, Json<StreamView>), ApiError> {
    let body = body(new)?;
    let title = body.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err(Problem::bad_request(
            "invalid-title",
            format!("title must be 1 to {MAX_TITLE_CHARS} characters"),
        )
        .into());
    }
    let (row, key) = state.store.create_stream(&seller.id, title).await?;
    tracing::info!(stream = %row.id, "stream created");
    Ok((StatusCode::CREATED, Json(state.view(row, Some(&key)))))
}

async fn list_streams(
    State(state): State<AppState>,
    AuthSeller(seller): AuthSeller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = state.store.streams_of(&seller.id).await?;
    let streams: Vec<StreamView> = rows.into_iter().map(|r| state.view(r, None)).collect();
    Ok(Json(serde_json::json!({ "streams": streams })))
}

async fn get_stream(
    State(state): State<AppState>,
    AuthSeller(seller): AuthSeller,
    Path(id): Path<String>,
) -> Result<Json<StreamView>, ApiError> {
    let row = owned_stream(&state, &seller, &id).await?;
    Ok(Json(state.view(row, None)))
}

async fn public_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PublicStreamView>, ApiError> {
    let id = parse_id(&id)?;
    let row = state
        .store
        .stream(&id)
        .await?
        .ok_or_else(|| Problem::not_found("no such stream"))?;
    let pinned = state
        .checkout
        .active_pin(&id)
        .await?
        .map(|(pin, product)| pin.card(&product));
    let view = state.view(row, None);
    let chat_url = format!(
        "{}/ws/streams/{}/chat",
        state.public_url().replacen("http", "ws", 1),
        view.id
    );
    Ok(Json(PublicStreamView {
        id: view.id,
        title: view.title,
        state: view.state,
        viewers: view.viewers,
        whep_url: view.whep_url,
        chat_url,
        pinned,
    }))
}
