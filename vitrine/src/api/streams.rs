//! Streams of the authenticated seller, and the public view of a stream that the watch page
//! reads. Every seller route is scoped to the caller's own streams; a stream of another seller
//! answers 404, exactly as a stream that does not exist.

use super::auth::{StreamsRead, StreamsWrite};
use super::{ApiError, AuthSeller, body, owned_stream, path_id};
use crate::state::AppState;
use crate::store::{MAX_TITLE_CHARS, StreamRow};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use vitrine_core::{PinnedProduct, Problem, Secret, StreamId, StreamState, Timestamp};

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_stream,
    list_streams,
    get_stream,
    delete_stream,
    public_stream,
    rotate_key
))]
pub struct Doc;

/// The caller's streams.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamList {
    pub streams: Vec<StreamView>,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/streams", get(list_streams).post(create_stream))
        .route(
            "/api/v1/streams/{id}",
            get(get_stream).delete(delete_stream),
        )
        .route("/api/v1/public/streams/{id}", get(public_stream))
        .route("/api/v1/streams/{id}/key", axum::routing::post(rotate_key))
}

/// A stream's new key, in the one answer that shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamKey {
    pub id: StreamId,
    /// Shown once; stored hashed.
    pub stream_key: String,
    #[schema(format = "uri")]
    pub whip_url: String,
    /// The studio, with the new key in its fragment.
    #[schema(format = "uri")]
    pub studio_url: String,
}

/// Give a stream a new key: the old one is refused from now on, and a broadcast published with it ends
#[utoipa::path(
    post,
    path = "/api/v1/streams/{id}/key",
    params(("id" = String, Path, description = "The stream's id")),
    responses((status = 200, description = "The new key, shown this once", body = StreamKey)),
    security(("oauth2" = ["streams:write"]))
)]
#[tracing::instrument(skip_all, fields(seller = %seller.id))]
async fn rotate_key(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<StreamsWrite>,
    Path(id): Path<String>,
) -> Result<Json<StreamKey>, ApiError> {
    let row = owned_stream(&state, &seller, &id).await?;
    let key = state
        .store
        .rotate_stream_key(&row.id)
        .await?
        .ok_or_else(|| Problem::not_found("no such stream"))?;
    // The key is changed first, so that a publisher cannot come back with the old one.
    state.ingest.end_stream(&row.id).await;
    tracing::info!(stream = %row.id, "stream key rotated");
    let view = state.view(row, Some(&key));
    Ok(Json(StreamKey {
        id: view.id,
        stream_key: key.expose().to_owned(),
        whip_url: view.whip_url,
        studio_url: view.studio_url,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
}

/// A stream as its owner sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Stream)]
pub struct StreamView {
    pub id: StreamId,
    pub title: String,
    pub state: StreamState,
    pub viewers: usize,
    #[schema(format = "uri")]
    pub whip_url: String,
    #[schema(format = "uri")]
    pub whep_url: String,
    #[schema(format = "uri")]
    pub studio_url: String,
    #[schema(format = "uri")]
    pub watch_url: String,
    /// HLS master playlist (live, and the replay once the stream ended); absent when HLS is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hls_url: Option<String>,
    /// The replay, once the recording is final.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayView>,
    /// Languages of the live captions (chat `caption` events, HLS subtitle renditions): the
    /// spoken one first, then the translations; empty when captions are off.
    pub caption_languages: Vec<String>,
    /// Unix milliseconds (kept for existing clients; `created_at_iso` is the same instant).
    pub created_at: i64,
    pub created_at_iso: Timestamp,
    /// Only in the response that creates the stream: it is stored hashed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_key: Option<String>,
}

/// What anyone may know about a stream (the watch page).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PublicStream)]
pub struct PublicStreamView {
    pub id: StreamId,
    pub title: String,
    pub state: StreamState,
    pub viewers: usize,
    pub whep_url: String,
    /// The chat websocket (`ws://` or `wss://`).
    pub chat_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hls_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayView>,
    /// Languages of the live captions, the spoken one first; empty when captions are off.
    pub caption_languages: Vec<String>,
    /// The product pinned to the stream, with live availability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<PinnedProduct>,
}

/// Where a finished stream's recording plays.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Replay)]
pub struct ReplayView {
    /// HLS master playlist of the whole recording (`EXT-X-PLAYLIST-TYPE:VOD`).
    pub master_url: String,
    /// The replay page.
    pub vod_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poster_url: Option<String>,
}

impl AppState {
    /// The HLS links of a stream: its master playlist, and the replay once there is one.
    async fn media_links(&self, id: &StreamId) -> (Option<String>, Option<ReplayView>) {
        let Some(hls) = &self.hls else {
            return (None, None);
        };
        let base = self.public_url();
        let master_url = format!("{base}/hls/{id}/master.m3u8");
        let replay = hls
            .status(id)
            .await
            .filter(|s| s.replay)
            .map(|s| ReplayView {
                master_url: master_url.clone(),
                vod_url: format!("{base}/vod/{id}"),
                poster_url: s.poster.then(|| format!("{base}/hls/{id}/poster.jpg")),
            });
        (Some(master_url), replay)
    }

    async fn full_view(&self, row: StreamRow, key: Option<&Secret>) -> StreamView {
        let (hls_url, replay) = self.media_links(&row.id).await;
        StreamView {
            hls_url,
            replay,
            ..self.view(row, key)
        }
    }

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
            hls_url: None,
            replay: None,
            caption_languages: self.caption_languages.to_vec(),
            studio_url,
            title: row.title,
            state: row.state,
            created_at: row.created_at,
            created_at_iso: Timestamp(row.created_at),
            stream_key: key.map(|k| k.expose().to_owned()),
            id,
        }
    }
}

fn parse_id(raw: &str) -> Result<StreamId, ApiError> {
    path_id(raw, StreamId::parse, "no such stream")
}

/// Create a stream
#[utoipa::path(
    post,
    path = "/api/v1/streams",
    request_body = CreateStream,
    responses((status = 201, description = "Created, with its stream key (shown this once)", body = StreamView)),
    security(("oauth2" = ["streams:write"]))
)]
#[tracing::instrument(skip_all, fields(seller = %seller.id))]
async fn create_stream(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<StreamsWrite>,
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
    Ok((
        StatusCode::CREATED,
        Json(state.full_view(row, Some(&key)).await),
    ))
}

/// The caller's streams, newest first (at most 200)
#[utoipa::path(
    get,
    path = "/api/v1/streams",
    responses((status = 200, description = "Streams", body = StreamList)),
    security(("oauth2" = ["streams:read"]))
)]
async fn list_streams(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<StreamsRead>,
) -> Result<Json<StreamList>, ApiError> {
    let rows = state.store.streams_of(&seller.id).await?;
    let mut streams: Vec<StreamView> = Vec::with_capacity(rows.len());
    for row in rows {
        streams.push(state.full_view(row, None).await);
    }
    Ok(Json(StreamList { streams }))
}

/// One of the caller's streams; another seller's stream is 404
#[utoipa::path(
    get,
    path = "/api/v1/streams/{id}",
    params(("id" = String, Path, description = "The stream's id")),
    responses((status = 200, description = "The stream", body = StreamView)),
    security(("oauth2" = ["streams:read"]))
)]
async fn get_stream(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<StreamsRead>,
    Path(id): Path<String>,
) -> Result<Json<StreamView>, ApiError> {
    let row = owned_stream(&state, &seller, &id).await?;
    Ok(Json(state.full_view(row, None).await))
}

/// Ends the broadcast and deletes the stream and its recording (HLS media, poster)
#[utoipa::path(
    delete,
    path = "/api/v1/streams/{id}",
    params(("id" = String, Path, description = "The stream's id")),
    responses((status = 204, description = "Deleted")),
    security(("oauth2" = ["streams:write"]))
)]
#[tracing::instrument(skip_all, fields(seller = %seller.id))]
async fn delete_stream(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<StreamsWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let row = owned_stream(&state, &seller, &id).await?;
    state.ingest.end_stream(&row.id).await;
    if let Some(hls) = &state.hls {
        hls.delete(&row.id).await.map_err(|e| {
            tracing::error!(error = %e, "deleting a stream's media");
            Problem::internal()
        })?;
    }
    // Its flash sale ends with it: the pin's id must not keep selling at the sale price.
    state.checkout.catalog().end_stream_sales(&row.id).await?;
    state.store.delete_stream(&row.id).await?;
    // The room's log goes with the stream; failing to reach the bus leaves it there (bounded
    // in length), which is no reason to fail a deletion already done.
    if let Err(e) = state.chat.remove_room(&row.id).await {
        tracing::warn!(stream = %row.id, error = %e, "chat room not pruned");
    }
    if let Err(e) = state.timeline.remove(row.id.as_str()).await {
        tracing::warn!(stream = %row.id, error = %e, "timeline not pruned");
    }
    tracing::info!(stream = %row.id, "stream deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// What anyone may know of a stream (the watch page)
#[utoipa::path(
    get,
    path = "/api/v1/public/streams/{id}",
    params(("id" = String, Path, description = "The stream's id")),
    responses((status = 200, description = "The stream", body = PublicStreamView))
)]
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
        .catalog()
        .active_pin(&id)
        .await?
        .map(|(pin, product)| pin.card(&product));
    let view = state.full_view(row, None).await;
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
        hls_url: view.hls_url,
        replay: view.replay,
        caption_languages: view.caption_languages,
        pinned,
    }))
}
